"""Models: small networks for optimizer comparisons, built from the data's shape.

`cifar_cnn` is the LeNet-style network of PyTorch's CIFAR-10 tutorial; its layers are created
in the tutorial's order, so the same seed gives the same initial weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from optbench.data import DataSpec
from optbench.registry import Registry

Init = Literal[
    "default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal"
]
_INITS: dict[str, Callable[[torch.Tensor], Any]] = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "orthogonal": nn.init.orthogonal_,
}


def _initialise(model: nn.Module, init: str) -> nn.Module:
    """Re-initialise weights of linear and conv layers (biases to zero); 'default' keeps torch's."""
    if init == "default":
        return model
    if init not in _INITS:
        raise ValueError(f"unknown init '{init}'; valid: default, {', '.join(_INITS)}")
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            _INITS[init](module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


class LeNet(nn.Module):
    """conv 6@5x5, pool, conv 16@5x5, pool, fc 120, fc 84, fc out; ReLU (the CIFAR-10 tutorial)."""

    def __init__(self, in_channels: int, image_size: int, num_outputs: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"images of {image_size}x{image_size} are too small for cifar_cnn")
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_outputs)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x)))
        x = self.dropout(F.relu(self.fc2(x)))
        return self.fc3(x)


class FlatLinear(nn.Module):
    """A linear layer over flattened inputs (a multinomial logistic regression on images)."""

    def __init__(self, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


def linear(spec: DataSpec, bias: bool = True, init: Init = "default") -> nn.Module:
    """Linear model; on vector data it is exactly nn.Linear(features, outputs)."""
    if len(spec.input_shape) == 1:
        model: nn.Module = nn.Linear(spec.input_shape[0], spec.num_outputs, bias=bias)
    else:
        model = FlatLinear(math.prod(spec.input_shape), spec.num_outputs, bias)
    return _initialise(model, init)


def cifar_cnn(spec: DataSpec, dropout: float = 0.0, init: Init = "default") -> nn.Module:
    """The tutorial's LeNet, adapted to the data's channels and (square) image size."""
    if len(spec.input_shape) != 3 or spec.input_shape[1] != spec.input_shape[2]:
        raise ValueError(f"needs square images (channels, size, size), got {spec.input_shape}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    channels, size, _ = spec.input_shape
    return _initialise(LeNet(channels, size, spec.num_outputs, dropout), init)


def mlp(
    spec: DataSpec,
    hidden_sizes: list[int] | None = None,
    activation: Literal["relu", "tanh", "gelu", "sigmoid"] = "relu",
    dropout: float = 0.0,
    init: Init = "default",
) -> nn.Module:
    """Flatten, then Linear + activation (+ dropout) per hidden size, then a linear output."""
    hidden_sizes = [256, 128] if hidden_sizes is None else hidden_sizes
    if any(not isinstance(h, int) or isinstance(h, bool) or h < 1 for h in hidden_sizes):
        raise ValueError(f"hidden_sizes must be positive integers, got {hidden_sizes}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    activations = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}
    if activation not in activations:
        raise ValueError(f"unknown activation '{activation}'; valid: {', '.join(activations)}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(spec.input_shape)
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), activations[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, spec.num_outputs))
    return _initialise(nn.Sequential(*layers), init)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    build: Callable[..., nn.Module]
    description: str


MODELS: Registry[ModelInfo] = Registry("model")
for _build in (linear, cifar_cnn, mlp):
    MODELS.register(
        _build.__name__,
        ModelInfo(_build.__name__, _build, (_build.__doc__ or "").splitlines()[0]),
    )
