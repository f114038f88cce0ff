"""The benchmark's seconds clock, calibrated so that it repeats.

Measured training seconds of small runs are mostly noise: steps of 0.5-4 ms are dominated by
Python and the operating system (a garbage collection, another process taking the core), so
two runs of one configuration differ by 10-20% and a suite's seconds scores move by up to 0.1
from one run to the next. What the seconds clock is meant to charge is what one optimizer step
*costs*, which is a property of the (optimizer, problem) pair, not of the moment.

So the seconds clock of a pair is calibrated: a run's time to target in seconds is its steps
to target times the pair's **step cost**, the lowest seconds per step measured over every timed
interval of every run of the pair (STEP_COST_QUANTILE 0: the minimum; each interval is the
training between two evaluations, evaluation excluded: its seconds over its steps).
Interruptions only ever add time, so the fastest interval is the cost with the noise dropped
out (Python's `timeit` takes the minimum of its repeats for the same reason), and it is read
over hundreds of intervals (every trial of every study), where one run's own timing reads a
few. Measured on two runs of the quick suite's problems under heavy load (BENCHMARKS.md
section 9), the minimum moved a pair's cost by a median 6% between runs, the 5th percentile
by 24% and the median by 75%. The steps clock is untouched; the seconds clock becomes steps x cost,
so a pair's seconds ratio is its steps ratio times its step cost over the fastest's.

What it assumes: a step costs the same whatever the searched hyperparameters (true of
optimizers doing fixed work per step; a line search's cost varies, and its low quantile is its
cheapest steps'). One-off costs (torch.compile's first step, warm-up) are not in it: they are
in epochs.csv's measured `seconds` (and `first_step_seconds`), which stay as recorded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from optbench.analysis.profiles import EvalPoint, PairCurves

STEP_COST_QUANTILE = 0.0  # the minimum (benchmarks/step_cost_split.py compares others)
CALIBRATED, MEASURED = "calibrated", "measured"
SECONDS_CLOCKS = (CALIBRATED, MEASURED)
DEFINITION = {
    CALIBRATED: (
        "steps to target x the pair's step cost: the lowest seconds per optimizer step over "
        "every timed interval (training between two evaluations, evaluation excluded) of every "
        "run of the pair"
    ),
    MEASURED: "cumulative measured training seconds at the first evaluation reaching the target",
}


def step_seconds(curve: Sequence[EvalPoint]) -> list[float]:
    """Seconds per step of each timed interval of a run's curve (cumulative steps and
    seconds): the first from the start, then between consecutive evaluations; intervals
    without a step are skipped."""
    out, steps, seconds = [], 0, 0.0
    for point in curve:
        taken = point.steps - steps
        if taken > 0 and math.isfinite(point.seconds):
            out.append((point.seconds - seconds) / taken)
        steps, seconds = point.steps, point.seconds
    return out


def step_cost(
    curves: Iterable[Sequence[EvalPoint]], quantile: float = STEP_COST_QUANTILE
) -> float | None:
    """The pair's cost of one step in seconds: the `quantile` of its runs' intervals'
    seconds per step (None when no run timed a step)."""
    samples = [rate for curve in curves for rate in step_seconds(curve)]
    if not samples:
        return None
    return float(np.quantile(samples, quantile))


def on_step_cost(pair: PairCurves, cost: float | None) -> PairCurves:
    """The pair's curves with every evaluation's seconds replaced by its steps x `cost` (a
    pair that timed no step keeps its curves: they reach nothing, or have no interval)."""
    if cost is None:
        return pair
    curves = tuple(
        tuple(EvalPoint(p.steps, p.steps * cost, p.value) for p in curve) for curve in pair.curves
    )
    return replace(pair, curves=curves)
