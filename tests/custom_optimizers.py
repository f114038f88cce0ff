"""Optimizers the tests name by import path, as a user names their own."""

from __future__ import annotations

from typing import Any

import torch


class HistoryLBFGS(torch.optim.LBFGS):
    """LBFGS under another name: its closure protocol is read off the class, not its name."""


_UNSET = object()  # a new address in every process


class SentinelSGD(torch.optim.SGD):
    """SGD whose momentum defaults to a sentinel meaning 'none', as heavyball's optimizers have
    defaults a config cannot write: code, not a setting (tests/test_identity.py)."""

    def __init__(self, params: Any, lr: float = 0.05, momentum: Any = _UNSET) -> None:
        super().__init__(params, lr=lr, momentum=0.0 if momentum is _UNSET else momentum)
