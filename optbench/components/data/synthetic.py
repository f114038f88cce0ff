"""Data generated rather than read: the seeded regression problem and DeepOBS's fixed-seed
noise for the quadratic and 2-D test functions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from optbench.components.data.memory import InMemoryDataset
from optbench.core.errors import ConfigError


def synthetic_regression(
    seed: int,
    n_train: int = 1000,
    n_test: int = 200,
    features: int = 10,
    noise: float = 0.1,
    data_seed: int | None = None,
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """y = x @ w + b + noise, x ~ N(0, I): the classic nn.Linear(10, 1) regression problem.

    Drawn from its own generator (seeded by `data_seed`, else the run's seed), so making the
    data never moves the global RNG that initialises the model.
    """
    generator = torch.Generator().manual_seed(seed if data_seed is None else data_seed)
    total = n_train + n_test
    x = torch.randn(total, features, generator=generator)
    w = torch.randn(features, 1, generator=generator)
    b = torch.randn(1, generator=generator)
    y = x @ w + b + noise * torch.randn(total, 1, generator=generator)
    return InMemoryDataset(x[:n_train], y[:n_train]), InMemoryDataset(x[n_train:], y[n_train:])


_SYNTHETIC_MINIMUM = {"n_train": 1, "n_test": 1, "features": 1, "noise": 0, "data_seed": 0}


def check_synthetic(bound: dict[str, Any]) -> None:
    for key, minimum in _SYNTHETIC_MINIMUM.items():
        if bound[key] is not None and not bound[key] >= minimum:
            raise ConfigError(f"data.{key}", f"must be >= {minimum}, got {bound[key]}")


def _zero_targets(inputs: torch.Tensor) -> InMemoryDataset:
    """Test-function data: the inputs are noise, the model's output is the loss (no targets)."""
    return InMemoryDataset(inputs, torch.zeros(len(inputs), 1))


def deepobs_quadratic() -> tuple[InMemoryDataset, InMemoryDataset]:
    """DeepOBS's quadratic data: 1000 draws of N(0, 0.6^2 I) in 100 dimensions, train from
    RandomState(42), test from RandomState(43), as float32 (the same for every seed)."""
    train = np.random.RandomState(42).normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    test = np.random.RandomState(43).normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    return _zero_targets(torch.from_numpy(train)), _zero_targets(torch.from_numpy(test))


def deepobs_quadratic_validation() -> InMemoryDataset:
    """DeepOBS's own quadratic validation draws: 1000 more from RandomState(44)."""
    valid = np.random.RandomState(44).normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    return _zero_targets(torch.from_numpy(valid))


def deepobs_two_d_validation() -> InMemoryDataset:
    """Fresh 2-D noise as a validation set: 10000 (x, y) pairs from RandomState(44), drawn as
    the training noise is (DeepOBS draws its 2-D validation set from that seed)."""
    rng = np.random.RandomState(44)
    x = rng.normal(0.0, 1.0, 10_000).astype(np.float32)
    y = rng.normal(0.0, 1.0, 10_000).astype(np.float32)
    return _zero_targets(torch.from_numpy(np.stack([x, y], axis=1)))


def deepobs_two_d() -> tuple[InMemoryDataset, InMemoryDataset]:
    """DeepOBS's two_d noise: 10000 (x, y) pairs of N(0, 1), x then y from RandomState(42);
    the test set is zeros, so the test loss is the deterministic function."""
    rng = np.random.RandomState(42)
    x = rng.normal(0.0, 1.0, 10_000).astype(np.float32)
    y = rng.normal(0.0, 1.0, 10_000).astype(np.float32)
    train = torch.from_numpy(np.stack([x, y], axis=1))
    return _zero_targets(train), _zero_targets(torch.zeros(10_000, 2))
