"""Models: small networks for optimizer comparisons, built from the data's shape, or any
nn.Module class or function returning one by import path (its data arguments filled in).

`cifar_cnn` is the LeNet-style network of PyTorch's CIFAR-10 tutorial; its layers are created
in the tutorial's order, so the same seed gives the same initial weights.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from optbench.components.data import DataSpec
from optbench.components.gpt import gpt
from optbench.components.registry import (
    bind_options,
    bind_passed,
    is_module_or_function,
    parameters_of,
    receiver_of,
    resolve_component,
    summary,
)
from optbench.core.errors import ConfigError
from optbench.core.registry import Registry

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


# --------------------------------------------------------------------------- DeepOBS networks
# DeepOBS's PyTorch networks (deepobs/pytorch/testproblems/testproblems_modules.py), with its
# layer names so param-group patterns read as DeepOBS's do (conv1.weight, dense2.bias, ...).


def _tf_same_padding(
    size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int]
) -> tuple[int, int, int, int]:
    """TensorFlow's 'same' padding (left, right, top, bottom): the extra pixel goes right and
    bottom, as DeepOBS's _determine_padding_from_tf_same computes it."""
    pads = []
    for length, k, s in zip(size, kernel, stride, strict=True):
        total = max((math.ceil(length / s) - 1) * s + k - length, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


class TFConv2d(nn.Conv2d):
    """nn.Conv2d with TensorFlow's 'same' padding when `same` (DeepOBS's tfconv2d); created as
    nn.Conv2d, so it draws its default initialisation from the global RNG as DeepOBS's does."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, same: bool) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        self.same = same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = F.pad(x, _tf_same_padding(x.shape[-2:], self.kernel_size, self.stride))
        return super().forward(x)


class TFMaxPool2d(nn.MaxPool2d):
    """Max-pooling after zero 'same' padding (DeepOBS's tfmaxpool2d; after a ReLU, zeros pad
    as TensorFlow's -inf would)."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__(kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pair = (self.kernel_size, self.kernel_size), (self.stride, self.stride)
        return super().forward(F.pad(x, _tf_same_padding(x.shape[-2:], *pair)))  # type: ignore[arg-type]


def _truncated_normal_(weight: torch.Tensor, std: float) -> None:
    """N(0, std²) truncated at two standard deviations, as DeepOBS's _truncated_normal_init
    (which draws it with scipy; here torch draws it from the global RNG)."""
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def _side_after(size: int, *steps: tuple[int, int, bool]) -> int:
    """An image side after (kernel, stride, same) steps of convolution or pooling."""
    for kernel, stride, same in steps:
        size = math.ceil(size / stride) if same else (size - kernel) // stride + 1
    if size < 1:
        raise ValueError("images are too small for this network")
    return size


def _image_shape(spec: DataSpec, name: str) -> tuple[int, int]:
    if len(spec.input_shape) != 3 or spec.input_shape[1] != spec.input_shape[2]:
        raise ValueError(
            f"{name} needs square images (channels, size, size), got {spec.input_shape}"
        )
    return spec.input_shape[0], spec.input_shape[1]


def deepobs_logreg(spec: DataSpec) -> nn.Module:
    """DeepOBS's net_mnist_logreg: flatten, one linear layer `dense`, weights and biases zero."""
    model = nn.Sequential()
    model.add_module("flatten", nn.Flatten())
    model.add_module("dense", nn.Linear(math.prod(spec.input_shape), spec.num_outputs))
    nn.init.zeros_(model.dense.bias)
    nn.init.zeros_(model.dense.weight)
    return model


def deepobs_mlp(spec: DataSpec) -> nn.Module:
    """DeepOBS's net_mlp: dense 1000-500-100-out with ReLUs; truncated normal weights (std
    0.03), zero biases."""
    model = nn.Sequential()
    model.add_module("flatten", nn.Flatten())
    width = math.prod(spec.input_shape)
    for i, size in enumerate((1000, 500, 100, spec.num_outputs), start=1):
        model.add_module(f"dense{i}", nn.Linear(width, size))
        if i < 4:
            model.add_module(f"relu{i}", nn.ReLU())
        width = size
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
            _truncated_normal_(module.weight, 3e-2)
    return model


def deepobs_2c2d(spec: DataSpec) -> nn.Module:
    """DeepOBS's net_mnist_2c2d: conv 32@5x5, pool, conv 64@5x5, pool ('same'), dense 1024,
    dense out; truncated normal weights (std 0.05), biases 0.05."""
    channels, size = _image_shape(spec, "deepobs_2c2d")
    side = _side_after(size, (5, 1, True), (2, 2, True), (5, 1, True), (2, 2, True))
    model = nn.Sequential()
    model.add_module("conv1", TFConv2d(channels, 32, 5, same=True))
    model.add_module("relu1", nn.ReLU())
    model.add_module("max_pool1", TFMaxPool2d(2, 2))
    model.add_module("conv2", TFConv2d(32, 64, 5, same=True))
    model.add_module("relu2", nn.ReLU())
    model.add_module("max_pool2", TFMaxPool2d(2, 2))
    model.add_module("flatten", nn.Flatten())
    model.add_module("dense1", nn.Linear(side * side * 64, 1024))
    model.add_module("relu3", nn.ReLU())
    model.add_module("dense2", nn.Linear(1024, spec.num_outputs))
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.constant_(module.bias, 0.05)
            _truncated_normal_(module.weight, 0.05)
    return model


def deepobs_3c3d(spec: DataSpec) -> nn.Module:
    """DeepOBS's net_cifar10_3c3d: conv 64@5x5 and 96@3x3 ('valid'), 128@3x3 ('same'), each
    with a 3x3 stride-2 'same' max-pool; dense 512, 256, out. Xavier-normal conv and
    Xavier-uniform dense weights, zero biases."""
    channels, size = _image_shape(spec, "deepobs_3c3d")
    pool = (3, 2, True)
    side = _side_after(size, (5, 1, False), pool, (3, 1, False), pool, (3, 1, True), pool)
    model = nn.Sequential()
    model.add_module("conv1", TFConv2d(channels, 64, 5, same=False))
    model.add_module("relu1", nn.ReLU())
    model.add_module("maxpool1", TFMaxPool2d(3, 2))
    model.add_module("conv2", TFConv2d(64, 96, 3, same=False))
    model.add_module("relu2", nn.ReLU())
    model.add_module("maxpool2", TFMaxPool2d(3, 2))
    model.add_module("conv3", TFConv2d(96, 128, 3, same=True))
    model.add_module("relu3", nn.ReLU())
    model.add_module("maxpool3", TFMaxPool2d(3, 2))
    model.add_module("flatten", nn.Flatten())
    model.add_module("dense1", nn.Linear(side * side * 128, 512))
    model.add_module("relu4", nn.ReLU())
    model.add_module("dense2", nn.Linear(512, 256))
    model.add_module("relu5", nn.ReLU())
    model.add_module("dense3", nn.Linear(256, spec.num_outputs))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.zeros_(module.bias)
            nn.init.xavier_normal_(module.weight)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
            nn.init.xavier_uniform_(module.weight)
    return model


@dataclass(frozen=True)
class ModelInfo:
    name: str
    build: Callable[..., nn.Module]
    description: str
    takes_spec: bool = True  # built-in builders take the DataSpec; others get data arguments
    # Data arguments a builder's **kwargs pass on to its model (torchvision's num_classes,
    # timm's num_classes and in_chans), filled from the data like DATA_ARGUMENTS.
    forwards: tuple[str, ...] = ()
    code: dict[str, Any] = field(default_factory=dict)  # what identifies an imported model's code


MODELS: Registry[ModelInfo] = Registry("model")
for _build in (
    linear,
    cifar_cnn,
    mlp,
    deepobs_logreg,
    deepobs_mlp,
    deepobs_2c2d,
    deepobs_3c3d,
    gpt,
):
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
    "in_chans": "channels",  # timm
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


def _timm_builder(obj: Any) -> bool:
    """Whether `obj` is one of timm's builders (timm.create_model, timm.models.resnet18):
    functions whose **kwargs reach the model class, which takes num_classes and in_chans."""
    module = getattr(obj, "__module__", None) or ""
    return module.split(".")[0] == "timm" and not inspect.isclass(obj)


def _forwarded_data_arguments(obj: Any) -> tuple[str, ...]:
    if _torchvision_builder(obj):
        return ("num_classes",)
    if _timm_builder(obj):
        return ("num_classes", "in_chans")
    return ()


# Short forms of a model name, `prefix/model`: prefix -> (the builder's import path, the option
# the rest of the name goes to). `timm/resnet18` is timm.create_model(model_name="resnet18").
SHORT_FORMS: dict[str, tuple[str, str]] = {"timm": ("timm.create_model", "model_name")}


def expand_short_form(name: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A model name and options with a short form (`timm/resnet18`) written out in full, so
    every spelling of one model binds, and is identified, the same way."""
    prefix, slash, rest = name.partition("/")
    if not slash:
        return name, options
    if prefix not in SHORT_FORMS or not rest:
        forms = ", ".join(f"{p}/MODEL" for p in SHORT_FORMS)
        raise ConfigError("model.name", f"'{name}' is not a known short form; known: {forms}")
    path, key = SHORT_FORMS[prefix]
    if key in options:
        raise ConfigError(f"model.{key}", f"is given twice: by model.name '{name}' and model.{key}")
    return path, {key: rest, **options}


# Where pretrained weights come from when they are not in the local cache.
_WEIGHTS_HOST = "huggingface.co"


def _refuse_pretrained_offline(options: dict[str, Any], label: str) -> None:
    """`pretrained: true` downloads weights on first use: refuse it while planning when the
    host cannot be reached, instead of minutes of retries and a long traceback."""
    if options.get("pretrained") is not True:
        return
    try:
        socket.create_connection((_WEIGHTS_HOST, 443), timeout=3).close()
    except OSError:
        raise ConfigError(
            "model.pretrained",
            f"{label} would download its weights from {_WEIGHTS_HOST}, which cannot be reached "
            "from here; use pretrained: false (training from scratch)",
        ) from None


def with_channels(spec: DataSpec, channels: int | None) -> DataSpec:
    """The data as the model sees it when `data.channels` repeats a grayscale channel."""
    if channels is None or (len(spec.input_shape) == 3 and spec.input_shape[0] == channels):
        return spec
    if len(spec.input_shape) != 3 or spec.input_shape[0] != 1:
        raise ConfigError(
            "data.channels",
            f"repeats the channel of grayscale images (1, height, width); the data's inputs "
            f"are {spec.input_shape}",
        )
    return dataclasses.replace(spec, input_shape=(channels, *spec.input_shape[1:]))


@dataclass(frozen=True)
class RepeatChannels:
    """A forward pre-hook that repeats a grayscale input's channel `channels` times: an input
    adapter that leaves the model's parameter names as they are (param_groups globs)."""

    channels: int

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        inputs = args[0]
        return (inputs.expand(-1, self.channels, *inputs.shape[2:]), *args[1:])


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
        forwards=_forwarded_data_arguments(obj),
        code=code,
    )


def get_model(name: str, field: str = "model.name") -> ModelInfo:
    """A registered model (any case), or an import path to an nn.Module class or a function
    returning one; a registered one by its path comes back as its record."""
    return resolve_component(MODELS, name, field, _check_model, _imported_model)


def bind_model(info: ModelInfo, options: dict[str, Any], spec: DataSpec) -> dict[str, Any]:
    """The model's arguments, checked against its signature, every default filled in. An
    imported model's data arguments (DATA_ARGUMENTS) come from `spec` unless the config sets
    them. A builder with **kwargs takes the config's other keys, passed through canonical for
    the types its model class declares (`bind_passed`; code refuses a wrong one when the model
    is built, while planning); torchvision's and timm's get their data arguments (`forwards`)."""
    if info.takes_spec:
        return bind_options(info.build, options, "model", skip=("spec",), label=info.name)
    parameters = parameters_of(info.build, "model", info.name).items()
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    declared = {name for name, p in parameters if p.kind not in variadic}
    takes_kwargs = any(p.kind == inspect.Parameter.VAR_KEYWORD for _, p in parameters)
    values = data_values(spec)
    from_data = {
        arg: values[what]
        for arg, what in DATA_ARGUMENTS.items()
        if what in values and arg in declared
    }
    given, passed = options, {}
    if takes_kwargs:
        given = {k: v for k, v in options.items() if k in declared}
        passed = {k: v for k, v in options.items() if k not in declared}
        for arg in info.forwards:
            what = DATA_ARGUMENTS[arg]
            if arg not in declared and what in values:
                passed.setdefault(arg, values[what])
    bound = bind_options(info.build, given, "model", provided=from_data, label=info.name)
    _refuse_pretrained_offline(bound, info.name)
    return {**bound, **bind_passed(receiver_of(info.build), passed, "model")}


def construct(
    info: ModelInfo, spec: DataSpec, options: dict[str, Any], channels: int | None = None
) -> nn.Module:
    """The model, from arguments bound by `bind_model` on `with_channels(spec, channels)`; with
    `channels` set on grayscale data, its input channel repeated in front of it."""
    seen = with_channels(spec, channels)
    model = info.build(seen, **options) if info.takes_spec else info.build(**options)
    if not isinstance(model, nn.Module):
        raise TypeError(f"returned a {type(model).__name__}, not a torch.nn.Module")
    if seen is not spec:
        model.register_forward_pre_hook(RepeatChannels(seen.input_shape[0]))
    return model


# ------------------------------------------------------------------------ DeepOBS quadratic, 2-D
# Test functions whose forward gives each sample's loss: the model is the point being optimised.

from optbench.components import twod  # noqa: E402  (torch-free; kept beside the models that use it)
from optbench.components.losses import LOSSES, LossInfo  # noqa: E402


class FunctionValue(nn.Module):
    """The loss of a test function model: its outputs are the per-sample losses, so their mean."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return outputs.mean()


LOSSES.register(
    "function_value",
    LossInfo(
        "function_value",
        FunctionValue,
        "values",
        "mean of the model's outputs (a test function's per-sample values: quadratic_deep, 2-D)",
    ),
    source=FunctionValue,
)


class KnownOptimum(nn.Module):
    """A model whose optimal parameters are known: training logs `distance_to_optimum`."""

    optima: torch.Tensor  # (minima, parameters), float64

    def point(self) -> torch.Tensor:
        """The parameters as one flat vector (a new tensor, safe to keep)."""
        return torch.cat([p.detach().reshape(-1) for p in self.parameters()])

    def distance_to_optimum(self) -> float:
        """Euclidean distance from the parameters to the nearest known optimum."""
        return float((self.point().double() - self.optima).norm(dim=1).min())


class QuadraticDeep(KnownOptimum):
    """0.5 (theta - x)^T Q (theta - x) per sample, theta starting at ones (DeepOBS's
    net_quadratic_deep); the optimum of its expectation over x ~ N(0, s^2 I) is theta = 0."""

    def __init__(self, hessian: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.ones(hessian.shape[0]))
        self.register_buffer("hessian", hessian, persistent=False)
        self.register_buffer(
            "optima", torch.zeros(1, hessian.shape[0], dtype=torch.float64), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.theta - x  # per sample: (q Q) . q, not DeepOBS's diag(q Q q^T) (B^2 work)
        return 0.5 * ((q @ self.hessian) * q).sum(dim=1, keepdim=True)


def _deepobs_hessian(dim: int = 100) -> torch.Tensor:
    """DeepOBS's quadratic_deep Hessian R^T D R: 90 eigenvalues from U(0, 1), 10 from U(30, 60),
    R a Haar rotation (subgroup algorithm), all from the module's RandomState(42) in its order
    (computed once a process: a batch of trials, and its checks, build the model many times)."""
    return _hessian_once(dim).clone()


@functools.cache
def _hessian_once(dim: int) -> torch.Tensor:
    import numpy as np

    rng = np.random.RandomState(42)
    eigenvalues = np.concatenate((rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)))
    t = 2 * np.pi * rng.uniform()
    rotation = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    for d in range(2, dim):
        v = rng.normal(size=(d + 1, 1))
        v = v / np.sqrt(v.T @ v)
        e = np.concatenate((np.array([[1.0]]), np.zeros((d, 1))), axis=0)
        x = (e - v) / np.sqrt((e - v).T @ (e - v))
        block = np.vstack(
            [np.hstack([[[1.0]], np.zeros((1, d))]), np.hstack([np.zeros((d, 1)), rotation])]
        )
        rotation = block - 2 * np.outer(x, x.T @ block)
    rotation = -rotation
    hessian = rotation.T @ np.diag(eigenvalues) @ rotation
    return torch.from_numpy(hessian).to(torch.float32)


def quadratic_deep(spec: DataSpec) -> nn.Module:
    """DeepOBS's 100-dimensional noisy quadratic with a deep-learning-like eigenspectrum."""
    if spec.input_shape != (100,):
        raise ValueError(f"needs 100-dimensional inputs (data: quadratic), got {spec.input_shape}")
    return QuadraticDeep(_deepobs_hessian(100))


class TwoD(KnownOptimum):
    """f(u, v) + u x + v y per sample (x, y) of noise, u and v starting at DeepOBS's point.
    Training records its path (`point` after every step)."""

    records_path = True

    def __init__(self, function: twod.TwoDFunction) -> None:
        super().__init__()
        self.function = function
        self.u = nn.Parameter(torch.tensor(function.start[0]))
        self.v = nn.Parameter(torch.tensor(function.start[1]))
        self.register_buffer(
            "optima", torch.tensor(function.minima, dtype=torch.float64), persistent=False
        )

    def point(self) -> torch.Tensor:
        return torch.stack([self.u.detach(), self.v.detach()])

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dim() != 2 or inputs.shape[1] != 2:
            raise ValueError(f"needs (batch, 2) noise inputs (data: two_d), got {inputs.shape}")
        value = self.function.value(self.u, self.v, torch.cos)
        return (value + self.u * inputs[:, 0] + self.v * inputs[:, 1]).unsqueeze(1)

    def stacked_forward(
        self, params: dict[str, torch.Tensor], inputs: torch.Tensor
    ) -> torch.Tensor:
        """K copies' outputs [K, B, 1] from their stacked u and v [K] and inputs [K, B, 2]:
        forward's elementwise ops, in its order, on all copies at once (a batch of trials,
        experiment/stacked_layers.py)."""
        u, v = params["u"], params["v"]
        value = self.function.value(u, v, torch.cos)[:, None]
        return (value + u[:, None] * inputs[..., 0] + v[:, None] * inputs[..., 1]).unsqueeze(-1)


def rosenbrock(spec: DataSpec) -> nn.Module:
    """DeepOBS's noisy 2-D Rosenbrock, from (-0.5, 1.5); minimum (1, 1)."""
    return TwoD(twod.FUNCTIONS["rosenbrock"])


def beale(spec: DataSpec) -> nn.Module:
    """DeepOBS's noisy 2-D Beale, from (-4.5, 4.5); minimum (3, 0.5)."""
    return TwoD(twod.FUNCTIONS["beale"])


def branin(spec: DataSpec) -> nn.Module:
    """DeepOBS's noisy 2-D Branin, from (2.5, 12.5); three minima."""
    return TwoD(twod.FUNCTIONS["branin"])


for _build in (quadratic_deep, rosenbrock, beale, branin):
    MODELS.register(
        _build.__name__,
        ModelInfo(_build.__name__, _build, (_build.__doc__ or "").splitlines()[0]),
        source=_build,
    )
