"""The K copies' forward and backward as one batched kernel per layer, for models built of
Linear layers, flattening and elementwise activations (an MLP, a logistic regression): the
stacks' rows are the copies, `torch.bmm` multiplies all of them at once. A model of optbench's
own may forward its K copies itself (`stacked_forward(params, inputs)`: the 2-D test functions,
whose ops are elementwise). The K batches arrive stacked too (`GatheredBatches`, one gather
from the split the trials share), or are stacked here.

torch.func's vmap does the same for any model, but its transforms cost about 1.5 ms of Python a
step, more than a small MLP's arithmetic for 16 copies. Here a step is a handful of autograd
nodes. The backward is written out (`_StackedLinear`) so that each product is taken in the
orientation a lone nn.Linear's backward takes it: torch computes a transposed weight's gradient
as `grad_output.T @ input` (mm_mat2_backward), not bmm's default `input.T @ grad_output`, and
the two round differently. Whether the result is each lone run's to the bit is still proven,
never assumed (experiment/copy_gradients.py compares every new shape of step with the loop).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, overload

import torch
import torch.nn.functional as F
from torch import nn

from optbench.components.losses import loss_of
from optbench.components.models import FlatLinear, FunctionValue

# Modules without parameters that act on each element alone: the same on a [K, B, ...] stack.
ELEMENTWISE = (
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.Softplus,
    nn.Identity,
)

Layer = tuple[str, Any]  # ("linear", parameter prefix) | ("flatten", start_dim) | ("apply", module)
# (stacked parameters by name, stacked inputs [K, B, ...]) -> the copies' outputs [K, B, ...]
StackedForward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


def layers_of(model: nn.Module, prefix: str = "") -> list[Layer] | None:
    """The model as a list of stackable layers, None where any part is not one (a module of
    another type, a subclass that may forward otherwise)."""
    kind = type(model)
    if kind is nn.Linear:
        return [("linear", prefix)]
    if kind is nn.Flatten and model.end_dim == -1 and model.start_dim >= 1:
        return [("flatten", model.start_dim)]
    if kind is FlatLinear:
        return [("flatten", 1), ("linear", f"{prefix}fc.")]
    if kind in ELEMENTWISE:
        return [("apply", model)]
    if kind is nn.Sequential:
        layers: list[Layer] = []
        for name, child in model.named_children():
            inner = layers_of(child, f"{prefix}{name}.")
            if inner is None:
                return None
            layers += inner
        return layers
    return None


class _StackedLinear(torch.autograd.Function):
    """nn.Linear on [K, B, in] inputs with [K, out, in] weights, its gradients taken in a lone
    F.linear's orientations: input @ W.T forward; grad @ W, grad.T @ input and grad summed over
    the samples backward. `per_copy`: the forward as each copy's own F.linear, for products a
    batched kernel sums otherwise than a lone one (ATen multiplies small batches, such as a
    Linear(10, 1)'s, with a loop of its own)."""

    @staticmethod
    def forward(
        ctx: Any, inputs: torch.Tensor, weight: torch.Tensor, bias: Any, per_copy: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(inputs, weight)
        ctx.biased = bias is not None
        if per_copy:
            biases = [None] * len(weight) if bias is None else bias
            return torch.stack(
                [F.linear(x, w, b) for x, w, b in zip(inputs, weight, biases, strict=True)]
            )
        if bias is None:
            return torch.bmm(inputs, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), inputs, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, Any, Any, None]:
        inputs, weight = ctx.saved_tensors
        wanted = ctx.needs_input_grad
        grad_inputs = torch.bmm(grad, weight) if wanted[0] else None
        grad_weight = torch.bmm(grad.transpose(1, 2), inputs) if wanted[1] else None
        grad_bias = grad.sum(1) if ctx.biased and wanted[2] else None
        return grad_inputs, grad_weight, grad_bias, None


def stacked_forward(
    layers: Sequence[Layer],
    params: dict[str, torch.Tensor],
    inputs: torch.Tensor,
    per_copy: bool = False,
) -> torch.Tensor:
    """The K copies' outputs [K, B, ...] from their stacked inputs and parameters by name
    (`per_copy`: each Linear's forward product taken copy by copy, see _StackedLinear)."""
    x = inputs
    for kind, arg in layers:
        if kind == "linear":
            weight, bias = params[f"{arg}weight"], params.get(f"{arg}bias")
            x = _StackedLinear.apply(x, weight, bias, per_copy)
        elif kind == "flatten":
            x = x.flatten(arg + 1)
        else:
            x = arg(x)
    return x


Batch = tuple[Any, Any]  # one step's (inputs, targets); inputs may be a dict of columns


class GatheredBatches(Sequence[Batch]):
    """K trials' batches fetched in one gather from the training split they share: the stacks
    [K, B, ...] that the batched ways read as they are, and each copy's own batch (the loop's)
    as a fresh copy of its rows, laid out as a lone fetch lays it out. A kernel's sums can
    depend on where a tensor starts in memory (MKL's do), so a view into the stack is not a
    lone run's batch."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    @overload
    def __getitem__(self, k: int) -> Batch: ...
    @overload
    def __getitem__(self, k: slice) -> Sequence[Batch]: ...
    def __getitem__(self, k: int | slice) -> Batch | Sequence[Batch]:
        if isinstance(k, slice):
            return [self[i] for i in range(len(self))[k]]
        return self.inputs[k].clone(), self.targets[k].clone()


def stack_values(values: Sequence[Any]) -> Any:
    """K tensors, or K dicts of tensors by name, stacked along a new leading dimension."""
    if isinstance(values[0], dict):
        return {key: torch.stack([value[key] for value in values]) for key in values[0]}
    return torch.stack(list(values))


def stacked_batch(batches: Sequence[Batch]) -> tuple[Any, Any]:
    """The K batches' inputs and targets, each stacked along a new leading dimension."""
    if isinstance(batches, GatheredBatches):
        return batches.inputs, batches.targets
    return stack_values([x for x, _ in batches]), stack_values([y for _, y in batches])


def copy_targets(batches: Sequence[Batch]) -> list[Any]:
    """Each copy's targets, for its loss (a gathered stack's rows, as they are)."""
    if isinstance(batches, GatheredBatches):
        return list(batches.targets)
    return [y for _, y in batches]


def stacked_forward_of(model: nn.Module, per_copy: bool = False) -> StackedForward | None:
    """How the K copies of `model` forward at once, None where they cannot: a stack of Linear
    layers and activations as batched matmuls (`per_copy`: their forward products copy by
    copy), or the model's own `stacked_forward`, where the class that defines it also defines
    the forward it stands for (not a subclass's)."""
    layers = layers_of(model)
    if layers is not None:
        return functools.partial(stacked_forward, layers, per_copy=per_copy)
    if per_copy:  # a variant of the layers' products only
        return None
    kind = type(model)
    if hasattr(kind, "stacked_forward") and _defines(kind, "forward") is _defines(
        kind, "stacked_forward"
    ):
        return model.stacked_forward  # type: ignore[no-any-return]
    return None


def _defines(kind: type, name: str) -> type | None:
    """The class in `kind`'s MRO whose own body defines `name`."""
    return next((c for c in kind.__mro__ if name in vars(c)), None)


def stacked_grads(
    base: nn.Module,
    params: dict[str, torch.Tensor],
    copies: Sequence[Any],
    loss_fn: nn.Module,
    batches: Sequence[Batch],
    per_copy: bool = False,
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Each copy's loss, taken on its own outputs as a lone run takes it, and the stacked
    gradients by name (copy_gradients' way of computing a step, as `_vmap_grads`)."""
    forward_all = stacked_forward_of(base, per_copy)
    if forward_all is None:
        raise TypeError(f"{type(base).__name__} cannot forward its copies stacked")
    if set(params) != {name for name, _ in base.named_parameters()}:
        raise TypeError("some of its parameters are frozen")
    inputs, _ = stacked_batch(batches)
    if isinstance(inputs, dict):
        raise TypeError("its inputs are a dict of columns")
    leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
    losses, summed = stacked_losses(loss_fn, forward_all(leaves, inputs), copy_targets(batches))
    summed.backward()  # each loss's gradient is 1, as its lone backward's
    return losses, {name: p.grad for name, p in leaves.items()}


def stacked_losses(
    loss_fn: nn.Module, outputs: torch.Tensor, targets: Sequence[torch.Tensor]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each copy's loss on its outputs [K, B, ...], as its lone run's value, and the sum to
    backward for their gradients. A plain cross-entropy on class indices is taken on the stack:
    one log-softmax (row by row, as each copy's own), each copy's mean NLL read from it without
    autograd, and for the gradients their summed NLL over B, whose backward gives every target
    -1/B as each lone mean NLL's does. A test function's value (the mean of its outputs) is
    each copy's mean read without autograd, the gradients from one mean over each copy's
    outputs (1/B each, as a lone mean's backward). Every other loss is each copy's own."""
    if type(loss_fn) is FunctionValue and isinstance(outputs, torch.Tensor):
        with torch.no_grad():
            losses = [loss_fn(out, y) for out, y in zip(outputs, targets, strict=True)]
        return losses, outputs.mean(dim=tuple(range(1, outputs.dim()))).sum()
    stacked = (
        torch.stack(list(targets)) if _plain_cross_entropy(loss_fn, outputs, targets) else None
    )
    if stacked is not None and not bool((stacked == loss_fn.ignore_index).any()):
        # (an ignored target: lone means count the rest, so each copy's own call below)
        log_probs = torch.log_softmax(outputs, -1)
        with torch.no_grad():
            losses = [F.nll_loss(lp, y) for lp, y in zip(log_probs, targets, strict=True)]
        nll = F.nll_loss(log_probs.flatten(0, 1), stacked.flatten(), reduction="sum")
        return losses, nll / outputs.shape[1]
    alone = [loss_of(loss_fn, out, y) for out, y in zip(outputs.unbind(), targets, strict=True)]
    return [loss.detach() for loss in alone], torch.stack(alone).sum()


def _plain_cross_entropy(loss_fn: nn.Module, outputs: Any, targets: Sequence[Any]) -> bool:
    """nn.CrossEntropyLoss as its defaults take it, on [K, B, C] logits and class indices."""
    return (
        type(loss_fn) is nn.CrossEntropyLoss
        and loss_fn.weight is None
        and loss_fn.reduction == "mean"
        and loss_fn.label_smoothing == 0.0
        and isinstance(outputs, torch.Tensor)
        and outputs.dim() == 3
        and all(y.dim() == 1 and not y.is_floating_point() for y in targets)
    )


def stacked_outputs(
    models: Sequence[nn.Module], per_copy: bool = False
) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """The copies' outputs on one batch of inputs they all take (an evaluation's), from one
    forward of their stacked parameters; for models `stacked_forward_of` reads."""
    forward_all = stacked_forward_of(models[0], per_copy)
    assert forward_all is not None
    named = [dict(model.named_parameters()) for model in models]
    params = {name: torch.stack([n[name].detach() for n in named]) for name in named[0]}

    def outputs(inputs: torch.Tensor) -> list[torch.Tensor]:
        return list(forward_all(params, inputs.expand(len(models), *inputs.shape)))

    return outputs
