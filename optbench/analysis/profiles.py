"""Scores across problems: time to target, performance profiles and AlgoPerf's score.

A transcription of AlgoPerf's scoring (github.com/mlcommons/algorithmic-efficiency,
`scoring/performance_profile.py`: `get_best_trial_index`, `get_workloads_time_to_target`,
`compute_performance_profiles`; `scoring/score_submissions.py`: `compute_leaderboard_score` with
`min_tau=1.0, max_tau=4.0, normalize=True`), for optbench's suites, where an (optimizer,
problem) pair is the best trial of a tune rerun with a few seeds:

- A run's time to target is its first evaluation point (in evaluation order) whose metric is
  >= the target (higher is better) or <= it (lower is better), read in optimizer steps and in
  training seconds (as AlgoPerf: `np.argmax` of the reached mask). A NaN never reaches it.
- Under AlgoPerf's external tuning (the benchmark's default) a pair is several independent
  tuning studies: a study's time is that of its fastest trial to reach the target, the trial
  with the fewest steps, both clocks read off that trial (AlgoPerf's `get_best_trial_index`:
  the trial whose first reaching evaluation comes earliest), inf when no trial reaches it; the
  pair's time is the median over its studies, as over seeds below (AlgoPerf's
  `get_workloads_time_to_target`: `np.median(time_vals_per_study)`). A study is one "unit"
  here, as a seed rerun is in the other protocol.
- A pair's time is the median over its seed reruns, a seed that never reaches the target
  counting as infinite (AlgoPerf: `np.median` over studies, each inf when it missed). So the pair
  is "not reached" (None) exactly when fewer than half of its seeds reach the target (AlgoPerf
  asks 3 of 5). The median of an even count is the *lower* median, the (n/2)-th smallest: it is
  always a time some seed measured (steps stay whole), and it makes "half the seeds reach it"
  count as reached, as the rule says, where averaging the two middle values would give inf for
  2 of 4. For odd counts it is np.median exactly. Steps and seconds take their medians
  separately (their middle seeds may differ).
- r = a pair's time / the fastest optimizer's time on that problem; inf when not reached, and
  every r of a problem nobody reaches is inf. A time of 0 (the target met before training)
  ties with the fastest at r = 1 and makes every slower time inf, as AlgoPerf's
  `df.update(df.div(df.min(axis=0), axis=1))` leaves it.
- rho(tau) = the fraction of problems with r <= tau (AlgoPerf divides by its fixed count of
  workloads; here, by the suite's problems).
- score = integral of rho over [1, r_max] / (r_max - 1), r_max = 4. AlgoPerf takes it with
  `np.trapz` on 100 points; here it is exact: rho is a sum of steps, so the integral is
  (1/n) * sum over problems of max(0, r_max - r) / (r_max - 1). AlgoPerf's rule that a time
  over 4x the fastest is inf changes nothing in it (such an r adds 0 either way).

The ranking is honest about seeds: a bootstrap resamples each pair's seed reruns (or studies) with
replacement (independently per pair, with a seeded generator), recomputes times, ratios and
scores, and gives each score a percentile interval and, for each two optimizers A and B, the
fraction of resamples in which A's score is strictly higher than B's (`beats`). Two optimizers
cannot be told apart at level 0.95 when neither beats the other in 95% of the resamples
(`cannot_tell_apart`). All optimizers see the same resamples, so this is a paired comparison.

Torch-free and Optuna-free: it takes plain curves, so the benchmark command, the report and
tests all score the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optbench.core.metrics import higher_is_better as metric_higher_is_better

# The two clocks a time to target is read on; each gets its own profile and score.
MEASURES = ("steps", "seconds")
R_MAX = 4  # AlgoPerf's upper bound of tau: a pair more than 4x slower adds nothing
PROFILE_POINTS = 100  # AlgoPerf's num_points, for plotting only: the score is exact
RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation of a run: optimizer steps and training seconds so far (evaluation
    excluded), and the metric's value there. The clocks are named as MEASURES."""

    steps: int
    seconds: float
    value: float


@dataclass(frozen=True)
class Target:
    """The level a run must reach on a problem; the metric's direction is storage's."""

    metric: str
    value: float

    @property
    def higher_is_better(self) -> bool:
        return metric_higher_is_better(self.metric)


@dataclass(frozen=True)
class PairCurves:
    """An (optimizer, problem) pair's runs, each a curve of evaluations in order. `studies`
    None: each curve is a seed rerun, its own unit. Else `studies[i]` is the study curve i
    belongs to (a trial of it; an empty curve stands for a study without trials): a study's
    time is its fastest trial's."""

    optimizer: str
    problem: str
    curves: tuple[tuple[EvalPoint, ...], ...]
    studies: tuple[int, ...] | None = None

    @property
    def unit(self) -> str:
        """What the median is taken over: "seeds" or "studies"."""
        return "seeds" if self.studies is None else "studies"


@dataclass(frozen=True)
class TimeToTarget:
    """A pair's median time to target; steps and seconds are None when fewer than half of its
    `seeds` (its units: seed reruns, or studies) reached the target (`reached` of them did)."""

    steps: int | None
    seconds: float | None
    reached: int
    seeds: int

    def measure(self, name: str) -> float:
        """The time on clock `name` ("steps" or "seconds"), inf when not reached."""
        value = getattr(self, name)
        return math.inf if value is None else float(value)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class MeasureScores:
    """The profile and scores on one clock: r per optimizer and problem, each score with its
    bootstrap interval, and beats[A][B] = fraction of resamples where A's score > B's."""

    measure: str
    ratios: dict[str, dict[str, float]]
    scores: dict[str, float]
    intervals: dict[str, Interval]
    beats: dict[str, dict[str, float]]


@dataclass(frozen=True)
class BenchmarkScores:
    """Everything `benchmark.json` holds: the inputs that decided it and both clocks' scores."""

    r_max: float
    optimizers: tuple[str, ...]
    problems: tuple[str, ...]
    targets: dict[str, Target]
    times: dict[str, dict[str, TimeToTarget]]
    measures: dict[str, MeasureScores]
    resamples: int
    confidence: float
    seed: int
    unit: str = "seeds"  # what each pair's median is over: "seeds" or "studies"


def first_reach(
    curve: Iterable[EvalPoint], target: float, higher_is_better: bool
) -> EvalPoint | None:
    """The first evaluation at or beyond `target`, None if the run never gets there."""
    for point in curve:
        if point.value >= target if higher_is_better else point.value <= target:
            return point
    return None


def lower_median(values: np.ndarray) -> np.ndarray:
    """The ceil(n/2)-th smallest along the last axis: np.median for odd n, the lower of the
    two middle values for even n (see the module docstring); inf when fewer than half are
    finite."""
    count = values.shape[-1]
    return np.sort(values, axis=-1)[..., (count - 1) // 2]


def _seed_times(
    curves: Sequence[Sequence[EvalPoint]],
    target: float,
    higher_is_better: bool,
    studies: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Each unit's time to target on each clock, inf for one that never reaches it: a seed
    rerun's first reaching evaluation, or (`studies` given) a study's fastest trial's."""
    if not curves:
        raise ValueError("time to target: no seed reruns to read")
    hits = [first_reach(curve, target, higher_is_better) for curve in curves]
    if studies is not None:
        fastest: dict[int, EvalPoint | None] = {}
        for study, hit in zip(studies, hits, strict=True):
            best = fastest.setdefault(study, hit)
            if hit is not None and (best is None or hit.steps < best.steps):
                fastest[study] = hit
        hits = list(fastest.values())
    return {
        measure: np.array([math.inf if hit is None else getattr(hit, measure) for hit in hits])
        for measure in MEASURES
    }


def time_to_target(
    curves: Sequence[Sequence[EvalPoint]],
    target: float,
    higher_is_better: bool,
    studies: Sequence[int] | None = None,
) -> TimeToTarget:
    """A pair's time to target: the median over its seed reruns of each one's first
    evaluation reaching `target` (or over its studies of each one's fastest trial), in steps
    and in seconds; None when fewer than half reach."""
    return _median_time(_seed_times(curves, target, higher_is_better, studies))


def _median_time(seed_times: dict[str, np.ndarray]) -> TimeToTarget:
    """The pair's time from its seeds' times (inf: not reached) on each clock."""
    steps, seconds = (float(lower_median(seed_times[measure])) for measure in MEASURES)
    return TimeToTarget(
        steps=int(steps) if math.isfinite(steps) else None,
        seconds=seconds if math.isfinite(seconds) else None,
        reached=int(np.isfinite(seed_times["steps"]).sum()),
        seeds=len(seed_times["steps"]),
    )


def _ratio_array(times: np.ndarray) -> np.ndarray:
    """r over the (..., optimizer, problem) axes: time / the fastest time on the problem."""
    fastest = times.min(axis=-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = times / fastest
    return np.where(np.isinf(times), math.inf, np.where(times == fastest, 1.0, ratio))


def _score_array(ratio: np.ndarray, r_max: float) -> np.ndarray:
    """The exact normalised area under rho on [1, r_max], over the problem axis."""
    return (np.maximum(0.0, r_max - ratio) / (r_max - 1.0)).mean(axis=-1)


def _matrix(
    table: Mapping[str, Mapping[str, float | None]],
) -> tuple[list[str], list[str], np.ndarray]:
    """A {optimizer: {problem: value}} table as an array, None as inf; every optimizer must
    have every problem."""
    optimizers = list(table)
    problems = list(next(iter(table.values()), {}))
    for optimizer, row in table.items():
        if set(row) != set(problems):
            raise ValueError(
                f"{optimizer}: problems {sorted(row)} differ from the others' {sorted(problems)}"
            )
    array = np.array(
        [
            [math.inf if row[p] is None else float(row[p]) for p in problems]
            for row in table.values()
        ]
    ).reshape(len(optimizers), len(problems))
    return optimizers, problems, array


def _table(
    optimizers: Sequence[str], problems: Sequence[str], array: np.ndarray
) -> dict[str, dict[str, float]]:
    """An (optimizer, problem) array back as {optimizer: {problem: value}}."""
    return {
        o: dict(zip(problems, map(float, row), strict=True))
        for o, row in zip(optimizers, array, strict=True)
    }


def ratios(times: Mapping[str, Mapping[str, float | None]]) -> dict[str, dict[str, float]]:
    """r[optimizer][problem] = its time / the fastest optimizer's time on that problem (inf when
    not reached, None counting as not reached; inf for all when nobody reaches a problem)."""
    optimizers, problems, array = _matrix(times)
    return _table(optimizers, problems, _ratio_array(array))


def _check_r_max(r_max: float) -> None:
    if not r_max > 1:
        raise ValueError(f"r_max: {r_max} must be above 1")


def scores(ratio: Mapping[str, Mapping[str, float]], r_max: float = R_MAX) -> dict[str, float]:
    """Each optimizer's score: the integral of its profile over [1, r_max] / (r_max - 1),
    computed exactly as the mean over problems of max(0, r_max - r) / (r_max - 1)."""
    _check_r_max(r_max)
    optimizers, _, array = _matrix(ratio)
    return dict(zip(optimizers, map(float, _score_array(array, r_max)), strict=True))


def tau_grid(r_max: float = R_MAX, points: int = PROFILE_POINTS) -> np.ndarray:
    """Evenly spaced tau from 1 to r_max, where a profile is drawn (AlgoPerf's linear scale)."""
    _check_r_max(r_max)
    return np.linspace(1.0, r_max, num=points)


def performance_profile(
    ratio: Mapping[str, Mapping[str, float]], taus: Sequence[float] | np.ndarray
) -> dict[str, list[float]]:
    """rho(tau) per optimizer at each tau: the fraction of problems with r <= tau."""
    optimizers, _, array = _matrix(ratio)
    rho = (array[:, :, None] <= np.asarray(taus, dtype=float)[None, None, :]).mean(axis=1)
    return {o: [float(v) for v in row] for o, row in zip(optimizers, rho, strict=True)}


def _pairs_table(
    pairs: Iterable[PairCurves], targets: Mapping[str, Target]
) -> tuple[tuple[str, ...], tuple[str, ...], dict[tuple[str, str], PairCurves]]:
    """The pairs by (optimizer, problem), refusing a duplicate, a missing pair, a problem
    without a target and a pair without seed reruns."""
    by_key: dict[tuple[str, str], PairCurves] = {}
    for pair in pairs:
        key = (pair.optimizer, pair.problem)
        if key in by_key:
            raise ValueError(f"{pair.optimizer} on {pair.problem}: given twice")
        if pair.problem not in targets:
            raise ValueError(f"{pair.problem}: no target")
        if not pair.curves:
            raise ValueError(f"{pair.optimizer} on {pair.problem}: no seed reruns")
        if pair.studies is not None and len(pair.studies) != len(pair.curves):
            raise ValueError(f"{pair.optimizer} on {pair.problem}: a study for each curve")
        by_key[key] = pair
    optimizers = tuple(dict.fromkeys(o for o, _ in by_key))
    problems = tuple(dict.fromkeys(p for _, p in by_key))
    if not by_key:
        raise ValueError("no (optimizer, problem) pairs to score")
    for optimizer in optimizers:
        for problem in problems:
            if (optimizer, problem) not in by_key:
                raise ValueError(f"{optimizer} on {problem}: missing")
    return optimizers, problems, by_key


def score_suite(
    pairs: Iterable[PairCurves],
    targets: Mapping[str, Target],
    *,
    r_max: float = R_MAX,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> BenchmarkScores:
    """Times to target, ratios and scores on both clocks, each score with a bootstrap interval
    over the seed reruns and each two optimizers' beats fractions (see the module docstring)."""
    _check_r_max(r_max)
    if resamples < 1:
        raise ValueError(f"resamples: {resamples} must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: {confidence} must be between 0 and 1")
    optimizers, problems, by_key = _pairs_table(pairs, targets)
    units = {pair.unit for pair in by_key.values()}
    if len(units) > 1:
        raise ValueError("pairs of seed reruns and pairs of studies cannot be scored together")
    shape = (len(optimizers), len(problems))
    point = {measure: np.empty(shape) for measure in MEASURES}
    sampled = {measure: np.empty((resamples, *shape)) for measure in MEASURES}
    times: dict[str, dict[str, TimeToTarget]] = {o: {} for o in optimizers}
    rng = np.random.default_rng(seed)
    for i, optimizer in enumerate(optimizers):
        for j, problem in enumerate(problems):
            pair = by_key[(optimizer, problem)]
            target = targets[problem]
            seed_times = _seed_times(
                pair.curves, target.value, target.higher_is_better, pair.studies
            )
            pair_time = _median_time(seed_times)
            times[optimizer][problem] = pair_time
            count = pair_time.seeds  # resampled: seed reruns, or whole studies
            draws = rng.integers(0, count, size=(resamples, count))
            for measure in MEASURES:
                point[measure][i, j] = pair_time.measure(measure)
                sampled[measure][:, i, j] = lower_median(seed_times[measure][draws])
    low_q, high_q = (1 - confidence) / 2, (1 + confidence) / 2
    measures = {}
    for measure in MEASURES:
        ratio = _ratio_array(point[measure])
        boot = _score_array(_ratio_array(sampled[measure]), r_max)  # (resamples, optimizer)
        measures[measure] = MeasureScores(
            measure=measure,
            ratios=_table(optimizers, problems, ratio),
            scores=dict(zip(optimizers, map(float, _score_array(ratio, r_max)), strict=True)),
            intervals={
                o: Interval(*(float(q) for q in np.quantile(boot[:, i], [low_q, high_q])))
                for i, o in enumerate(optimizers)
            },
            beats={
                a: {
                    b: float((boot[:, i] > boot[:, k]).mean())
                    for k, b in enumerate(optimizers)
                    if k != i
                }
                for i, a in enumerate(optimizers)
            },
        )
    return BenchmarkScores(
        r_max=r_max,
        optimizers=optimizers,
        problems=problems,
        targets=dict(targets),
        times=times,
        measures=measures,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        unit=units.pop(),
    )


def cannot_tell_apart(scores_on: MeasureScores, level: float = CONFIDENCE) -> list[tuple[str, str]]:
    """The optimizer pairs (A before B in the suite's order) where neither scores strictly
    higher than the other in at least `level` of the bootstrap resamples."""
    names = list(scores_on.beats)
    return [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if scores_on.beats[a][b] < level and scores_on.beats[b][a] < level
    ]


def _finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an unreached ratio is written null."""
    return value if math.isfinite(value) else None


def benchmark_json(result: BenchmarkScores, profile_points: int = PROFILE_POINTS) -> dict[str, Any]:
    """The `benchmark.json` document: r_max, the unit each pair's median is over ("seeds" or
    "studies": a time's `<unit>_reached` of its `<unit>`), targets, times to target, and per
    clock the ratios (null: not reached), scores, intervals, beats and the profile on a tau grid."""
    taus = tau_grid(result.r_max, profile_points)
    return {
        "r_max": result.r_max,
        "unit": result.unit,
        "targets": {
            p: {"metric": t.metric, "value": t.value, "higher_is_better": t.higher_is_better}
            for p, t in result.targets.items()
            if p in result.problems
        },
        "time_to_target": {
            o: {
                p: {
                    "steps": t.steps,
                    "seconds": t.seconds,
                    f"{result.unit}_reached": t.reached,
                    result.unit: t.seeds,
                }
                for p, t in row.items()
            }
            for o, row in result.times.items()
        },
        "scores": {m: dict(s.scores) for m, s in result.measures.items()},
        "intervals": {
            m: {o: [i.low, i.high] for o, i in s.intervals.items()}
            for m, s in result.measures.items()
        },
        "beats": {m: s.beats for m, s in result.measures.items()},
        "cannot_tell_apart": {
            m: [list(pair) for pair in cannot_tell_apart(s, result.confidence)]
            for m, s in result.measures.items()
        },
        "ratios": {
            m: {o: {p: _finite_or_none(r) for p, r in row.items()} for o, row in s.ratios.items()}
            for m, s in result.measures.items()
        },
        "profiles": {
            "tau": [float(t) for t in taus],
            **{m: performance_profile(s.ratios, taus) for m, s in result.measures.items()},
        },
        "bootstrap": {
            "resamples": result.resamples,
            "confidence": result.confidence,
            "seed": result.seed,
        },
    }
