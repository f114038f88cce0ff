"""`optbench compare` and `optbench show` over run folders written by hand with chosen numbers,
so every mean, std, ranking and time-to-target is checked against arithmetic done here."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from optbench.analysis.compare import compare_runs
from optbench.core.config import validate_config
from optbench.core.metrics import EPOCH_COLUMNS
from optbench.experiment.plan import make_plan
from optbench.storage.results import RunDir, RunLock
from tests.helpers import REPO, assert_one_error_line, invoke, regression_dict


def _resolved(
    optimizer: dict, seed: int, name: str = "fmnist", root: str = "data", epochs: int = 3
) -> dict:
    """A real resolved config (every default filled in), as `optbench run` writes it."""
    config = regression_dict(
        name=name,
        seed=seed,
        epochs=epochs,
        data={"dataset": "fashion_mnist", "root": root, "batch_size": 64},
        model={"name": "mlp", "hidden_sizes": [32]},
        loss="cross_entropy",
        optimizer=optimizer,
    )
    return make_plan(validate_config(config)).resolved


def _write_run(
    folder: Path,
    config: dict,
    test_loss: list[float],
    test_accuracy: list[float],
    seconds: list[float],
    status: str = "completed",
) -> Path:
    """A run folder in optbench's formats: config.yaml, epochs.csv, summary.json."""
    plan = make_plan(validate_config(config))
    run_dir = folder / config["name"] / plan.run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    rows = [
        {
            "epoch": epoch,
            "train_loss": loss + 0.1,
            "test_loss": loss,
            "test_accuracy": accuracy,
            "lr": config["optimizer"]["lr"],
            "seconds": second,
            "eval_seconds": 0.25,  # evaluation time never counts towards a target
        }
        for epoch, (loss, accuracy, second) in enumerate(
            zip(test_loss, test_accuracy, seconds, strict=True), 1
        )
    ]
    if rows:
        pd.DataFrame(rows, columns=EPOCH_COLUMNS).to_csv(run_dir / "epochs.csv", index=False)
    last = rows[-1] if rows else {}
    summary = {
        "name": config["name"],
        "run_id": plan.run_id,
        "status": status,
        "seed": config["seed"],
        "device": "cpu",
        "epochs": config["epochs"],
        "epochs_completed": len(rows),
        "final": {k: last.get(k) for k in ("train_loss", "test_loss", "test_accuracy")},
        "best": {
            "test_loss": min(test_loss, default=None),
            "test_loss_epoch": test_loss.index(min(test_loss)) + 1 if rows else None,
            "test_accuracy": max(test_accuracy, default=None),
            "test_accuracy_epoch": test_accuracy.index(max(test_accuracy)) + 1 if rows else None,
        },
        "diverged_at": {"epoch": len(rows) + 1, "step": 3, "reason": "loss is nan"}
        if status == "diverged"
        else None,
        "error": "RuntimeError: boom" if status == "failed" else None,
        "wall_seconds": round(sum(seconds) + 0.25 * len(rows) + 1.5, 3),
        "started_at": "2025-01-01T00:00:00+00:00",
        "versions": {"optbench": "0.1.0"},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return run_dir


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and *sample* standard deviation (divide by n - 1): pandas' std(ddof=1) default."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


ADAM_FAST = {"name": "Adam", "lr": 0.01}
ADAM_SLOW = {"name": "Adam", "lr": 0.001}

# Per seed: test_loss, test_accuracy and training seconds for epochs 1..3.
RUNS = {
    ("fast", 0): ([0.60, 0.40, 0.30], [0.60, 0.80, 0.78], [1.0, 1.0, 1.0]),
    ("fast", 1): ([0.55, 0.35, 0.32], [0.70, 0.86, 0.85], [0.5, 0.5, 0.5]),
    ("fast", 2): ([0.50, 0.33, 0.34], [0.83, 0.80, 0.82], [2.0, 2.0, 2.0]),
    ("slow", 0): ([0.70, 0.50, 0.40], [0.85, 0.88, 0.87], [1.0, 1.5, 2.0]),
    ("slow", 1): ([0.65, 0.55, 0.45], [0.80, 0.84, 0.90], [2.0, 2.0, 2.0]),
    ("slow", 2): ([0.60, 0.52, 0.50], [0.86, 0.92, 0.91], [1.5, 1.0, 1.0]),
}


@pytest.fixture
def two_configs(tmp_path: Path) -> tuple[Path, Path]:
    """2 configurations x 3 seeds. Seed 2 of the fast one lives in another results folder, under
    another experiment name and data root: still the same configuration."""
    baselines, mine = tmp_path / "baselines", tmp_path / "mine"
    for (which, seed), numbers in RUNS.items():
        optimizer = ADAM_FAST if which == "fast" else ADAM_SLOW
        if (which, seed) == ("fast", 2):
            _write_run(mine, _resolved(optimizer, seed, name="mine", root="/data"), *numbers)
        else:
            _write_run(baselines, _resolved(optimizer, seed), *numbers)
    return baselines, mine


def test_seeds_are_aggregated_as_computed_by_hand(two_configs: tuple[Path, Path]) -> None:
    comparison = compare_runs(list(two_configs), target="test_accuracy=0.85")
    assert len(comparison.frame) == 6  # one row per run
    table = comparison.table
    assert table.attrs["hyperparameters"] == ["optimizer.lr"]  # not seed, name, root, betas
    assert table["optimizer.lr"].tolist() == [0.01, 0.001]  # ranked by final_test_loss
    assert table["n"].tolist() == [3, 3]
    assert table["status"].tolist() == ["3 completed", "3 completed"]
    fast, slow = table.iloc[0], table.iloc[1]

    # std is the *sample* std (ddof=1, pandas' default), e.g. for fast's final test losses
    # 0.30, 0.32, 0.34: sqrt((0.02² + 0² + 0.02²) / (3 - 1)) = 0.02 (ddof=0 would give 0.0163)
    # final_test_loss: fast 0.30, 0.32, 0.34 -> 0.32 ± 0.02; slow 0.40, 0.45, 0.50 -> 0.45 ± 0.05
    assert fast["final_test_loss_mean"] == pytest.approx(0.32)
    assert fast["final_test_loss_std"] == pytest.approx(0.02)
    assert slow["final_test_loss_mean"] == pytest.approx(0.45)
    assert slow["final_test_loss_std"] == pytest.approx(0.05)
    # best_test_accuracy: fast 0.80, 0.86, 0.83 -> 0.83 ± 0.03; slow 0.88, 0.90, 0.92 -> 0.90 ± 0.02
    assert fast["best_test_accuracy_mean"] == pytest.approx(0.83)
    assert fast["best_test_accuracy_std"] == pytest.approx(0.03)
    assert slow["best_test_accuracy_mean"] == pytest.approx(0.90)
    assert slow["best_test_accuracy_std"] == pytest.approx(0.02)
    # best_test_loss: fast 0.30, 0.32, 0.33 (seed 2 was best at epoch 2)
    mean, std = _mean_std([0.30, 0.32, 0.33])
    assert fast["best_test_loss_mean"] == pytest.approx(mean)
    assert fast["best_test_loss_std"] == pytest.approx(std)
    assert fast["final_train_loss_mean"] == pytest.approx(0.42)  # train_loss = test_loss + 0.1
    # best accuracy epochs: fast 2, 2, 1; slow 2, 3, 2
    assert fast["best_accuracy_epoch_mean"] == pytest.approx(5 / 3)
    assert slow["best_accuracy_epoch_mean"] == pytest.approx(7 / 3)
    assert fast["epochs_mean"] == slow["epochs_mean"] == 3
    assert fast["seconds_mean"] == pytest.approx((3.0 + 1.5 + 6.0) / 3)

    # test_accuracy >= 0.85: fast reaches it only with seed 1 (epoch 2, after 0.5 + 0.5 s)
    assert fast["reached_target"] == 1
    assert fast["epochs_to_target_mean"] == 2
    assert math.isnan(fast["epochs_to_target_std"])  # one value has no sample std
    assert fast["seconds_to_target_mean"] == pytest.approx(1.0)
    # slow: seed 0 at epoch 1 (1.0 s), seed 1 at epoch 3 (2+2+2 s), seed 2 at epoch 1 (1.5 s)
    assert slow["reached_target"] == 3
    mean, std = _mean_std([1, 3, 1])
    assert (mean, std) == pytest.approx((5 / 3, math.sqrt(4 / 3)))
    assert slow["epochs_to_target_mean"] == pytest.approx(mean)
    assert slow["epochs_to_target_std"] == pytest.approx(std)
    mean, std = _mean_std([1.0, 6.0, 1.5])
    assert slow["seconds_to_target_mean"] == pytest.approx(mean)
    assert slow["seconds_to_target_std"] == pytest.approx(std)

    frame = comparison.frame
    seed1_slow = frame[(frame["seed"] == 1) & (frame["config.optimizer.lr"] == 0.001)].iloc[0]
    assert seed1_slow["epochs_to_target"] == 3 and seed1_slow["seconds_to_target"] == 6.0
    assert len(set(frame["configuration"])) == 2


def test_ranking_direction_follows_the_metric(two_configs: tuple[Path, Path]) -> None:
    by_accuracy = compare_runs(list(two_configs), metric="best_test_accuracy").table
    assert by_accuracy["optimizer.lr"].tolist() == [0.001, 0.01]  # higher is better
    by_loss = compare_runs(list(two_configs), metric="best_test_loss").table
    assert by_loss["optimizer.lr"].tolist() == [0.01, 0.001]  # lower is better


def test_only_hyperparameters_that_differ_within_a_class_are_columns(tmp_path: Path) -> None:
    optimizers = [
        {"name": "Adam", "lr": 0.01},
        {"name": "Adam", "lr": 0.001},
        {"name": "SGD", "lr": 0.01, "momentum": 0.9},
        {"name": "SGD", "lr": 0.01, "momentum": 0.0},
    ]
    for loss, optimizer in zip([0.4, 0.3, 0.2, 0.1], optimizers, strict=True):
        _write_run(tmp_path, _resolved(optimizer, 0, epochs=1), [loss], [0.5], [1.0])
    table = compare_runs([tmp_path]).table
    # betas and eps belong to Adam only, dampening and nesterov to SGD only: never columns
    assert sorted(table.attrs["hyperparameters"]) == [
        "optimizer.lr",
        "optimizer.momentum",
        "optimizer.name",
    ]
    assert table["optimizer.name"].tolist() == ["SGD", "SGD", "Adam", "Adam"]
    assert table["optimizer.momentum"].tolist()[:2] == [0.0, 0.9]
    assert table["optimizer.momentum"].iloc[2:].isna().all()  # Adam has no momentum


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_diverged_and_failed_configurations_rank_last(tmp_path: Path) -> None:
    # lr: [(seed, status, test_loss by epoch, test_accuracy by epoch)]. By their numbers alone
    # the unfinished configurations would come first, whichever the metric.
    runs = {
        0.05: [(0, "completed", [0.9, 0.8, 0.7], [0.5, 0.6, 0.7])],
        0.01: [
            (0, "completed", [0.8, 0.6, 0.5], [0.6, 0.7, 0.8]),
            (1, "completed", [0.8, 0.6, 0.6], [0.6, 0.7, 0.75]),
        ],
        0.1: [(0, "interrupted", [0.5, 0.3], [0.8, 0.9])],
        0.2: [
            (0, "completed", [0.3, 0.2, 0.1], [0.9, 0.95, 0.97]),
            (1, "diverged", [0.2], [0.93]),
        ],
        0.5: [(0, "diverged", [], [])],  # diverged in epoch 1: no epochs at all
        0.3: [(0, "failed", [0.1, 0.01], [0.98, 0.99])],
    }
    for lr, seeds in runs.items():
        for seed, status, losses, accuracies in seeds:
            config = _resolved({"name": "SGD", "lr": lr}, seed)
            _write_run(tmp_path, config, losses, accuracies, [1.0] * len(losses), status)

    expected = [0.01, 0.05, 0.1, 0.2, 0.5, 0.3]
    for metric in ("final_test_loss", "best_test_accuracy", "best_test_loss"):
        table = compare_runs([tmp_path], metric=metric).table
        assert table["optimizer.lr"].tolist() == expected, metric
    table = compare_runs([tmp_path]).table.set_index("optimizer.lr")
    assert table.loc[0.2, "status"] == "1 completed, 1 diverged at epoch 2"
    assert table.loc[0.3, "status"] == "1 failed at epoch 3"
    assert table.loc[0.5, "status"] == "1 diverged at epoch 1"
    assert math.isnan(table.loc[0.5, "final_test_loss_mean"])


def test_final_metrics_average_only_runs_that_completed_every_epoch(tmp_path: Path) -> None:
    """A run that stopped early is counted and named, never averaged into the final epoch."""
    sgd = {"name": "SGD", "lr": 0.1}
    # seed 0 completed its 3 epochs; seed 1 diverged in epoch 2, seed 2 was interrupted after 1
    _write_run(tmp_path, _resolved(sgd, 0), [0.9, 0.7, 0.5], [0.5, 0.6, 0.7], [1.0] * 3)
    _write_run(tmp_path, _resolved(sgd, 1), [0.2], [0.95], [1.0], "diverged")
    _write_run(tmp_path, _resolved(sgd, 2), [0.3], [0.9], [1.0], "interrupted")
    _write_run(tmp_path, _resolved(sgd, 3), [0.4, 0.3], [0.8, 0.85], [1.0] * 2, "interrupted")
    (row,) = compare_runs([tmp_path]).table.to_dict("records")
    assert row["n"] == 4 and row["completed"] == 1
    assert row["status"] == "1 completed, 2 interrupted at epochs 2, 3, 1 diverged at epoch 2"
    # final_*: seed 0's epoch 3 alone, not the mean of four runs' last epochs
    assert row["final_test_loss_mean"] == pytest.approx(0.5)
    assert row["final_test_accuracy_mean"] == pytest.approx(0.7)
    assert row["final_train_loss_mean"] == pytest.approx(0.6)
    assert math.isnan(row["final_test_loss_std"])
    # best-so-far numbers use every epoch of every run: 0.5, 0.2, 0.3, 0.3
    assert row["best_test_loss_mean"] == pytest.approx((0.5 + 0.2 + 0.3 + 0.3) / 4)

    result = invoke("compare", str(tmp_path), "--format", "csv")
    assert result.exit_code == 0, result.output
    (record,) = pd.read_csv(io.StringIO(result.stdout)).to_dict("records")
    assert record["n"] == 4 and record["completed"] == 1
    assert record["final_test_loss_mean"] == pytest.approx(0.5)
    table = invoke("compare", str(tmp_path))
    assert "final columns over completed runs only" in table.stdout
    assert "1 diverged at epoch 2" in table.stdout


def test_a_completed_summary_missing_epochs_is_incomplete(tmp_path: Path) -> None:
    """A copy caught between writes: summary.json says completed, epochs.csv lacks epoch 3."""
    for seed, losses in enumerate([[0.6, 0.5, 0.4], [0.6, 0.2]]):
        config = _resolved(ADAM_FAST, seed)
        _write_run(tmp_path, config, losses, [0.8] * len(losses), [1.0] * len(losses))
    (row,) = compare_runs([tmp_path]).table.to_dict("records")
    assert row["status"] == "1 completed, 1 incomplete at epoch 3"
    assert row["final_test_loss_mean"] == pytest.approx(0.4)


def test_a_configuration_without_a_completed_run_has_no_final_numbers(tmp_path: Path) -> None:
    for seed, losses in enumerate([[0.4, 0.3], [0.5]]):
        config = _resolved(ADAM_FAST, seed)
        _write_run(tmp_path, config, losses, [0.8] * len(losses), [1.0] * len(losses), "failed")
    (row,) = compare_runs([tmp_path]).table.to_dict("records")
    assert row["status"] == "2 failed at epochs 2, 3"
    assert math.isnan(row["final_test_loss_mean"])
    assert row["best_test_loss_mean"] == pytest.approx((0.3 + 0.5) / 2)


def test_copies_of_a_run_in_two_folders_count_once(
    two_configs: tuple[Path, Path], tmp_path: Path
) -> None:
    baselines, mine = two_configs
    original = next(p for p in (baselines / "fmnist").iterdir() if p.name.startswith("adam-seed0"))
    copy = tmp_path / "copy" / "fmnist" / original.name
    shutil.copytree(original, copy)
    comparison = compare_runs([baselines, mine, tmp_path / "copy"])
    assert len(comparison.frame) == 6
    assert comparison.table["n"].tolist() == [3, 3]
    assert comparison.table["final_test_loss_mean"].tolist() == pytest.approx([0.32, 0.45])
    (note,) = comparison.notes
    assert original.name in note and str(copy) in note and "counted once" in note

    folders = [str(baselines), str(mine), str(tmp_path / "copy")]
    result = invoke("compare", *folders, "--format", "csv")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(io.StringIO(result.stdout))["n"].tolist() == [3, 3]
    assert "counted once" in result.stderr  # the note stays out of the csv


def test_the_finished_copy_of_a_run_is_the_one_kept(tmp_path: Path) -> None:
    config = _resolved(ADAM_FAST, 0)
    partial = _write_run(tmp_path / "a", config, [0.9], [0.5], [1.0], "interrupted")
    finished = _write_run(tmp_path / "b", config, [0.9, 0.8, 0.7], [0.5, 0.6, 0.7], [1.0] * 3)
    assert partial.name == finished.name
    comparison = compare_runs([tmp_path / "a", tmp_path / "b"])
    assert comparison.frame["run_dir"].tolist() == [str(finished.resolve())]
    (row,) = comparison.table.to_dict("records")
    assert row["n"] == 1 and row["status"] == "1 completed"
    assert row["final_test_loss_mean"] == pytest.approx(0.7)


def test_a_running_run_whose_process_is_gone_is_stale(tmp_path: Path) -> None:
    dead = _write_run(tmp_path, _resolved(ADAM_FAST, 0), [0.5], [0.5], [1.0], "running")
    (dead / RunDir.LOCK).write_text("12345\n")  # left by a killed process: nobody holds it
    alive = _write_run(tmp_path, _resolved(ADAM_SLOW, 0), [0.6], [0.4], [1.0], "running")
    with RunLock(RunDir(alive)):
        statuses = compare_runs([tmp_path]).table.set_index("optimizer.lr")["status"]
        shown = invoke("show", str(dead))
    assert statuses.to_dict() == {0.01: "1 stale at epoch 2", 0.001: "1 running at epoch 2"}
    assert shown.exit_code == 0, shown.output
    assert "status stale (summary says running, but no process holds its lock)" in shown.stdout


def test_runs_without_a_config_are_not_one_configuration(tmp_path: Path) -> None:
    for optimizer, loss in ((ADAM_FAST, 0.3), (ADAM_SLOW, 0.5)):
        run_dir = _write_run(tmp_path, _resolved(optimizer, 0, epochs=1), [loss], [0.5], [1.0])
        (run_dir / RunDir.CONFIG).unlink()
    table = compare_runs([tmp_path]).table
    assert table["n"].tolist() == [1, 1]
    assert table["final_test_loss_mean"].tolist() == pytest.approx([0.3, 0.5])
    assert table.attrs["hyperparameters"] == ["run"]  # each named by its folder
    assert all(Path(run).is_dir() for run in table["run"])


# --------------------------------------------------------------------------- the command line


def test_compare_csv_json_and_markdown(two_configs: tuple[Path, Path]) -> None:
    paths = [str(p) for p in two_configs]
    target = ["--target", "test_accuracy=0.85"]

    csv = invoke("compare", *paths, "--format", "csv", *target)
    assert csv.exit_code == 0, csv.output
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert frame["rank"].tolist() == [1, 2]
    assert frame["optimizer.lr"].tolist() == [0.01, 0.001]
    assert frame["n"].tolist() == [3, 3]
    assert frame["final_test_loss_mean"].tolist() == pytest.approx([0.32, 0.45])
    assert frame["final_test_loss_std"].tolist() == pytest.approx([0.02, 0.05])
    assert frame["best_test_accuracy_mean"].tolist() == pytest.approx([0.83, 0.90])
    assert frame["reached_target"].tolist() == [1, 3]
    assert frame["epochs_to_target_mean"].tolist() == pytest.approx([2, 5 / 3])
    assert "betas" not in " ".join(frame.columns)

    as_json = invoke("compare", *paths, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    records = json.loads(as_json.stdout)
    assert [r["optimizer.lr"] for r in records] == [0.01, 0.001]
    assert [r["status"] for r in records] == ["3 completed", "3 completed"]
    assert records[1]["final_test_loss_mean"] == pytest.approx(0.45)
    assert "reached_target" not in records[0]  # no --target, no target columns

    markdown = invoke("compare", *paths, "--format", "markdown", "--metric", "best_test_accuracy")
    assert markdown.exit_code == 0, markdown.output
    lines = markdown.stdout.strip().splitlines()
    assert len(lines) == 4  # header, rule, 2 configurations
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:4] == ["rank", "optimizer.lr", "n", "status"]
    assert set(lines[1]) == {"|", "-"} and lines[1].count("|") == len(header) + 1
    first = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert first[:4] == ["1", "0.001", "3", "3 completed"]  # best accuracy first
    assert first[header.index("best_test_accuracy_mean")] == "0.9"

    latex = invoke("compare", *paths, "--format", "latex", "--metric", "best_test_accuracy")
    assert latex.exit_code == 0, latex.output
    rows = [line for line in latex.stdout.splitlines() if line.endswith(r"\\")]
    assert len(rows) == 3  # header, 2 configurations
    assert rows[0].startswith(r"rank & optimizer.lr & n & status") and r"\_" in rows[0]
    assert rows[1].startswith("1 & 0.001 & 3 & 3 completed")


def test_compare_table_shows_ranking_curves_and_chart(
    two_configs: tuple[Path, Path], tmp_path: Path
) -> None:
    plot = tmp_path / "curves.png"
    result = invoke(
        "compare",
        *[str(p) for p in two_configs],
        "--target",
        "test_accuracy=0.85",
        "--plot",
        str(plot),
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    title = "ranking by final_test_loss (mean ± std over seeds; final columns over completed runs"
    assert title in out
    assert "epochs to test_accuracy=0.85" in out
    fast = next(line for line in out.splitlines() if "0.3200 ± 0.0200" in line)
    slow = next(line for line in out.splitlines() if "0.4500 ± 0.0500" in line)
    assert out.index(fast) < out.index(slow)
    assert "0.8300 ± 0.0300" in fast and "2.0 (1/3)" in fast and "3 completed" in fast
    assert "0.9000 ± 0.0200" in slow and "(3/3)" in slow

    assert "test_loss by epoch (mean over seeds)" in out
    curves = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 3 and cells[0] in ("1", "2", "3"):
            curves[int(cells[0])] = cells[1:]
    # mean test_loss per epoch over the seeds: fast (lr=0.01), slow (lr=0.001)
    assert curves == {
        1: [f"{(0.60 + 0.55 + 0.50) / 3:.4f}", f"{(0.70 + 0.65 + 0.60) / 3:.4f}"],
        2: [f"{(0.40 + 0.35 + 0.33) / 3:.4f}", f"{(0.50 + 0.55 + 0.52) / 3:.4f}"],
        3: [f"{(0.30 + 0.32 + 0.34) / 3:.4f}", f"{(0.40 + 0.45 + 0.50) / 3:.4f}"],
    }
    header = next(line for line in out.splitlines() if "epoch" in line and "lr=0.01" in line)
    assert header.index("lr=0.01") < header.index("lr=0.001")
    chart = out[out.rindex("test_loss by epoch") : out.index("plot written to")]
    assert not chart.startswith("test_loss by epoch (mean")  # the chart's title, not the table's
    assert "lr=0.01" in chart and "lr=0.001" in chart  # its legend

    assert f"plot written to {plot}" in out
    png = plot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


@pytest.mark.parametrize("output", ["table", "csv"])
def test_compare_survives_a_run_that_diverged_in_its_first_epoch(
    tmp_path: Path, output: str
) -> None:
    config = _resolved({"name": "SGD", "lr": 0.1}, 0, epochs=2)
    _write_run(tmp_path, config, [0.5, 0.4], [0.8, 0.9], [1, 1])
    _write_run(tmp_path, _resolved({"name": "SGD", "lr": 100.0}, 0), [], [], [], "diverged")
    result = invoke("compare", str(tmp_path), "--format", output)
    assert result.exit_code == 0, result.output
    if output == "csv":
        frame = pd.read_csv(io.StringIO(result.stdout))
        assert frame["optimizer.lr"].tolist() == [0.1, 100.0]
        assert frame["status"].tolist() == ["1 completed", "1 diverged at epoch 1"]
    else:
        assert "1 diverged" in result.stdout and "test_loss by epoch" in result.stdout


def test_show_prints_the_config_and_the_epochs(two_configs: tuple[Path, Path]) -> None:
    baselines, _ = two_configs
    run_dir = next(p for p in (baselines / "fmnist").iterdir() if p.name.startswith("adam-seed1"))
    summary = json.loads((run_dir / "summary.json").read_text())
    result = invoke("show", str(run_dir))
    assert result.exit_code == 0, result.output
    out = result.stdout
    lr = yaml.safe_load((run_dir / "config.yaml").read_text())["optimizer"]["lr"]
    for text in ("name: fmnist", "seed: 1", "dataset: fashion_mnist", "name: Adam", f"lr: {lr}"):
        assert text in out
    assert f"status completed, 3/3 epochs, seed 1, cpu, {summary['wall_seconds']} s" in out
    epochs = pd.read_csv(run_dir / "epochs.csv")
    table = [[c.strip() for c in line.strip("│ ").split("│")] for line in out.splitlines()]
    rows = [cells for cells in table if len(cells) == 7 and cells[0] in ("1", "2", "3")]
    assert len(rows) == 3
    for cells, (_, epoch) in zip(rows, epochs.iterrows(), strict=True):
        assert cells[:4] == [
            str(int(epoch["epoch"])),
            f"{epoch['train_loss']:.6f}",
            f"{epoch['test_loss']:.6f}",
            f"{epoch['test_accuracy']:.4f}",
        ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "{empty}"], "no runs found under"),
        (["compare", "{missing}"], "does not exist"),
        (["compare", "{runs}", "--target", "test_accuracy"], "--target must look like"),
        (["compare", "{runs}", "--target", "accuracy=0.9"], "--target must look like"),
        (["compare", "{runs}", "--target", "test_loss=low"], "--target must look like"),
        (["compare", "{runs}", "--metric", "accuracy"], "--metric must be one of"),
        (["compare", "{runs}", "--curve", "accuracy"], "--curve must be a column"),
        (["compare", "{runs}", "--plot", "{missing}/x.png"], "missing does not exist"),
        (["compare", "{runs}", "--plot", "{afile}/x.png"], "afile is a file"),
        (["compare", "{runs}", "--plot", "{empty}"], "is a folder; give a file such as"),
        (["compare", "{runs}", "--plot", "{empty}/x.txt"], "must end in the image format"),
        (["compare", "{runs}", "--plot", "{empty}/x"], "must end in the image format"),
        # the destination is checked before any run is read
        (["compare", "{missing}", "--plot", "{missing}/x.png"], "--plot"),
        (["show", "{empty}"], "is not a run folder"),
        (["show", "{missing}"], "is not a run folder"),
    ],
)
def test_bad_compare_and_show_input_exits_2_with_one_error_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    runs = tmp_path / "runs"
    _write_run(runs, _resolved(ADAM_FAST, 0, epochs=1), [0.5], [0.5], [1.0])
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("not a folder")
    places = {name: tmp_path / name for name in ("empty", "missing", "runs", "afile")}
    result = invoke(*(a.format(**places) for a in args))
    assert_one_error_line(result, message)


def test_csv_with_a_plot_keeps_stdout_a_csv(two_configs: tuple[Path, Path], tmp_path: Path) -> None:
    plot = tmp_path / "curves.png"
    result = invoke("compare", *map(str, two_configs), "--format", "csv", "--plot", str(plot))
    assert result.exit_code == 0, result.output
    assert pd.read_csv(io.StringIO(result.stdout))["rank"].tolist() == [1, 2]
    assert f"plot written to {plot}" in result.stderr and plot.is_file()


def test_a_plot_that_cannot_be_written_is_one_error_line(
    two_configs: tuple[Path, Path], tmp_path: Path
) -> None:
    plot = tmp_path / "curves.png"  # passes the checks, then cannot be opened for writing
    plot.symlink_to(tmp_path / "gone" / "curves.png")
    result = invoke("compare", *map(str, two_configs), "--format", "csv", "--plot", str(plot))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: cannot write --plot {plot}: No such file or directory"
    ]


def test_compare_and_show_do_not_import_torch(two_configs: tuple[Path, Path]) -> None:
    baselines, mine = two_configs
    run_dir = next((baselines / "fmnist").iterdir())
    script = (
        "import sys\n"
        "from optbench.ui.cli import app\n"
        f"app(['compare', {str(baselines)!r}, {str(mine)!r}], standalone_mode=False)\n"
        f"app(['show', {str(run_dir)!r}], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert "ranking by final_test_loss" in completed.stdout
    assert "status completed" in completed.stdout


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0046431803257, "0.004643"),
        (0.0, "0.0"),
        (0.9, "0.9"),
        (1e-05, "1e-05"),
        (3, "3"),
        (True, "True"),
        ("Adam", "Adam"),
        (None, "-"),
        (float("nan"), "-"),
    ],
)
def test_hyperparameters_show_four_significant_digits_and_exact_values_as_written(
    value: object, shown: str
) -> None:
    from optbench.analysis.compare import show_hyperparameter

    assert show_hyperparameter(value) == shown


def _compare_baselines(*options: str, env: dict[str, str]) -> str:
    """`optbench compare` of the shipped baselines in a process whose stdout is a pipe."""
    from tests.helpers import REPO

    printed = subprocess.run(
        [sys.executable, "-m", "optbench", "compare", "results/baselines", *options],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=120,
    )
    assert printed.returncode == 0, printed.stderr
    return re.sub(r"\x1b\[[0-9;]*m", "", printed.stdout)  # rich's styles on a terminal


@pytest.mark.slow
def test_compare_piped_prints_the_whole_ranking_and_a_narrow_terminal_fewer_columns() -> None:
    from tests.helpers import REPO

    target = ("--target", "test_accuracy=0.85")
    ranking = compare_runs([REPO / "results" / "baselines"], None, target[1]).table
    piped = _compare_baselines(*target, env={"COLUMNS": "80"})  # a log: no width to fit
    assert "…" not in piped
    rows = [line for line in piped.splitlines() if re.match(r"│ \d+ │", line)]
    assert len(rows) == len(ranking)
    for row, (_, expected) in zip(rows, ranking.iterrows(), strict=False):
        loss = f"{expected.final_test_loss_mean:.4f} ± {expected.final_test_loss_std:.4f}"
        assert loss in row and f"({expected.reached_target}/{expected.n})" in row, row

    narrow = _compare_baselines(*target, env={"FORCE_COLOR": "1", "COLUMNS": "100"})
    lines = narrow.splitlines()
    assert "…" not in narrow and max(len(line) for line in lines) <= 100
    header = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    shown = " ".join(lines[header : header + 6])
    assert "speed" not in shown and "status" in shown and "name" in shown
    words = set(narrow.split())
    for _, expected in ranking.iterrows():
        assert f"{expected.final_test_loss_mean:.4f}" in words
        assert f"{expected.final_test_loss_std:.4f}" in words


def test_a_run_an_observer_stopped_early_has_its_last_epoch_as_final(tmp_path: Path) -> None:
    import optbench
    from optbench.experiment.train import SilentObserver, StopTraining
    from optbench.storage.results import Status

    class EarlyStopping(SilentObserver):
        def epoch_finished(self, row: dict) -> None:
            if row["epoch"] == 2:
                raise StopTraining(Status.COMPLETED, "no better for 1 epoch")

    config = regression_dict(epochs=4)
    run = optbench.run(config, results_dir=tmp_path, observers=[EarlyStopping()])
    assert run.status == "completed" and len(run.epochs) == 2
    assert run.summary["stopped_early"] == {"epoch": 2, "reason": "no better for 1 epoch"}
    (row,) = optbench.compare(tmp_path).to_dict("records")
    written = pd.read_csv(run.dir / "epochs.csv")
    assert row["final_test_loss_mean"] == written["test_loss"].iloc[-1]
    assert row["completed"] == 1 and row["status"] == "1 completed"


_MARKER_MODEL = """
from pathlib import Path

from torch import nn

Path(__file__).with_name("imported.txt").write_text("this module was imported")


class Net(nn.Linear):
    pass
"""


@pytest.mark.slow  # three optbench processes
def test_reading_a_results_folder_runs_no_code_and_skips_a_bad_run_naming_it(
    tmp_path: Path, monkeypatch
) -> None:
    import shutil

    import optbench

    folder = tmp_path / "sent"  # a results folder someone sent, with a module in it
    folder.mkdir()
    (folder / "marker_model.py").write_text(_MARKER_MODEL)
    monkeypatch.syspath_prepend(str(folder))
    config = regression_dict(model={"name": "marker_model.Net"})
    run = optbench.run(config, results_dir=folder / "results")
    marker = folder / "imported.txt"
    assert marker.exists()  # training imported it
    marker.unlink()
    bad = {
        "python-tag": "optimizer: !!python/object/apply:os.system ['touch pwned']\n",
        "huge-integer": f"seed: {'9' * 5000}\n",
    }
    for name, text in bad.items():
        copy = run.dir.with_name(name)
        shutil.copytree(run.dir, copy)
        (copy / "config.yaml").write_text(text)
    # COLUMNS: rich wraps a long note at 80 columns off a terminal
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "COLUMNS": "1000"}
    for command in (["compare", "results"], ["report", "results", "-o", "r.html"]):
        done = subprocess.run(
            [sys.executable, "-m", "optbench", *command],
            capture_output=True,
            text=True,
            cwd=folder,  # where `python -m` looks for modules first
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        printed = (done.stdout + done.stderr).splitlines()
        skipped = [line for line in printed if "skipped" in line]
        assert len(skipped) == 2 and all(line.startswith("note: ") for line in skipped)
        assert any("python-tag" in line for line in skipped)
        assert any("huge-integer" in line for line in skipped)
    shown = subprocess.run(
        [sys.executable, "-m", "optbench", "show", str(run.dir)],
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    assert not marker.exists() and not (folder / "pwned").exists()  # nothing was run
    with pytest.warns(optbench.UnreadableRunWarning) as warned:
        table = optbench.compare(folder / "results")
    assert len(table) == 1 and len(warned) == 2
    assert all(name in str(w.message) for name, w in zip(sorted(bad), warned, strict=True))
