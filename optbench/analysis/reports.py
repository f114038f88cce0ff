"""What `optbench params` and `optbench compare` report, as plain columns and text: the frames
behind the terminal tables (ui/reports.py), csv/json/markdown output and the HTML report.

Torch-free at import (the plan is only an annotation), so `compare` and `show` never load it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from optbench.components.catalog import show_value
from optbench.core.metrics import BEST, CLASSIFICATION_METRIC, FINAL, METRICS

if TYPE_CHECKING:
    from optbench.experiment.plan import RunPlan


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


def at_epoch(value: Any, epoch: Any, pattern: str) -> str:
    """'0.8760 (3)': a value and the epoch it is at."""
    return "-" if value != value else f"{pattern.format(value)} ({epoch:g})"


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
