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

import ast
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optbench.core.config import ConfigSource, Overrides, default_results_dir
from optbench.core.errors import ConfigError, FailedRunsWarning
from optbench.storage.records import TuneFile
from optbench.storage.results import Run, read_run

if TYPE_CHECKING:
    import pandas as pd

    from optbench.analysis.compare import Comparison
    from optbench.analysis.html_report import ReportSummary
    from optbench.core.suite import ExtraOptimizer
    from optbench.experiment.lr_find import RangeTest
    from optbench.experiment.plan import RunPlan
    from optbench.experiment.train import TrainingObserver
    from optbench.sweeps.executors import Executor, SweepView
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
        from optbench.experiment.progress import ProgressBar

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


def batching_refusal(config: ConfigSource, overrides: Overrides | None = None) -> str | None:
    """Why runs of this config that differ only in optimizer hyperparameters and seed cannot
    train as one batch (`batch_trials`), in one line; None when they can, exactly as alone."""
    from optbench.core.config import load_config
    from optbench.sweeps.batching import batching_note

    return batching_note([load_config(config, overrides).to_dict()])


def batched_gradients(config: ConfigSource, overrides: Overrides | None = None) -> str:
    """How batched runs of this config get their gradients and step, in one line: one vmap over
    the stacked model copies where that was proven exact while planning, else one copy at a
    time, and why; the optimizers stepped as stacks where proven exact, else group by group,
    and why."""
    from optbench.core.config import load_config
    from optbench.sweeps.batching import gradients_note

    return gradients_note(load_config(config, overrides).to_dict())


def params(config: ConfigSource, overrides: Overrides | None = None) -> pd.DataFrame:
    """Every parameter of the config's model: name, shape, count, the optimizer group it lands
    in and that group's hyperparameters, one row each."""
    from optbench.analysis.reports import param_frame

    return param_frame(plan(config, overrides))


# An executor as the API takes it: a registered name or import path, or a mapping with `name`
# and the executor's options (the config's `executor:` section's form).
ExecutorChoice = str | Mapping[str, Any] | None


def _executor(
    section: Any,
    executor: ExecutorChoice,
    executor_options: Mapping[str, Any] | list[str] | None,
    workers: int | None,
    address: str | None,
    results: Path,
) -> Executor:
    """The executor the runs train on, planned once here and passed down: the config's (or
    suite's) `executor:` section, with `executor` (a name, or a mapping with its options),
    `executor_options`, `workers` and `address` on top (sweeps/executors plan_executor)."""
    from optbench.sweeps.executors import parse_executor_options, plan_executor

    if isinstance(executor, Mapping):  # its options, with executor_options on top
        options = {**executor, **parse_executor_options(executor_options)}
        executor, executor_options = options.pop("name", None), options
    return plan_executor(
        results, section, executor, executor_options, workers=workers, address=address
    )


def _guarded_main(function: str, executor: Executor) -> None:
    """Refuse, before any worker starts, a call that worker processes would make again: local
    workers are spawned processes that import the main script first (multiprocessing's spawn),
    so a call at the script's top level, outside `if __name__ == "__main__":`, would start the
    sweep once more in every worker (each meets the others' runs and fails)."""
    import multiprocessing.process
    import tokenize

    if not getattr(executor, "reruns_main_script", False):
        return  # Ray's or Slurm's workers and the driver's own thread never re-run the script

    where = None
    if getattr(multiprocessing.process.current_process(), "_inheriting", False):
        where = "the script"  # a worker re-running it: its driver was refused as well
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec_name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if spec_name == "__main__" or spec_name.endswith(".__main__"):
        path = None  # a package's __main__ (python -m optbench): spawn does not re-run it
    frame = sys._getframe(1)
    while frame is not None and where is None:
        if path and frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            try:
                with tokenize.open(path) as handle:
                    tree = ast.parse(handle.read())
            except (OSError, SyntaxError, ValueError):
                return  # not readable Python (a frozen or compiled main): nothing to check
            if not any(
                _is_main_guard(node) and node.lineno <= frame.f_lineno <= (node.end_lineno or 0)
                for node in tree.body
            ):
                where = f"{Path(path).name}, line {frame.f_lineno}"
        frame = frame.f_back
    if where is not None:
        raise ConfigError(
            "workers",
            f"worker processes re-run the main script, so optbench.{function}() at its top level "
            f"({where}) would start again in each: put the call under "
            '`if __name__ == "__main__":` (or pass workers=1)',
        )


def _is_main_guard(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":` (either way round)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    sides = [test.left, *test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    values = {s.value for s in sides if isinstance(s, ast.Constant)}
    return (
        len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and names == {"__name__"}
        and (values == {"__main__"})
    )


def _view(view: SweepView | None, progress: bool) -> SweepView:
    """What a sweep, tune or benchmark reports to: the caller's view, a progress bar
    (`progress=True`: tqdm, a widget in a notebook), or nothing."""
    from optbench.sweeps.executors import QuietSweep

    if view is not None:
        return view
    if progress:
        from optbench.experiment.progress import SweepProgressBar

        return SweepProgressBar
    return QuietSweep


def _warn_failed(what: str, failed: Sequence[str]) -> None:
    """A library call some of whose runs failed says so, never silently (the CLI, which prints
    its own counts, hides the warning)."""
    if failed:
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        shown = ", ".join(failed[:10]) + more
        warnings.warn(f"{what}: {len(failed)} failed: {shown}", FailedRunsWarning, stacklevel=3)


@dataclass
class SweepResult:
    """A sweep's runs, in grid order (iterate it, index it, or use `.runs`), with the run-ids
    found finished before it started (`skipped`: not trained again), whether it was
    interrupted, and the run-ids that failed (`failed`: also named in a FailedRunsWarning)."""

    name: str
    runs: list[Run]
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> list[str]:
        """The run-ids of the runs that failed (an exception in training, a worker that died)."""
        return [each.run_id for each in self.runs if each.status == "failed"]

    def frame(self) -> pd.DataFrame:
        """One row per run, in grid order: run-id, status, seed, lr, every final_* and best_*
        metric and the flattened config (`config.optimizer.lr`, ...), as `compare` reads
        runs (optbench.analysis.compare.runs_frame)."""
        from optbench.analysis.compare import runs_frame

        return runs_frame(self.runs)

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
    executor: ExecutorChoice = None,
    address: str | None = None,
    executor_options: Mapping[str, Any] | list[str] | None = None,
    results_dir: str | Path | None = None,
    view: SweepView | None = None,
    progress: bool = False,
    batch_trials: int | None = None,
) -> SweepResult:
    """Train every point of a grid (the config's `sweep:` section, updated by `grid`, a mapping
    of dotted keys to value lists), each with every seed of `seeds`, on `workers` processes or
    as Ray tasks (`executor="ray"`, `address`). Finished points are skipped, interrupted ones
    resume; one failing point fails only its own run (`failed` lists them, and a
    FailedRunsWarning names them). With local workers (`workers` other than 1), a script must
    make the call under `if __name__ == "__main__":`, or it is refused (ConfigError).
    `progress=True` shows a bar over the runs (tqdm); `view` is the CLI's live view.
    `executor` (a name: local, ray, submitit, or an import path; or a mapping with its options)
    and `executor_options` override the config's `executor:` section; `workers` and `address`
    are shorthands for those two options (docs/sweeps.md).
    `batch_trials` K: points that differ only in optimizer hyperparameters and seed train K at
    a time as one optimizer's parameter groups, exactly as alone (refused when they cannot)."""
    from optbench.sweeps.executors import executor_section
    from optbench.sweeps.grid import load_sweep, run_sweep

    results = Path(results_dir or default_results_dir())
    section = executor_section(config, overrides)
    runner = _executor(section, executor, executor_options, workers, address, results)
    _guarded_main("sweep", runner)
    name, points = load_sweep(config, grid, list(seeds) if seeds is not None else None, overrides)
    report = run_sweep(
        name,
        points,
        results,
        executor=runner,
        view=_view(view, progress),
        batch_trials=batch_trials,
    )
    outcomes = {result.run_id: result for result in report.results}
    runs = [_point_run(results / name / p.run_id, outcomes.get(p.run_id)) for p in points]
    result = SweepResult(name, runs, list(report.skipped), report.interrupted)
    _warn_failed(f"sweep {name}", result.failed)
    return result


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
    its studies live in (`optuna.load_study(study_name=..., storage=...)` reads them);
    `failed` names the trials and seed reruns that failed and the optimizers left without a
    completed trial (empty when none: also named in a FailedRunsWarning)."""

    report: dict[str, Any]
    storage: str
    interrupted: bool = False
    failed: list[str] = field(default_factory=list)

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

    def frame(self) -> pd.DataFrame:
        """One row per optimizer: its best trial's value, run-id and hyperparameters (a column
        each, `optimizer.lr`, ...), the seed reruns' mean and std of the metric, and the budget
        spent (trials completed, pruned, failed; epochs; seconds)."""
        import pandas as pd

        rows = []
        for key, arm in self.tune_file.optimizers.items():
            seeds = pd.Series(arm.seed_values, dtype=float)
            rows.append(
                {
                    "optimizer": key,
                    "best_value": arm.best.value if arm.best else None,
                    "best_run_id": arm.best.run_id if arm.best else None,
                    **(arm.best.params if arm.best else {}),
                    "seed_mean": seeds.mean(),
                    "seed_std": seeds.std(),
                    "completed": arm.completed,
                    "pruned": arm.pruned,
                    "failed": arm.failed,
                    "epochs": arm.epochs,
                    "seconds": arm.seconds,
                }
            )
        return pd.DataFrame(rows)


def tune(
    config: ConfigSource,
    overrides: Overrides | None = None,
    *,
    grid: Grid | None = None,
    trials: int | None = None,
    workers: int | None = None,
    executor: ExecutorChoice = None,
    address: str | None = None,
    executor_options: Mapping[str, Any] | list[str] | None = None,
    storage: str | None = None,
    results_dir: str | Path | None = None,
    view: SweepView | None = None,
    progress: bool = False,
    batch_trials: int | None = None,
) -> TuneResult:
    """Tune each optimizer of the config (its `sweep:` section, updated by `grid`) with Optuna on
    the `tune:` section's space, every optimizer with the same budget, then rerun each best
    configuration with the tune's seeds; resumable, and processes sharing `storage` share the
    budget. Needs the `tune` extra (optuna). With local workers, a script makes the call under
    `if __name__ == "__main__":` (see `sweep`); `progress=True` shows a bar over the runs.
    `executor`, `executor_options`, `workers`, `address`: where the runs train (see `sweep`).
    `batch_trials` K (else the tune section's): trials asked K at a time and trained as one
    optimizer's parameter groups, exactly as alone (see `sweep`)."""
    from optbench.sweeps.executors import executor_section
    from optbench.sweeps.tune import run_tune
    from optbench.sweeps.tune_setup import check_storage

    results = Path(results_dir or default_results_dir())
    section = executor_section(config, overrides)
    runner = _executor(section, executor, executor_options, workers, address, results)
    _guarded_main("tune", runner)
    check_storage(storage)

    outcome = run_tune(
        config,
        overrides,
        grid,
        results_dir,
        executor=runner,
        storage=storage,
        trials=trials,
        view=_view(view, progress),
        batch_trials=batch_trials,
    )
    failed = _tune_failures(outcome.report, Path(results_dir or default_results_dir()))
    if outcome.failed and not failed:  # what the tune counted, when no run on disk says it
        failed = ["a seed rerun"]
    _warn_failed(f"tune {outcome.report.get('name')}", failed)
    return TuneResult(outcome.report, outcome.storage, outcome.interrupted, failed)


def _tune_failures(report: dict[str, Any], results: Path) -> list[str]:
    """The tune's failed runs ("<optimizer> trial <run-id>", "... seed rerun <run-id>"), read
    from their summaries, and its optimizers without a completed trial."""
    from optbench.storage.results import RunDir

    tuned = TuneFile.from_dict(report)
    failed = []
    for key, arm in tuned.optimizers.items():
        for kind, run_ids in (("trial", arm.trial_run_ids), ("seed rerun", arm.seed_run_ids)):
            for run_id in run_ids:
                summary = RunDir(results / str(tuned.name) / run_id).read_summary()
                if summary is not None and summary.status == "failed":
                    failed.append(f"{key} {kind} {run_id}")
        if arm.best is None:
            failed.append(f"{key}: no completed trial")
    return failed


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
    optimizers: Sequence[ExtraOptimizer] = (),
    *,
    workers: int | None = None,
    executor: ExecutorChoice = None,
    address: str | None = None,
    executor_options: Mapping[str, Any] | list[str] | None = None,
    results_dir: str | Path | None = None,
    view: SweepView | None = None,
    plot: str | Path | None = None,
    progress: bool = False,
    batch_trials: int | None = None,
) -> BenchmarkResult:
    """Tune every (optimizer, problem) pair of a suite file with its one budget (pairs already
    finished are read back, so `optimizers` added to the suite's train only their own pairs),
    then score the optimizers across problems with AlgoPerf's performance profiles and write
    DIR/<suite>/benchmark.json. An added optimizer is a registry name or import path, an
    optimizer class (one defined in a notebook or the script is identified by its code and the
    values it uses, and shipped to the workers by value; it is labelled by its class name), or
    a (label, name or class) pair. Needs the `tune` extra (optuna). `plot`: a
    PNG (or other image) of the performance profiles, checked before anything trains. With
    local workers, a script makes the call under `if __name__ == "__main__":` (see `sweep`);
    pairs without a completed trial are named in a FailedRunsWarning. `progress=True` shows a
    bar over the runs. `executor`, `executor_options`, `workers`, `address`: where the runs
    train, over the suite's `executor:` section (see `sweep`)."""
    from optbench.analysis.benchmark import score_benchmark
    from optbench.analysis.figures import check_plot_path, plot_profiles_png
    from optbench.core.suite import load_suite, suite_pairs
    from optbench.sweeps.benchmark import train_pairs

    if plot is not None:
        check_plot_path(Path(plot))
    checked = load_suite(suite)
    results = Path(results_dir or default_results_dir())
    runner = _executor(checked.executor, executor, executor_options, workers, address, results)
    _guarded_main("benchmark", runner)
    pairs, targets = suite_pairs(checked, optimizers)
    studies = sum(len(pair.studies) for pair in pairs)
    if checked.protocol == "external_tuning":
        budget = f"{checked.studies} studies x {checked.tune.trials} trials each (external tuning)"
    else:
        budget = f"{checked.tune.trials} trials + {len(checked.tune.seeds)} seeds each"
    header = f"benchmark {checked.name}: {len(pairs)} pairs, {studies} tunes, {budget}"
    done = train_pairs(
        pairs,
        results,
        header=header,
        folder=Path(suite).parent,
        executor=runner,
        view=_view(view, progress),
        batch_trials=batch_trials,
    )
    outcome = score_benchmark(checked, pairs, targets, results, done.trained, done.reused)
    if plot is not None:
        plot_profiles_png(outcome.document, Path(plot))
    _warn_failed(f"benchmark {checked.name}", outcome.failed)
    return BenchmarkResult(
        outcome.path, outcome.document, outcome.trained, outcome.reused, outcome.failed
    )


def benchmark_tables(document: dict[str, Any], table_format: str = "latex") -> str:
    """A benchmark.json's score, time-to-target and leave-one-problem-out tables as text for a
    paper: `table_format` latex, markdown or csv (the chosen hyperparameters per pair, a value
    at its space's edge marked, unreached and failed pairs said)."""
    from optbench.analysis.benchmark_tables import TABLE_FORMATS, render_tables
    from optbench.core.errors import ConfigError

    if table_format not in TABLE_FORMATS:
        raise ConfigError("--table", f"must be one of {', '.join(TABLE_FORMATS)}")
    return render_tables(document, table_format)


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
    from optbench.analysis.figures import check_plot_path, plot_range_test
    from optbench.experiment.lr_find import lr_find as range_test

    if plot is not None:
        check_plot_path(Path(plot))
    checked, test, csv = range_test(config, overrides, start, end, steps, results_dir)
    if plot is not None:
        title = f"{checked.name}: lr range test ({checked.optimizer.info.name})"
        plot_range_test(test, title, Path(plot))
    return LrFind(checked, test, csv)


def catalog(kind: str = "optimizers", source: str | None = None) -> pd.DataFrame:
    """What a config can name: optimizers, schedulers, models, datasets, losses, problems,
    loggers or executors, with their defaults; `source` lists the optimizers a package exports
    (pytorch_optimizer)."""
    import pandas as pd

    from optbench.components.catalog import CATALOG_COLUMNS, catalog_frame, class_rows

    if kind not in ("loggers", "executors"):
        return catalog_frame(kind, source)
    if source is not None:
        raise ConfigError(f"--from lists optimizers only, not {kind}")
    if kind == "loggers":
        from optbench.experiment.loggers.registry import builtin_loggers, plugin_loggers

        rows = class_rows(builtin_loggers(), plugin_loggers(), skip=())
    else:
        from optbench.sweeps.executors import EXECUTORS, plugin_executors

        classes = {name: EXECUTORS.get(name, "executor") for name in EXECUTORS.names()}
        rows = class_rows(classes, plugin_executors(), skip=("results_dir",))
    return pd.DataFrame(rows, columns=list(CATALOG_COLUMNS))
