"""The README's commands are the ones CI runs, and its claims hold for this tree."""

from __future__ import annotations

import re

from tests.helpers import REPO


def _fenced_after(text: str, heading: str) -> list[str]:
    """The lines of the first ```bash block after `heading`."""
    rest = text[text.index(heading) :]
    block = re.search(r"```bash\n(.*?)```", rest, re.S)
    assert block, f"no bash block after {heading!r}"
    return block.group(1).strip().splitlines()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (REPO / "README.md").read_text()
    (command,) = _fenced_after(readme, "Run the tests")
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert command in ci


def test_ci_installs_the_debian_packages_the_quick_start_names() -> None:
    readme = (REPO / "README.md").read_text()
    apt_line = next(line for line in _fenced_after(readme, "## Quick start") if "apt-get" in line)
    packages = apt_line.split("install -y", 1)[1].split()
    ci = (REPO / ".ci" / "run").read_text()
    for package in packages:
        assert package in ci, package


def test_the_readme_shows_what_compare_prints_for_the_shipped_baselines() -> None:
    import subprocess
    import sys

    readme = (REPO / "README.md").read_text()
    command = "COLUMNS=160 optbench compare results/baselines --target test_accuracy=0.85"
    assert command in readme
    rest = readme[readme.index(command) :]
    shown = rest[rest.index("```\n") + 4 : rest.index("\n```", rest.index("```\n") + 4)]
    printed = subprocess.run(
        [sys.executable, "-m", "optbench", *command.split()[2:]],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.rstrip("\n") == shown.rstrip("\n")


def test_the_shipped_baselines_are_the_runs_the_shipped_sweep_plans() -> None:
    # An identity change that leaves them behind would make every user retrain them.
    from optbench.sweep.grid import load_sweep, point_status

    name, points = load_sweep(REPO / "configs" / "compare_fashion_mnist.yaml")
    statuses = {point_status(REPO / "results" / "baselines", name, p) for p in points}
    assert len(points) == 14 and statuses == {"completed"}
