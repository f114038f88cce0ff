"""Fast mode: losses read once per epoch, within 1e-3 relative of exact mode per epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from optbench.core.config import validate_config
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train
from optbench.ui.cli import app
from tests.helpers import accept_cifar10_files, regression_dict, write_cifar10, write_config

RTOL = 1e-3
COMPARED = ("train_loss", "test_loss", "test_accuracy")


def _benchmark_problem(dataset: str, root: Path, subset: int) -> dict:
    return regression_dict(
        name="fast",
        epochs=2,
        data={"dataset": dataset, "root": str(root), "subset": subset},
        model={"name": "cifar_cnn"},
        loss="cross_entropy",
        optimizer={"name": "SGD", "lr": 0.01, "momentum": 0.9},
    )


def _assert_close(exact: list[dict], fast: list[dict]) -> None:
    assert len(exact) == len(fast) == 2
    for exact_row, fast_row in zip(exact, fast, strict=True):
        for key in COMPARED:
            assert fast_row[key] == pytest.approx(exact_row[key], rel=RTOL), key


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
def test_fast_mode_stays_within_1e_3_of_exact_mode(
    dataset: str, fashion_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The benchmark problems: cifar_cnn on Fashion-MNIST and on CIFAR-10-shaped data."""
    root = fashion_root
    if dataset == "cifar10":
        root = tmp_path
        write_cifar10(root, train_per_batch=256, test=200)
        accept_cifar10_files(root, monkeypatch)
    config = _benchmark_problem(dataset, root, subset=1280)
    exact = train(make_plan(validate_config(config))).rows
    fast = train(make_plan(validate_config({**config, "fast": True}))).rows
    _assert_close(exact, fast)


def test_fast_runs_get_their_own_run_id() -> None:
    exact = make_plan(validate_config(regression_dict()))
    fast = make_plan(validate_config(regression_dict(fast=True)))
    assert exact.resolved["fast"] is False and fast.resolved["fast"] is True
    assert exact.run_id != fast.run_id


def test_fast_mode_finds_a_nan_loss_at_the_end_of_its_epoch() -> None:
    config = regression_dict(fast=True, optimizer={"name": "SGD", "lr": 1e6})
    result = train(make_plan(validate_config(config)))
    assert result.status == "diverged"
    assert result.diverged_at == {"epoch": 1, "step": 8, "reason": "epoch loss is nan"}


def test_fast_flag_on_the_command_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict())
    result = CliRunner().invoke(
        app, ["run", str(config), "--fast", "--results-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "r" / "tiny").iterdir()
    assert "fast: true" in (run_dir / "config.yaml").read_text()
