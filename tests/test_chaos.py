"""Random SIGKILLs (tests/chaos.py): a sweep, a tune and a benchmark killed at seeded random
moments, driver or worker, then run to completion, end bit-identical to undisturbed runs.

Each schedule is short for CI; `python tests/chaos.py sweep|tune|benchmark --kills 20` runs a
long one (BENCHMARKS.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import chaos_against_undisturbed

pytest.importorskip("sklearn")  # digits
pytest.importorskip("optuna")


@pytest.mark.slow
def test_a_sweep_killed_at_random_ends_as_an_undisturbed_one(tmp_path: Path) -> None:
    log, compared = chaos_against_undisturbed("sweep", tmp_path, kills=6, seed=3, small=True)
    assert compared == 4 and log.kills, log.line()


@pytest.mark.slow
def test_a_tune_killed_at_random_ends_as_an_undisturbed_one(tmp_path: Path) -> None:
    log, compared = chaos_against_undisturbed("tune", tmp_path, kills=6, seed=4, small=True)
    assert compared == 8 and log.kills, log.line()


@pytest.mark.slow
def test_a_benchmark_killed_at_random_ends_as_an_undisturbed_one(tmp_path: Path) -> None:
    # kills in start-up, trials, telling, seed reruns and scoring: the rerun after each
    # resumes from whatever state the last one left (benchmark.json identical but for seconds).
    # Seed 4 kills the driver first, at 2.09 s, in start-up: a kill lands however fast the
    # machine (undisturbed, the small suite ends in about 6 s when idle). The killed one
    # trains its trials batched (`--batch-trials 2`: each pair's 2 trials, then its 2 seed
    # reruns, one batch on a worker), the undisturbed one alone: a killed batch resumes each of
    # its trials from its own checkpoint, and the end is the unbatched benchmark's.
    log, compared = chaos_against_undisturbed(
        "benchmark",
        tmp_path,
        kills=4,
        seed=4,
        between=(1.5, 4.0),
        small=True,
        wild_args=("--batch-trials", "2"),
    )
    assert compared == 6 and log.kills, log.line()
