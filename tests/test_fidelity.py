"""Golden runs on real Fashion-MNIST: optbench gives the numbers of the plain notebook loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
import torchvision.transforms as T
from torch import nn
from torch.utils.data import DataLoader, Subset

from optbench.experiment.plan import make_plan
from optbench.experiment.train import train
from tests.helpers import regression_config

SUBSET = 9600  # 150 batches of 64 per epoch, 2 epochs: 300 optimizer steps


def _plain_step(model, optimizer, criterion, inputs, targets):
    optimizer.zero_grad()
    loss = criterion(model(inputs), targets)
    loss.backward()
    optimizer.step()
    return loss


def _notebook_loop(
    root: Path,
    build_model,
    make_optimizer,
    make_scheduler=None,
    epochs: int = 2,
    subset: int = SUBSET,
    step=_plain_step,
    train_eval: bool = False,
) -> list[dict[str, float]]:
    """What people write by hand: torchvision transforms, a shuffling DataLoader, .item() sums,
    and an evaluation every epoch through a test DataLoader (which moves the global RNG).
    `step` is the optimizer's documented step; `train_eval` switches a Schedule-Free optimizer
    with optimizer.train() before training and optimizer.eval() before evaluation."""
    transform = T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))])
    train_set = Subset(
        torchvision.datasets.FashionMNIST(root, train=True, transform=transform), range(subset)
    )
    test_set = torchvision.datasets.FashionMNIST(root, train=False, transform=transform)
    torch.manual_seed(0)
    model = build_model()
    optimizer = make_optimizer(model)
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    criterion = nn.CrossEntropyLoss()
    loader = DataLoader(
        train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    rows = []
    for _ in range(epochs):
        model.train()
        if train_eval:
            optimizer.train()
        running, batches = 0.0, 0
        for inputs, targets in loader:
            loss = step(model, optimizer, criterion, inputs, targets)
            running += loss.item()
            batches += 1
        model.eval()
        if train_eval:
            optimizer.eval()
        test_loss, correct = 0.0, 0
        with torch.no_grad():  # iterating the test DataLoader draws from the global RNG
            for inputs, targets in DataLoader(test_set, batch_size=1000, shuffle=False):
                outputs = model(inputs)
                test_loss += criterion(outputs, targets).item() * len(targets)
                correct += int((outputs.argmax(1) == targets).sum())
        if scheduler:
            scheduler.step()
        rows.append(
            {
                "train_loss": running / batches,
                "test_loss": test_loss / len(test_set),
                "test_accuracy": correct / len(test_set),
            }
        )
    return rows


def _optbench_rows(root: Path, subset: int = SUBSET, **sections) -> list[dict[str, float]]:
    config = regression_config(
        data={"dataset": "fashion_mnist", "root": str(root), "subset": subset, "batch_size": 64},
        loss="cross_entropy",
        **sections,
    )
    result = train(make_plan(config))
    assert result.status == "completed"
    return result.rows


def _assert_same(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        for key, value in reference.items():
            assert mine[key] == pytest.approx(value, rel=1e-6, abs=0), (key, mine, reference)


@pytest.mark.slow
def test_cifar_cnn_sgd_momentum_matches_the_notebook_loop(fashion_root: Path) -> None:
    from optbench.components.models import LeNet

    ours = _optbench_rows(
        fashion_root,
        model={"name": "cifar_cnn"},
        optimizer={"name": "SGD", "lr": 0.01, "momentum": 0.9},
    )
    theirs = _notebook_loop(
        fashion_root,
        lambda: LeNet(1, 28, 10, 0.0),
        lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9),
    )
    _assert_same(ours, theirs)
    assert theirs[1]["train_loss"] < theirs[0]["train_loss"]


@pytest.mark.slow
def test_dropout_mlp_adam_steplr_matches_the_notebook_loop(fashion_root: Path) -> None:
    ours = _optbench_rows(
        fashion_root,
        model={"name": "mlp", "hidden_sizes": [64], "dropout": 0.3},
        optimizer={"name": "Adam", "lr": 0.002},
        scheduler={"name": "StepLR", "step_size": 1, "gamma": 0.5},
    )
    theirs = _notebook_loop(
        fashion_root,
        lambda: nn.Sequential(
            nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10)
        ),
        lambda m: torch.optim.Adam(m.parameters(), lr=0.002),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5),
    )
    _assert_same(ours, theirs)


def test_linear_regression_is_the_classic_nn_linear() -> None:
    plan = make_plan(regression_config(model={"name": "linear"}))
    torch.manual_seed(0)
    reference = nn.Linear(10, 1)
    torch.manual_seed(0)
    model = plan.build_model()
    assert type(model) is nn.Linear
    assert (model.in_features, model.out_features) == (10, 1)
    assert torch.equal(model.weight, reference.weight) and torch.equal(model.bias, reference.bias)


# --------------------------------------------------------------------------- step protocols
# One optimizer of each protocol against the loop its documentation tells users to write.

PROTOCOL_SUBSET = 1920  # 30 batches of 64 per epoch, 2 epochs


def _small_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def _sam_step(model, optimizer, criterion, inputs, targets):
    """pytorch_optimizer.SAM's documented use: gradients first, then step(closure)."""

    def closure():
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        return loss

    loss = closure()
    optimizer.step(closure)
    return loss


def _hessian_step(model, optimizer, criterion, inputs, targets):
    """AdaHessian's documented use: backward through the graph, then step."""
    optimizer.zero_grad()
    loss = criterion(model(inputs), targets)
    loss.backward(create_graph=True)
    optimizer.step()
    return loss


def _protocol_cases():
    po = pytest.importorskip("pytorch_optimizer")
    return {
        "sharpness: SAM with an SGD base": (
            {"name": "pytorch_optimizer.SAM", "rho": 0.05}
            | {"base_optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9}},
            lambda m: po.SAM(m.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9),
            _sam_step,
            False,
        ),
        "second order: AdaHessian": (
            {"name": "pytorch_optimizer.AdaHessian", "lr": 0.1},
            lambda m: po.AdaHessian(m.parameters(), lr=0.1),
            _hessian_step,
            False,
        ),
        "train/eval modes: ScheduleFreeAdamW": (
            {"name": "pytorch_optimizer.ScheduleFreeAdamW", "lr": 0.01},
            lambda m: po.ScheduleFreeAdamW(m.parameters(), lr=0.01),
            _plain_step,
            True,
        ),
        "plain: a torch optimizer by its path": (
            {"name": "torch.optim.adamw.AdamW", "lr": 0.01},
            lambda m: torch.optim.AdamW(m.parameters(), lr=0.01),
            _plain_step,
            False,
        ),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        "sharpness: SAM with an SGD base",
        "second order: AdaHessian",
        "train/eval modes: ScheduleFreeAdamW",
        "plain: a torch optimizer by its path",
    ],
)
def test_each_step_protocol_matches_its_documented_loop(fashion_root: Path, case: str) -> None:
    optimizer, make_optimizer, step, train_eval = _protocol_cases()[case]
    ours = _optbench_rows(
        fashion_root,
        PROTOCOL_SUBSET,
        model={"name": "mlp", "hidden_sizes": [32]},
        optimizer=optimizer,
    )
    theirs = _notebook_loop(
        fashion_root,
        _small_mlp,
        make_optimizer,
        subset=PROTOCOL_SUBSET,
        step=step,
        train_eval=train_eval,
    )
    _assert_same(ours, theirs)
    assert theirs[1]["train_loss"] < theirs[0]["train_loss"]  # it trained
