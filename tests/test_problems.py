"""Registered problems: each plans, builds, trains and has the parameter count its source gives."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from optbench.components.models import _tf_same_padding
from optbench.core.config import load_config, validate_config
from optbench.core.errors import ConfigError
from optbench.core.problems import PROBLEMS
from optbench.experiment.plan import make_plan
from optbench.experiment.train import _l2_penalty, _loss, train
from optbench.storage.results import Status
from tests.helpers import REPO, fashion_mnist_files_as, regression_dict

# --------------------------------------------------------------------------- DeepOBS images

# Each parameter's size, written as DeepOBS writes it: fmnist_2c2d, fmnist_mlp and cifar10_3c3d
# copy `expected_num_param` from deepobs/pytorch/tests/testproblems/test_<problem>.py; logreg has
# no such test, so it is read off net_mnist_logreg (nn.Linear(784, 10)) in
# deepobs/pytorch/testproblems/testproblems_modules.py. mnist_* build the same nets.
_2C2D = [1 * 32 * 5 * 5, 32, 32 * 64 * 5 * 5, 64, 7 * 7 * 64 * 1024, 1024, 1024 * 10, 10]
_MLP = [28 * 28 * 1000, 1000, 1000 * 500, 500, 500 * 100, 100, 100 * 10, 10]
_LOGREG = [784 * 10, 10]
_3C3D = [
    3 * 64 * 5 * 5, 64, 64 * 96 * 3 * 3, 96, 96 * 128 * 3 * 3, 128,
    3 * 3 * 128 * 512, 512, 512 * 256, 256, 256 * 10, 10,
]  # fmt: skip
DEEPOBS_SIZES: dict[str, list[int]] = {
    "fmnist_logreg": _LOGREG,
    "fmnist_mlp": _MLP,
    "fmnist_2c2d": _2C2D,
    "mnist_logreg": _LOGREG,
    "mnist_mlp": _MLP,
    "mnist_2c2d": _2C2D,
    "cifar10_3c3d": _3C3D,
}
DEEPOBS = sorted(DEEPOBS_SIZES)


def test_the_family_is_registered_whole() -> None:
    models = {"deepobs_logreg", "deepobs_mlp", "deepobs_2c2d", "deepobs_3c3d"}
    assert {info.name for info in PROBLEMS if info.config["model"]["name"] in models} == set(
        DEEPOBS
    )


def _mnist_root(tmp_path: Path) -> Path:
    """MNIST's IDX files where torchvision reads them, made from Fashion-MNIST's (same format)."""
    return fashion_mnist_files_as(tmp_path, "MNIST")


@pytest.fixture
def data_root(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Path:  # the root each problem's dataset is found under
    dataset = PROBLEMS.get(request.param, "problem").config["data"]["dataset"]
    if dataset == "fashion_mnist":
        return request.getfixturevalue("fashion_root")
    if dataset == "cifar10":
        return request.getfixturevalue("cifar_root")[0]
    return _mnist_root(tmp_path)


def _problem_config(name: str, root: Path, **data: Any) -> dict[str, Any]:
    return {
        "name": f"p-{name}",
        "problem": name,
        "epochs": 1,
        "device": "cpu",
        "data": {"root": str(root), "subset": 256, **data},
        "optimizer": {"name": "SGD", "lr": 0.01},
    }


# 2c2d's evaluation over 10,000 test images takes ~15 s on two CPU cores; the mlps' over 10 s
# in the loaded inner loop.
_TRAINED = [
    pytest.param(name, marks=pytest.mark.slow) if name.endswith(("2c2d", "mlp")) else name
    for name in DEEPOBS
]


@pytest.mark.parametrize("data_root", _TRAINED, indirect=True)
def test_a_deepobs_problem_plans_builds_and_trains(data_root: Path, request: Any) -> None:
    name = request.node.callspec.params["data_root"]
    info = PROBLEMS.get(name, "problem")
    plan = make_plan(validate_config(_problem_config(name, data_root)))
    sizes = [math.prod(shape) for _, shape in plan.parameters]
    assert sizes == DEEPOBS_SIZES[name]  # layer by layer, as DeepOBS's test writes them
    assert sum(sizes) == info.parameters
    overrides = {"epochs": 1, "data.root": str(data_root), "data.subset": 256}
    assert plan.resolved["problem"] == {
        "name": name,
        "version": info.version,
        "overrides": overrides,
    }
    assert plan.config.data.batch_size == 128 and plan.config.epochs == 1  # the test's epochs
    assert info.metric == "test_accuracy" and "fsschneider/DeepOBS" in info.source
    result = train(plan)
    assert result.status == Status.COMPLETED
    row = result.rows[0]
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])
    assert 0 <= row["test_accuracy"] <= 1


@pytest.mark.parametrize("name", DEEPOBS)
def test_deepobs_budgets_and_inputs(name: str) -> None:
    """Batch 128 and DEFAULT_TEST_PROBLEMS_SETTINGS' epochs; inputs scaled as DeepOBS's
    pipeline: ToTensor alone for (F)MNIST, its Normalize for CIFAR-10."""
    config = PROBLEMS.get(name, "problem").config
    assert config["data"]["batch_size"] == 128
    assert config["epochs"] == (50 if name.endswith("logreg") else 100)
    expected = (
        [0.49139968, 0.48215841, 0.44653091] if name.startswith("cifar10") else [0.0],
        [0.24703223, 0.24348513, 0.26158784] if name.startswith("cifar10") else [1.0],
    )
    normalize = config["data"]["normalize"]
    assert (normalize["mean"], normalize["std"]) == expected
    regularization = config.get("regularization")
    assert regularization == (
        {"l2": 0.002, "params": "*weight*"} if name == "cifar10_3c3d" else None
    )
    # DeepOBS augments CIFAR-10's training images only (datasets/cifar10.py)
    assert config["data"].get("augment") == ("deepobs_cifar10" if name == "cifar10_3c3d" else None)
    assert PROBLEMS.get(name, "problem").version == (2 if name == "cifar10_3c3d" else 1)


def test_deepobs_initialisation() -> None:
    """logreg starts at zero; 2c2d has biases 0.05 and weights within two std (0.05); 3c3d zero
    biases; every layer named as DeepOBS names it."""
    plans = {
        name: make_plan(validate_config(_problem_config(name, Path("unused"), subset=None)))
        for name in ("fmnist_logreg", "fmnist_2c2d", "cifar10_3c3d")
    }
    torch.manual_seed(0)
    logreg = plans["fmnist_logreg"].build_model()
    assert all(not p.any() for p in logreg.parameters())
    c2d2 = dict(plans["fmnist_2c2d"].build_model().named_parameters())
    assert list(c2d2) == [f"{layer}.{kind}" for layer in ("conv1", "conv2", "dense1", "dense2")
                          for kind in ("weight", "bias")]  # fmt: skip
    for name, p in c2d2.items():
        if name.endswith("bias"):
            assert torch.all(p == 0.05)
        else:
            assert p.abs().max() <= 0.1 and 0.04 < p.std() < 0.05
    c3d3 = dict(plans["cifar10_3c3d"].build_model().named_parameters())
    assert all(not p.any() for n, p in c3d3.items() if n.endswith("bias"))
    assert plans["cifar10_3c3d"].regularization is not None
    assert plans["cifar10_3c3d"].regularization.names == tuple(
        n for n in c3d3 if n.endswith("weight")
    )


def test_tf_same_padding_puts_the_odd_pixel_right_and_bottom() -> None:
    assert _tf_same_padding((28, 28), (3, 3), (2, 2)) == (0, 1, 0, 1)  # 3c3d's first pool
    assert _tf_same_padding((28, 28), (5, 5), (1, 1)) == (2, 2, 2, 2)  # 2c2d's convolutions
    assert _tf_same_padding((6, 6), (3, 3), (2, 2)) == (0, 1, 0, 1)


# --------------------------------------------------------------------------- regularization


def test_the_l2_penalty_is_deepobs_sum_over_the_weights_only() -> None:
    plan = make_plan(validate_config(_problem_config("cifar10_3c3d", Path("unused"), subset=None)))
    torch.manual_seed(0)
    model = plan.build_model()
    inputs, targets = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss_fn = plan.build_loss()
    penalty = _l2_penalty(plan, model)
    with torch.no_grad():
        plain = _loss(model, loss_fn, inputs, targets)
        regularized = _loss(model, loss_fn, inputs, targets, penalty)
        weights = sum((p**2).sum() for n, p in model.named_parameters() if "weight" in n)
    torch.testing.assert_close(regularized, plain + 0.5 * 0.002 * weights)
    assert regularized > plain


def test_a_regularization_pattern_matching_nothing_is_one_error_line() -> None:
    config = regression_dict(regularization={"l2": 0.1, "params": "conv*"})
    with pytest.raises(ConfigError) as caught:
        make_plan(validate_config(config))
    assert caught.value.field == "regularization.params"
    assert "'conv*' matches no parameter" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_regularization_trains_and_changes_the_run() -> None:
    plain = make_plan(validate_config(regression_dict()))
    config = regression_dict(regularization={"l2": 0.5, "params": ["weight"]})
    plan = make_plan(validate_config(config))
    assert plan.regularization is not None and plan.regularization.names == ("weight",)
    assert plan.run_id != plain.run_id
    rows, plain_rows = train(plan).rows, train(plain).rows
    assert rows[-1]["train_loss"] != plain_rows[-1]["train_loss"]


# --------------------------------------------------------------------------- overrides, configs


def test_a_user_key_overrides_the_problem_and_is_recorded() -> None:
    config = validate_config(
        {
            "name": "over",
            "problem": "fmnist_2c2d",
            "data": {"batch_size": 32},
            "optimizer": {"name": "SGD", "lr": 0.01},
        }
    )
    plan = make_plan(config)
    assert plan.config.data.batch_size == 32
    assert plan.config.data.dataset == "fashion_mnist" and plan.config.epochs == 100
    assert plan.resolved["problem"]["overrides"] == {"data.batch_size": 32}


SHIPPED = sorted((REPO / "configs" / "problems").glob("*.yaml"))


def test_every_problem_ships_a_config() -> None:
    elsewhere = {"digits_mlp", "diabetes_linear"}  # configs/digits_mlp.yaml, diabetes_linear
    assert all((REPO / "configs" / f"{name}.yaml").is_file() for name in elsewhere)
    assert set(PROBLEMS.names()) == {path.stem for path in SHIPPED} | elsewhere


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_a_shipped_problem_config_plans(path: Path) -> None:
    plan = make_plan(load_config(path))
    assert plan.resolved["problem"]["name"] == path.stem
    assert plan.resolved["problem"]["overrides"] == {}
    info = PROBLEMS.get(path.stem, "problem")
    assert sum(math.prod(shape) for _, shape in plan.parameters) == info.parameters


# DeepOBS's convergence performances, as deepobs/run_utils.py (convergence_performance) writes
# them: {"mnist.mnist_mlp": [0.97], "fmnist.fmnist_2c2d": [0.9186], "cifar10.cifar10_3c3d":
# [0.8279], ...}; the other problems here have none.
DEEPOBS_CONVERGENCE = {"mnist_mlp": 0.97, "fmnist_2c2d": 0.9186, "cifar10_3c3d": 0.8279}


@pytest.mark.parametrize("info", list(PROBLEMS), ids=lambda info: info.name)
def test_targets_are_deepobs_convergence_performances(info: Any) -> None:
    """A problem's target is the published figure flagged as one, in the problem's own metric,
    at its budget's last epoch; only the problems DeepOBS gives one for have a target."""
    from optbench.core.metrics import EPOCH_COLUMNS

    expected = DEEPOBS_CONVERGENCE.get(info.name)
    assert info.target == (None if expected is None else ("test_accuracy", expected))
    for reference in info.references:
        if reference.target:  # in the problem's metric; other figures in any logged column
            assert reference.metric == info.metric
        assert reference.metric in EPOCH_COLUMNS
        assert reference.epoch == info.config["epochs"]
        assert reference.source and reference.settings


@pytest.mark.parametrize("name", ["fmnist_2c2d", "cifar10_3c3d", "quadratic_deep"])
def test_deepobs_baselines_are_its_three_optimizers_and_agree_with_its_targets(name: str) -> None:
    """DeepOBS publishes SGD, Momentum and Adam baselines at their tuned learning rates; it set
    its convergence performance (a separate file, run_utils.py) from those baselines, so every
    baseline's final test accuracy must reach it."""
    info = PROBLEMS.get(name, "problem")
    baselines = [r for r in info.references if not r.target]
    assert [r.optimizer for r in baselines] == ["SGD", "Momentum", "Adam"]
    target = DEEPOBS_CONVERGENCE.get(name)
    for reference in baselines:
        assert "DeepOBS@873bbc2" in reference.source and "tuned" in reference.settings
        if target is not None:
            assert reference.metric == "test_accuracy" and reference.value >= target
