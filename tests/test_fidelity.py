"""Golden runs on real Fashion-MNIST: optbench gives the numbers of the plain notebook loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
import torchvision.transforms as T
from torch import nn
from torch.utils.data import DataLoader, Subset

from optbench.plan import make_plan
from optbench.train import train
from tests.helpers import regression_config

SUBSET = 9600  # 150 batches of 64 per epoch, 2 epochs: 300 optimizer steps


def _notebook_loop(
    root: Path, build_model, make_optimizer, make_scheduler=None, epochs: int = 2
) -> list[dict[str, float]]:
    """What people write by hand: torchvision transforms, a shuffling DataLoader, .item() sums,
    and an evaluation every epoch through a test DataLoader (which moves the global RNG)."""
    transform = T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))])
    train_set = Subset(
        torchvision.datasets.FashionMNIST(root, train=True, transform=transform), range(SUBSET)
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
        running, batches = 0.0, 0
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running += loss.item()
            batches += 1
        model.eval()
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


def _optbench_rows(root: Path, **sections) -> list[dict[str, float]]:
    config = regression_config(
        data={"dataset": "fashion_mnist", "root": str(root), "subset": SUBSET, "batch_size": 64},
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
    from optbench.models import LeNet

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
