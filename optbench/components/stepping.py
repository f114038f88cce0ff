"""How an optimizer steps: one small strategy per protocol, chosen while planning.

The training loop calls `protocol.step(optimizer, batch_loss)` and never asks which optimizer
it holds. Protocols, and how a class is recognised (in this order):

- sharpness: two passes (SAM, WSAM, FriendlySAM, LookSAM, BSAM...): the class has
  `first_step` and `second_step`. The loop computes the gradients at the current weights, then
  calls `step(closure)`, which perturbs the weights and runs the closure again. The epoch's train
  loss is the loss of the first pass, at the unperturbed weights.
- closure: `step(closure)` re-evaluates the loss itself (LBFGS and its subclasses, or any class
  whose `step` requires a closure, i.e. has a `closure` argument without a default).
- second_order: Hessian-based optimizers that read the Hessian through the graph (AdaHessian,
  SophiaH...): their `step` takes a `hessian` argument; backward runs with `create_graph=True`.
- plain: zero_grad, forward, loss, backward, step.

Independently, an optimizer with `train()` and `eval()` methods (the Schedule-Free family) is
switched with `optimizer.train()` before training steps and `optimizer.eval()` before
evaluation and before a checkpoint, so evaluation sees the averaged weights and resume stays
exact; a model with BatchNorm then has its running statistics recomputed at those weights, as
schedulefree's README says (experiment/train.py's recompute_batch_norm).
`optimizer.protocol` in the config forces a protocol where detection cannot know.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from optbench.core.config import ProtocolName

BatchLoss = Callable[[], torch.Tensor]  # forward and loss on the current batch


class Accumulated:
    """One step's micro-batches (gradient accumulation, `accumulate: k`): each one's loss,
    weighted by its share of the step's samples, goes forward and backward on its own, so the
    gradients add up to the whole batch's while one micro-batch's graph is held at a time."""

    def __init__(self, parts: list[BatchLoss], weights: list[float]) -> None:
        self.parts, self.weights = parts, weights

    def backward(self) -> torch.Tensor:
        """Backward through every micro-batch; the step's loss (their weighted sum)."""
        total = None
        for part, weight in zip(self.parts, self.weights, strict=True):
            loss = part() * weight
            loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        assert total is not None
        return total


def _forward_backward(batch_loss: BatchLoss | Accumulated) -> torch.Tensor:
    if isinstance(batch_loss, Accumulated):
        return batch_loss.backward()
    loss = batch_loss()
    loss.backward()
    return loss


def _closure(optimizer: torch.optim.Optimizer, batch_loss: BatchLoss | Accumulated) -> BatchLoss:
    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        return _forward_backward(batch_loss)

    return closure


def _plain(optimizer: torch.optim.Optimizer, batch_loss: BatchLoss | Accumulated) -> torch.Tensor:
    optimizer.zero_grad()
    loss = _forward_backward(batch_loss)
    optimizer.step()
    return loss


def _with_closure(optimizer: torch.optim.Optimizer, batch_loss: BatchLoss) -> torch.Tensor:
    return optimizer.step(_closure(optimizer, batch_loss))


def _sharpness(optimizer: torch.optim.Optimizer, batch_loss: BatchLoss) -> torch.Tensor:
    closure = _closure(optimizer, batch_loss)
    loss = closure()  # the first pass: gradients at the current weights
    optimizer.step(closure)  # perturb, second pass through the closure, update
    return loss


def _second_order(optimizer: torch.optim.Optimizer, batch_loss: BatchLoss) -> torch.Tensor:
    optimizer.zero_grad()  # set_to_none: drops last step's graph-holding gradients
    loss = batch_loss()
    with warnings.catch_warnings():  # torch warns of a cycle that zero_grad above breaks
        warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
        loss.backward(create_graph=True)  # the Hessian estimate differentiates the gradients
    optimizer.step()
    return loss


# How each of the config's PROTOCOL_NAMES (core/config.py) is stepped and described; a test
# checks both cover exactly those names.
_STEPS = {
    "plain": _plain,
    "closure": _with_closure,
    "sharpness": _sharpness,
    "second_order": _second_order,
}
DESCRIPTIONS = {
    "plain": "zero_grad, forward, loss, backward, step",
    "closure": "step(closure): the optimizer evaluates the loss itself",
    "sharpness": "two passes: backward, then step(closure) at the perturbed weights; "
    "the train loss is the first pass's",
    "second_order": "backward(create_graph=True), step",
}


@dataclass(frozen=True)
class StepProtocol:
    """How one optimizer class is stepped, and whether it has train/eval modes."""

    name: ProtocolName
    train_eval: bool = False

    def step(
        self, optimizer: torch.optim.Optimizer, batch_loss: BatchLoss | Accumulated
    ) -> torch.Tensor:
        """One optimizer step on the current batch; returns the loss to report."""
        return _STEPS[self.name](optimizer, batch_loss)

    def training(self, optimizer: torch.optim.Optimizer) -> None:
        if self.train_eval:
            optimizer.train()  # type: ignore[attr-defined]

    def evaluating(self, optimizer: torch.optim.Optimizer) -> None:
        if self.train_eval:
            optimizer.eval()  # type: ignore[attr-defined]

    def describe(self) -> str:
        modes = "; optimizer.train()/eval() around training/evaluation" if self.train_eval else ""
        return f"{self.name} ({DESCRIPTIONS[self.name]}{modes})"


def _parameters(function: Callable[..., object]) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return {}


def detect_protocol(cls: type[torch.optim.Optimizer]) -> ProtocolName:
    """The protocol a class's own methods and signatures call for (see the module docstring)."""
    if callable(getattr(cls, "first_step", None)) and callable(getattr(cls, "second_step", None)):
        return "sharpness"
    step = _parameters(cls.step)
    closure = step.get("closure")
    if issubclass(cls, torch.optim.LBFGS) or (
        closure is not None and closure.default is inspect.Parameter.empty
    ):
        return "closure"
    if "hessian" in step:
        return "second_order"
    return "plain"


def has_train_eval(cls: type[torch.optim.Optimizer]) -> bool:
    """Schedule-Free and the like: `train()` and `eval()` switch the parameters' values."""
    return callable(getattr(cls, "train", None)) and callable(getattr(cls, "eval", None))


class GradientClipping:
    """`clip_grad_norm_` to `max_norm` before every optimizer.step() (a step pre-hook: after
    backward, in the plain protocol), as nanoGPT clips; the global norms before clipping are
    summed on the device, and read once an epoch as their mean (epochs.csv's grad_norm)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, parameters: list[torch.Tensor], max_norm: float
    ) -> None:
        self.parameters, self.max_norm = parameters, max_norm
        self.total: torch.Tensor | float = 0.0
        self.steps = 0
        optimizer.register_step_pre_hook(self)

    def __call__(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        self.total = self.total + torch.nn.utils.clip_grad_norm_(self.parameters, self.max_norm)
        self.steps += 1

    def epoch_mean(self) -> float | None:
        """The mean norm before clipping over the steps since the last call."""
        mean = float(self.total) / self.steps if self.steps else None
        self.total, self.steps = 0.0, 0
        return mean
