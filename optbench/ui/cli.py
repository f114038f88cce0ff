"""The `optbench` command line: thin Typer commands over library functions.

Each command body calls one function from the package; torch is imported only inside the
commands that need it, so `optbench --help` stays fast. Exit statuses (optbench/core/errors.py): 2
bad input, one line on stderr, nothing written; 3 a results file could not be written; 1 a run
failed or diverged; 130 interrupted.
"""

from __future__ import annotations

import enum
import functools
import inspect
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

import optbench
from optbench.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_WRITE_FAILED,
    ConfigError,
    ResultsWriteError,
    RunExistsError,
)
from optbench.core.metrics import (
    CURVE_COLUMNS,
    DEFAULT_METRIC,
    DEFAULT_RANKING,
    RANKABLE,
    RANKING_METRICS,
    one_of,
)
from optbench.sweeps.openmp import wait_passively
from optbench.ui.tables import WholeTables


def _click_style_help() -> None:
    """`--help` as Click and Typer have long shown it: a flag with no value (Typer 0.2x shows
    every option's type in its rich help, flags too: `--force <bool>`) and a required
    argument as CONFIG in the usage line (Typer 0.2x writes `{config}`). Only where this Typer
    has those methods; older ones already show help this way."""
    option, argument = typer.core.TyperOption, typer.core.TyperArgument
    if hasattr(option, "display_type_rich"):
        typed = option.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> str | None:
            return None if self.is_flag and self.metavar is None else typed(self, ctx)

        option.display_type_rich = display_type_rich  # type: ignore[method-assign]
    if hasattr(argument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = self.metavar or str(self.name).upper()
            name = name if self.required else f"[{name}]"
            return f"{name}..." if self.nargs != 1 else name

        argument._usage_display_name = usage_name  # type: ignore[method-assign]


_click_style_help()

app = typer.Typer(
    help="Run, sweep and compare PyTorch optimizer experiments from YAML configs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
for _console in (console, errors):  # every table printed with no number cut to a width
    _console.push_render_hook(WholeTables(_console))

F = TypeVar("F", bound=Callable[..., Any])

ConfigArg = Annotated[
    Path, typer.Argument(help="Experiment YAML file.", show_default=False, dir_okay=True)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a config key, value parsed as YAML: --set optimizer.lr=0.1 (repeatable).",
        show_default=False,
    ),
]


class Verbosity:
    """Set by the global --verbose option: errors are printed whole, not just their first line."""

    whole_messages = False


@app.callback()
def options(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="Print an error's whole message (user code may raise several lines), not "
            "only its first line.",
        ),
    ] = False,
) -> None:
    """Run, sweep and compare PyTorch optimizer experiments from YAML configs."""
    Verbosity.whole_messages = verbose


def one_line(message: str) -> str:
    """The first line of a message (user code may raise several), saying that more follows;
    the whole message with --verbose."""
    lines = [line for line in message.strip().splitlines() if line.strip()] or [""]
    if Verbosity.whole_messages or len(lines) == 1:
        return message.strip()
    more = len(lines) - 1
    return f"{lines[0]} ({more} more line{'s' if more > 1 else ''}: rerun with --verbose)"


def one_line_errors(command: F) -> F:
    """Bad input: one line on stderr, exit 2. A failed write: one line, exit 3. No traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            errors.print(f"[bold red]error:[/] {escape(one_line(str(exc)))}", highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except ResultsWriteError as exc:
            message = escape(one_line(str(exc)))
            errors.print(f"[bold red]write failed:[/] {message}", highlight=False)
            raise typer.Exit(EXIT_WRITE_FAILED) from None

    return wrapper  # type: ignore[return-value]


def _interrupt_on_sigterm() -> None:
    """SIGTERM stops a run like Ctrl-C does: the summary records `interrupted`."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


FastOption = Annotated[
    bool,
    typer.Option(
        "--fast",
        help="Fast mode (same as --set fast=true): batch losses are summed on the device and "
        "read once per epoch instead of after every batch.",
    ),
]
ResultsDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Where runs land: DIR/<name>/<run-id>/. [default: ./results or $OPTBENCH_RESULTS]",
        show_default=False,
    ),
]


def _with_fast(overrides: list[str] | None, fast: bool) -> list[str] | None:
    return [*(overrides or []), "fast=true"] if fast else overrides


WorkersOption = Annotated[
    int | None,
    typer.Option(
        help="Runs in parallel (same as --executor-opt workers=N). [default: the CPU cores; "
        "each run keeps its threads]"
    ),
]
ExecutorOption = Annotated[
    str | None,
    typer.Option(
        help="Where runs train: local (worker processes), ray (a Ray cluster), submitit (Slurm "
        "jobs), or an import path. [default: the config's executor: section, else local]",
        show_default=False,
    ),
]
ExecutorOptOption = Annotated[
    list[str] | None,
    typer.Option(
        "--executor-opt",
        help="An option of the executor, KEY=VALUE (value as YAML; repeatable): "
        "--executor-opt gpus_per_run=0.25. Over the config's executor: section.",
        show_default=False,
    ),
]
BatchTrialsOption = Annotated[
    int | None,
    typer.Option(
        help="Train runs of one problem that differ only in optimizer hyperparameters and seed "
        "K at a time, as one optimizer's parameter groups (exactly as alone; refused when they "
        "cannot batch). [default: the tune section's batch_trials, else 1]",
        show_default=False,
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster address (same as --executor-opt address=...). [default: a local Ray "
        "instance, started here]"
    ),
]
TensorBoardOption = Annotated[
    bool,
    typer.Option(
        "--tensorboard",
        help="Also log to TensorBoard (same as --set log.tensorboard=true): event files in each "
        "run's folder, for `tensorboard --logdir results/`.",
    ),
]
MlflowOption = Annotated[
    bool,
    typer.Option(
        "--mlflow",
        help="Also log each run to MLflow (same as --set log.mlflow=true): at "
        "$MLFLOW_TRACKING_URI, else in sqlite:///<results-dir>/mlflow.db.",
    ),
]
MlflowUriOption = Annotated[
    str | None,
    typer.Option(
        "--mlflow-uri",
        metavar="URI",
        help="Log each run to MLflow at this tracking URI (implies --mlflow).",
        show_default=False,
    ),
]


def with_logging(
    overrides: list[str] | None, tensorboard: bool, mlflow: bool, mlflow_uri: str | None
) -> list[str] | None:
    """--tensorboard / --mlflow / --mlflow-uri as `--set log...` overrides (see
    experiment/loggers/registry.py)."""
    if not (tensorboard or mlflow or mlflow_uri):
        return overrides
    from optbench.experiment.loggers import log_overrides

    return [*(overrides or []), *log_overrides(tensorboard, mlflow_uri or mlflow)]


@app.command()
@one_line_errors
def run(
    config: ConfigArg,
    overrides: SetOption = None,
    results_dir: ResultsDirOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Start over even if this exact run already exists.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue an interrupted run from its last epoch checkpoint."
        ),
    ] = False,
    detect_anomaly: Annotated[
        bool,
        typer.Option(
            "--detect-anomaly", help="Turn on torch.autograd's anomaly detection (slow; debugging)."
        ),
    ] = False,
    fast: FastOption = False,
    tensorboard: TensorBoardOption = False,
    mlflow: MlflowOption = False,
    mlflow_uri: MlflowUriOption = None,
) -> None:
    """Train one experiment, showing a live per-epoch table; results go to results/<name>/."""
    from optbench.ui.display import LiveTable

    _interrupt_on_sigterm()
    table = LiveTable("", console)  # titled when the run starts
    try:
        trained = optbench.run(
            config,
            with_logging(_with_fast(overrides, fast), tensorboard, mlflow, mlflow_uri),
            results_dir=results_dir,
            force=force,
            resume=resume,
            detect_anomaly=detect_anomaly,
            observers=[table],
        )
    except KeyboardInterrupt:
        errors.print("interrupted: the epochs finished so far are saved")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except RunExistsError as exc:
        hint = "pass --resume to continue it or --force to start it over"
        hint = hint if exc.resumable else "pass --force to run it again"
        raise ConfigError(f"{exc}; {hint}") from None
    except (ConfigError, ResultsWriteError):
        raise
    except Exception as exc:
        message = escape(one_line(f"{type(exc).__name__}: {exc}"))
        errors.print(f"[bold red]run failed:[/] {message}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    if not table.title:  # --resume found it finished: nothing trained
        line = f"already finished ({trained.status}): nothing to do; results in {trained.dir}"
        console.print(line, markup=False)
        return
    if trained.status == "diverged":
        where = trained.record.diverged_at or {}
        errors.print(
            f"[bold yellow]diverged[/] at epoch {where.get('epoch')} step {where.get('step')} "
            f"({where.get('reason')}); results in {escape(str(trained.dir))}"
        )
        raise typer.Exit(EXIT_FAILED)
    console.print(f"{trained.status}: results in {trained.dir}", markup=False, highlight=False)


@app.command("lr-find")
@one_line_errors
def lr_find(
    config: ConfigArg,
    start: Annotated[float, typer.Option(help="First lr of the test (first param group).")] = 1e-8,
    end: Annotated[float, typer.Option(help="Last lr of the test (first param group).")] = 1.0,
    steps: Annotated[
        int, typer.Option(help="Optimizer steps, the lr growing exponentially.")
    ] = 100,
    overrides: SetOption = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Also draw loss against lr, the suggestion marked, to this PNG."),
    ] = None,
    results_dir: Annotated[
        Path | None,
        typer.Option(
            help="The CSV goes to DIR/_lr-find/<name>/<run-id>/, never among the runs. "
            "[default: ./results or $OPTBENCH_RESULTS]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Learning-rate range test: grow the lr exponentially over a short run, chart the smoothed
    loss and suggest the lr where it falls fastest (a starting point, not an answer)."""
    from optbench.experiment.lr_find import chart

    found = optbench.lr_find(
        config, overrides, start=start, end=end, steps=steps, results_dir=results_dir, plot=plot
    )
    plan, result, path = found.plan, found.test, found.csv
    console.print(chart(result, console.width, console.is_terminal), markup=False)
    last = f"{len(result.lrs)} of {steps} steps, lr {result.lrs[0]:.3g} to {result.lrs[-1]:.3g}"
    ended = f"stopped early: {result.stopped_early}" if result.stopped_early else "ran every step"
    console.print(f"{plan.name} ({plan.optimizer.info.name}): {last}; {ended}", markup=False)
    if result.suggestion is None:
        console.print(f"no suggestion: {result.why_no_suggestion}", markup=False)
    else:
        console.print(
            f"suggested lr: {result.suggestion:.3g} (steepest descent of the smoothed loss, "
            f"step {result.suggestion_index + 1}); a starting point for a search, not an answer",
            markup=False,
            highlight=False,
        )
    console.print(f"lr, loss and smoothed loss per step: {path}", markup=False, highlight=False)
    if plot is not None:
        console.print(f"plot written: {plot}", markup=False, highlight=False)


@app.command()
@one_line_errors
def validate(
    config: ConfigArg,
    overrides: SetOption = None,
    batching: Annotated[
        bool,
        typer.Option(
            "--batching",
            help="Also say whether its trials (other hyperparameters, other seeds) can train "
            "as one batch (--batch-trials), and why not.",
        ),
    ] = False,
) -> None:
    """Check a config (keys, types, every component's arguments) without training."""
    checked = optbench.validate(config, overrides)
    plan, tune = checked.plan, checked.tune
    console.print(f"{config}: valid (run-id {plan.run_id})", markup=False, highlight=False)
    steps = f"{plan.optimizer.info.name} steps: {plan.optimizer.protocol.describe()}"
    console.print(steps, markup=False, highlight=False)
    if (layout := plan.data_spec.layout) is not None:  # imported image arrays (data/imported.py)
        line = f"data {plan.data.info.name}: inputs read as {layout}"
        console.print(line, markup=False, highlight=False)
    for note in plan.optimizer.compile_notes():
        console.print(note, markup=False, highlight=False)
    if (problem := plan.config.problem) is not None:
        changed = ", ".join(f"{k}={v}" for k, v in problem.overrides.items()) or "none"
        line = f"problem {problem.name} (v{problem.version}); your overrides: {changed}"
        console.print(line, markup=False, highlight=False)
    if tune is not None:
        console.print(tune, markup=False, highlight=False)
    if batching:
        refusal = optbench.batching_refusal(config, overrides)
        line = "batching: yes" if refusal is None else f"batching: no, {refusal}"
        console.print(line, markup=False, highlight=False)
        if refusal is None:
            line = f"batched gradients: {optbench.batched_gradients(config, overrides)}"
            console.print(line, markup=False, highlight=False)


@app.command()
@one_line_errors
def params(config: ConfigArg, overrides: SetOption = None) -> None:
    """Show every parameter's name, shape and optimizer group with its hyperparameters."""
    from optbench.ui.reports import param_table

    console.print(param_table(optbench.plan(config, overrides)))


@app.command()
@one_line_errors
def sweep(
    config: ConfigArg,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            "-g",
            help="A grid axis KEY=V1,V2,... (values as YAML): --grid optimizer.lr=0.1,0.01 "
            "(repeatable; adds to or replaces the config's sweep: section).",
            show_default=False,
        ),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option(help="Seeds to repeat every point with: --seeds 0,1,2.")
    ] = None,
    overrides: SetOption = None,
    workers: WorkersOption = None,
    executor: ExecutorOption = None,
    executor_opt: ExecutorOptOption = None,
    address: AddressOption = None,
    results_dir: ResultsDirOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the runs (and which are done) without training.")
    ] = False,
    fast: FastOption = False,
    tensorboard: TensorBoardOption = False,
    mlflow: MlflowOption = False,
    mlflow_uri: MlflowUriOption = None,
    batch_trials: BatchTrialsOption = None,
) -> None:
    """Run a grid of experiments; finished runs are skipped, interrupted ones resume."""
    wait_passively()  # before torch loads: the driver trains runs too (sweeps/openmp.py)
    from optbench.sweeps.grid import parse_seeds
    from optbench.ui.display import SweepDisplay
    from optbench.ui.reports import sweep_table

    overrides = with_logging(_with_fast(overrides, fast), tensorboard, mlflow, mlflow_uri)
    axes = grid  # --grid KEY=V1,V2 text, read by the loader (a key twice is refused)
    seed_list = parse_seeds(seeds) if seeds is not None else None
    if dry_run:
        points = optbench.sweep_points(
            config, axes, seed_list, overrides=overrides, results_dir=results_dir
        )
        console.print(sweep_table(points.attrs["name"], points))
        return

    _interrupt_on_sigterm()
    result = optbench.sweep(
        config,
        axes,
        seed_list,
        overrides=overrides,
        workers=workers,
        executor=executor,
        executor_options=executor_opt,
        address=address,
        results_dir=results_dir,
        view=functools.partial(SweepDisplay, console=console),
        batch_trials=batch_trials,
    )
    counts = result.counts()
    shown = ", ".join(f"{n} {status}" for status, n in counts.items())
    console.print(f"sweep {result.name}: {shown}", markup=False)
    if result.interrupted:
        errors.print("interrupted: finished runs are kept; run the same command to resume")
        raise typer.Exit(EXIT_INTERRUPTED)
    if counts["failed"]:
        raise typer.Exit(EXIT_FAILED)


@app.command()
@one_line_errors
def tune(
    config: ConfigArg,
    overrides: SetOption = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            "-g",
            help="Optimizers to tune, each in its own study: --grid optimizer.name=SGD,Adam "
            "(repeatable; adds to or replaces the config's sweep: section).",
            show_default=False,
        ),
    ] = None,
    results_dir: ResultsDirOption = None,
    workers: WorkersOption = None,
    executor: ExecutorOption = None,
    executor_opt: ExecutorOptOption = None,
    address: AddressOption = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (sqlite:///tune.db, postgresql://...) or journal file; "
            "processes sharing one share the studies. [default: RESULTS/NAME/optuna-journal.log]"
        ),
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help="Trials per optimizer. [default: the config's tune.trials]")
    ] = None,
    tensorboard: TensorBoardOption = False,
    mlflow: MlflowOption = False,
    mlflow_uri: MlflowUriOption = None,
    batch_trials: BatchTrialsOption = None,
) -> None:
    """Tune each optimizer's hyperparameters with Optuna (the config's tune: section), then
    rerun each best configuration with the seeds; resumable, results in tune.json."""
    wait_passively()  # before torch loads: the driver trains runs too (sweeps/openmp.py)
    from optbench.sweeps.tune import tune_summary
    from optbench.ui.display import SweepDisplay

    _interrupt_on_sigterm()
    outcome = optbench.tune(
        config,
        with_logging(overrides, tensorboard, mlflow, mlflow_uri),
        grid=grid,
        trials=trials,
        workers=workers,
        executor=executor,
        executor_options=executor_opt,
        address=address,
        storage=storage,
        results_dir=results_dir,
        view=functools.partial(SweepDisplay, console=console),
        batch_trials=batch_trials,
    )
    console.print(tune_summary(outcome.report), markup=False)
    if outcome.interrupted:
        errors.print("interrupted: finished trials are kept; run the same command to resume")
        raise typer.Exit(EXIT_INTERRUPTED)
    if outcome.failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
@one_line_errors
def benchmark(
    suite: Annotated[
        Path, typer.Argument(help="Suite YAML file (configs/suites/).", show_default=False)
    ],
    optimizers: Annotated[
        list[str] | None,
        typer.Option(
            "--optimizer",
            help="Also rank this optimizer (registry name or import path, repeatable); the "
            "suite's finished pairs are read back, not retrained.",
            show_default=False,
        ),
    ] = None,
    workers: WorkersOption = None,
    executor: ExecutorOption = None,
    executor_opt: ExecutorOptOption = None,
    address: AddressOption = None,
    results_dir: ResultsDirOption = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Also draw the performance profiles to this image (PNG).", show_default=False
        ),
    ] = None,
    table: Annotated[
        TableFormat | None,
        typer.Option(
            help="Print the score, time-to-target and leave-one-problem-out tables as latex, "
            "markdown or csv (for a paper) instead of the terminal's.",
            show_default=False,
        ),
    ] = None,
    batch_trials: BatchTrialsOption = None,
) -> None:
    """Tune every optimizer on every problem of a suite with one budget, then score them
    across problems (AlgoPerf's performance profiles); results in DIR/<suite>/benchmark.json."""
    wait_passively()  # before torch loads: the driver trains runs too (sweeps/openmp.py)
    from optbench.ui.display import SweepDisplay
    from optbench.ui.reports import benchmark_tables

    _interrupt_on_sigterm()
    try:
        outcome = optbench.benchmark(
            suite,
            optimizers or (),
            workers=workers,
            executor=executor,
            executor_options=executor_opt,
            address=address,
            results_dir=results_dir,
            view=functools.partial(SweepDisplay, console=console if table is None else errors),
            plot=plot,
            batch_trials=batch_trials,
        )
    except KeyboardInterrupt:
        errors.print("interrupted: finished pairs are kept; run the same command to resume")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    shown = f"{len(outcome.trained)} pair(s) tuned, {len(outcome.reused)} read back"
    if table is not None:  # stdout holds the tables alone, ready to paste
        console.out(optbench.benchmark_tables(outcome.document, table.value), end="")
        errors.print(f"{shown}; wrote {outcome.path}", markup=False)
    else:
        for rich_table in benchmark_tables(outcome.document):
            console.print(rich_table)
        console.print(f"{shown}; wrote {outcome.path}", markup=False)
    if plot is not None:
        (console if table is None else errors).print(f"profiles drawn to {plot}", markup=False)
    if outcome.failed:
        errors.print(f"no completed trial (scored as not reaching): {', '.join(outcome.failed)}")


class Output(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"
    latex = "latex"


class TableFormat(str, enum.Enum):
    latex = "latex"
    markdown = "markdown"
    csv = "csv"


@app.command()
@one_line_errors
def compare(
    paths: Annotated[
        list[Path], typer.Argument(help="Result folders or run folders (results/<name>, ...).")
    ],
    metric: Annotated[
        str | None,
        typer.Option(
            help=f"Rank by {one_of(RANKING_METRICS)}. [default: the runs' problem's metric, "
            f"else {DEFAULT_RANKING}]",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Epochs and seconds to reach a value, and DeepOBS's speed: --target "
            f"test_accuracy=0.85 (metrics: {one_of(RANKABLE)}). [default: the runs' "
            "problem's target, if it has one]",
            show_default=False,
        ),
    ] = None,
    curve: Annotated[
        str,
        typer.Option(help=f"Per-epoch column drawn as curves ({one_of(CURVE_COLUMNS)})."),
    ] = DEFAULT_METRIC,
    top: Annotated[int, typer.Option(help="How many configurations get curves.", min=1)] = 5,
    output: Annotated[
        Output,
        typer.Option("--format", help="table (terminal), csv, json, markdown or latex."),
    ] = Output.table,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Also write the curves, with seed bands, to this PNG (matplotlib); for runs "
            "of a 2-D problem, their paths over the function's contours."
        ),
    ] = None,
    references: Annotated[
        bool,
        typer.Option(
            "--references",
            help="Also show the published figures of the runs' problems (not runs).",
        ),
    ] = False,
    tuned: Annotated[
        bool,
        typer.Option(
            "--tuned",
            help="One row per optimizer instead: its tuned configuration's seeds (from the "
            "folder's tune.json, with the budget spent; else its best configuration here), "
            "the chosen lr, final and best performance, speed.",
        ),
    ] = False,
    tuneability: Annotated[
        Path | None,
        typer.Option(
            help="Also write DeepOBS's tuneability plot to this PNG: final performance "
            "against lr per optimizer, the chosen lr marked (matplotlib).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Rank configurations across runs (seeds aggregated) and show their curves."""
    from optbench.analysis.compare import problems_of
    from optbench.analysis.figures import check_plot_path
    from optbench.ui.reports import print_comparison

    if plot is not None:
        check_plot_path(plot)
    if tuneability is not None:
        check_plot_path(tuneability, "--tuneability")
    comparison = optbench.comparison(*paths, metric=metric, target=target)
    messages = console if output is Output.table else errors
    print_comparison(
        console, comparison, output.value, curve, top, plot, messages, tuned, tuneability
    )
    if references:
        from optbench.components.catalog import reference_table

        names = problems_of(comparison.runs)
        table = reference_table(names) if names else None
        if table is None:
            messages.print(
                "no published figures for these runs' problems"
                + (f" ({', '.join(names)})" if names else " (they name no problem)"),
                markup=False,
            )
        else:
            messages.print(table)


@app.command()
@one_line_errors
def report(
    paths: Annotated[
        list[Path], typer.Argument(help="Result folders or run folders (results/<name>, ...).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    metric: Annotated[
        str | None,
        typer.Option(
            help="Rank by this metric, as in `optbench compare --metric` (default: the runs' "
            f"problem's metric, else {DEFAULT_RANKING}).",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="Epochs and seconds to reach a value: --target test_accuracy=0.85."),
    ] = None,
) -> None:
    """Write the comparison as one self-contained HTML page (works offline): the ranking,
    interactive curves with seed bands, 2-D paths, tuneability, each configuration's config
    (needs plotly, the `report` extra)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", optbench.UnreadableRunWarning)
        written = optbench.report(*paths, output=output, metric=metric, target=target)
    for warning in caught:  # the runs skipped, as compare notes them
        errors.print(f"note: {warning.message}", markup=False, highlight=False)
    console.print(
        f"report written to {written.path} ({written.runs} runs, {written.configurations} "
        f"configurations, {len(written.figures)} figures, {written.size / 1e6:.1f} MB)",
        markup=False,
        highlight=False,
    )


@app.command()
@one_line_errors
def show(
    run_dir: Annotated[Path, typer.Argument(help="A run folder: results/<name>/<run-id>.")],
) -> None:
    """Print one run's resolved config, status and per-epoch table."""
    from optbench.ui.reports import show_run

    show_run(console, optbench.load(run_dir))


@app.command()
@one_line_errors
def sample(
    run_dir: Annotated[Path, typer.Argument(help="A language-model run: results/<name>/<run-id>.")],
    prompt: Annotated[str, typer.Option(help="The text the sample continues.")] = "\n",
    tokens: Annotated[int, typer.Option(help="Bytes to draw.")] = 200,
    temperature: Annotated[float, typer.Option(help="Softmax temperature.")] = 0.8,
    seed: Annotated[int, typer.Option(help="Seed of the draws.")] = 0,
    untrained: Annotated[
        bool, typer.Option("--untrained", help="Sample the run's model before training.")
    ] = False,
) -> None:
    """Print text a language-model run writes: from its final weights, or untrained."""
    text = optbench.sample(run_dir, prompt, tokens, temperature, seed, trained=not untrained)
    # an untrained model draws control bytes too: shown as U+FFFD, never sent to the terminal
    shown = "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text)
    console.print(shown, markup=False, highlight=False)


class Kind(str, enum.Enum):
    optimizers = "optimizers"
    schedulers = "schedulers"
    models = "models"
    datasets = "datasets"
    losses = "losses"
    problems = "problems"
    loggers = "loggers"
    executors = "executors"


@app.command("list")
@one_line_errors
def list_components(
    kind: Annotated[Kind, typer.Argument(help="What to list.")] = Kind.optimizers,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="List the optimizers a package exports (e.g. pytorch_optimizer), each with "
            "the import path to use in a config.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """List available optimizers (with defaults from their signatures and how they step),
    schedulers, models, datasets, losses, test problems (with their published figures),
    loggers or executors."""
    from optbench.components.catalog import catalog_table, reference_table

    console.print(catalog_table(optbench.catalog(kind.value, source), kind.value, source))
    if kind is Kind.problems and (references := reference_table()) is not None:
        console.print(references)


for _command in app.registered_commands:  # the list of commands: each first paragraph whole
    _doc = inspect.getdoc(_command.callback) or ""
    _command.short_help = _command.short_help or " ".join(_doc.split("\n\n")[0].split())


def main() -> None:
    import warnings

    from optbench.core.errors import FailedRunsWarning, UnreadableRunWarning

    # each command prints its own counts, and compare and report their notes
    warnings.simplefilter("ignore", FailedRunsWarning)
    warnings.simplefilter("ignore", UnreadableRunWarning)
    app(prog_name="optbench")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
