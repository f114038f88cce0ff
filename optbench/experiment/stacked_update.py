"""K trials' optimizers stepped as stacked tensors: a handful of ops a step for all K trials.

torch.optim steps a batch's K parameter groups one tensor at a time (on a CPU its default is
the single-tensor loop), so a step of K copies of a small model costs K x parameters x ~8 tiny
kernel calls, most of a batched step's time. Here all parameters of the K copies lie in one
[K, P] tensor (per dtype and device; each parameter's stack [K, ...] is a view of its columns,
the copies' own parameters views of its rows for the epoch), the gradients land in another,
and SGD's, Adam's (AdamW's) or RMSprop's update runs once on the flat tensors, every
hyperparameter a column of the K trials' values, read from their groups at every step (a
scheduler sets them). Each op is written the way that rounds as torch.optim's own
single-tensor op does (`param.add_(grad, alpha=-lr)` is `addcmul(param, grad, -lr)`, fused
the same way; `addcdiv_(exp_avg, denom, value=v)` is `addcdiv(v * exp_avg, denom)`), and a row
whose trial skips an op (no momentum, no weight decay) keeps its value by `torch.where`.

Exact, or not used: `stacked_refusal` (experiment/batched.py) steps the trials' lone
optimizers and the stack side by side from their fresh state for three steps and compares
every parameter and every state tensor with torch.equal (kernels that vectorize differently on
another CPU or a GPU, whose torch.optim default is foreach, are found there); otherwise, and
for other optimizers or options (amsgrad, fused, foreach, capturable, a trial with several
groups), torch.optim steps the groups.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

Groups = Sequence[dict[str, Any]]


def _column(values: Sequence[float], like: Tensor) -> Tensor:
    """Per-trial scalars as a [K, 1, ...] tensor of `like`'s dtype, each cast as torch casts a
    Python scalar argument (made once for the same values: they change only with a schedule)."""
    key = (tuple(values), like.dim(), like.dtype, like.device)
    column = _COLUMNS.get(key)
    if column is None:
        if len(_COLUMNS) > 4096:
            _COLUMNS.clear()
        column = torch.tensor(key[0], dtype=torch.float64, device=like.device)
        column = _COLUMNS[key] = column.to(like.dtype).view(-1, *[1] * (like.dim() - 1))
    return column


_COLUMNS: dict[tuple[Any, ...], Tensor] = {}


def _rows(flags: Sequence[bool], like: Tensor) -> Tensor:
    return torch.tensor(list(flags), device=like.device).view(-1, *[1] * (like.dim() - 1))


def _where(flags: Sequence[bool], changed: Callable[[], Tensor], kept: Tensor) -> Tensor:
    """`changed()` in the rows whose trial does the op, `kept` in the others (not computed at
    all when no trial does it; no `where` when every one does)."""
    if not any(flags):
        return kept
    if all(flags):
        return changed()
    return torch.where(_rows(flags, kept), changed(), kept)


class SGDRule:
    """torch.optim.SGD's single-tensor step (_single_tensor_sgd) on stacks."""

    state_keys = ("momentum_buffer",)
    counts_steps = False

    def unsupported(self, group: dict[str, Any]) -> str | None:
        if group.get("fused") or group.get("foreach"):
            return "fused or foreach SGD steps its own way"
        return None

    def kept(self, group: dict[str, Any]) -> tuple[str, ...]:
        """The state torch.optim keeps for a parameter of this group."""
        return self.state_keys if group["momentum"] != 0 else ()

    def step(self, params: list[Tensor], grads: list[Tensor], stacks: dict, groups: Groups) -> None:
        for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
            buffer = stacks["momentum_buffer"][i]
            self._step_one(param, grad, buffer, stacks["fresh"], groups)
        stacks["fresh"] = [False] * len(groups)

    @staticmethod
    def _step_one(
        param: Tensor, grad: Tensor, buffer: Tensor, fresh: list[bool], groups: Groups
    ) -> None:
        lr = [-g["lr"] for g in groups]
        momentum = [g["momentum"] for g in groups]
        decay = [g["weight_decay"] for g in groups]
        moving = [m != 0 for m in momentum]
        grad = _where([g["maximize"] for g in groups], lambda: -grad, grad)
        grad = _where(
            [d != 0 for d in decay], lambda: torch.addcmul(grad, param, _column(decay, param)), grad
        )
        if any(moving):
            damped = [1 - g["dampening"] for g in groups]
            updated = (buffer * _column(momentum, buffer)).addcmul_(grad, _column(damped, buffer))
            updated = _where(fresh, lambda: grad, updated)  # a buffer's first step: the grad
            buffer.copy_(_where(moving, lambda: updated, buffer))
            nesterov = [m and g["nesterov"] for m, g in zip(moving, groups, strict=True)]
            ahead = _where(
                nesterov, lambda: torch.addcmul(grad, buffer, _column(momentum, buffer)), buffer
            )
            grad = _where(moving, lambda: ahead, grad)
        param.addcmul_(grad, _column(lr, param))


class AdamRule:
    """torch.optim.Adam's and AdamW's single-tensor step (_single_tensor_adam) on stacks."""

    state_keys = ("exp_avg", "exp_avg_sq")
    counts_steps = True

    def unsupported(self, group: dict[str, Any]) -> str | None:
        return _unsupported(group, "amsgrad", "lr", "betas", "weight_decay")

    def kept(self, group: dict[str, Any]) -> tuple[str, ...]:
        return self.state_keys

    def step(self, params: list[Tensor], grads: list[Tensor], stacks: dict, groups: Groups) -> None:
        stacks["steps"] = [s + 1 for s in stacks["steps"]]
        for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
            moments = stacks["exp_avg"][i], stacks["exp_avg_sq"][i]
            self._step_one(param, grad, moments, stacks["steps"], groups)

    @staticmethod
    def _step_one(
        param: Tensor,
        grad: Tensor,
        moments: tuple[Tensor, Tensor],
        steps: list[float],
        groups: Groups,
    ) -> None:
        lr = [g["lr"] for g in groups]
        beta1 = [g["betas"][0] for g in groups]
        beta2 = [g["betas"][1] for g in groups]
        decay = [g["weight_decay"] for g in groups]
        decoupled = [bool(g.get("decoupled_weight_decay")) for g in groups]
        grad = _where([g["maximize"] for g in groups], lambda: -grad, grad)
        shrink = [1 - r * d for r, d in zip(lr, decay, strict=True)]
        param.copy_(
            _where(
                [d != 0 and c for d, c in zip(decay, decoupled, strict=True)],
                lambda: param * _column(shrink, param),
                param,
            )
        )
        grad = _where(
            [d != 0 and not c for d, c in zip(decay, decoupled, strict=True)],
            lambda: torch.addcmul(grad, param, _column(decay, param)),
            grad,
        )
        exp_avg, exp_avg_sq = moments
        exp_avg.lerp_(grad, _column([1 - b for b in beta1], exp_avg))
        exp_avg_sq.mul_(_column(beta2, exp_avg_sq)).addcmul_(
            _column([1 - b for b in beta2], grad) * grad, grad
        )
        step_size = [-r / (1 - b**s) for r, b, s in zip(lr, beta1, steps, strict=True)]
        correction2 = [(1 - b**s) ** 0.5 for b, s in zip(beta2, steps, strict=True)]
        eps = [g["eps"] for g in groups]
        denom = (exp_avg_sq.sqrt() / _column(correction2, exp_avg_sq)).add_(_column(eps, exp_avg))
        param.addcdiv_(_column(step_size, exp_avg) * exp_avg, denom)


class RMSpropRule:
    """torch.optim.RMSprop's single-tensor step (_single_tensor_rmsprop) on stacks."""

    state_keys = ("square_avg", "momentum_buffer", "grad_avg")
    counts_steps = True

    def unsupported(self, group: dict[str, Any]) -> str | None:
        return _unsupported(group, "", "lr", "alpha", "weight_decay")

    def kept(self, group: dict[str, Any]) -> tuple[str, ...]:
        momentum = ("momentum_buffer",) if group["momentum"] > 0 else ()
        return ("square_avg", *momentum, *(("grad_avg",) if group["centered"] else ()))

    def step(self, params: list[Tensor], grads: list[Tensor], stacks: dict, groups: Groups) -> None:
        stacks["steps"] = [s + 1 for s in stacks["steps"]]
        for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
            averages = [stacks[key][i] for key in self.state_keys]
            self._step_one(param, grad, averages, groups)

    @staticmethod
    def _step_one(param: Tensor, grad: Tensor, averages: list[Tensor], groups: Groups) -> None:
        square_avg, buffer, grad_avg = averages
        lr = [-g["lr"] for g in groups]
        alpha = [g["alpha"] for g in groups]
        decay = [g["weight_decay"] for g in groups]
        centered = [bool(g["centered"]) for g in groups]
        moving = [g["momentum"] > 0 for g in groups]
        grad = _where([g["maximize"] for g in groups], lambda: -grad, grad)
        grad = _where(
            [d != 0 for d in decay], lambda: torch.addcmul(grad, param, _column(decay, param)), grad
        )
        square_avg.mul_(_column(alpha, square_avg)).addcmul_(
            _column([1 - a for a in alpha], grad) * grad, grad
        )
        if any(centered):
            grad_avg.lerp_(grad, _column([1 - a for a in alpha], grad_avg))
        avg = _where(
            centered,
            lambda: square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_(),
            square_avg.sqrt(),
        ).add_(_column([g["eps"] for g in groups], square_avg))
        if any(moving):
            momentum = [g["momentum"] for g in groups]
            buffer.mul_(_column(momentum, buffer)).addcdiv_(grad, avg)
        stepped = _where(
            moving,
            lambda: torch.addcmul(param, buffer, _column(lr, param)),
            torch.addcdiv(param, _column(lr, param) * grad, avg),
        )
        param.copy_(stepped)


def _unsupported(group: dict[str, Any], option: str, *scalars: str) -> str | None:
    """Why a group's options are not what the stacked update is written for."""
    for name in (option, "fused", "foreach", "capturable", "differentiable"):
        if name and group.get(name):
            return f"{name} steps its own way"
    if any(isinstance(group[k], Tensor) for k in scalars):
        return f"a tensor {' or '.join(scalars)}"
    return None


RULES: dict[type, Any] = {torch.optim.SGD: SGDRule(), torch.optim.Adam: AdamRule()}
RULES[torch.optim.RMSprop] = RMSpropRule()
RULES[torch.optim.AdamW] = RULES[torch.optim.Adam]  # Adam's step, decoupled_weight_decay set


def rule_refusal(optimizers: Sequence[torch.optim.Optimizer]) -> str | None:
    """Why these lone optimizers cannot be stacked, before any is stepped; None if they may."""
    first = optimizers[0]
    rule = RULES.get(type(first))
    if rule is None:
        return f"no stacked update is written for {type(first).__name__}"
    for optimizer in optimizers:
        if len(optimizer.param_groups) != 1:
            return "a trial's optimizer has several parameter groups"
        group = optimizer.param_groups[0]
        reason = rule.unsupported(group)
        if reason is not None:
            return reason
        if any(p.is_complex() or p.is_sparse for p in group["params"]):
            return "complex or sparse parameters"
    shapes = [tuple(p.shape) for p in first.param_groups[0]["params"]]
    if any([tuple(p.shape) for p in o.param_groups[0]["params"]] != shapes for o in optimizers):
        return "the trials' parameters differ in shape"
    return None


class StackedStep:
    """The trials' optimizers as stacks for a stretch of steps (an epoch): built from their
    parameters and state, their parameters made views of the stacks' rows and their `.grad`
    views of the gradient stack (a backward accumulates into it), then `hand_back` gives every
    trial its own tensors and its optimizer the state torch.optim would hold."""

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)
        self.rule = RULES[type(optimizers[0])]
        self.groups = [o.param_groups[0] for o in optimizers]
        self.per_copy = [group["params"] for group in self.groups]
        columns = list(zip(*self.per_copy, strict=True))  # each parameter's K copies
        states = [
            [o.state.get(p, {}) for p in ps]
            for o, ps in zip(optimizers, self.per_copy, strict=True)
        ]
        flat = _FlatLayout(columns)
        self.flat_params, self.params = flat.filled(columns)
        self.flat_grads, self.grads = flat.filled()
        self.stacks: dict[str, Any] = {}  # the rule's state: flats by key, and its lists
        self.views: dict[str, list[Tensor]] = {}  # each state key's per-parameter stacks
        for key in self.rule.state_keys:
            self.stacks[key], self.views[key] = flat.filled(
                [
                    [
                        s[i][key] if key in s[i] else torch.zeros_like(p)
                        for s, p in zip(states, col, strict=True)
                    ]
                    for i, col in enumerate(columns)
                ]
            )
        first = [s[0] for s in states]
        self.stacks["fresh"] = [  # SGD's: a momentum buffer starting at this step
            any(key not in s for key in self.rule.kept(g))
            for g, s in zip(self.groups, first, strict=True)
        ]
        self.stacks["steps"] = [float(s["step"]) if "step" in s else 0.0 for s in first]
        self.had_state = [bool(s) for s in first]
        for i, column in enumerate(columns):
            for k, p in enumerate(column):
                p.data = self.params[i][k]
                p.grad = self.grads[i][k]

    def zero_grad(self) -> None:
        for grads in self.flat_grads:
            grads.zero_()

    def step(self) -> None:
        with torch.no_grad():
            self.rule.step(self.flat_params, self.flat_grads, self.stacks, self.groups)
        self.had_state = [True] * len(self.groups)

    def hand_back(self) -> None:
        """Every trial's parameters, gradients and optimizer state its own tensors again."""
        for k, (optimizer, params) in enumerate(zip(self.optimizers, self.per_copy, strict=True)):
            state: dict[Any, dict[str, Any]] = defaultdict(dict)
            for i, p in enumerate(params):
                p.data = self.params[i][k].clone()
                p.grad = self.grads[i][k].clone()
                if not self.had_state[k]:
                    continue
                if self.rule.counts_steps:
                    state[p]["step"] = torch.tensor(self.stacks["steps"][k])
                for key in self.rule.kept(self.groups[k]):
                    state[p][key] = self.views[key][i][k].clone()
            optimizer.state = state


# Where a copy's tensor starts, as torch's CPU allocator starts every tensor: on 64 bytes. A
# kernel's sums can depend on where its operands lie (MKL's do), so a copy's parameter must
# lie as a lone run's does for its forward to be the lone one's.
ALIGNMENT = 64


def _aligned(elements: int, dtype: torch.dtype) -> int:
    """`elements` rounded up to whole ALIGNMENT bytes."""
    per = max(1, ALIGNMENT // dtype.itemsize)
    return -(-elements // per) * per


class _FlatLayout:
    """Where each parameter's K copies lie in flat [K, P] tensors, one per dtype and device:
    a rule's update is then a handful of ops on those few tensors, not a handful per
    parameter. Each parameter's stack [K, ...] is a view of its flat tensor's columns, each
    copy's tensor a contiguous view of one row's, starting on ALIGNMENT bytes (the columns
    between them pad, stepped with the rest and never read)."""

    def __init__(self, columns: Sequence[Sequence[Tensor]]) -> None:
        self.k = len(columns[0])
        self.kinds: list[tuple[torch.dtype, torch.device]] = []
        self.where: list[tuple[int, int, torch.Size]] = []  # (flat, start column, shape)
        widths: list[int] = []
        for column in columns:
            kind = (column[0].dtype, column[0].device)
            if kind not in self.kinds:
                self.kinds.append(kind)
                widths.append(0)
            flat = self.kinds.index(kind)
            self.where.append((flat, widths[flat], column[0].shape))
            widths[flat] = _aligned(widths[flat] + column[0].numel(), kind[0])
        self.widths = widths

    def filled(
        self, columns: Sequence[Sequence[Tensor]] | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Fresh flats and each parameter's [K, ...] view of them, holding each parameter's K
        tensors in `columns` (zeros without)."""
        flats = [
            torch.zeros(self.k, width, dtype=dtype, device=device)
            for (dtype, device), width in zip(self.kinds, self.widths, strict=True)
        ]
        views = [
            flats[f][:, start : start + shape.numel()].view(self.k, *shape)
            for f, start, shape in self.where
        ]
        for view, column in zip(views, columns or [[] for _ in views], strict=True):
            if column:
                view.copy_(torch.stack([t.detach() for t in column]))
        return flats, views
