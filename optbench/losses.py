"""Loss functions by name, each tied to the kind of targets it expects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from optbench.registry import Registry

# Deprecated torch arguments that the config does not offer.
LOSS_CODE_ARGS = ("size_average", "reduce", "reduction")


@dataclass(frozen=True)
class LossInfo:
    name: str
    cls: type[nn.Module]
    targets: Literal["classes", "values"]
    description: str


LOSSES: Registry[LossInfo] = Registry("loss")
for _name, _cls, _targets, _what in (
    ("cross_entropy", nn.CrossEntropyLoss, "classes", "softmax cross-entropy on class logits"),
    ("nll", nn.NLLLoss, "classes", "negative log-likelihood on log-probabilities"),
    ("mse", nn.MSELoss, "values", "mean squared error"),
    ("l1", nn.L1Loss, "values", "mean absolute error"),
    ("smooth_l1", nn.SmoothL1Loss, "values", "smooth L1 (quadratic near zero)"),
    ("huber", nn.HuberLoss, "values", "Huber loss"),
):
    LOSSES.register(_name, LossInfo(_name, _cls, _targets, f"{_what} (torch.nn.{_cls.__name__})"))
