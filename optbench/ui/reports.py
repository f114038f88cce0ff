"""The terminal tables of `optbench params`, `sweep --dry-run`, `compare`, `show` and
`benchmark`: rich renderings of the frames analysis/ computes (analysis/reports.py), with
compare's curves drawn in text and its figures written through analysis/figures.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.table import Table

from optbench.analysis.compare import show_hyperparameter
from optbench.analysis.figures import plot_paths, plot_png, plot_tuneability
from optbench.analysis.reports import (
    PARAM_COLUMNS,
    at_epoch,
    markdown,
    mean_std,
    param_frame,
    rank_columns,
    ranking_frame,
    tuned_output_frame,
)
from optbench.core.errors import ConfigError
from optbench.core.metrics import BY_NAME, DEFAULT_METRIC, format_cell, shown_columns

if TYPE_CHECKING:
    from optbench.experiment.plan import RunPlan
    from optbench.storage.results import Run


def param_table(plan: RunPlan) -> Table:
    """param_frame as a terminal table, with the total and how the optimizer steps."""
    frame = param_frame(plan)
    table = Table(
        title=f"{plan.name}: {plan.model.name} parameters -> {plan.optimizer.info.name} groups",
        title_justify="left",
    )
    for column in PARAM_COLUMNS:
        table.add_column(column, justify="right" if column == "numel" else "left")
    for row in frame.itertuples(index=False):
        table.add_row(row.parameter, row.shape, f"{row.numel:,}", row.group, row.hyperparameters)
    table.caption = (
        f"{int(frame['numel'].sum()):,} trainable parameters in {len(plan.optimizer.groups)} "
        f"group(s); steps: {plan.optimizer.protocol.describe()}"
    )
    return table


def sweep_table(name: str, points: pd.DataFrame) -> Table:
    """`optbench sweep --dry-run`: every run of the grid and whether it already ran."""
    table = Table(title=f"sweep {name}: {len(points)} runs", title_justify="left")
    for column in ("#", "run", "grid point", "on disk"):
        table.add_column(column)
    for index, point in enumerate(points.itertuples(index=False), 1):
        table.add_row(str(index), point.run_id, point.point, point.status)
    return table


def ranking_table(table: Any, target: tuple[str, float] | None) -> Table:
    """Rich ranking: one row per configuration, seeds as mean ± std, best first."""
    hyper = table.attrs["hyperparameters"]
    title = (
        f"ranking by {table.attrs['metric']} (mean ± std over seeds; "
        "final columns over completed runs only)"
    )
    rich_table = Table(title=title, title_justify="left")
    rich_table.add_column("#", justify="right")
    for key in hyper:
        rich_table.add_column(key.split(".")[-1] if len(hyper) < 6 else key)
    rich_table.add_column("n", justify="right")
    columns = rank_columns(table)
    for _, header, _ in columns:
        rich_table.add_column(header, justify="right")
    curve_best = "mean_curve_best" in table
    if curve_best:
        performance = table.attrs["performance"]
        rich_table.add_column(f"best of mean {performance} (epoch)", justify="right")
    if target:
        rich_table.add_column(f"epochs to {target[0]}={target[1]:g}", justify="right")
        rich_table.add_column("seconds to it", justify="right")
        rich_table.add_column("speed (epochs)", justify="right")
    rich_table.add_column("status", min_width=11)  # "completed" whole
    for rank, (_, row) in enumerate(table.iterrows(), 1):
        cells = [str(rank), *(show_hyperparameter(row[k]) for k in hyper), str(row["n"])]
        cells += [mean_std(row, metric, fmt) for metric, _, fmt in columns]
        if curve_best:
            pattern = BY_NAME[performance].summary_format
            cells.append(at_epoch(row["mean_curve_best"], row["mean_curve_best_epoch"], pattern))
        if target:
            reached = f" ({row['reached_target']}/{row['n']})"
            cells.append(mean_std(row, "epochs_to_target", "{:.1f}") + reached)
            cells.append(mean_std(row, "seconds_to_target", "{:.1f}"))
            cells.append(mean_std(row, "speed", "{:.1f}"))
        cells.append(row["status"])
        rich_table.add_row(*cells)
    return rich_table


def curve_table(curves: Any, metric: str) -> Table:
    table = Table(title=f"{metric} by epoch (mean over seeds)", title_justify="left")
    table.add_column("epoch", justify="right")
    for name in curves.columns:
        table.add_column(name, justify="right")
    for epoch, row in curves.iterrows():
        table.add_row(str(epoch), *(format_cell(v, "{:.4f}") for v in row))
    return table


def curve_chart(curves: Any, metric: str, width: int, color: bool) -> str:
    """The curves as a line chart drawn in text (uniplot), one series per configuration."""
    from uniplot import plot_to_string

    names = [n for n in curves.columns if curves[n].notna().any()]
    ys = [curves[n].dropna().tolist() for n in names]
    xs = [curves[n].dropna().index.tolist() for n in names]
    return plot_to_string(
        ys,
        xs,
        legend_labels=names,
        width=max(30, width - 12),
        height=15,
        color=color,
        title=f"{metric} by epoch",
        lines=True,
    )


def tuned_table(tuned: Any, target: tuple[str, float] | None) -> Table:
    """Rich `compare --tuned`: the optimizers ranked by final performance, each by its tuned
    configuration's runs (mean ± std), with DeepOBS's best performance, speed, the chosen lr
    and, from a tune.json, the budget the tuning spent."""
    performance = tuned.attrs["performance"]
    pattern = BY_NAME[performance].summary_format
    source = (
        "tune.json: each its best trial's seed reruns"
        if tuned.attrs["tuned"]
        else "each its best configuration here"
    )
    table = Table(
        title=f"optimizers by final {performance} (mean ± std over seeds; {source})",
        title_justify="left",
    )
    table.add_column("#", justify="right")
    table.add_column("optimizer")
    table.add_column("chosen lr", justify="right")
    table.add_column("n", justify="right")
    table.add_column(f"final {performance}", justify="right")
    table.add_column("best of mean (epoch)", justify="right")
    if target:
        table.add_column(f"speed: epochs to {target[0]}={target[1]:g}", justify="right")
    if tuned.attrs["tuned"]:
        table.add_column("trials (pruned, failed)", justify="right")
        table.add_column("budget epochs", justify="right")
        table.add_column("budget seconds", justify="right")
    else:
        table.add_column("configurations", justify="right")
    table.add_column("status")
    for rank, (_, row) in enumerate(tuned.iterrows(), 1):
        cells = [str(rank), str(row["optimizer"]), format_cell(row["lr"], "{:.4g}"), str(row["n"])]
        cells.append(mean_std(row, "final", pattern))
        cells.append(at_epoch(row["mean_curve_best"], row["mean_curve_best_epoch"], pattern))
        if target:
            cells.append(mean_std(row, "speed", "{:.1f}"))
        if tuned.attrs["tuned"]:
            pruned = format_cell(row["trials_pruned"], "{}")
            failed = format_cell(row["trials_failed"], "{}")
            cells.append(f"{format_cell(row['trials'], '{}')} ({pruned}, {failed})")
            cells.append(format_cell(row["budget_epochs"], "{}"))
            cells.append(format_cell(row["budget_seconds"], "{:.1f}"))
        else:
            cells.append(str(row["configurations"]))
        cells.append(str(row["status"]))
        table.add_row(*cells)
    return table


def print_comparison(
    console: Any,
    comparison: Any,
    output: str = "table",
    curve_metric: str = DEFAULT_METRIC,
    top: int = 5,
    plot: Path | None = None,
    messages: Any = None,
    tuned: bool = False,
    tuneability: Path | None = None,
) -> None:
    """`optbench compare`: the ranking, then the top configurations' curves (table and chart).
    `tuned`: one row per optimizer instead (`tuned_frame`); `tuneability`: also write that
    plot (`plot_tuneability`).

    Notes and "plot written" go to `messages` (stderr for csv/json/markdown, so pipes get only
    the ranking); by default to `console`.
    """
    from optbench.analysis.compare import seed_bands, tuneability_frame, tuned_frame

    messages = console if messages is None else messages

    bands = seed_bands(comparison.frame, comparison.table, comparison.runs, curve_metric, top)
    frame = ranking_frame(comparison.table, comparison.target)
    if tuned:
        by_optimizer = tuned_frame(comparison, comparison.tune)
        frame = tuned_output_frame(by_optimizer, comparison.target)
    if output == "table" and tuned:
        console.print(tuned_table(by_optimizer, comparison.target))
    elif output == "csv":
        console.out(frame.to_csv(index=False), end="")
    elif output == "json":
        console.out(frame.to_json(orient="records", indent=2))
    elif output == "markdown":
        console.out(markdown(frame))
    elif output == "latex":
        from optbench.analysis.benchmark_tables import latex

        console.out(latex(frame))
    elif output == "table":
        console.print(ranking_table(comparison.table, comparison.target))
    else:
        raise ConfigError(f"--format must be table, csv, json, markdown or latex, not '{output}'")
    if output == "table" and bands and not tuned:
        import pandas as pd

        curves = pd.DataFrame({name: band["mean"] for name, band in bands.items()})
        console.print(curve_table(curves, curve_metric))
        if len(curves) > 1:
            from rich.text import Text

            chart = curve_chart(curves, curve_metric, min(console.width, 120), console.is_terminal)
            console.print(Text.from_ansi(chart))
    for note in comparison.notes:
        messages.print(f"note: {note}", markup=False, highlight=False)
    if comparison.tune is not None and not tuned:
        messages.print(
            "note: the folder has a tune.json: --tuned ranks its optimizers by their tuned "
            "configurations' seed reruns, with the budget spent",
            markup=False,
            highlight=False,
        )
    if tuneability is not None:
        plot_tuneability(tuneability_frame(comparison, comparison.tune), tuneability)
        messages.print(f"tuneability plot written to {tuneability}", markup=False)
    if plot is not None:
        from optbench.analysis.compare import two_d_paths

        paths = two_d_paths(comparison.frame, comparison.table, comparison.runs)
        if paths is not None:  # runs of one 2-D function: their paths, not curves
            plot_paths(*paths, plot)
        else:
            plot_png(bands, curve_metric, plot)
        messages.print(f"plot written to {plot}", markup=False)


def show_run(console: Any, run: Run) -> None:
    """`optbench show`: one run's resolved config, summary line and per-epoch table."""
    import yaml
    from rich.syntax import Syntax

    from optbench.analysis.compare import STALE, run_status

    status = run_status(run)
    if status == STALE:
        status = "stale (summary says running, but no process holds its lock)"
    text = yaml.safe_dump(run.config, sort_keys=False, default_flow_style=None)
    console.print(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    summary = run.record
    console.print(
        f"status {status}, "
        f"{summary.epochs_completed}/{summary.epochs} epochs, "
        f"seed {summary.seed}, {summary.device}, "
        f"{summary.wall_seconds} s",
        markup=False,
    )
    table = Table(title=str(run.dir), title_justify="left")
    rows = run.epochs.to_dict("records")
    shown = shown_columns(rows)
    for name, _ in shown:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*(format_cell(row.get(name), fmt) for name, fmt in shown))
    console.print(table)


def benchmark_tables(document: dict[str, Any]) -> list[Table]:
    """`optbench benchmark`: the score table (both clocks, each score with its bootstrap
    interval, and which optimizers cannot be told apart), the time to target per problem (the
    hyperparameters chosen, a value at its space's edge marked, unreached and failed pairs
    said) and each optimizer's rank with each problem left out (benchmark_tables.py)."""
    from optbench.analysis.benchmark_tables import benchmark_frames

    tables = []
    for index, (title, frame) in enumerate(benchmark_frames(document)):
        table = Table(title=title, title_justify="left")
        for column in frame.columns:
            table.add_column(str(column))
        previous = None
        for row in frame.itertuples(index=False):
            cells = [str(value) for value in row]
            if "problem" in frame.columns:  # the problem and its target once per group
                first = cells[0]
                if first == previous:
                    cells[0] = cells[1] = ""
                previous = first
            table.add_row(*cells)
        if index == 0:
            ties = {m: document["cannot_tell_apart"][m] for m in ("steps", "seconds")}
            notes = [
                f"cannot tell apart ({m}): " + "; ".join(f"{a} ~ {b}" for a, b in pairs)
                for m, pairs in ties.items()
                if pairs
            ]
            table.caption = "\n".join(notes) or None
            table.caption_justify = "left"
        tables.append(table)
    return tables
