"""The benchmark's calibrated seconds clock (analysis/seconds_clock.py): a pair's step cost is
the lowest of its runs' intervals' seconds per step, so interruptions drop out and two noisy
runs of the same work score the same; checked against numpy's quantile on intervals computed by
hand, and against scores on the measured clock, which move."""

from __future__ import annotations

import numpy as np
import pytest

from optbench.analysis.profiles import EvalPoint, PairCurves, Target, score_suite
from optbench.analysis.seconds_clock import on_step_cost, step_cost, step_seconds


def _curve(steps_per_eval: list[int], seconds: list[float], values: list[float]) -> tuple:
    """A run's curve from its intervals: steps and seconds of each, cumulated as epochs.csv."""
    return tuple(
        EvalPoint(int(s), float(t), v)
        for s, t, v in zip(np.cumsum(steps_per_eval), np.cumsum(seconds), values, strict=True)
    )


def test_step_cost_is_the_lowest_of_each_intervals_seconds_per_step() -> None:
    first = _curve([10, 10, 5], [0.02, 0.05, 0.006], [3.0, 2.0, 1.0])
    second = _curve([8, 8], [0.016, 0.0088], [2.5, 1.5])
    assert step_seconds(first) == pytest.approx([0.002, 0.005, 0.0012])
    rates = [0.002, 0.005, 0.0012, 0.002, 0.0011]  # by hand
    assert step_cost([first, second]) == pytest.approx(0.0011)
    assert step_cost([first, second], 0.05) == pytest.approx(np.percentile(rates, 5))
    assert step_cost([(), ()]) is None  # no run timed a step: nothing to calibrate
    pair = PairCurves("A", "p", (first, second))
    calibrated = on_step_cost(pair, 0.001)
    assert [p.seconds for p in calibrated.curves[0]] == pytest.approx([0.01, 0.02, 0.025])
    assert [p.steps for p in calibrated.curves[0]] == [10, 20, 25]  # steps, values untouched
    assert [p.value for p in calibrated.curves[1]] == [2.5, 1.5]
    assert on_step_cost(pair, None) is pair


def _noisy_run(rng: np.random.Generator, cost: float, hit_at: int) -> tuple:
    """20 evaluations of 10 steps at `cost` seconds a step, a third of the intervals
    interrupted (another process, a collection: time only ever added), the target (1.0)
    first reached at evaluation `hit_at`."""
    seconds = np.full(20, 10 * cost)
    hit = rng.random(20) < 1 / 3
    seconds[hit] += rng.exponential(30 * cost, hit.sum())
    values = [2.0 if i < hit_at else 0.5 for i in range(20)]
    return _curve([10] * 20, seconds.tolist(), values)


def test_two_noisy_repeats_score_alike_on_the_calibrated_clock_not_on_the_measured() -> None:
    """Optimizer B's steps cost 1.5x A's and it needs fewer of them. Two repeats differ only in
    their interruptions: calibrated, the seconds scores are the same; measured, they move."""
    target = {"p": Target("valid_loss", 1.0), "q": Target("valid_loss", 1.0)}

    def repeat(seed: int, calibrated: bool) -> dict[str, float]:
        rng = np.random.default_rng(seed)
        pairs = []
        for name, cost, hits in (("A", 1e-3, (9, 5)), ("B", 1.5e-3, (6, 4))):
            for problem, hit in zip("pq", hits, strict=True):
                runs = tuple(_noisy_run(rng, cost, hit + k % 2) for k in range(15))
                pair = PairCurves(name, problem, runs, tuple(k // 5 for k in range(15)))
                pairs.append(on_step_cost(pair, step_cost(runs)) if calibrated else pair)
        return score_suite(pairs, target, resamples=10).measures["seconds"].scores

    first, second = repeat(0, True), repeat(1, True)
    assert first == pytest.approx(second, abs=1e-9)
    # by hand: each study's fastest trial reaches at evaluation 10 (A, p), 6 (A, q), 7 (B, p),
    # 5 (B, q) of 10 steps each: A 0.1 s and 0.06 s, B 0.105 s and 0.075 s (r 1.05 and 1.25)
    assert first == pytest.approx({"A": 1.0, "B": ((4 - 1.05) / 3 + (4 - 1.25) / 3) / 2})
    measured = [repeat(seed, False) for seed in range(6)]
    assert max(abs(m["A"] - measured[0]["A"]) for m in measured) > 0.03
