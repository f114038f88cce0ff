"""Tables for `optbench params`, sweeps and comparisons: where parameters go, how runs did.

Torch-free at import (the plan is only an annotation), so `compare` and `show` never load it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.table import Table

from optbench.analysis.compare import show_hyperparameter
from optbench.components.catalog import show_value
from optbench.core.errors import ConfigError
from optbench.core.metrics import (
    BEST,
    BY_NAME,
    CLASSIFICATION_METRIC,
    DEFAULT_METRIC,
    FINAL,
    METRICS,
    format_cell,
    shown_columns,
)

if TYPE_CHECKING:
    from optbench.experiment.plan import RunPlan
    from optbench.storage.results import Run


PARAM_COLUMNS = ("parameter", "shape", "numel", "group", "hyperparameters")


def param_frame(plan: RunPlan) -> pd.DataFrame:
    """Every parameter's name, shape, size and group, with that group's effective
    hyperparameters (only those that differ from the first group's, after the first group):
    read off the plan, which bound them, with no model built again."""
    shapes = dict(plan.parameters)
    groups = plan.optimizer.groups
    top = groups[0].hyperparameters if groups[0].label == "default" else {}
    rows = []
    for index, group in enumerate(groups):
        differs = {k: v for k, v in group.hyperparameters.items() if top.get(k, object()) != v}
        shown = differs if index and top else group.hyperparameters
        key_values = ", ".join(
            f"{k}={show_value(v)}" for k, v in shown.items() if v is not None and v is not False
        )
        for name in group.names:
            shape = "x".join(map(str, shapes[name]))
            group_name = f"{index} ({group.label})"
            rows.append((name, shape, math.prod(shapes[name]), group_name, key_values))
    return pd.DataFrame(rows, columns=list(PARAM_COLUMNS))


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


# --------------------------------------------------------------------------- compare / show

# The epoch of the best test accuracy (compare's runs_frame), shown after that column.
AT_EPOCH_COLUMN = ("best_accuracy_epoch", "at epoch", "{:.1f}")


def rank_columns(table: Any) -> list[tuple[str, str, str]]:
    """The ranking table's (column, header, format): each rankable metric's summaries it shows
    (Metric.shown), plus the final value of the metric ranked by (DeepOBS's final performance)
    where those lack it; optional metrics only when some configuration has them."""
    performance = table.attrs.get("performance")

    def has(column: str) -> bool:
        return f"{column}_mean" in table and bool(table[f"{column}_mean"].notna().any())

    columns = []
    for metric in METRICS:
        shown = [
            metric.ranking(summary)
            for summary in (FINAL, BEST)
            if summary in metric.shown or (summary == FINAL and metric.name == performance)
        ]
        if metric.optional and not any(has(column) for column in shown):
            continue
        for column in shown:
            summary = column.removesuffix(f"_{metric.name}")
            columns.append((column, f"{summary} {metric.header}", metric.summary_format))
        if metric.name == CLASSIFICATION_METRIC:
            columns.append(AT_EPOCH_COLUMN)
    return columns


def mean_std(row: Any, metric: str, pattern: str) -> str:
    """'0.8760 ± 0.0013' from a ranking row's <metric>_mean and _std ('-' for no mean)."""
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if mean != mean:  # NaN
        return "-"
    text = pattern.format(mean)
    return text if std != std else f"{text} ± {pattern.format(std)}"


def ranking_frame(table: Any, target: tuple[str, float] | None) -> Any:
    """The ranking as plain columns, for csv/json/markdown output."""
    import pandas as pd

    hyper = table.attrs["hyperparameters"]
    out = pd.DataFrame({"rank": range(1, len(table) + 1)})
    for key in hyper:
        out[key] = table[key].to_numpy()
    out["n"] = table["n"].to_numpy()
    out["status"] = table["status"].to_numpy()
    out["completed"] = table["completed"].to_numpy()  # the runs final_* means are over
    for metric, _, _ in rank_columns(table):
        out[f"{metric}_mean"] = table[f"{metric}_mean"].to_numpy()
        out[f"{metric}_std"] = table[f"{metric}_std"].to_numpy()
    if "mean_curve_best" in table:  # DeepOBS's best performance: the mean curve's best epoch
        out[f"mean_curve_best_{table.attrs['performance']}"] = table["mean_curve_best"].to_numpy()
        out["mean_curve_best_epoch"] = table["mean_curve_best_epoch"].to_numpy()
    if target:
        out["reached_target"] = table["reached_target"].to_numpy()
        out["epochs_to_target_mean"] = table["epochs_to_target_mean"].to_numpy()
        out["seconds_to_target_mean"] = table["seconds_to_target_mean"].to_numpy()
        out["speed_mean"] = table["speed_mean"].to_numpy()  # DeepOBS's speed (compare.py)
        out["speed_std"] = table["speed_std"].to_numpy()
    return out


def _at_epoch(value: Any, epoch: Any, pattern: str) -> str:
    """'0.8760 (3)': a value and the epoch it is at."""
    return "-" if value != value else f"{pattern.format(value)} ({epoch:g})"


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
            cells.append(_at_epoch(row["mean_curve_best"], row["mean_curve_best_epoch"], pattern))
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


def markdown(frame: Any) -> str:
    """A pandas frame as a GitHub markdown table (no extra dependency)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if value != value else f"{value:.4g}"
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(map(str, frame.columns)) + " |",
        "|" + "---|" * len(frame.columns),
    ]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def _pyplot(option: str = "--plot") -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(f"{option} needs matplotlib: pip install 'optbench[plot]'") from None
    return plt


def check_writable(path: Path, option: str, example: str) -> None:
    """Refuse an output file that cannot be written (a folder, a missing folder, no permission)
    with one line naming `option`; `example` is a file name to suggest inside a folder."""
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file such as {path / example}")
    folder = path.parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise ConfigError(f"{option} {path}: folder {folder} {what}")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path}: permission denied")


def check_plot_path(path: Path, option: str = "--plot") -> None:
    """Refuse a --plot (or other `option`'s) destination that cannot be written before any run
    is read, not after."""
    check_writable(path, option, "curves.png")
    _pyplot(option)  # no matplotlib: say so now
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if path.suffix.lstrip(".").lower() not in formats:
        raise ConfigError(
            f"{option} {path}: the file name must end in the image format to write: "
            f"{', '.join('.' + f for f in formats)}"
        )


def _save(figure: Any, path: Any, option: str = "--plot") -> None:
    """Write a matplotlib figure for --plot: one line naming the file when it cannot be."""
    plt = _pyplot(option)
    try:
        figure.savefig(path, dpi=120)
    except OSError as exc:
        raise ConfigError(f"cannot write {option} {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


def plot_png(bands: dict[str, Any], metric: str, path: Path) -> None:
    """One line per configuration with a band for the seed spread (needs matplotlib)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(9, 5.5))
    for name, band in bands.items():
        (line,) = axes.plot(band.index, band["mean"], label=name)
        axes.fill_between(band.index, band["min"], band["max"], color=line.get_color(), alpha=0.2)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def plot_paths(function_name: str, paths: dict[str, list[Any]], path: Path) -> None:
    """2-D runs: each configuration's paths (one colour, every seed) over the function's
    contour lines, with the starting point and the known minima marked (needs matplotlib)."""
    import numpy as np

    from optbench.components.twod import FUNCTIONS

    plt = _pyplot()
    function = FUNCTIONS[function_name]
    (u_low, u_high), (v_low, v_high) = function.view
    u, v = np.meshgrid(np.linspace(u_low, u_high, 300), np.linspace(v_low, v_high, 300))
    values = function.value(u, v, np.cos)
    lowest = values.min()
    levels = lowest + np.logspace(-2, np.log10(values.max() - lowest), 25)
    figure, axes = plt.subplots(figsize=(8, 6.5))
    axes.contour(u, v, values, levels=levels, colors="0.75", linewidths=0.6)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, seeds) in enumerate(paths.items()):
        colour = colours[index % len(colours)]
        for seed, frame in enumerate(seeds):
            axes.plot(
                frame["u"],
                frame["v"],
                color=colour,
                linewidth=1.1,
                alpha=0.85,
                label=name if seed == 0 else None,
            )
    axes.plot(*function.start, "o", color="black", markersize=7, label="start", zorder=5)
    minima = np.array(function.minima)
    axes.plot(
        minima[:, 0], minima[:, 1], "*", color="red", markersize=14, label="minimum", zorder=5
    )
    axes.set_xlim(u_low, u_high)
    axes.set_ylim(v_low, v_high)
    axes.set_xlabel("u")
    axes.set_ylabel("v")
    axes.set_title(f"{function_name}: optimizer paths (DeepOBS start and noise)")
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    _save(figure, path)


def tuned_output_frame(tuned: Any, target: tuple[str, float] | None) -> Any:
    """`compare --tuned` as plain columns, for csv/json/markdown output: one row per optimizer,
    DeepOBS's metrics named by the column they are in."""
    performance = tuned.attrs["performance"]
    out = tuned.copy()
    out.insert(0, "rank", range(1, len(out) + 1))
    out = out.rename(
        columns={
            "final_mean": f"final_{performance}_mean",
            "final_std": f"final_{performance}_std",
            "mean_curve_best": f"mean_curve_best_{performance}",
        }
    )
    if not target:
        out = out.drop(columns=["speed_mean", "speed_std"], errors="ignore")
    return out


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
        cells.append(_at_epoch(row["mean_curve_best"], row["mean_curve_best_epoch"], pattern))
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


def plot_tuneability(frame: Any, path: Path) -> None:
    """DeepOBS's tuneability: one panel per optimizer, its configurations' final performance
    (mean over seeds, the std as error bars) against the learning rate on a log axis, the
    chosen one starred. Points join into a line when each lr is one configuration (an lr grid);
    configurations without a final value or an lr are counted in the panel's title."""
    plt = _pyplot("--tuneability")
    performance = frame.attrs["performance"]
    names = list(dict.fromkeys(frame["optimizer"]))
    figure, axes = plt.subplots(
        1, len(names), figsize=(4.5 * len(names) + 1, 4.5), sharey=True, squeeze=False
    )
    for axes_, name in zip(axes[0], names, strict=True):
        rows = frame[frame["optimizer"] == name]
        shown = rows[rows["lr"].notna() & rows["final_mean"].notna()].sort_values("lr")
        unique = shown["lr"].is_unique
        (line,) = axes_.plot(
            shown["lr"], shown["final_mean"], "o-" if unique else "o", label="configurations"
        )
        axes_.errorbar(
            shown["lr"],
            shown["final_mean"],
            yerr=shown["final_std"].fillna(0),
            fmt="none",
            ecolor=line.get_color(),
            capsize=3,
        )
        chosen = shown[shown["chosen"]]
        if not chosen.empty:
            lr, value = chosen["lr"].iloc[0], chosen["final_mean"].iloc[0]
            axes_.plot(
                [lr], [value], "*", color="red", markersize=14, zorder=5, label=f"chosen {lr:.3g}"
            )
            axes_.axvline(lr, color="red", linestyle=":", alpha=0.6)
        axes_.set_xscale("log")
        missing = len(rows) - len(shown)
        axes_.set_title(name + (f" ({missing} without a final value)" if missing else ""))
        axes_.set_xlabel("learning rate")
        axes_.grid(alpha=0.3, which="both")
        axes_.legend(fontsize=8)
    axes[0][0].set_ylabel(f"final {performance} (mean over seeds)")
    figure.tight_layout()
    _save(figure, path, "--tuneability")


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


def plot_range_test(result: Any, title: str, path: Path) -> None:
    """Batch and smoothed loss against the lr on a log axis, the suggestion marked
    (matplotlib, written as `optbench compare --plot` writes its figures)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 5))
    axes.plot(result.lrs, result.losses, color="0.7", linewidth=0.8, label="batch loss")
    axes.plot(result.lrs, result.smoothed, linewidth=1.6, label="smoothed loss")
    if result.suggestion is not None and result.suggestion_index is not None:
        axes.plot(
            result.suggestion,
            result.smoothed[result.suggestion_index],
            "o",
            color="red",
            markersize=8,
            label=f"steepest descent: lr {result.suggestion:.3g}",
        )
    finite = [s for s in result.smoothed if math.isfinite(s)]
    if finite:  # the batch losses' last spike would flatten the interesting part
        low = min(finite + [v for v in result.losses if math.isfinite(v)])
        high = max(finite)
        axes.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low) + 1e-12)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (first param group)")
    axes.set_ylabel("training loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)


# --------------------------------------------------------------------------- benchmark


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


def plot_profiles_png(document: dict[str, Any], path: Path) -> None:
    """A benchmark's performance profiles, steps and seconds side by side, one line per
    optimizer with its score in the legend (`optbench benchmark --plot`; needs matplotlib).
    Each optimizer has its own colour, dash and marker in both panels (told apart in black and
    white); markers sit on every 10th tau, shifted per optimizer, so lines that coincide still
    show each one's markers."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    taus = document["profiles"]["tau"]
    steps = document["scores"]["steps"]
    ranked = sorted(steps, key=lambda o: -steps[o])  # one style per optimizer in both panels
    dashes = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)))
    markers = ("o", "s", "D", "^", "x", "+", "*", "v")
    for axis, measure in zip(axes, ("steps", "seconds"), strict=True):
        scores = document["scores"][measure]
        for index, optimizer in enumerate(ranked):
            rho = document["profiles"][measure][optimizer]
            axis.plot(
                taus,
                rho,
                drawstyle="steps-post",
                linestyle=dashes[index % len(dashes)],
                marker=markers[index % len(markers)],
                markevery=(index % 10, 10),
                markersize=5,
                markerfacecolor="none",
                label=f"{optimizer} ({scores[optimizer]:.3f})",
            )
        axis.set_xlabel(f"tau: time to target / the fastest's ({measure})")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
        axis.legend(title="score", fontsize=8)
    axes[0].set_ylabel("fraction of problems")
    figure.suptitle(f"optbench benchmark {document['suite']}: performance profiles")
    figure.tight_layout()
    _save(figure, path)
