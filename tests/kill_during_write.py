"""Run the optbench CLI and SIGKILL it during the Nth write of one results file, after the
temporary file is complete and before it is renamed: the crash tests' fault injection, kept
out of the package.

    python tests/kill_during_write.py checkpoint.pt:2 run CONFIG --results-dir DIR
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    target, _, count = sys.argv[1].partition(":")
    real_replace, renames = os.replace, 0

    def replace(src: str, dst: str, *args: object, **kwargs: object) -> None:
        nonlocal renames
        if os.path.basename(dst) == target:
            renames += 1
            if renames == int(count):
                os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)

    os.replace = replace  # write_atomic renames every finished temporary file with os.replace
    sys.argv = ["optbench", *sys.argv[2:]]
    from optbench.ui.cli import main as optbench

    optbench()


if __name__ == "__main__":
    main()
