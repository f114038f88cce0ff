"""Optimizers the tests name by import path, as a user names their own."""

from __future__ import annotations

import torch


class HistoryLBFGS(torch.optim.LBFGS):
    """LBFGS under another name: its closure protocol is read off the class, not its name."""
