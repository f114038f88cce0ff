"""The per-epoch metrics: one record per column of epochs.csv, and how a table cell shows one.

Every list of metrics is derived from `METRICS` here: epochs.csv's columns and their formats,
which are better high, which only some problems log, the ranking metrics compare accepts
(`final_X`, `best_X`), what tune may optimise and a problem be judged by, summary.json's final
and best values, the curves a report draws and their titles, and the ranking table's columns.
Adding a column is one record here, plus computing it in experiment/train.py.
Torch-free and rich-free: storage, analysis and ui all read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

FINAL, BEST = "final", "best"  # the two summaries of a column over a run's epochs


@dataclass(frozen=True)
class Metric:
    """One column of epochs.csv."""

    name: str
    format: str  # how a table cell shows a value (str.format pattern)
    title: str  # what a person reads: a plot's axis, a help text
    higher_is_better: bool = False  # losses and distances are better low
    optional: bool = False  # only some runs log it (an empty cell otherwise)
    # A measure of how training went: compare ranks by its final_/best_ value, tune optimises
    # it, a problem may be judged by it, summary.json records it.
    rankable: bool = False
    curve: bool = True  # a report draws it by epoch (not the epoch itself or wall times)
    short: str = ""  # a table header's words where the title is too long (default: title)
    summary_format: str = "{:.4f}"  # a ranking table's mean over seeds
    # The summaries (final, best) the ranking table shows without being asked; the one ranked
    # by is shown too.
    shown: tuple[str, ...] = ()
    # A column epochs.csv (and summary.json) has only when some row has a value: columns added
    # after runs existed, so the files of a run that never logs them stay byte for byte.
    sparse: bool = False

    @property
    def header(self) -> str:
        return self.short or self.title

    def ranking(self, summary: str) -> str:
        """The ranking metric of one summary: ranking(FINAL) of test_loss is final_test_loss."""
        return f"{summary}_{self.name}"


# epochs.csv's columns, in order.
METRICS: tuple[Metric, ...] = (
    Metric("epoch", "{:d}", "epoch", curve=False),
    # Cumulative optimizer steps at the evaluation; only runs with `eval_every` log it (they
    # have a row per evaluation, several per epoch).
    Metric("step", "{:d}", "optimizer steps", optional=True, curve=False, sparse=True),
    Metric("train_loss", "{:.6f}", "train loss", rankable=True, shown=(FINAL,)),
    # The held-out part of the training set (`data.validation`); what tune selects on.
    Metric(
        "valid_loss",
        "{:.6f}",
        "validation loss",
        optional=True,
        rankable=True,
        short="valid loss",
        sparse=True,
    ),
    Metric(
        "valid_accuracy",
        "{:.4f}",
        "validation accuracy",
        higher_is_better=True,
        optional=True,
        rankable=True,
        short="valid acc",
        sparse=True,
    ),
    Metric("test_loss", "{:.6f}", "test loss", rankable=True, shown=(FINAL, BEST)),
    # The fraction of targets predicted (argmax over the last axis): per token on sequences.
    Metric(
        "test_accuracy",
        "{:.4f}",
        "test accuracy",
        higher_is_better=True,
        rankable=True,
        short="test acc",
        shown=(BEST,),
    ),
    # Language models on text only (data: text, fortunes): the test loss (per-token
    # cross-entropy, nats) in bits per byte of text, the unit language-model results use.
    Metric(
        "test_bits_per_byte",
        "{:.4f}",
        "test bits per byte",
        optional=True,
        rankable=True,
        short="test bpb",
        shown=(FINAL,),
    ),
    Metric(
        "valid_bits_per_byte",
        "{:.4f}",
        "validation bits per byte",
        optional=True,
        rankable=True,
        short="valid bpb",
        sparse=True,
    ),
    Metric("lr", "{:.3g}", "learning rate"),
    # Optimizers that adapt their own step size (Prodigy, D-Adaptation) only: d * lr at the
    # epoch's end, the step size they took where `lr` stays 1.0; empty for others.
    Metric(
        "effective_lr",
        "{:.3g}",
        "effective learning rate (d * lr)",
        optional=True,
        short="effective lr",
    ),
    # Runs with clip_grad_norm only: the epoch's mean global gradient norm before clipping.
    Metric("grad_norm", "{:.4g}", "gradient norm (before clipping)", optional=True),
    # Runs with compile: true only: the process's first optimizer step, compilation included
    # (torch.compile's cost, not hidden in the epoch's seconds); empty on other epochs.
    Metric(
        "first_step_seconds",
        "{:.2f}",
        "seconds of the first step (with compilation)",
        optional=True,
        curve=False,
        short="first step s",
    ),
    Metric("seconds", "{:.2f}", "seconds (training)", curve=False),
    Metric("eval_seconds", "{:.2f}", "seconds (evaluation)", curve=False),
    # Problems with a known optimum only; empty for others.
    Metric(
        "distance_to_optimum",
        "{:.6f}",
        "distance to the optimum",
        optional=True,
        rankable=True,
        short="distance to optimum",
        summary_format="{:.4g}",
        shown=(FINAL,),
    ),
)
BY_NAME = {m.name: m for m in METRICS}

EPOCH_FORMATS = {m.name: m.format for m in METRICS}
EPOCH_COLUMNS = [m.name for m in METRICS]
HIGHER_IS_BETTER = frozenset(m.name for m in METRICS if m.higher_is_better)
OPTIONAL_COLUMNS = frozenset(m.name for m in METRICS if m.optional)
SPARSE_COLUMNS = frozenset(m.name for m in METRICS if m.sparse)
CURVE_COLUMNS = [m.name for m in METRICS if m.curve]
TITLES = {m.name: m.title for m in METRICS}

# The columns training is judged by: what tune optimises, a problem names, summary.json holds.
RANKABLE: tuple[str, ...] = tuple(m.name for m in METRICS if m.rankable)
# What compare ranks by: final_X (the last epoch) and best_X (the best epoch) of each of them.
RANKING_METRICS: tuple[str, ...] = tuple(
    m.ranking(summary) for m in METRICS if m.rankable for summary in (FINAL, BEST)
)
# The config schema's types (pydantic checks a Literal built at runtime like a written one).
RankableName = Literal.__getitem__(RANKABLE)  # type: ignore[attr-defined]

DEFAULT_METRIC = "test_loss"  # what to judge by when nothing says: every run logs it
CLASSIFICATION_METRIC = "test_accuracy"  # ... for a classification problem; others lack it
DEFAULT_RANKING = f"{FINAL}_{DEFAULT_METRIC}"
TEST_PREFIX, VALID_PREFIX = "test_", "valid_"


def validation_metric(metric: str) -> str:
    """The validation column a test column is selected as (test_accuracy -> valid_accuracy);
    a column with no validation twin (train_loss, distance_to_optimum) is itself."""
    twin = VALID_PREFIX + metric.removeprefix(TEST_PREFIX)
    return twin if metric.startswith(TEST_PREFIX) and twin in BY_NAME else metric


def is_test_metric(metric: str) -> bool:
    """Whether selecting on `metric` (an epoch column or ranking metric) reads the test split."""
    return epoch_column(metric).startswith(TEST_PREFIX)


def bits_per_byte(loss: float, bytes_per_token: float = 1.0) -> float:
    """A text model's mean cross-entropy per token, in nats, as bits per byte of the text
    (a character of UTF-8 text is 1 to 4 bytes)."""
    return loss / math.log(2) / bytes_per_token


def epoch_column(metric: str) -> str:
    """The epochs.csv column a ranking metric is read from: final_test_accuracy and
    best_test_accuracy -> test_accuracy (an epoch column names itself)."""
    return metric.removeprefix(f"{FINAL}_").removeprefix(f"{BEST}_")


def higher_is_better(metric: str) -> bool:
    """Whether `metric` (an epoch column, or a ranking metric such as final_test_accuracy or
    best_test_accuracy) is better high: compare's ranking and tune's direction both ask here."""
    return epoch_column(metric) in HIGHER_IS_BETTER


def one_of(names: tuple[str, ...] | list[str], last: str = "or") -> str:
    """'a, b or c': a list of names for a help text or an error message."""
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else "".join(names)


# A row's key, not a column: the row of an evaluation between steps (`eval_every`), not at an
# epoch's end. Kept in memory and in checkpoints (what counts finished epochs, what a pruner
# skips); epochs.csv does not write it (there, an epoch's last row is its end).
BETWEEN = "between"


def epoch_row(**values: Any) -> dict[str, Any]:
    """One epoch's row, in epochs.csv's order: every column given (optional ones may be left
    out, as None); a value for no column, or a missing column, is a programming error."""
    unknown = set(values) - set(EPOCH_COLUMNS)
    missing = [m.name for m in METRICS if not m.optional and m.name not in values]
    if unknown or missing:
        raise TypeError(f"epoch row: unknown {sorted(unknown)}, missing {missing}")
    return {name: values.get(name) for name in EPOCH_COLUMNS}


def format_cell(value: Any, pattern: str) -> str:
    """A table cell: `pattern` applied, or '-' for a missing value (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def written_columns(rows: list[dict[str, Any]]) -> list[str]:
    """epochs.csv's columns for these rows: every one, except sparse ones no row has."""
    return [
        m.name for m in METRICS if not m.sparse or any(row.get(m.name) is not None for row in rows)
    ]


def shown_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (column, format) pairs worth a table: every one, except optional ones no row has a
    value for."""
    return [
        (m.name, m.format)
        for m in METRICS
        if not m.optional or any(format_cell(row.get(m.name), m.format) != "-" for row in rows)
    ]
