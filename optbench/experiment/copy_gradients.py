"""How the K model copies of a batch (experiment/batched.py) get their gradients, chosen while
planning (`copy_gradients`): one batched matmul per layer for a model of Linear layers and
activations (or the model's own forward of all copies: the 2-D test functions), one vmap over
the copies' stacked parameters for any other, or each copy's forward in turn.

- `StackedCopies` (experiment/stacked_layers.py): the copies' Linear layers as `torch.bmm`
  over their stacked weights, with a lone nn.Linear's backward written out (where bmm's
  forward rounds otherwise, each copy's own F.linear forward: `per_copy`), or a model's own
  `stacked_forward`; a few autograd nodes a step where vmap's transforms cost more than a small
  model's arithmetic. Proven as vmap is, and used from 2 copies on: it is cheaper than the loop
  from there.
- `VmappedCopies`, torch.func's model ensembling: every copy's parameters and buffers stacked
  along a new leading dimension, and one `vmap(grad_and_value(functional_call))` computes each
  copy's loss and gradients on its own trial's batch, one batched kernel per layer for all
  copies instead of K. The gradients are written to each copy's `.grad`, so the optimizer step
  that follows is the same as after the loop.
- `LoopedCopies`: each copy's forward and loss in turn (its trial's global RNG state swapped in
  where the forward draws: dropout), then one backward of the summed losses. The gradient of a
  sum of independent losses is each loss's own, so each copy's gradient is its lone run's by
  construction.

Both batched ways are exact only where their kernels sum in the order that K lone ones do, a
property of the kernels a device picks for a shape (and of the threads: with two, a lone
32-sample matmul splits its sums where bmm does not), so it is proven, never assumed. While
planning, one step is computed both ways on the trials' first batches, and a batched way is
chosen only when every
loss and gradient agrees to the bit and the forward leaves the buffers alone. The loop is
chosen otherwise, with the reason (`optbench validate --batching` prints it): a forward that
draws random numbers (dropout), an L2 penalty read off the module's own parameters, BatchNorm's
running statistics, data-dependent control flow or any other vmap error, or sums in another
order. In training, each new shape of step (the number of copies and the batches' shapes: the
epoch's last, smaller batch, a batch left with fewer trials after one is pruned or diverged) is
proven again on its first real step, which the loop takes; that shape's later steps are
vmapped only if the two agreed. On a CPU, steps of fewer than CPU_VMAP_FROM copies take the
loop: there a vmap's fixed cost is more than it saves.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from optbench.components.losses import loss_of
from optbench.components.outputs import forward
from optbench.experiment.plan import RunPlan, trial_batch
from optbench.experiment.runner import torch_threads
from optbench.experiment.stacked_layers import (
    Batch,
    GatheredBatches,
    copy_targets,
    layers_of,
    stack_values,
    stacked_batch,
    stacked_forward_of,
    stacked_grads,
    stacked_outputs,
)
from optbench.experiment.train import _l2_penalty, _loss

Outputs = Callable[[Any], list[torch.Tensor]]  # inputs -> each copy's outputs on them

# On a CPU a vmap's fixed cost outweighs what it saves below about 10 copies: with the stacked
# update (experiment/stacked_update.py) a digits_mlp batch of Adam trials took 0.33 s looped
# against 0.59 s vmapped at K=4, the same at K=8 and 12, and 1.44 s against 1.05 s at K=16
# (`python benchmarks/batched_update.py --k 4 8 12 16`, CPU time; BENCHMARKS.md section 13).
# On a GPU, where each copy's kernels cost a launch, any batch is vmapped.
CPU_VMAP_FROM = 10


class CopyGradients(Protocol):
    """Each trial's loss on its own batch, each copy's gradients left in its `.grad` (`stacked`:
    the copies' parameters and gradients are rows of its stacks, experiment/stacked_update.py,
    and a vmap reads and writes those directly)."""

    def __call__(
        self, trials: Sequence[Any], batches: Sequence[Batch], stacked: Any = None
    ) -> list[torch.Tensor]: ...

    def outputs_of(self, models: Sequence[nn.Module]) -> Outputs | None:
        """The copies' outputs on an evaluation batch, computed together; None: each copy
        evaluates alone."""
        ...

    def describe(self) -> str: ...


class LoopedCopies:
    """Each copy's forward and loss in turn, one backward of the summed losses."""

    def __init__(self, reason: str, draws: bool = False) -> None:
        self.reason = reason  # why not vmapped
        self.draws = draws  # whether the forward draws from the global RNG (dropout)

    def __call__(
        self, trials: Sequence[Any], batches: Sequence[Batch], stacked: Any = None
    ) -> list[torch.Tensor]:
        losses = []
        for trial, (inputs, targets) in zip(trials, batches, strict=True):
            training = trial.training
            with trial.own_rng() if self.draws else contextlib.nullcontext():
                loss = _loss(training.model, training.loss_fn, inputs, targets, training.penalty)
            losses.append(loss)
        torch.stack(losses).sum().backward()
        return losses

    def outputs_of(self, models: Sequence[nn.Module]) -> Outputs | None:
        return None

    def describe(self) -> str:
        return f"one forward and backward per copy, not vmapped: {self.reason}"


class VmappedCopies:
    """One vmap over the stacked copies for every shape of step proven exact (see the module's
    docstring); the loop for the others."""

    def __init__(self, fewest: int) -> None:
        self.fewest = fewest  # copies a step needs to be vmapped (CPU_VMAP_FROM on a CPU)
        self.refusals: dict[Any, str | None] = {}  # step shape: None when vmap is exact for it
        self._copies: dict[nn.Module, _Copy] = {}  # each model's tensors, read once

    def __call__(
        self, trials: Sequence[Any], batches: Sequence[Batch], stacked: Any = None
    ) -> list[torch.Tensor]:
        models = [trial.training.model for trial in trials]
        loss_fn = trials[0].training.loss_fn
        if len(models) < self.fewest:
            return _looped(models, loss_fn, batches)
        copies = [self._copies.get(m) or self._copies.setdefault(m, _Copy(m)) for m in models]
        shape = _step_shape(batches)
        if shape not in self.refusals:  # its first step: the loop's, vmap compared with it
            self.refusals[shape], losses = _both_ways(copies, loss_fn, batches, self.grads)
            return losses
        if self.refusals[shape] is not None:
            return _looped(models, loss_fn, batches)
        if stacked is not None:  # the copies' parameters are the stacks' rows: no stacking
            names = list(copies[0].params)
            params = dict(zip(names, stacked.params, strict=True))
            losses, grads = self.grads(copies[0].model, params, copies, loss_fn, batches)
            for stack, name in zip(stacked.grads, names, strict=True):
                stack.copy_(grads[name])
            return losses
        losses, gradients = _vmapped(copies, loss_fn, batches, self.grads)
        for copy, grads in zip(copies, gradients, strict=True):
            for parameter, gradient in zip(copy.params.values(), grads, strict=True):
                parameter.grad = gradient
        return losses

    def grads(self, *args: Any) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """One step's losses and stacked gradients, computed for all copies at once."""
        return _vmap_grads(*args)

    def outputs_of(self, models: Sequence[nn.Module]) -> Outputs | None:
        return None

    def describe(self) -> str:
        return f"one vmap over the stacked copies ({self._proviso()})"

    def _proviso(self) -> str:
        fewer = ""
        if self.fewest > 2:
            fewer = f"from {self.fewest} copies a step, fewer one at a time; "
        return f"{fewer}each new shape of step proven first"


class StackedCopies(VmappedCopies):
    """A model of Linear layers and activations (one batched matmul per layer for all copies),
    or one that forwards its copies stacked itself (experiment/stacked_layers.py): cheaper than
    vmap's transforms; proven as vmap is."""

    def __init__(self, fewest: int, layered: bool, per_copy: bool = False) -> None:
        super().__init__(fewest)
        self.layered = layered  # the layers' matmuls, else the model's own stacked_forward
        self.per_copy = per_copy  # the layers' forward products copy by copy (_StackedLinear)

    def grads(self, *args: Any) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        return stacked_grads(*args, per_copy=self.per_copy)

    def outputs_of(self, models: Sequence[nn.Module]) -> Outputs | None:
        """One stacked forward for all copies, for each shape of evaluation batch whose first
        was proven equal to the lone forwards (which that first one returns)."""
        together = stacked_outputs(models, self.per_copy)

        def outputs(inputs: Any) -> list[torch.Tensor]:
            if isinstance(inputs, dict):  # columns: each copy's own forward
                return [forward(model, inputs) for model in models]
            shape = ("evaluation", len(models), tuple(inputs.shape))
            if shape not in self.refusals:  # its first batch: the lone forwards, compared
                alone = [forward(model, inputs) for model in models]
                same = all(map(torch.equal, together(inputs), alone))
                self.refusals[shape] = None if same else "its outputs differ from the lone's"
                return alone
            if self.refusals[shape] is None:
                return together(inputs)
            return [forward(model, inputs) for model in models]

        return outputs

    def describe(self) -> str:
        how = "one batched matmul per layer" if self.layered else "the model's own forward"
        if self.per_copy:
            how = "each copy's own forward product per layer, the rest batched,"
        return f"{how} for all copies ({self._proviso()})"


@dataclass
class _Copy:
    """A model copy's tensors by name, as functional_call takes them: those it differentiates,
    and the others (buffers, frozen parameters)."""

    model: nn.Module
    params: dict[str, torch.Tensor] = field(init=False)
    others: dict[str, torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        named = dict(self.model.named_parameters())
        self.params = {name: p for name, p in named.items() if p.requires_grad}
        frozen = {name: p for name, p in named.items() if not p.requires_grad}
        self.others = frozen | dict(self.model.named_buffers())


def copy_gradients(plans: Sequence[RunPlan]) -> CopyGradients:
    """How the copies of `plans` (one batch, one problem) get their gradients: a model of
    Linear layers and activations as batched matmuls (a model that forwards its copies stacked
    itself, so), any other vmapped, where one step computed both ways agrees to the bit; else
    the loop, with the reason."""
    first = plans[0]
    if _forward_draws(first):
        reason = "its forward draws random numbers (dropout), each copy its lone run's in turn"
        return LoopedCopies(reason, draws=True)
    rng = torch.get_rng_state()
    try:
        with torch_threads(first.threads):  # the kernels, and so the sums' order, depend on them
            model = first.build_model()
            layered = layers_of(model) is not None
            if stacked_forward_of(model) is not None:
                if _refusal(plans, stacked_grads) is None:
                    return StackedCopies(2, layered=layered)
                per_copy = functools.partial(stacked_grads, per_copy=True)
                if layered and _refusal(plans, per_copy) is None:  # a Linear(10, 1)
                    return StackedCopies(2, layered=True, per_copy=True)
            refusal = _refusal(plans, _vmap_grads)
    finally:
        torch.set_rng_state(rng)
    if refusal is not None:
        return LoopedCopies(refusal)
    return VmappedCopies(CPU_VMAP_FROM if first.device.type == "cpu" else 2)


def _refusal(plans: Sequence[RunPlan], grads: Any) -> str | None:
    """Why `grads` (vmap, or the layers' batched matmuls) may not stand in for the loop (None
    where it may): one step of the trials' copies, built as their lone runs build them, on each
    trial's first batch of the run's size, computed both ways."""
    models = []
    for plan in plans:
        torch.manual_seed(plan.config.seed)
        models.append(plan.build_model())
    if _l2_penalty(plans[0], models[0]) is not None:
        return "its L2 penalty reads the module's own parameters, not vmap's"
    batches = []
    for plan in plans:
        inputs, targets = trial_batch(plan.data, plan.config.seed, plan.config.data.batch_size)
        batches.append((_to(inputs, plan.device), targets.to(plan.device)))
    refusal, _ = _both_ways([_Copy(m) for m in models], plans[0].build_loss(), batches, grads)
    return refusal


def _forward_draws(plan: RunPlan) -> bool:
    """Whether a training forward draws from the global RNG (dropout)."""
    rng = torch.get_rng_state()
    try:
        torch.manual_seed(plan.config.seed)
        model = plan.build_model()
        model.train()
        inputs, _ = trial_batch(plan.data, plan.config.seed)
        before = torch.get_rng_state()
        with torch.no_grad():
            forward(model, _to(inputs, plan.device))
        return not torch.equal(before, torch.get_rng_state())
    finally:
        torch.set_rng_state(rng)


def _to(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, dict):
        return {key: value.to(device) for key, value in inputs.items()}
    return inputs.to(device)


def _step_shape(batches: Sequence[Batch]) -> tuple[Any, ...]:
    """What decides the kernels of a vmapped step: the number of copies, the batches' shapes."""

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return tuple((key, tuple(column.shape)) for key, column in value.items())
        return tuple(value.shape)

    if isinstance(batches, GatheredBatches):  # every copy's batch is a row of the stacks
        inputs, targets = batches.inputs, batches.targets
        return ((tuple(inputs.shape[1:]), tuple(targets.shape[1:])),) * len(batches)
    return tuple((shape(inputs), shape(targets)) for inputs, targets in batches)


def _looped(models: Sequence[nn.Module], loss_fn: nn.Module, batches: Sequence[Batch]) -> Any:
    """The loop's losses; each copy's gradients in its `.grad`."""
    losses = [_loss(m, loss_fn, x, y) for m, (x, y) in zip(models, batches, strict=True)]
    torch.stack(losses).sum().backward()
    return losses


def _vmapped(
    copies: Sequence[_Copy], loss_fn: nn.Module, batches: Sequence[Batch], grads_of: Any
) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Every copy's gradients (in its `params`' order), from one `grads_of` (vmap, or the
    layers' matmuls) over its stacked parameters, and its loss; the copies are left as they
    were."""
    with torch.no_grad():
        params = stack_values([copy.params for copy in copies])
    losses, grads = grads_of(copies[0].model, params, copies, loss_fn, batches)
    per_name = [grads[name].unbind() for name in copies[0].params]
    return losses, [list(copy) for copy in zip(*per_name, strict=True)]


def _vmap_grads(
    base: nn.Module,
    params: dict[str, torch.Tensor],
    copies: Sequence[_Copy],
    loss_fn: nn.Module,
    batches: Sequence[Batch],
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Each copy's loss, read off its outputs from the vmap as a lone run reads it, and the
    stacked gradients by name, from one vmap over `params` (the copies' stacked parameters)."""
    with torch.no_grad():
        others = stack_values([copy.others for copy in copies])

    def copy_loss(params: Any, others: Any, inputs: Any, targets: Any) -> Any:
        args, kwargs = ((), inputs) if isinstance(inputs, dict) else ((inputs,), {})  # forward's
        outputs = functional_call(base, (params, others), args, kwargs)
        if not isinstance(outputs, torch.Tensor):
            raise TypeError(f"its outputs are a {type(outputs).__name__}, not one tensor")
        return loss_of(loss_fn, outputs, targets), outputs.detach()

    inputs, targets = stacked_batch(batches)
    grads, (_, outputs) = vmap(grad_and_value(copy_loss, has_aux=True))(
        params, others, inputs, targets
    )
    with torch.no_grad():  # vmap's own loss may sum in another order (nll_loss's mean does)
        losses = [
            loss_of(loss_fn, out, y) for out, y in zip(outputs, copy_targets(batches), strict=True)
        ]
    return losses, grads


def _both_ways(
    copies: Sequence[_Copy], loss_fn: nn.Module, batches: Sequence[Batch], grads_of: Any
) -> tuple[str | None, list[torch.Tensor]]:
    """One step's losses and gradients computed by `grads_of` (vmap, or the layers' matmuls),
    then by the loop (which leaves its gradients in each copy's `.grad`: the step taken),
    compared to the bit. Why vmap may not stand in for the loop (None where it may), and the
    loop's losses."""
    buffers = [{name: b.clone() for name, b in copy.others.items()} for copy in copies]
    try:
        mapped = _vmapped(copies, loss_fn, batches, grads_of)
    except Exception as exc:  # data-dependent control flow, in-place updates, shapes that differ
        mapped = exc
    losses = _looped([copy.model for copy in copies], loss_fn, batches)
    if isinstance(mapped, Exception):
        said = str(mapped).strip().split(". ")[0].splitlines()[0] if str(mapped).strip() else ""
        return f"vmap cannot take its forward ({type(mapped).__name__}: {said})", losses
    for copy, before in zip(copies, buffers, strict=True):
        if any(not torch.equal(copy.others[name], b) for name, b in before.items()):
            return "its forward changes its buffers (BatchNorm's running statistics)", losses
    mapped_losses, gradients = mapped
    for copy, loss, mapped_loss, grads in zip(
        copies, losses, mapped_losses, gradients, strict=True
    ):
        if not torch.equal(loss.detach(), mapped_loss):
            return "vmap's losses differ from the loop's (its kernels sum in another order)", losses
        for (name, p), g in zip(copy.params.items(), grads, strict=True):
            if p.grad is None or not torch.equal(p.grad, g):
                return f"vmap's gradient of {name} differs from the loop's", losses
    return None, losses
