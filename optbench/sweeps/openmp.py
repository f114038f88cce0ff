"""How the idle torch (OpenMP) threads of a process that trains beside others wait: asleep, not
spinning. Kept free of torch: OpenMP reads the variable once, when torch is first imported.

Worker processes get it when they start (executors/local.py). The driver of a sweep, tune or
benchmark trains runs too (tiny runs in its own thread, and every batched trial:
--batch-trials), so the CLI sets it for the driver before anything imports torch. Measured on
the loaded 2-core machine (BENCHMARKS.md section 13, "The quick suite, batched"): without it,
a batched tune of 5 digits_mlp trials spent 6.5 s training instead of 1.8 s.
"""

from __future__ import annotations

import os
import sys

# Each run keeps its own thread count (plan.run_threads), so N workers may run N x that many
# threads on the cores; OpenMP's default spin-wait then starves the runs (20-100x slower
# measured on 2 cores).
WORKER_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}


def wait_passively() -> None:
    """WORKER_ENVIRONMENT for this process (a variable the user set wins); it takes effect only
    where torch is not imported yet, as in the CLI before a command plans anything."""
    if "torch" not in sys.modules:
        for key, value in WORKER_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
