"""Models: small networks for optimizer comparisons, built from the data's shape, or any
nn.Module class or function returning one by import path (its data arguments filled in).

`cifar_cnn` is the LeNet-style network of PyTorch's CIFAR-10 tutorial; its layers are created
in the tutorial's order, so the same seed gives the same initial weights.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from optbench.data import DataSpec
from optbench.registry import (
    Registry,
    bind_options,
    is_module_or_function,
    parameters_of,
    resolve_component,
    summary,
)

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
    takes_spec: bool = True  # built-in builders take the DataSpec; others get data arguments
    forwards: bool = False  # a torchvision builder: keys it does not declare go to its model
    code: dict[str, Any] = field(default_factory=dict)  # what identifies an imported model's code


MODELS: Registry[ModelInfo] = Registry("model")
for _build in (linear, cifar_cnn, mlp):
    MODELS.register(
        _build.__name__,
        ModelInfo(_build.__name__, _build, (_build.__doc__ or "").splitlines()[0]),
        source=_build,
    )

# Arguments of an imported model that describe the data, filled from it when the config does not
# set them: argument name -> what of the data (see `data_values`).
DATA_ARGUMENTS: dict[str, str] = {
    "num_classes": "outputs",
    "num_outputs": "outputs",
    "out_features": "outputs",
    "in_channels": "channels",
    "in_features": "features",
    "input_size": "features",
    "input_dim": "features",
    "image_size": "side",
    "img_size": "side",
}


def data_values(spec: DataSpec) -> dict[str, int]:
    """outputs (classes, or 1 for regression), features (inputs flattened), and for images
    (channels, size, size) their channels and side."""
    values = {"outputs": spec.num_outputs, "features": math.prod(spec.input_shape)}
    if len(spec.input_shape) == 3:
        values["channels"] = spec.input_shape[0]
        if spec.input_shape[1] == spec.input_shape[2]:
            values["side"] = spec.input_shape[1]
    return values


def _torchvision_builder(obj: Any) -> bool:
    """Whether `obj` is in torchvision's model registry (resnet18(*, weights, progress, **kwargs)
    forwards its keyword arguments to the model class)."""
    models = sys.modules.get("torchvision.models")  # imported already when obj comes from it
    if models is None or inspect.isclass(obj):
        return False
    return any(models.get_model_builder(name) is obj for name in models.list_models())


def _check_model(obj: Any) -> str | None:
    if is_module_or_function(obj):
        return None
    return "is not an nn.Module class or a function that returns one"


def _imported_model(name: str, obj: Any, code: dict[str, Any]) -> ModelInfo:
    return ModelInfo(
        name,
        obj,
        summary(obj),
        takes_spec=False,
        forwards=_torchvision_builder(obj),
        code=code,
    )


def get_model(name: str, field: str = "model.name") -> ModelInfo:
    """A registered model (any case), or an import path to an nn.Module class or a function
    returning one; a registered one by its path comes back as its record."""
    return resolve_component(MODELS, name, field, _check_model, _imported_model)


def bind_model(info: ModelInfo, options: dict[str, Any], spec: DataSpec) -> dict[str, Any]:
    """The model's arguments, checked against its signature, every default filled in. An
    imported model's data arguments (DATA_ARGUMENTS) come from `spec` unless the config sets
    them; a torchvision builder gets num_classes, and keys it does not declare pass through to
    its model class (which refuses wrong ones when it is built)."""
    if info.takes_spec:
        return bind_options(info.build, options, "model", skip=("spec",), label=info.name)
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    parameters = parameters_of(info.build, "model", info.name).items()
    declared = {name for name, p in parameters if p.kind not in variadic}
    values = data_values(spec)
    from_data = {
        arg: values[what]
        for arg, what in DATA_ARGUMENTS.items()
        if what in values and arg in declared
    }
    given, passed = options, {}
    if info.forwards:
        given = {k: v for k, v in options.items() if k in declared}
        passed = {k: v for k, v in options.items() if k not in declared}
        if "num_classes" not in declared:
            passed.setdefault("num_classes", values["outputs"])
    bound = bind_options(info.build, given, "model", provided=from_data, label=info.name)
    return {**bound, **passed}


def construct(info: ModelInfo, spec: DataSpec, options: dict[str, Any]) -> nn.Module:
    """The model, from arguments bound by `bind_model`."""
    model = info.build(spec, **options) if info.takes_spec else info.build(**options)
    if not isinstance(model, nn.Module):
        raise TypeError(f"returned a {type(model).__name__}, not a torch.nn.Module")
    return model
