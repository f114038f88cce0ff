"""`optbench lr-find`: the learning-rate range test against a hand-written loop, against the
curvature of a quadratic (plain GD diverges above 2/L), and through the command line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from optbench.components.data import load_data
from optbench.core.config import load_config, validate_config
from optbench.experiment.lr_find import lr_range_test
from optbench.experiment.plan import make_plan
from tests.helpers import REPO, assert_one_error_line, invoke, regression_dict, write_config

LINEAR_REGRESSION = REPO / "configs" / "linear_regression.yaml"


def _by_hand(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    make_optimizer,
    step,
    start: float,
    end: float,
    steps: int,
    batch_size: int,
    seed: int = 0,
) -> tuple[list[float], list[float], list[float]]:
    """The range test as people write it (fastai's blog post, torch-lr-finder): nn.Linear from
    torch.manual_seed, a shuffling DataLoader restarted each epoch, lr multiplied by a constant
    factor every step in every group, loss EMA with bias correction, stop at 4x the best."""
    torch.manual_seed(seed)
    model = nn.Linear(inputs.shape[1], 1)
    optimizer = make_optimizer(model)
    configured = [g["lr"] for g in optimizer.param_groups]
    criterion = nn.MSELoss()
    loader = DataLoader(
        TensorDataset(inputs, targets),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    multiplier = (end / start) ** (1 / (steps - 1))
    lrs, losses, smoothed = [], [], []
    average, best, lr = 0.0, float("inf"), start
    while len(lrs) < steps:
        for x, y in loader:
            for group, base in zip(optimizer.param_groups, configured, strict=True):
                group["lr"] = lr * base / configured[0]
            loss = step(model, optimizer, criterion, x, y)
            average = 0.98 * average + 0.02 * loss
            smooth = average / (1 - 0.98 ** (len(lrs) + 1))
            lrs.append(lr)
            losses.append(loss)
            smoothed.append(smooth)
            if len(lrs) > 1 and smooth > 4 * best:
                return lrs, losses, smoothed
            best = min(best, smooth)
            lr *= multiplier
            if len(lrs) == steps:
                break
    return lrs, losses, smoothed


def _sgd_step(model, optimizer, criterion, x, y) -> float:
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def _sam_step(model, optimizer, criterion, x, y) -> float:
    """pytorch_optimizer's documented SAM loop: first_step, a second forward/backward,
    second_step."""
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.first_step(zero_grad=True)
    criterion(model(x), y).backward()
    optimizer.second_step(zero_grad=True)
    return loss.item()


def _data(plan) -> tuple[torch.Tensor, torch.Tensor]:
    train_set, _ = load_data(plan.data, plan.config.seed)
    return train_set.inputs, train_set.targets


def _assert_close(ours: list[float], theirs: list[float]) -> None:
    assert len(ours) == len(theirs)
    assert ours == pytest.approx(theirs, rel=1e-6, abs=0)


def test_matches_a_hand_written_range_test_on_linear_regression() -> None:
    # 10 batches per epoch, 100 steps: the test wraps around the data ten times
    plan = make_plan(load_config(LINEAR_REGRESSION))
    ours = lr_range_test(plan, start=1e-6, end=1.0, steps=100)
    inputs, targets = _data(plan)
    lrs, losses, smoothed = _by_hand(
        inputs,
        targets,
        lambda m: torch.optim.SGD(m.parameters(), lr=0.01),
        _sgd_step,
        1e-6,
        1.0,
        100,
        batch_size=100,
    )
    _assert_close(ours.lrs, lrs)
    _assert_close(ours.losses, losses)
    _assert_close(ours.smoothed, smoothed)
    assert ours.lrs[0] == 1e-6 and ours.lrs[-1] == pytest.approx(1.0, rel=1e-12)
    assert ours.stopped_early is None and len(ours.lrs) == 100
    assert smoothed[-1] < smoothed[0]  # the test did train


def test_param_groups_keep_their_ratio() -> None:
    # the bias at a tenth of the weight's lr: both grow by the same factor every step
    config = regression_dict(
        optimizer={
            "name": "SGD",
            "lr": 0.05,
            "momentum": 0.9,
            "param_groups": [{"params": "bias", "lr": 0.005}],
        }
    )
    plan = make_plan(validate_config(config))
    ours = lr_range_test(plan, start=1e-4, end=0.3, steps=30)
    inputs, targets = _data(plan)

    def make(model: nn.Linear) -> torch.optim.Optimizer:
        groups = [{"params": [model.weight]}, {"params": [model.bias], "lr": 0.005}]
        return torch.optim.SGD(groups, lr=0.05, momentum=0.9)

    lrs, losses, smoothed = _by_hand(inputs, targets, make, _sgd_step, 1e-4, 0.3, 30, 32)
    _assert_close(ours.lrs, lrs)
    _assert_close(ours.losses, losses)
    _assert_close(ours.smoothed, smoothed)
    # and it matters: the same test with both groups at the same lr gives other losses
    _, flat, _ = _by_hand(
        inputs,
        targets,
        lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9),
        _sgd_step,
        1e-4,
        0.3,
        30,
        32,
    )
    assert ours.losses[-1] != pytest.approx(flat[-1], rel=1e-3)


def test_sharpness_protocol_matches_the_documented_sam_loop() -> None:
    pytest.importorskip("pytorch_optimizer")
    from pytorch_optimizer import SAM

    config = regression_dict(
        optimizer={
            "name": "pytorch_optimizer.SAM",
            "rho": 0.05,
            "base_optimizer": {"name": "SGD", "lr": 0.05},
        }
    )
    plan = make_plan(validate_config(config))
    assert plan.optimizer.protocol.name == "sharpness"
    ours = lr_range_test(plan, start=1e-4, end=1.0, steps=24)
    inputs, targets = _data(plan)
    lrs, losses, _ = _by_hand(
        inputs,
        targets,
        lambda m: SAM(m.parameters(), torch.optim.SGD, rho=0.05, lr=0.05),
        _sam_step,
        1e-4,
        1.0,
        24,
        32,
    )
    _assert_close(ours.lrs, lrs)
    _assert_close(ours.losses, losses)


def test_closure_protocol_runs_lbfgs() -> None:
    plan = make_plan(load_config(REPO / "configs" / "lbfgs.yaml", ["optimizer.max_iter=2"]))
    assert plan.optimizer.protocol.name == "closure"
    result = lr_range_test(plan, start=1e-4, end=1.0, steps=15)
    assert len(result.lrs) == 15 and all(math.isfinite(v) for v in result.losses)
    assert result.losses[-1] < result.losses[0]  # LBFGS stepped with the growing lr


def _quadratic_plan(**data):
    """Full-batch linear regression: the MSE is a quadratic in (w, b) with Hessian
    2/n [X 1]^T [X 1], so plain GD on it diverges exactly when lr > 2/L (L its top
    eigenvalue)."""
    sections = {
        "data": {
            "dataset": "synthetic_regression",
            "n_train": 128,
            "n_test": 16,
            "features": 4,
            "batch_size": 128,
            **data,
        },
        "optimizer": {"name": "SGD", "lr": 0.1},
    }
    plan = make_plan(validate_config(regression_dict(**sections)))
    inputs, _ = _data(plan)
    design = np.hstack([inputs.double().numpy(), np.ones((len(inputs), 1))])
    curvature = np.linalg.eigvalsh(2 / len(inputs) * design.T @ design).max()
    return plan, float(curvature)


def test_suggestion_lies_below_the_divergence_lr_of_a_quadratic() -> None:
    plan, curvature = _quadratic_plan()
    result = lr_range_test(plan, start=1e-5, end=2.0 / curvature, steps=100)
    assert result.suggestion is not None
    # below the edge of stability, and not in the flat start where nothing moves
    assert 0.01 / curvature < result.suggestion < 2.0 / curvature


def test_divergence_stops_early_and_only_above_two_over_l() -> None:
    plan, curvature = _quadratic_plan()
    result = lr_range_test(plan, start=1e-5, end=100.0 / curvature, steps=100)
    assert result.stopped_early is not None and "4 x the best" in result.stopped_early
    assert len(result.lrs) < 100
    # below 2/L every GD step lowers a quadratic's loss, so it cannot have diverged there
    assert result.lrs[-1] > 2.0 / curvature
    assert result.smoothed[-1] > 4 * min(result.smoothed[:-1])
    assert result.suggestion is not None and result.suggestion < result.lrs[-1]


def test_cli_prints_the_suggestion_writes_a_csv_and_no_run(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt
    import pandas as pd

    plot = tmp_path / "lr.png"
    result = invoke(
        "lr-find",
        str(LINEAR_REGRESSION),
        "--steps",
        "40",
        "--start",
        "1e-5",
        "--results-dir",
        str(tmp_path / "results"),
        "--plot",
        str(plot),
        "--set",
        "seed=1",
    )
    assert result.exit_code == 0, result.output
    assert "suggested lr:" in result.stdout and "not an answer" in result.stdout
    assert not (tmp_path / "results" / "linear_regression").exists()  # no run folder
    assert not list((tmp_path / "results").rglob("summary.json"))
    (csv,) = (tmp_path / "results" / "_lr-find" / "linear_regression").glob("*/*.csv")
    frame = pd.read_csv(csv)
    assert list(frame.columns) == ["step", "lr", "loss", "smoothed_loss"] and len(frame) == 40
    plan = make_plan(load_config(LINEAR_REGRESSION, ["seed=1"]))
    assert csv.parent.name == plan.run_id
    expected = lr_range_test(plan, start=1e-5, end=1.0, steps=40)
    assert frame["loss"].tolist() == pytest.approx(expected.losses, rel=1e-12)
    assert f"{expected.suggestion:.3g}" in result.stdout
    image = plt.imread(plot)  # a PNG matplotlib can read back
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_an_optimizer_without_lr_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lrfind_nolr.py").write_text(
        "import torch\n\n"
        "class NoLr(torch.optim.Optimizer):\n"
        "    def __init__(self, params, step_size=0.1):\n"
        "        super().__init__(params, {'step_size': step_size})\n\n"
        "    @torch.no_grad()\n"
        "    def step(self, closure=None):\n"
        "        for group in self.param_groups:\n"
        "            for p in group['params']:\n"
        "                if p.grad is not None:\n"
        "                    p.add_(p.grad, alpha=-group['step_size'])\n"
    )
    config = write_config(
        tmp_path, regression_dict(optimizer={"name": "lrfind_nolr.NoLr", "step_size": 0.1})
    )
    result = invoke("lr-find", str(config), "--results-dir", str(tmp_path / "results"))
    assert_one_error_line(result, "NoLr", "has no lr")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--start", "0"], "--start must be a positive number"),
        (["--start", "1e-3", "--end", "1e-4"], "--end must be a number above --start"),
        (["--steps", "1"], "--steps must be at least 2"),
        (["--plot", "/nonexistent-folder/lr.png"], "folder /nonexistent-folder does not exist"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, args: list[str], fragment: str) -> None:
    results = tmp_path / "results"
    result = invoke("lr-find", str(LINEAR_REGRESSION), "--results-dir", str(results), *args)
    assert_one_error_line(result, fragment)
    assert not results.exists()


@pytest.mark.slow
def test_param_groups_config_runs(fashion_root: Path, tmp_path: Path) -> None:
    """configs/param_groups.yaml (fc3 at a tenth of the lr) through the command line."""
    result = invoke(
        "lr-find",
        str(REPO / "configs" / "param_groups.yaml"),
        "--steps",
        "12",
        "--start",
        "1e-4",
        "--set",
        f"data.root={fashion_root}",
        "--set",
        "data.subset=768",
        "--set",
        "device=cpu",
        "--results-dir",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    (csv,) = (tmp_path / "_lr-find" / "param_groups").glob("*/*.csv")
    assert len(csv.read_text().splitlines()) == 13
