"""The per-epoch metrics: one record per column of epochs.csv, and how a table cell shows one.

Every list of metrics (epochs.csv's columns, their table formats, which are better high, which
only some problems log) is derived from `METRICS` here, so adding a column is one record.
Torch-free and rich-free: storage, analysis and ui all read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    """One column of epochs.csv."""

    name: str
    format: str  # how a table cell shows a value (str.format pattern)
    title: str  # what a person reads: a plot's axis, a help text
    higher_is_better: bool = False  # losses and distances are better low
    optional: bool = False  # only some runs log it (an empty cell otherwise)


# epochs.csv's columns, in order.
METRICS: tuple[Metric, ...] = (
    Metric("epoch", "{:d}", "epoch"),
    Metric("train_loss", "{:.6f}", "train loss"),
    Metric("test_loss", "{:.6f}", "test loss"),
    Metric("test_accuracy", "{:.4f}", "test accuracy", higher_is_better=True),
    Metric("lr", "{:.3g}", "learning rate"),
    Metric("seconds", "{:.2f}", "seconds (training)"),
    Metric("eval_seconds", "{:.2f}", "seconds (evaluation)"),
    # Problems with a known optimum only; empty for others.
    Metric("distance_to_optimum", "{:.6f}", "distance to the optimum", optional=True),
)

EPOCH_FORMATS = {m.name: m.format for m in METRICS}
EPOCH_COLUMNS = [m.name for m in METRICS]
HIGHER_IS_BETTER = frozenset(m.name for m in METRICS if m.higher_is_better)
OPTIONAL_COLUMNS = frozenset(m.name for m in METRICS if m.optional)


def format_cell(value: Any, pattern: str) -> str:
    """A table cell: `pattern` applied, or '-' for a missing value (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def shown_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (column, format) pairs worth a table: every one, except optional ones no row has a
    value for."""
    return [
        (m.name, m.format)
        for m in METRICS
        if not m.optional or any(format_cell(row.get(m.name), m.format) != "-" for row in rows)
    ]
