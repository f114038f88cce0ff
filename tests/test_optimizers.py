"""Optimizers: every registered one trains, param groups land where the patterns say."""

from __future__ import annotations

import pytest
import torch

from optbench.components.data import load_data
from optbench.components.optimizers import OPTIMIZERS, get_optimizer
from optbench.core.errors import ConfigError
from optbench.experiment.plan import make_plan
from optbench.experiment.train import evaluate, train
from tests.helpers import regression_config


def _untrained_test_loss(plan) -> float:
    torch.manual_seed(plan.config.seed)
    model = plan.build_model()
    _, test = load_data(plan.data, plan.config.seed)
    return evaluate(model, plan.build_loss(), test, 64, classify=False)[0]


# A learning rate that suits a 10-feature linear regression; Adadelta's lr scales a unitless
# ratio of running averages and needs a large one, LBFGS takes its usual 1.
_LR = {"Adadelta": 10.0, "LBFGS": 1.0}


@pytest.mark.parametrize(
    "name",
    # LBFGS evaluates the loss many times a step: over 10 s in the loaded inner loop
    [pytest.param(n, marks=pytest.mark.slow) if n == "LBFGS" else n for n in OPTIMIZERS.names()],
)
def test_every_registered_optimizer_lowers_the_loss(name: str) -> None:
    options = {"name": name, "lr": _LR.get(name, 0.05)}
    config = regression_config(
        optimizer=options,
        model={"name": "linear", "bias": False},  # weights only: Muon takes 2-D parameters
        epochs=10,
    )
    plan = make_plan(config)
    before = _untrained_test_loss(plan)
    result = train(plan)
    assert result.status == "completed"
    assert len(result.rows) == 10
    assert result.rows[-1]["test_loss"] < 0.5 * before, (name, before, result.rows)


def test_optimizer_names_are_case_insensitive() -> None:
    assert get_optimizer("adamw").cls is torch.optim.AdamW
    assert get_optimizer("RMSPROP").cls is torch.optim.RMSprop


def test_dotted_import_path_to_an_optimizer_subclass() -> None:
    for spelling in ("torch.optim.sgd.SGD", "torch.optim.SGD", "torch.optim:SGD", "sgd"):
        info = get_optimizer(spelling)
        assert info is OPTIMIZERS.get("SGD", "")  # one record, one name, one run-id
        assert info.cls is torch.optim.SGD and info.name == "SGD"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no.such.module.Opt", "cannot import 'no.such.module.Opt'"),
        ("torch.optim.SparseAdam", "needs sparse gradients"),
        (".SGD", "is not a registered name or an import path"),
        ("collections.OrderedDict", "is not a torch.optim.Optimizer subclass"),
        ("Adamm", "unknown optimizer 'Adamm' (did you mean 'Adam'?)"),
        ("SparseAdam", "needs sparse gradients"),
    ],
)
def test_bad_optimizer_names(name: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        get_optimizer(name)
    assert message in str(error.value)


def test_lbfgs_is_stepped_with_a_closure() -> None:
    plan = make_plan(
        regression_config(
            optimizer={"name": "LBFGS", "lr": 1, "line_search_fn": "strong_wolfe"},
            data={"dataset": "synthetic_regression", "n_train": 256, "batch_size": 256},
        )
    )
    assert plan.optimizer.protocol.name == "closure"
    rows = train(plan).rows
    # Full batch: epoch 2's loss is the loss after epoch 1's 20 inner iterations, near the noise.
    assert rows[1]["train_loss"] < 0.05 < rows[0]["train_loss"]


CNN_GROUPS = {
    "name": "SGD",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "param_groups": [{"params": "fc3.*", "lr": 0.001}, {"params": "*.bias", "weight_decay": 0.0}],
}


def _cnn_plan(optimizer: dict):
    return make_plan(
        regression_config(
            data={"dataset": "fashion_mnist"},
            model={"name": "cifar_cnn"},
            loss="cross_entropy",
            optimizer=optimizer,
        )
    )


def test_param_groups_first_matching_pattern_wins() -> None:
    plan = _cnn_plan(CNN_GROUPS)
    model = plan.build_model()
    optimizer = plan.build_optimizer(model)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [
        ({names[id(p)] for p in g["params"]}, g["lr"], g["weight_decay"])
        for g in optimizer.param_groups
    ]
    assert groups == [
        ({"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}, 0.01, 5e-4),
        ({"fc3.weight", "fc3.bias"}, 0.001, 5e-4),
        ({"conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias"}, 0.01, 0.0),
    ]
    assert all(g["momentum"] == 0.9 for g in optimizer.param_groups)


def test_param_group_values_are_checked_per_group() -> None:
    groups = [{"params": "fc3.*", "lr": -1.0}]
    with pytest.raises(ConfigError, match=r"optimizer.param_groups.0.lr: must be in \[0, inf\]"):
        _cnn_plan({**CNN_GROUPS, "param_groups": groups})


def test_lbfgs_refuses_param_groups_at_validation() -> None:
    with pytest.raises(ConfigError, match="LBFGS rejects these settings"):
        _cnn_plan({"name": "LBFGS", "param_groups": [{"params": "fc3.*", "lr": 0.1}]})
