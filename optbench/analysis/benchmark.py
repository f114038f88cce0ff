"""`optbench benchmark`'s scoring half: a suite's finished pairs read back from their folders
and scored across problems with performance profiles (analysis/profiles.py, AlgoPerf's
definitions). Training them is sweeps/benchmark.py's; nothing here imports sweeps.

Reading back runs no code: a run's curve is its epochs.csv (steps from its `step` column where
it has one, else epoch x summary.json's `steps_per_epoch`; seconds = cumulative training
`seconds`, evaluation excluded) and a trial's hyperparameters are read from its config.yaml as
plain YAML, never planned (planning imports the modules a stored config names).

- External tuning (the default): every trial of every study is a curve; a study's time is its
  fastest trial's; the pair's the median over studies. The pair's chosen hyperparameters are
  those of the median study's fastest trial (its best final trial where it reached nothing).
- Best final metric, rerun with seeds: the best trial's seed reruns are the curves.

The seconds clock is calibrated (analysis/seconds_clock.py): a run's seconds at an evaluation
are its steps there times the pair's step cost, a low quantile of the seconds per step its runs
measured, so the seconds scores repeat where raw timings of millisecond steps do not.

`DIR/<suite>/benchmark.json` holds the scores (profiles.benchmark_json), the protocol, the
clocks' definitions, and per pair its chosen hyperparameters, whether they sit at the edge of
the space, its final and best metric, its step cost and every trial (searched values, best
metric, steps to target).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.analysis.profiles import (
    BenchmarkScores,
    EvalPoint,
    PairCurves,
    Target,
    benchmark_json,
    first_reach,
    lower_median,
    score_suite,
)
from optbench.analysis.seconds_clock import (
    CALIBRATED,
    DEFINITION,
    STEP_COST_QUANTILE,
    on_step_cost,
    step_cost,
)
from optbench.core.config import Distribution, read_config_file
from optbench.core.errors import ConfigError
from optbench.core.metrics import higher_is_better
from optbench.core.suite import EXTERNAL_TUNING, Pair, Study, SuiteConfig
from optbench.storage.records import TunedOptimizer, TuneFile
from optbench.storage.results import BENCHMARK_FILE, RunDir, cannot_write, write_atomic

# A value within this fraction of its range's width from either end (on the log scale for
# log_uniform) sits at the space's edge: the search may have been cut short there.
EDGE_FRACTION = 0.05
EDGE_NOTE = "best at the space's edge: widen it"


@dataclass
class BenchmarkRun:
    """What a benchmark did: the document written, the scores, and which pairs it trained."""

    path: Path
    document: dict[str, Any]
    scores: BenchmarkScores
    trained: list[str]
    reused: list[str]
    failed: list[str]  # pairs without a completed trial: scored as never reaching the target


def at_edge(value: Any, dist: Distribution) -> bool:
    """Whether a range's value lies in the outer EDGE_FRACTION of it at either end, measured
    on the log scale for log_uniform. A choice has no edge, and neither has an end at exactly 0
    of a uniform range (a weight decay or a momentum of 0: nothing lies beyond it to search)."""
    if dist.kind == "choice" or not isinstance(value, (int, float)):
        return False
    low, high = (float(b) for b in dist.bounds)
    value = float(value)
    physical_low, physical_high = low == 0, high == 0
    if dist.kind == "log_uniform":
        if value <= 0:
            return True
        low, high, value = math.log(low), math.log(high), math.log(value)
    where = (value - low) / (high - low)
    low_edge = where <= EDGE_FRACTION and not physical_low
    return low_edge or (where >= 1 - EDGE_FRACTION and not physical_high)


def edge_keys(params: dict[str, Any] | None, space: dict[str, Any]) -> list[str]:
    """The keys of `params` at the edge of their range in `space` (tune.json's form)."""
    if not params:
        return []
    edges = []
    for key, value in params.items():
        if key in space and at_edge(value, Distribution.model_validate(space[key])):
            edges.append(key)
    return edges


def _steps_per_epoch(run: RunDir, fallback: Callable[[], int]) -> int:
    summary = run.read_summary()
    if summary is not None and summary.steps_per_epoch:
        return summary.steps_per_epoch
    return fallback()  # a run written before summary.json said it


def run_curve(run: RunDir, metric: str, fallback: Callable[[], int]) -> tuple[EvalPoint, ...]:
    """A run's evaluations: (steps, cumulative training seconds, metric); empty when it wrote
    no epoch. Steps: epochs.csv's `step` column where present, else epoch x steps per epoch."""
    import pandas as pd

    try:
        frame = run.read_epochs()
    except (OSError, pd.errors.EmptyDataError):
        return ()
    if frame.empty or metric not in frame:
        return ()
    if "step" in frame:
        steps = [int(step) for step in frame["step"]]
    else:
        per_epoch = _steps_per_epoch(run, fallback)
        steps = [int(epoch) * per_epoch for epoch in frame["epoch"]]
    seconds = frame["seconds"].cumsum()
    return tuple(
        EvalPoint(step, float(secs), float(value))
        for step, secs, value in zip(steps, seconds, frame[metric], strict=True)
    )


def _mean_std(values: list[float]) -> dict[str, float | None]:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def _dotted(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _trial_params(run: RunDir, space: dict[str, Any]) -> dict[str, Any]:
    """A trial's values of the space's keys, from its config.yaml read as YAML (not planned)."""
    try:
        config = read_config_file(run.config_path)
    except ConfigError:
        return {}
    return {key: _dotted(config, key) for key in space}


def trial_record(
    run: RunDir,
    curve: Sequence[EvalPoint],
    target: Target,
    space: dict[str, Any],
    study: int,
) -> dict[str, Any]:
    """One trial as benchmark.json's `trials` hold it, what explains a pair's rank: its
    study, run-id, status, searched values, the target metric's best value over its
    evaluations (null: it evaluated nothing finite) and its steps to the target (null: not
    reached)."""
    summary = run.read_summary()
    finite = [point.value for point in curve if math.isfinite(point.value)]
    best = max if target.higher_is_better else min
    hit = first_reach(curve, target.value, target.higher_is_better)
    return {
        "study": study,
        "run_id": run.path.name,
        "status": None if summary is None else summary.status,
        "params": _trial_params(run, space),
        "best": best(finite) if finite else None,
        "steps_to_target": None if hit is None else hit.steps,
    }


def _study_report(results: Path, study: Study) -> TunedOptimizer:
    (arm,) = TuneFile.read(results / study.folder / "tune.json").optimizers.values()
    return arm


def _fallback(study: Study) -> Callable[[], int]:
    """Steps per epoch for a run written before summary.json held them: the suite's own
    config of the study planned (what the user ran, never a stored config), once."""
    cache: list[int] = []

    def steps() -> int:
        if not cache:
            from optbench.core.config import validate_config
            from optbench.experiment.plan import make_plan

            cache.append(make_plan(validate_config(study.config)).steps_per_epoch)
        return cache[0]

    return steps


def _extremes(curves: Sequence[Sequence[EvalPoint]], metric: str) -> dict[str, Any]:
    best = max if higher_is_better(metric) else min
    finals = [curve[-1].value for curve in curves if curve]
    bests = [best(point.value for point in curve) for curve in curves if curve]
    return {"final": _mean_std(finals), "best": _mean_std(bests)}


def _read_reruns(
    results: Path, pair: Pair, target: Target
) -> tuple[PairCurves, dict[str, Any], bool]:
    """The rerun protocol: the best trial's seed reruns."""
    (study,) = pair.studies
    arm = _study_report(results, study)
    seeds = len(study.config["tune"]["seeds"])
    steps = _fallback(study)
    trials, timed = [], {}
    for run_id in arm.trial_run_ids:
        run = RunDir(results / study.folder / run_id)
        timed[run_id] = curve = run_curve(run, target.metric, steps)
        trials.append(trial_record(run, curve, target, arm.space, 0))
    if arm.best is None or len(arm.seed_run_ids) != seeds:  # every trial failed or diverged
        detail = {
            "folders": [study.folder],
            "hyperparameters": None,
            "chosen_by": None,
            "at_edge": [],
            "seed_run_ids": [],
            "curve_runs": [],
            **_extremes([], target.metric),
            "step_seconds": step_cost(timed.values()),
            "trials": trials,
        }
        return PairCurves(pair.optimizer, pair.problem, ((),) * seeds), detail, True
    runs = [RunDir(results / study.folder / run_id) for run_id in arm.seed_run_ids]
    curves = tuple(run_curve(run, target.metric, steps) for run in runs)
    timed.update(zip(arm.seed_run_ids, curves, strict=True))
    detail = {
        "folders": [study.folder],
        "hyperparameters": arm.best.params,
        "chosen_by": "best final metric",
        "at_edge": edge_keys(arm.best.params, arm.space),
        "seed_run_ids": arm.seed_run_ids,
        "curve_runs": [[study.folder, run_id] for run_id in arm.seed_run_ids],
        **_extremes(curves, target.metric),
        "step_seconds": step_cost(timed.values()),  # every run of the pair: trials, reruns
        "trials": trials,
    }
    return PairCurves(pair.optimizer, pair.problem, curves), detail, False


def _read_studies(
    results: Path, pair: Pair, target: Target
) -> tuple[PairCurves, dict[str, Any], bool]:
    """External tuning: every trial of every study; the pair's chosen trial is the median
    study's fastest (where the median study reached nothing, its best final trial)."""
    curves: list[tuple[EvalPoint, ...]] = []
    owners: list[int] = []
    fastest: list[tuple[float, str, Study, TunedOptimizer] | None] = []
    reports: list[TunedOptimizer] = []
    shown: list[tuple[EvalPoint, ...]] = []  # each study's fastest trial (else its best final)
    shown_runs: list[list[str]] = []
    trials: list[dict[str, Any]] = []
    failed = True
    for index, study in enumerate(pair.studies):
        arm = _study_report(results, study)
        reports.append(arm)
        failed = failed and arm.best is None
        steps = _fallback(study)
        best: tuple[float, str, Study, TunedOptimizer] | None = None
        by_run = {}
        for run_id in arm.trial_run_ids:
            run = RunDir(results / study.folder / run_id)
            curve = run_curve(run, target.metric, steps)
            by_run[run_id] = curve
            curves.append(curve)
            owners.append(index)
            trials.append(trial_record(run, curve, target, arm.space, index))
            hit = first_reach(curve, target.value, target.higher_is_better)
            if hit is not None and (best is None or hit.steps < best[0]):
                best = (hit.steps, run_id, study, arm)
        if not arm.trial_run_ids:  # a study without trials reaches nothing
            curves.append(())
            owners.append(index)
        fastest.append(best)
        shown_id = best[1] if best is not None else (arm.best.run_id if arm.best else None)
        if shown_id in by_run:
            shown.append(by_run[shown_id])
            shown_runs.append([study.folder, shown_id])
    import numpy as np

    times = np.array([math.inf if f is None else f[0] for f in fastest])
    middle = float(lower_median(times))
    index = next(
        (i for i, t in enumerate(times) if t == middle), 0
    )  # the study whose time is the pair's (the first study when none reached)
    chosen = fastest[index]
    if chosen is not None:
        _, run_id, study, arm = chosen
        params = _trial_params(RunDir(results / study.folder / run_id), arm.space)
        chosen_by = f"fastest trial of study {index} (the median study)"
    else:
        arm = reports[index]
        params = None if arm.best is None else arm.best.params
        run_id = None if arm.best is None else arm.best.run_id
        chosen_by = None if params is None else f"best final metric of study {index}"
    detail = {
        "folders": [study.folder for study in pair.studies],
        "hyperparameters": params,
        "chosen_by": chosen_by,
        "chosen_run_id": run_id,
        "at_edge": edge_keys(params, reports[index].space),
        "study_steps": [None if f is None else int(f[0]) for f in fastest],
        "curve_runs": shown_runs,
        **_extremes(shown, target.metric),
        "step_seconds": step_cost(curves),
        "trials": trials,
    }
    pair_curves = PairCurves(pair.optimizer, pair.problem, tuple(curves), tuple(owners))
    return pair_curves, detail, failed


def _setup(suite: SuiteConfig, pairs: Sequence[Pair], results: Path) -> dict[str, Any]:
    """What a reader needs to repeat the benchmark: the protocol and budget as the studies ran
    it, each optimizer's space, the suite's `set`, and the device, hardware and versions one
    run recorded in its summary.json."""
    tune = pairs[0].config["tune"]
    budget: dict[str, Any] = {"trials": tune["trials"], "sampler": tune["sampler"]}
    budget["pruner"] = tune["pruner"]
    if suite.protocol == EXTERNAL_TUNING:
        budget["studies"] = suite.studies
    else:
        budget["seeds"] = tune["seeds"]
    spaces = {pair.optimizer: pair.config["tune"]["space"] for pair in pairs}
    machine: dict[str, Any] = {}
    for pair in pairs:
        folder = results / pair.studies[0].folder
        runs = sorted(folder.glob("*/summary.json")) if folder.is_dir() else []
        summary = RunDir(runs[0].parent).read_summary() if runs else None
        if summary is not None:
            machine = {"device": summary.device, "versions": summary.versions}
            if summary.hardware:
                machine["hardware"] = summary.hardware
            break
    return {"budget": budget, "set": suite.set, "spaces": spaces, **machine}


def read_pairs(
    suite: SuiteConfig,
    pairs: Sequence[Pair],
    targets: dict[str, tuple[str, float]],
    results: Path,
    seconds_clock: str = CALIBRATED,
) -> tuple[list[PairCurves], dict[str, dict[str, Any]], list[str]]:
    """Every (finished) pair read back: its curves on the steps clock and on `seconds_clock`
    (analysis/seconds_clock.py: calibrated, steps x the pair's step cost, or as measured), its
    detail for benchmark.json (with `step_seconds`, the pair's calibrated cost of one step),
    and the pairs without a completed trial."""
    goal = {problem: Target(metric, value) for problem, (metric, value) in targets.items()}
    read = _read_studies if suite.protocol == EXTERNAL_TUNING else _read_reruns
    failed, curves, details = [], [], {}
    for pair in pairs:
        pair_curves, detail, no_trial = read(results, pair, goal[pair.problem])
        if no_trial:
            failed.append(pair.name)
        if seconds_clock == CALIBRATED:
            pair_curves = on_step_cost(pair_curves, detail["step_seconds"])
        curves.append(pair_curves)
        details.setdefault(pair.optimizer, {})[pair.problem] = detail
    return curves, details, failed


def score_benchmark(
    suite: SuiteConfig,
    pairs: Sequence[Pair],
    targets: dict[str, tuple[str, float]],
    results: Path,
    trained: list[str],
    reused: list[str],
) -> BenchmarkRun:
    """Read every (finished) pair back, score the suite and write DIR/<suite>/benchmark.json.
    A pair whose every trial failed or diverged reaches no target (as AlgoPerf scores a
    diverged workload) and is listed in `failed`. The seconds clock is the calibrated one."""
    curves, details, failed = read_pairs(suite, pairs, targets, results)
    goal = {problem: Target(metric, value) for problem, (metric, value) in targets.items()}
    scores = score_suite(curves, goal)
    document = {
        "suite": suite.name,
        "protocol": suite.protocol,
        **benchmark_json(scores),
        "clock": {
            "steps": "optimizer steps at the first evaluation reaching the target",
            "seconds": DEFINITION[CALIBRATED],
            "seconds_clock": CALIBRATED,
            "step_cost_quantile": STEP_COST_QUANTILE,
        },
        "edge": {"fraction": EDGE_FRACTION, "note": EDGE_NOTE},
        "setup": _setup(suite, pairs, results),
        "pairs": details,
    }
    path = results / suite.name / BENCHMARK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(path.parent, exc) from None
    write_atomic(path, json.dumps(document, indent=2) + "\n")
    return BenchmarkRun(path, document, scores, trained, reused, failed)
