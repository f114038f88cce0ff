"""Loss functions by name, each tied to the kind of targets it expects, or by import path: any
nn.Module loss class, or a function (outputs, targets) -> loss."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from optbench.components.outputs import logits_of
from optbench.components.registry import (
    bind_options,
    is_module_or_function,
    parameters_of,
    resolve_component,
    summary,
)
from optbench.core.registry import Registry

# Deprecated torch arguments that the config does not offer.
LOSS_CODE_ARGS = ("size_average", "reduce", "reduction")


@dataclass(frozen=True)
class LossInfo:
    name: str
    cls: Callable[..., Any]  # an nn.Module class, or (imported) a function (outputs, targets)
    targets: Literal["classes", "values"] | None  # None: imported; the trial batch checks it
    description: str
    code: dict[str, Any] = field(default_factory=dict)  # what identifies an imported loss's code
    per_token: bool = False  # reads (B, T, V) outputs against (B, T) targets (sequences)
    from_model: bool = False  # the model's own loss (a ModelOutput's .loss), not its logits

    @property
    def is_function(self) -> bool:
        return not inspect.isclass(self.cls)

    def bind(self, options: dict[str, Any]) -> dict[str, Any]:
        """The loss's options checked against its signature, every default filled in: torch's
        losses leave out the deprecated arguments and `weight` (a tensor); a function's first
        two arguments are the outputs and targets."""
        if self.is_function:
            skip: tuple[str, ...] = tuple(list(parameters_of(self.cls, "loss", self.name))[:2])
        elif issubclass(self.cls, nn.modules.loss._Loss):
            skip = (*LOSS_CODE_ARGS, "weight")
        else:
            skip = ()
        return bind_options(self.cls, options, "loss", skip=skip, label=self.name)

    def build(self, options: dict[str, Any]) -> nn.Module:
        return FunctionLoss(self.cls, options) if self.is_function else self.cls(**options)


class FunctionLoss(nn.Module):
    """A loss function with its bound options, as a module like torch's losses."""

    def __init__(self, fn: Callable[..., torch.Tensor], options: dict[str, Any]) -> None:
        super().__init__()
        self.fn, self.options = fn, options

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.fn(outputs, targets, **self.options)


class TokenCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy per token: (B, T, V) logits against (B, T) targets, flattened to (B·T, V)
    and (B·T,) as nanoGPT computes its loss; the mean over every token."""

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return super().forward(outputs.reshape(-1, outputs.size(-1)), targets.reshape(-1))


class FromModel(nn.Module):
    """The loss the model computed itself: a transformers ModelOutput's `.loss`, which it
    computes when the batch gives it `labels` (data.input_column lists them)."""

    def forward(self, outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        loss = getattr(outputs, "loss", None)
        if not isinstance(loss, torch.Tensor):
            raise ValueError(
                f"the model returned a {type(outputs).__name__} with no loss: pass it labels "
                "(list them in data.input_column), or use a loss on its logits"
            )
        return loss


def loss_of(loss_fn: nn.Module, outputs: Any, targets: torch.Tensor) -> torch.Tensor:
    """A batch's loss: from_model reads the outputs whole, every other loss their logits."""
    if isinstance(loss_fn, FromModel):
        return loss_fn(outputs, targets)
    logits = logits_of(outputs)
    return loss_fn(outputs if logits is None else logits, targets)


LOSSES: Registry[LossInfo] = Registry("loss")
for _name, _cls, _targets, _what in (
    ("cross_entropy", nn.CrossEntropyLoss, "classes", "softmax cross-entropy on class logits"),
    (
        "token_cross_entropy",
        TokenCrossEntropy,
        "classes",
        "cross-entropy per token of (B, T, V) logits against (B, T) targets",
    ),
    ("nll", nn.NLLLoss, "classes", "negative log-likelihood on log-probabilities"),
    ("mse", nn.MSELoss, "values", "mean squared error"),
    ("l1", nn.L1Loss, "values", "mean absolute error"),
    ("smooth_l1", nn.SmoothL1Loss, "values", "smooth L1 (quadratic near zero)"),
    ("huber", nn.HuberLoss, "values", "Huber loss"),
):
    _owner = "torch.nn" if _cls.__module__.startswith("torch.") else _cls.__module__
    LOSSES.register(
        _name,
        LossInfo(
            _name,
            _cls,
            _targets,
            f"{_what} ({_owner}.{_cls.__name__})",
            per_token=_cls is TokenCrossEntropy,
        ),
        source=_cls,
    )


LOSSES.register(
    "from_model",
    LossInfo(
        "from_model",
        FromModel,
        None,
        "the model's own loss (a transformers ModelOutput's .loss, given labels in the batch)",
        from_model=True,
    ),
    source=FromModel,
)


def _check_loss(obj: Any) -> str | None:
    if is_module_or_function(obj):
        return None
    return "is not an nn.Module loss class or a function (outputs, targets) -> loss"


def _imported_loss(name: str, obj: Any, code: dict[str, Any]) -> LossInfo:
    return LossInfo(name, obj, None, summary(obj), code)


def get_loss(name: str, field: str = "loss") -> LossInfo:
    """A registered loss (any case), or an import path to an nn.Module loss class or a loss
    function; a registered one by its path (torch.nn.MSELoss) comes back as its record."""
    return resolve_component(LOSSES, name, field, _check_loss, _imported_loss)
