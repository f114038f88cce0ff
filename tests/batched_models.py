"""Models that vmap cannot take exactly, named by import path in tests/test_batched.py's
configs: the batched trainer must fall back to its per-copy loop for them, with the reason."""

from __future__ import annotations

import torch
from torch import nn


def batch_norm_mlp(in_features: int, num_classes: int) -> nn.Module:
    """An MLP with BatchNorm: its forward updates running statistics (buffers) in training."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, num_classes),
    )


class _Branching(nn.Module):
    """Control flow on the data's values: a Python `if` on a tensor, which vmap refuses."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_features, 16)
        self.out = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x.flatten(1))
        if h.sum() > 0:
            h = torch.relu(h)
        return self.out(h)


def branching_mlp(in_features: int, num_classes: int) -> nn.Module:
    return _Branching(in_features, num_classes)
