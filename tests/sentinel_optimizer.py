"""An optimizer whose default is a sentinel object, as heavyball's optimizers have: a default a
config cannot write, which is code and not a setting (tests/test_identity.py)."""

from __future__ import annotations

from typing import Any

import torch

_UNSET = object()  # a new address in every process


class SentinelSGD(torch.optim.SGD):
    """SGD whose momentum defaults to a sentinel meaning 'no momentum'."""

    def __init__(self, params: Any, lr: float = 0.05, momentum: Any = _UNSET) -> None:
        super().__init__(params, lr=lr, momentum=0.0 if momentum is _UNSET else momentum)
