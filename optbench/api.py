"""optbench as a library: one public function per command, Python values in and out.

Every function here is what the matching `optbench` command calls (the CLI only parses, calls
and prints), and each is importable from `optbench` itself:

    import optbench
    run = optbench.run("configs/sgd_fashion_mnist.yaml", {"epochs": 2, "optimizer.lr": 0.1})
    run.epochs.plot(x="epoch", y="test_loss")

A config is a YAML file's path or the mapping such a file holds; overrides are a mapping of
dotted keys to values (`{"optimizer.lr": 0.1}`). Bad input raises `optbench.ConfigError` (a
`ValueError` naming the field); a results file that cannot be written raises
`optbench.ResultsWriteError` (an `OSError` naming the file); a run trained before raises
`optbench.RunExistsError` unless `resume=True` (which returns it) or `force=True`. Nothing
prints unless asked: `progress=True` shows a progress bar, `observers` receive every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optbench.core.config import ConfigSource, Overrides, default_results_dir
from optbench.storage.records import TuneFile
from optbench.storage.results import Run, read_run

if TYPE_CHECKING:
    import pandas as pd

    from optbench.analysis.compare import Comparison
    from optbench.analysis.html_report import ReportSummary
    from optbench.experiment.lr_find import RangeTest
    from optbench.experiment.plan import RunPlan
    from optbench.experiment.train import TrainingObserver
    from optbench.sweeps.executors import SweepView
    from optbench.sweeps.grid import Grid

__all__ = [
    "BenchmarkResult",
    "LrFind",
    "Run",
    "SweepResult",
    "TuneResult",
    "Validation",
    "benchmark",
    "catalog",
    "compare",
    "comparison",
    "load",
    "lr_find",
    "params",
    "plan",
    "report",
    "run",
    "sample",
    "sweep",
    "sweep_points",
    "tune",
    "validate",
]


def plan(config: ConfigSource, overrides: Overrides | None = None) -> RunPlan:
    """Check a config completely (every key, type and component argument, by building the model,
    optimizer and scheduler once) and return the plan a run trains: its run-id, resolved config
    and bound components. Raises ConfigError naming the first bad field."""
    from optbench.core.config import load_config
    from optbench.experiment.plan import make_plan

    return make_plan(load_config(config, overrides))


def run(
    config: ConfigSource,
    overrides: Overrides | None = None,
    *,
    results_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    observers: Sequence[TrainingObserver] = (),
    progress: bool = False,
    detect_anomaly: bool = False,
) -> Run:
    """Train one experiment into `results_dir/<name>/<run-id>/` and return it.

    A finished run with the same run-id is returned as it is with `resume=True`, trained again
    with `force=True`, and otherwise refused with RunExistsError; an interrupted one continues
    from its checkpoint with `resume=True`. A run that diverges is returned with status
    `diverged`; an exception inside training propagates after the run's summary records it.
    `observers` see every epoch (see `optbench.experiment.train.TrainingObserver`);
    `progress=True` adds a progress bar (tqdm: a widget in a notebook, a text bar elsewhere).
    """
    from optbench.experiment.runner import run_plan
    from optbench.experiment.train import Observers

    shown = list(observers)
    if progress:
        from optbench.ui.progress import ProgressBar

        shown.append(ProgressBar())
    outcome = run_plan(
        plan(config, overrides),
        results_dir or default_results_dir(),
        force=force,
        resume=resume,
        detect_anomaly=detect_anomaly,
        display=Observers(*shown),
    )
    return read_run(outcome.run_dir)


def sample(
    run_dir: str | Path,
    prompt: str = "\n",
    tokens: int = 200,
    temperature: float = 0.8,
    seed: int = 0,
    trained: bool = True,
) -> str:
    """Text a language-model run writes: `tokens` bytes after `prompt`, drawn with `seed` from
    its final weights, or with `trained=False` from its untrained model (the same seed's
    initial weights), to see what training did (docs/language-models.md)."""
    from optbench.experiment.sample import sample_run

    return sample_run(run_dir, prompt, tokens, temperature, seed, trained)


def load(run_dir: str | Path) -> Run:
    """The run in `run_dir` (a folder with summary.json, as `run` and `sweep` write)."""
    return read_run(run_dir)


@dataclass(frozen=True)
class Validation:
    """What `validate` found: the plan, and the tune it would run when the config has one."""

    plan: RunPlan
    tune: str | None = None  # the tune's spaces and budget, described, when `tune:` is set

    @property
    def run_id(self) -> str:
        return self.plan.run_id


def validate(config: ConfigSource, overrides: Overrides | None = None) -> Validation:
    """Check a config as `run` would (and its `tune:` section as `tune` would), training
    nothing. Raises ConfigError naming the first bad field."""
    checked = plan(config, overrides)
    described = None
    if checked.config.tune is not None:
        from optbench.sweeps.tune_setup import describe_tune, load_tune

        described = describe_tune(load_tune(config, overrides))
    return Validation(checked, described)


def params(config: ConfigSource, overrides: Overrides | None = None) -> pd.DataFrame:
    """Every parameter of the config's model: name, shape, count, the optimizer group it lands
    in and that group's hyperparameters, one row each."""
    from optbench.analysis.reports import param_frame

    return param_frame(plan(config, overrides))


@dataclass
class SweepResult:
    """A sweep's runs, in grid order (iterate it, index it, or use `.runs`), with the run-ids
    found finished before it started (`skipped`: not trained again) and whether it was
    interrupted."""

    name: str
    runs: list[Run]
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, index: int) -> Run:
        return self.runs[index]

    def counts(self) -> dict[str, int]:
        """How many runs ended in each status (completed, diverged, failed, interrupted), and
        how many were skipped as finished before."""
        from optbench.storage.results import Status

        # a sweep never prunes (only `optbench tune` does): its counts leave that status out
        counts = {str(s): 0 for s in Status if s not in (Status.RUNNING, Status.PRUNED)}
        for each in self.runs:
            if each.run_id not in self.skipped:
                counts[each.status] = counts.get(each.status, 0) + 1
        counts["skipped"] = len(self.skipped)
        return counts


def sweep(
    config: ConfigSource,
    grid: Grid | None = None,
    seeds: Sequence[int] | None = None,
    *,
    overrides: Overrides | None = None,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    results_dir: str | Path | None = None,
    view: SweepView | None = None,
) -> SweepResult:
    """Train every point of a grid (the config's `sweep:` section, updated by `grid`, a mapping
    of dotted keys to value lists), each with every seed of `seeds`, on `workers` processes or
    as Ray tasks (`executor="ray"`, `address`). Finished points are skipped, interrupted ones
    resume; one failing point fails only its own run."""
    from optbench.sweeps.executors import QuietSweep
    from optbench.sweeps.grid import load_sweep, run_sweep

    results = Path(results_dir or default_results_dir())
    name, points = load_sweep(config, grid, list(seeds) if seeds is not None else None, overrides)
    from optbench.experiment.loggers import require_backends

    for point in points:  # every worker logs its runs: a missing extra is refused here, once
        require_backends(point.config.get("log"))
    report = run_sweep(
        name,
        points,
        results,
        workers=workers,
        executor=executor,
        address=address,
        view=view or QuietSweep,
    )
    outcomes = {result.run_id: result for result in report.results}
    runs = [_point_run(results / name / p.run_id, outcomes.get(p.run_id)) for p in points]
    return SweepResult(name, runs, list(report.skipped), report.interrupted)


def sweep_points(
    config: ConfigSource,
    grid: Grid | None = None,
    seeds: Sequence[int] | None = None,
    *,
    overrides: Overrides | None = None,
    results_dir: str | Path | None = None,
) -> pd.DataFrame:
    """The runs `sweep` would train, without training: one row per point (`run_id`, the grid
    `point`, its `status` on disk: new, completed, interrupted, ...), in grid order; the
    frame's `attrs["name"]` is the sweep's name."""
    import pandas as pd

    from optbench.sweeps.grid import load_sweep, point_status

    results = Path(results_dir or default_results_dir())
    name, points = load_sweep(config, grid, list(seeds) if seeds is not None else None, overrides)
    rows = [(p.run_id, p.label, point_status(results, name, p)) for p in points]
    frame = pd.DataFrame(rows, columns=["run_id", "point", "status"])
    frame.attrs["name"] = name
    return frame


def _point_run(path: Path, outcome: Any) -> Run:
    """The point's run as on disk, with the status its executor reported when the disk cannot
    know it (a worker killed mid-run leaves `running`; one that failed before writing leaves
    nothing)."""
    import dataclasses

    import pandas as pd

    from optbench.storage.results import RunDir

    if (path / RunDir.SUMMARY).is_file():
        run = read_run(path)
    else:
        run = Run(path, {"run_id": path.name}, {}, pd.DataFrame())
    if outcome is not None and run.status != str(outcome.status):
        summary = {**run.summary, "status": str(outcome.status), "error": outcome.error}
        run = dataclasses.replace(run, summary=summary)
    return run


@dataclass
class TuneResult:
    """A tune's outcome, per optimizer: the best trial's hyperparameters and metric, the seed
    reruns, the budget spent; `report` is tune.json as written, `storage` the Optuna storage
    its studies live in (`optuna.load_study(study_name=..., storage=...)` reads them)."""

    report: dict[str, Any]
    storage: str
    interrupted: bool = False
    failed: bool = False

    @property
    def tune_file(self) -> TuneFile:
        """`report` read as storage's typed record of tune.json."""
        return TuneFile.from_dict(self.report)

    @property
    def best(self) -> dict[str, dict[str, Any] | None]:
        """Optimizer -> the best trial's {params, value, run_id}, or None without one."""
        optimizers = self.tune_file.optimizers.items()
        return {key: arm.best.to_dict() if arm.best else None for key, arm in optimizers}

    @property
    def studies(self) -> dict[str, str]:
        """Optimizer -> its Optuna study's name."""
        return {key: str(arm.study) for key, arm in self.tune_file.optimizers.items()}


def tune(
    config: ConfigSource,
    overrides: Overrides | None = None,
    *,
    grid: Grid | None = None,
    trials: int | None = None,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    storage: str | None = None,
    results_dir: str | Path | None = None,
    view: SweepView | None = None,
) -> TuneResult:
    """Tune each optimizer of the config (its `sweep:` section, updated by `grid`) with Optuna on
    the `tune:` section's space, every optimizer with the same budget, then rerun each best
    configuration with the tune's seeds; resumable, and processes sharing `storage` share the
    budget. Needs the `tune` extra (optuna)."""
    from optbench.sweeps.executors import QuietSweep
    from optbench.sweeps.tune import run_tune

    outcome = run_tune(
        config,
        overrides,
        grid,
        results_dir,
        workers=workers,
        executor=executor,
        address=address,
        storage=storage,
        trials=trials,
        view=view or QuietSweep,
    )
    return TuneResult(outcome.report, outcome.storage, outcome.interrupted, outcome.failed)


@dataclass
class BenchmarkResult:
    """A suite's outcome: `document` is benchmark.json as written (scores, times to target,
    intervals, profiles, each pair's hyperparameters and metrics), `path` where; `trained` and
    `reused` name the pairs' folders; `failed` the pairs without a completed trial (every trial
    failed or diverged), scored as never reaching their target."""

    path: Path
    document: dict[str, Any]
    trained: list[str]
    reused: list[str]
    failed: list[str]

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        """Clock ("steps", "seconds") -> optimizer -> score (1: fastest on every problem)."""
        return self.document["scores"]


def benchmark(
    suite: str | Path,
    optimizers: Sequence[str] = (),
    *,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    results_dir: str | Path | None = None,
    view: SweepView | None = None,
    plot: str | Path | None = None,
) -> BenchmarkResult:
    """Tune every (optimizer, problem) pair of a suite file with its one budget (pairs already
    finished are read back, so `optimizers`, extra registry names or import paths, train only
    their own pairs), then score the optimizers across problems with AlgoPerf's performance
    profiles and write DIR/<suite>/benchmark.json. Needs the `tune` extra (optuna). `plot`: a
    PNG (or other image) of the performance profiles, checked before anything trains."""
    from optbench.analysis.benchmark import run_benchmark
    from optbench.analysis.reports import check_plot_path, plot_profiles_png
    from optbench.sweeps.executors import QuietSweep

    if plot is not None:
        check_plot_path(Path(plot))
    outcome = run_benchmark(
        suite,
        optimizers,
        workers=workers,
        executor=executor,
        address=address,
        results_dir=results_dir,
        view=view or QuietSweep,
    )
    if plot is not None:
        plot_profiles_png(outcome.document, Path(plot))
    return BenchmarkResult(
        outcome.path, outcome.document, outcome.trained, outcome.reused, outcome.failed
    )


def comparison(
    *dirs: str | Path, metric: str | None = None, target: str | None = None
) -> Comparison:
    """Everything `compare` ranks, with what it ranked: the runs read, one row per run
    (`frame`), one row per configuration, ranked (`table`), the target and notes."""
    from optbench.analysis.compare import compare_runs

    return compare_runs([Path(d) for d in dirs], metric, target)


def compare(
    *dirs: str | Path, metric: str | None = None, target: str | None = None
) -> pd.DataFrame:
    """The ranking table of the runs under `dirs`: one row per configuration (seeds
    aggregated, mean and std of each metric), best first by `metric` (default: the runs'
    problem's, else final_test_loss); `target` like "test_accuracy=0.85" adds the epochs and
    seconds to reach it."""
    return comparison(*dirs, metric=metric, target=target).table


def report(
    *dirs: str | Path,
    output: str | Path = "report.html",
    metric: str | None = None,
    target: str | None = None,
) -> ReportSummary:
    """Write the comparison of the runs under `dirs` as one self-contained HTML page (works
    offline); returns where (`.path`) and what it holds. Needs the `report` extra (plotly)."""
    from optbench.analysis.html_report import write_report

    return write_report([Path(d) for d in dirs], Path(output), metric, target)


@dataclass(frozen=True)
class LrFind:
    """A range test's result (`test`: lrs, losses, smoothed losses, `suggestion`), the plan it
    ran and the CSV its numbers were written to."""

    plan: RunPlan
    test: RangeTest
    csv: Path

    @property
    def suggestion(self) -> float | None:
        return self.test.suggestion


def lr_find(
    config: ConfigSource,
    overrides: Overrides | None = None,
    *,
    start: float = 1e-8,
    end: float = 1.0,
    steps: int = 100,
    results_dir: str | Path | None = None,
    plot: str | Path | None = None,
) -> LrFind:
    """The learning-rate range test: the lr grown exponentially from `start` to `end` over
    `steps` optimizer steps, the smoothed loss at each, and a suggested lr where it falls
    fastest (a starting point for a search, not an answer). Its CSV lands in
    `results_dir/_lr-find/<name>/<run-id>/`; `plot` also draws it to a PNG (matplotlib)."""
    from optbench.analysis.reports import check_plot_path, plot_range_test
    from optbench.experiment.lr_find import lr_find as range_test

    if plot is not None:
        check_plot_path(Path(plot))
    checked, test, csv = range_test(config, overrides, start, end, steps, results_dir)
    if plot is not None:
        title = f"{checked.name}: lr range test ({checked.optimizer.info.name})"
        plot_range_test(test, title, Path(plot))
    return LrFind(checked, test, csv)


def catalog(kind: str = "optimizers", source: str | None = None) -> pd.DataFrame:
    """What a config can name: optimizers, schedulers, models, datasets, losses or problems,
    with their defaults; `source` lists the optimizers a package exports (pytorch_optimizer)."""
    from optbench.components.catalog import catalog_frame

    return catalog_frame(kind, source)
