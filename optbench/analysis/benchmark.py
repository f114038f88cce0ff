"""`optbench benchmark`: every (optimizer, problem) pair of a suite tuned, then scored across
problems with performance profiles (analysis/profiles.py, AlgoPerf's definitions).

A pair is an ordinary tune (sweeps/tune.py) of one config: the problem, the suite's `set`, the
optimizer's section and the suite's `tune:` budget, named `<suite>.<problem>.<label>` so that
each pair has its own folder and Optuna study. A pair whose tune.json says it finished with
this budget is read back, not trained: adding an optimizer trains only its own pairs. The
curves scored are the best trial's seed reruns (epochs.csv: steps = epoch * steps per epoch,
seconds = cumulative training seconds, evaluation excluded), and `DIR/<suite>/benchmark.json`
holds the scores (profiles.benchmark_json), each pair's chosen hyperparameters and its final
and best metric over the seeds.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.analysis.profiles import (
    BenchmarkScores,
    EvalPoint,
    PairCurves,
    Target,
    benchmark_json,
    score_suite,
)
from optbench.core.config import (
    apply_overrides,
    default_results_dir,
    read_config_file,
    validate_config,
)
from optbench.core.errors import ConfigError
from optbench.core.metrics import higher_is_better
from optbench.core.problems import PROBLEMS
from optbench.core.suite import (
    SuiteConfig,
    is_config_path,
    load_suite,
    optimizer_label,
    problem_label,
)
from optbench.storage.results import (
    BENCHMARK_FILE,
    FINISHED,
    TUNE_FILE,
    RunDir,
    cannot_write,
    write_atomic,
)
from optbench.sweeps.executors import QuietSweep, SweepView

# Keys of a problem's config file that a suite decides, not the problem.
_SUITE_KEYS = ("name", "optimizer", "sweep", "tune", "seed")


@dataclass(frozen=True)
class Pair:
    """One (optimizer, problem) pair: its tune's config and the folder/study name."""

    optimizer: str
    problem: str
    name: str
    config: dict[str, Any]


@dataclass
class BenchmarkRun:
    """What run_benchmark did: the document written, the scores, and which pairs it trained."""

    path: Path
    document: dict[str, Any]
    scores: BenchmarkScores
    trained: list[str]
    reused: list[str]
    failed: list[str]  # pairs without a completed trial: scored as never reaching the target


def _problem_config(problem: str) -> dict[str, Any]:
    """A problem's config sections: `problem: NAME` for a registry name, else the config file's
    own mapping without the keys the suite decides."""
    if not is_config_path(problem):
        PROBLEMS.get(problem, "problems")  # refuses an unknown name, with a suggestion
        return {"problem": problem}
    data = read_config_file(problem)
    return {k: v for k, v in data.items() if k not in _SUITE_KEYS}


def _target(suite: SuiteConfig, problem: str, config: dict[str, Any]) -> Target:
    """The suite's target for the problem, else its registry problem's benchmark target."""
    label = problem_label(problem)
    if label in suite.targets:
        ((metric, value),) = suite.targets[label].items()
        return Target(metric, float(value))
    resolved = validate_config(config).problem
    if resolved is None:
        raise ConfigError(f"targets.{label}", "is required: the problem is not a registry problem")
    metric, value = PROBLEMS.get(resolved.name, "problem").benchmark_target
    return Target(metric, value)


def suite_pairs(
    suite: SuiteConfig, extra: Sequence[str] = ()
) -> tuple[list[Pair], dict[str, Target]]:
    """Every pair's tune config (problem + set + optimizer + tune) and each problem's target.
    The tune's metric is the target's, so the best trial is chosen by what is scored."""
    optimizers = {label: section.model_dump() for label, section in suite.optimizers.items()}
    for name in extra:
        label = optimizer_label(name)
        if label in optimizers:
            raise ConfigError("--optimizer", f"{name}: the suite has an optimizer labelled {label}")
        optimizers[label] = {"name": name}
    pairs, targets = [], {}
    for problem in suite.problems:
        label = problem_label(problem)
        base = _problem_config(problem)
        apply_overrides(base, suite.set)
        for opt_label, section in optimizers.items():
            config = {**copy.deepcopy(base), "name": f"{suite.name}.{label}.{opt_label}"}
            config["optimizer"] = copy.deepcopy(section)
            if label not in targets:
                targets[label] = _target(suite, problem, config)
            tune = suite.tune.model_dump(mode="json")
            config["tune"] = {**tune, "metric": targets[label].metric}
            pairs.append(Pair(opt_label, label, config["name"], config))
    return pairs, targets


def _finished(results: Path, pair: Pair) -> dict[str, Any] | None:
    """The pair's tune.json when its tune finished with this budget and seeds (every counted
    trial told, every seed rerun finished); None: it must (still) be tuned."""
    from optbench.sweeps.tune_setup import load_tune

    path = results / pair.name / TUNE_FILE
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    (arm,) = load_tune(pair.config).arms
    (done,) = report["optimizers"].values()
    if done["study"] != arm.study_name or report["seeds"] != pair.config["tune"]["seeds"]:
        return None
    told = done["completed"] + done["pruned"] + done["failed"]
    if told < done["trials"]:
        return None
    if pair.config["tune"]["sampler"] != "grid" and done["trials"] != pair.config["tune"]["trials"]:
        return None
    for run_id in done["seed_run_ids"]:
        summary = RunDir(results / pair.name / run_id).read_summary()
        if summary is None or summary.status not in FINISHED:
            return None
    return report


def _curve(run: RunDir, steps_per_epoch: int, metric: str) -> tuple[EvalPoint, ...]:
    """A run's evaluations: (epoch * steps per epoch, cumulative training seconds, metric)."""
    frame = run.read_epochs()
    seconds = frame["seconds"].cumsum()
    return tuple(
        EvalPoint(int(epoch) * steps_per_epoch, float(secs), float(value))
        for epoch, secs, value in zip(frame["epoch"], seconds, frame[metric], strict=True)
    )


def _mean_std(values: list[float]) -> dict[str, float | None]:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def _read_pair(
    results: Path, pair: Pair, report: dict[str, Any], target: Target
) -> tuple[PairCurves, dict[str, Any]]:
    """The pair's seed reruns as curves, and what benchmark.json says of it besides its time."""
    from optbench.experiment.plan import make_plan

    (arm,) = report["optimizers"].values()
    runs = [RunDir(results / pair.name / run_id) for run_id in arm["seed_run_ids"]]
    if arm["best"] is None:  # every trial failed or diverged: it reaches no target
        seeds = len(report["seeds"])
        empty = {"mean": None, "std": None, "n": 0}
        detail = {
            "folder": pair.name,
            "hyperparameters": None,
            "seed_run_ids": [],
            "steps_per_epoch": None,
            "final": empty,
            "best": empty,
        }
        return PairCurves(pair.optimizer, pair.problem, ((),) * seeds), detail
    # The seeds share data and batch size: one plan gives the steps per epoch.
    plan = make_plan(validate_config(read_config_file(runs[0].config_path)))
    steps_per_epoch = plan.steps_per_epoch
    curves = tuple(_curve(run, steps_per_epoch, target.metric) for run in runs)
    best = max if higher_is_better(target.metric) else min
    finals = [curve[-1].value for curve in curves if curve]
    bests = [best(point.value for point in curve) for curve in curves if curve]
    detail = {
        "folder": pair.name,
        "hyperparameters": arm["best"]["params"],
        "seed_run_ids": arm["seed_run_ids"],
        "steps_per_epoch": steps_per_epoch,
        "final": _mean_std(finals),
        "best": _mean_std(bests),
    }
    return PairCurves(pair.optimizer, pair.problem, curves), detail


def run_benchmark(
    suite_path: str | Path,
    optimizers: Sequence[str] = (),
    *,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    results_dir: str | Path | None = None,
    view: SweepView = QuietSweep,
) -> BenchmarkRun:
    """Tune every pair not already finished, score the suite, write DIR/<suite>/benchmark.json.
    An interrupted pair raises KeyboardInterrupt (the same command resumes); a pair whose
    every trial failed or diverged reaches no target (as AlgoPerf scores a diverged workload)
    and is listed in `failed`."""
    from optbench.sweeps.tune import run_tunes
    from optbench.sweeps.tune_setup import load_tune

    suite = load_suite(suite_path)
    pairs, targets = suite_pairs(suite, optimizers)
    setups = {}
    for pair in pairs:  # every pair checked before any trains: bad input writes nothing
        try:
            setups[pair.name] = load_tune(pair.config)
        except ConfigError as exc:
            raise ConfigError(f"{pair.name}: {exc}") from None
    results = Path(results_dir or default_results_dir())
    reports = {pair.name: _finished(results, pair) for pair in pairs}
    trained = [pair.name for pair in pairs if reports[pair.name] is None]
    reused = [pair.name for pair in pairs if reports[pair.name] is not None]
    if trained:  # one pool of workers for every pair's trials, then every pair's seed reruns

        def pairs_done(display: Any, done: int, total: int) -> None:
            display.note(f"pairs {done + len(reused)}/{total + len(reused)}")

        header = (
            f"benchmark {suite.name}: {len(trained)} of {len(pairs)} pairs to tune "
            f"({len(reused)} finished already), {suite.tune.trials} trials + "
            f"{len(suite.tune.seeds)} seeds each"
        )
        outcomes = run_tunes(
            [setups[name] for name in trained],
            results,
            workers=workers,
            executor=executor,
            address=address,
            view=view,
            title="benchmark",
            header=header,
            on_done=pairs_done,
        )
        if any(outcome.interrupted for outcome in outcomes):
            raise KeyboardInterrupt
        for name, outcome in zip(trained, outcomes, strict=True):
            reports[name] = outcome.report
    failed, curves, details = [], [], {}
    for pair in pairs:
        report = reports[pair.name]
        if next(iter(report["optimizers"].values()))["best"] is None:
            failed.append(pair.name)
        pair_curves, detail = _read_pair(results, pair, report, targets[pair.problem])
        curves.append(pair_curves)
        details.setdefault(pair.optimizer, {})[pair.problem] = detail
    scores = score_suite(curves, targets)
    document = {
        "suite": suite.name,
        **benchmark_json(scores),
        "pairs": details,
    }
    path = results / suite.name / BENCHMARK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(path.parent, exc) from None
    write_atomic(path, json.dumps(document, indent=2) + "\n")
    return BenchmarkRun(path, document, scores, trained, reused, failed)
