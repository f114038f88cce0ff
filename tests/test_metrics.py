"""Every list of metrics and of named choices is derived from one definition: the Metric records
of core/metrics.py, and the protocol, augment, sampler and pruner names of core/config.py.
Checked against what we did not write: pandas over the shipped baselines' epochs.csv, click's
rendered help, pydantic's validation, Optuna's and torch's classes."""

from __future__ import annotations

import re

import optuna
import pandas as pd
import pytest
import torch

from optbench.analysis.compare import compare_runs, parse_target
from optbench.analysis.html_report import curve_metrics
from optbench.analysis.reports import rank_columns
from optbench.components.augment import AUGMENTATIONS
from optbench.components.stepping import _STEPS, DESCRIPTIONS, detect_protocol
from optbench.core.config import (
    AUGMENT_NAMES,
    PROTOCOL_NAMES,
    PRUNER_NAMES,
    SAMPLER_NAMES,
    Distribution,
    TuneConfig,
)
from optbench.core.errors import ConfigError
from optbench.core.metrics import (
    CURVE_COLUMNS,
    METRICS,
    RANKABLE,
    RANKING_METRICS,
    epoch_row,
)
from optbench.core.problems import PROBLEMS
from optbench.sweeps.study import _PRUNERS, _SAMPLERS, make_pruner, make_sampler
from tests.helpers import REPO, invoke

BASELINES = REPO / "results" / "baselines"
RANKABLE_RECORDS = [m for m in METRICS if m.rankable]
DERIVED_RANKING = {f"{s}_{m.name}" for m in RANKABLE_RECORDS for s in ("final", "best")}


def test_ranking_metrics_are_final_and_best_of_each_rankable_record() -> None:
    assert set(RANKING_METRICS) == DERIVED_RANKING
    assert set(RANKABLE) == {m.name for m in RANKABLE_RECORDS}


@pytest.fixture(scope="module")
def baseline_epochs() -> dict[str, pd.DataFrame]:
    """The shipped baselines' epochs.csv, read by pandas itself, by run folder."""
    return {str(p.parent): pd.read_csv(p) for p in BASELINES.rglob("epochs.csv")}


@pytest.mark.parametrize("metric", sorted(DERIVED_RANKING))
def test_compare_ranks_by_every_derived_metric_as_pandas_computes_it(
    metric: str, baseline_epochs: dict[str, pd.DataFrame]
) -> None:
    comparison = compare_runs([BASELINES], metric)
    summary, _, column = metric.partition("_")
    higher = next(m for m in METRICS if m.name == column).higher_is_better
    assert len(comparison.frame) == len(baseline_epochs) > 0
    for _, row in comparison.frame.iterrows():
        epochs = baseline_epochs[row["run_dir"]]
        values = epochs[column] if column in epochs else pd.Series(dtype=float)
        if summary == "final":
            expected = values.iloc[-1] if len(values) else float("nan")
        else:
            expected = values.max() if higher else values.min()
        assert row[metric] == pytest.approx(expected, nan_ok=True)


def test_compare_refuses_what_no_record_derives() -> None:
    for metric in ("final_lr", "best_epoch", "final_seconds", "accuracy"):
        with pytest.raises(ConfigError, match="--metric must be one of"):
            compare_runs([BASELINES], metric)


def test_targets_accept_every_rankable_metric_and_nothing_else() -> None:
    for name in RANKABLE:
        assert parse_target(f"{name}=0.5") == (name, 0.5)
    for name in {m.name for m in METRICS} - set(RANKABLE):
        with pytest.raises(ConfigError, match="--target must look like"):
            parse_target(f"{name}=0.5")


def test_ranking_table_columns_and_curves_come_from_the_records() -> None:
    comparison = compare_runs([BASELINES], "final_test_accuracy")
    columns = [column for column, _, _ in rank_columns(comparison.table)]
    assert "final_test_accuracy" in columns  # the metric ranked by is shown
    assert set(columns) - {"best_accuracy_epoch"} <= set(RANKING_METRICS)
    headers = {header for _, header, _ in rank_columns(comparison.table)}
    assert {"final train loss", "best test acc"} <= headers  # Metric.short where set
    assert set(curve_metrics(comparison)) <= set(CURVE_COLUMNS)
    assert {"epoch", "seconds", "eval_seconds"}.isdisjoint(CURVE_COLUMNS)


def test_cli_help_names_every_ranking_metric_and_curve() -> None:
    result = invoke("compare", "--help")
    assert result.exit_code == 0
    text = " ".join(re.sub(r"[│┃]", " ", result.stdout).split())
    for name in (*RANKING_METRICS, *CURVE_COLUMNS):
        assert re.search(rf"\b{name}\b", text), name


def test_tune_accepts_each_rankable_metric_and_problems_name_one() -> None:
    space = {"optimizer.lr": Distribution(log_uniform=[1e-3, 1e-1])}
    for name in RANKABLE:
        assert TuneConfig(space=space, metric=name).metric == name
    with pytest.raises(ValueError, match="metric"):
        TuneConfig(space=space, metric="lr")
    for name in PROBLEMS.names():
        assert PROBLEMS.get(name, "problem").metric in RANKABLE


def test_summary_final_and_best_cover_every_rankable_metric() -> None:
    from optbench.core.config import validate_config
    from optbench.experiment.plan import make_plan
    from optbench.experiment.runner import summarize
    from optbench.experiment.train import TrainResult
    from optbench.storage.results import Status
    from tests.helpers import regression_dict

    plan = make_plan(validate_config(regression_dict()))
    rows = [
        epoch_row(
            epoch=1,
            train_loss=0.9,
            valid_loss=0.75,
            valid_accuracy=0.55,
            valid_bits_per_byte=1.2,
            test_loss=0.8,
            test_accuracy=0.5,
            lr=0.1,
            seconds=1.0,
            eval_seconds=0.1,
        ),
        epoch_row(
            epoch=2,
            train_loss=0.7,
            valid_loss=0.8,
            valid_accuracy=0.5,
            valid_bits_per_byte=1.1,
            test_loss=0.85,
            test_accuracy=0.6,
            lr=0.1,
            seconds=1.0,
            eval_seconds=0.1,
        ),
    ]
    summary = summarize(plan, TrainResult(Status.COMPLETED, rows), "completed", 0.0, None).to_dict()
    frame = pd.DataFrame(rows)
    assert set(summary["final"]) == set(RANKABLE)
    for metric in RANKABLE_RECORDS:
        values = frame[metric.name].dropna()
        best = values.max() if metric.higher_is_better else values.min()
        assert summary["final"][metric.name] == frame[metric.name].iloc[-1]
        assert summary["best"][metric.name] == (best if len(values) else None)
    # a run that logs no validation split has no validation keys (sparse columns)
    sparse = {"valid_loss", "valid_accuracy", "valid_bits_per_byte"}
    unvalidated = [{**row, **dict.fromkeys(sparse)} for row in rows]
    summary = summarize(plan, TrainResult(Status.COMPLETED, unvalidated), "completed", 0.0, None)
    assert set(summary.final) == set(RANKABLE) - sparse


def test_an_epoch_row_is_every_column_in_order() -> None:
    row = epoch_row(
        epoch=1,
        train_loss=1.0,
        test_loss=1.0,
        test_accuracy=None,
        lr=0.1,
        seconds=1.0,
        eval_seconds=0.1,
    )
    assert list(row) == [m.name for m in METRICS]
    assert row["distance_to_optimum"] is None  # optional: may be left out
    with pytest.raises(TypeError, match="missing"):
        epoch_row(epoch=1)
    with pytest.raises(TypeError, match="unknown"):
        epoch_row(**row, train_accuracy=0.5)


def test_protocols_are_one_list() -> None:
    assert set(_STEPS) == set(DESCRIPTIONS) == set(PROTOCOL_NAMES)
    for cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.LBFGS):
        assert detect_protocol(cls) in PROTOCOL_NAMES
    assert detect_protocol(torch.optim.LBFGS) == "closure"


def test_augmentations_are_one_list() -> None:
    assert set(AUGMENTATIONS) == set(AUGMENT_NAMES)


def test_samplers_and_pruners_are_one_list_each_built_by_optuna() -> None:
    assert set(_SAMPLERS) == set(SAMPLER_NAMES)
    assert set(_PRUNERS) == set(PRUNER_NAMES)
    space = {"optimizer.lr": Distribution(choice=[0.1, 0.01])}
    for name in SAMPLER_NAMES:
        assert isinstance(make_sampler(name, space, 0), optuna.samplers.BaseSampler)
    for name in PRUNER_NAMES:
        assert isinstance(make_pruner(name, 3), optuna.pruners.BasePruner)
    with pytest.raises(ValueError, match="sampler"):
        TuneConfig(space=space, sampler="cmaes")
