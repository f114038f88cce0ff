"""The training loop: the notebook loop, exactly, over in-memory data.

torch.manual_seed(seed) before the model is built; the batches of a DataLoader with
shuffle=True and a generator seeded with the same seed (served by index with the DataLoader's
very random draws: ShuffledBatches in components/data/memory.py); each batch stepped as the
optimizer's protocol says (components/stepping.py: zero_grad, forward, loss, backward, step for
most; step(closure) for LBFGS; two passes for SAM); train_loss is the mean of the epoch's batch
losses; after every epoch, evaluation over `DataLoader(test_set, batch_size=..., shuffle=False)`.
Evaluation here slices the test tensors in order, and draws one number from the global
generator per pass, as iterating that DataLoader does (its base seed): so dropout masks after
the first epoch are the ones the evaluating loop gets. That loop, not one that never
evaluates, is the reference.

Fast mode (`fast: true`) changes one thing: batch losses are summed on the device and read
once per epoch, so there is no host synchronisation per batch (what costs on a GPU). Training
itself is unchanged; the epoch's mean loss differs only by float32 summation (about 1e-7), and
a NaN or inf loss is found at the end of its epoch instead of at its step. What else was
measured for fast mode and left out is in BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from optbench.components.data import InMemoryDataset, ShuffledBatches, load_splits
from optbench.components.losses import loss_of
from optbench.components.optimizers import effective_lr
from optbench.components.outputs import forward, logits_of
from optbench.components.stepping import Accumulated, GradientClipping
from optbench.core.metrics import BETWEEN, bits_per_byte, epoch_row
from optbench.experiment.checkpoint import (
    CheckpointFile,
    load_optimizer_state,
    restore_rng,
    rng_state,
)
from optbench.experiment.plan import RunPlan
from optbench.storage.results import Status


class TrainingObserver(Protocol):
    """What the loop reports as it goes (display, files on disk, a notebook's progress bar)."""

    def run_started(self, title: str, epochs: int) -> None: ...

    def epoch_started(self, epoch: int, num_batches: int) -> None: ...

    def batch_finished(self, batch: int, loss: float | None) -> None: ...

    def epoch_finished(self, row: dict[str, Any]) -> None: ...

    def run_ended(self, status: str) -> None: ...


class StopTraining(Exception):
    """Raised by an observer to end a run on purpose after an epoch (a tuner's pruner): the run is
    recorded with `status` and `reason`, its finished epochs kept (experiment/runner.py)."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class SilentObserver:
    """Reports nothing (library use, tests, sweep workers that only need the files); the base of
    observers that need only some of the calls."""

    def run_started(self, title: str, epochs: int) -> None:
        pass

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        pass

    def batch_finished(self, batch: int, loss: float | None) -> None:
        pass

    def epoch_finished(self, row: dict[str, Any]) -> None:
        pass

    def run_ended(self, status: str) -> None:
        pass


class Observers(SilentObserver):
    """Several observers as one, each call made to them in order."""

    def __init__(self, *observers: TrainingObserver) -> None:
        self.observers = observers

    def run_started(self, title: str, epochs: int) -> None:
        for observer in self.observers:
            observer.run_started(title, epochs)

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        for observer in self.observers:
            observer.epoch_started(epoch, num_batches)

    def batch_finished(self, batch: int, loss: float | None) -> None:
        for observer in self.observers:
            observer.batch_finished(batch, loss)

    def epoch_finished(self, row: dict[str, Any]) -> None:
        for observer in self.observers:
            observer.epoch_finished(row)

    def run_ended(self, status: str) -> None:
        for observer in self.observers:
            observer.run_ended(status)


@dataclass
class TrainResult:
    status: Status  # completed | diverged
    rows: list[dict[str, Any]] = field(default_factory=list)
    diverged_at: dict[str, Any] | None = None

    def diverge(self, epoch: int, step: int, reason: str) -> TrainResult:
        self.status = Status.DIVERGED
        self.diverged_at = {"epoch": epoch, "step": step, "reason": reason}
        return self


def evaluate(
    model: nn.Module,
    loss_fn: nn.Module,
    data: InMemoryDataset,
    batch_size: int,
    classify: bool,
    drop_last: bool = False,
) -> tuple[float, float | None]:
    """Per-sample mean loss and (for classification) accuracy over `data`, in order; with
    `drop_last`, over its whole batches only (a set smaller than one batch: all of it). The
    class is the argmax over the outputs' last axis, so a sequence's accuracy is per token."""
    torch.empty((), dtype=torch.int64).random_()  # what iterating a test DataLoader draws
    model.eval()
    total_loss, correct, count, predicted = 0.0, 0, 0, 0
    whole = len(data) - len(data) % batch_size if drop_last else len(data)
    with torch.no_grad():
        for inputs, targets in data.batches(batch_size, whole or len(data)):
            outputs = forward(model, inputs)
            total_loss += loss_of(loss_fn, outputs, targets).item() * len(targets)
            count += len(targets)
            if classify:  # planning checked that the outputs have logits to read
                correct += int((logits_of(outputs).argmax(dim=-1) == targets).sum())
                predicted += targets.numel()
    model.train()
    return total_loss / count, (correct / predicted if classify else None)


@dataclass
class Evaluator:
    """A run's evaluation: the validation split (where the run holds one out) then the test
    split, as a hand-written loop validates then tests; text's losses also in bits per byte."""

    model: nn.Module
    loss_fn: nn.Module
    valid_set: InMemoryDataset | None
    test_set: InMemoryDataset
    batch_size: int
    classify: bool
    drop_last: bool
    bytes_per_token: float | None = None  # text with a per-token loss: bits per byte logged
    precision: Callable[[], Any] = contextlib.nullcontext  # the run's autocast (bf16) or none

    def __call__(self) -> dict[str, float | None]:
        with self.precision():
            valid_loss, valid_accuracy = (
                (None, None) if self.valid_set is None else self._on(self.valid_set)
            )
            test_loss, test_accuracy = self._on(self.test_set)
        return {
            "valid_loss": valid_loss,
            "valid_accuracy": valid_accuracy,
            "valid_bits_per_byte": self._bits(valid_loss),
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "test_bits_per_byte": self._bits(test_loss),
        }

    def _on(self, data: InMemoryDataset) -> tuple[float, float | None]:
        return evaluate(
            self.model, self.loss_fn, data, self.batch_size, self.classify, self.drop_last
        )

    def _bits(self, loss: float | None) -> float | None:
        if loss is None or self.bytes_per_token is None:
            return None
        return bits_per_byte(loss, self.bytes_per_token)


def evaluate_between_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    protocol: Any,
    evaluations: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """An evaluation in the middle of an epoch (`eval_every`) that leaves training exactly as
    it was: the global RNG state (evaluation draws from it, as a DataLoader does) and every
    parameter and buffer (an optimizer's eval() swaps in averaged weights, BatchNorm's
    statistics may be recomputed) are saved before and put back after, so the run's numbers
    are those of the run that never evaluates between epochs."""
    rng = torch.get_rng_state()
    saved = {key: value.clone() for key, value in model.state_dict().items()}
    protocol.evaluating(optimizer)
    try:
        return evaluations()
    finally:
        protocol.training(optimizer)
        model.load_state_dict(saved)
        model.train()
        torch.set_rng_state(rng)


def completed_epochs(rows: list[dict[str, Any]]) -> int:
    """The epochs a run's rows finished: each ends with its epoch-end row (rows of evaluations
    between steps carry `between`: True in memory; epochs.csv does not keep it)."""
    return sum(1 for row in rows if not row.get(BETWEEN))


# Schedule-Free's recipe for BatchNorm (schedulefree's README): after optimizer.eval(), up to
# this many training batches through the model in train mode without gradients, so the running
# statistics evaluation uses are those of the evaluated (averaged) weights, not of the
# training iterates. In order, unshuffled and unaugmented: no generator of the run moves.
BATCH_NORM_BATCHES = 50
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(module, _BATCH_NORMS) for module in model.modules())


def recompute_batch_norm(model: nn.Module, train_set: InMemoryDataset, batch_size: int) -> None:
    """BatchNorm's running statistics recomputed at the weights the optimizer's eval() set."""
    model.train()
    with torch.no_grad():
        for inputs, _ in itertools.islice(train_set.batches(batch_size), BATCH_NORM_BATCHES):
            forward(model, inputs)


# An L2 penalty bound to a built model: its factor and the parameters it covers.
L2Penalty = tuple[float, list[nn.Parameter]]


def _l2_penalty(plan: RunPlan, model: nn.Module) -> L2Penalty | None:
    """The plan's `regularization` on this model; None when it adds nothing."""
    bound = plan.regularization
    if bound is None or bound.l2 == 0 or not bound.names:
        return None
    return bound.l2, bound.parameters(model)


def _loss(
    model: nn.Module,
    loss_fn: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    penalty: L2Penalty | None = None,
) -> torch.Tensor:
    """Forward and loss on one batch (what a step protocol calls, once or more per step), plus
    the L2 penalty where the run has one, summed as DeepOBS's get_regularization_loss does:
    loss + 0.5 * sum(l2 * (w**2).sum()). Evaluation's test loss leaves it out."""
    loss = loss_of(loss_fn, forward(model, inputs), targets)
    if penalty is not None:
        l2, parameters = penalty
        loss = loss + 0.5 * sum(l2 * p.pow(2).sum() for p in parameters)
    return loss


def precision_context(plan: RunPlan, batch_loss: Any = None) -> Any:
    """The run's precision: with `precision: bf16`, torch.autocast(bfloat16) on the device
    around forward and loss (backward and step stay outside it, as torch's AMP recipe has
    them). Given `batch_loss`, that function wrapped in it; else the context itself."""
    enabled = plan.config.precision == "bf16"
    if batch_loss is None:
        return torch.autocast(plan.device.type, dtype=torch.bfloat16, enabled=enabled)
    if not enabled:
        return batch_loss

    def autocast_loss() -> torch.Tensor:
        with torch.autocast(plan.device.type, dtype=torch.bfloat16):
            return batch_loss()

    return autocast_loss


def step_groups(loader: Any, accumulate: int) -> Any:
    """The loader's batches in groups of `accumulate` consecutive ones, one group per step
    (the last group holds what is left)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == accumulate:
            yield group
            group = []
    if group:
        yield group


def build_training(
    plan: RunPlan,
) -> tuple[nn.Module, nn.Module, L2Penalty | None, torch.optim.Optimizer]:
    """Model, loss, L2 penalty and optimizer, built as training builds them: the global RNG
    seeded with the run's seed just before the model, so its initial weights are the run's
    (shared with the lr range test, experiment/lr_find.py, so it starts from the same point)."""
    torch.manual_seed(plan.config.seed)
    model = plan.build_model()
    loss_fn = plan.build_loss()
    penalty = _l2_penalty(plan, model)
    optimizer = plan.build_optimizer(model)
    return model, loss_fn, penalty, optimizer


def training_loader(
    train_set: InMemoryDataset,
    batch_size: int,
    seed: int,
    once: bool = False,
    drop_last: bool = False,
) -> tuple[ShuffledBatches, torch.Generator]:
    """The shuffled training batches, with the generator that orders them (a checkpoint keeps
    its state): DataLoader(shuffle=True)'s batches and random draws from a generator seeded with
    the run's seed, as the notebook loop, served by index (components/data/memory.py). `once`
    and `drop_last`: DeepOBS's pipeline (data.shuffle: once, data.drop_last)."""
    shuffle = torch.Generator().manual_seed(seed)
    return train_set.loader(batch_size, shuffle, once, drop_last, seed), shuffle


def _parameters_finite(model: nn.Module) -> bool:
    norms = torch._foreach_norm([p.detach() for p in model.parameters()])
    return bool(torch.stack(norms).isfinite().all())


def train(
    plan: RunPlan,
    observer: TrainingObserver | None = None,
    checkpoints: CheckpointFile | None = None,
    detect_anomaly: bool = False,
) -> TrainResult:
    """Run `plan` and return its per-epoch rows. With `checkpoints`, continue from the last
    saved epoch when there is one, and save after every epoch."""
    observer = observer or SilentObserver()
    config, device = plan.config, plan.device
    classify = plan.data_spec.num_classes is not None
    bytes_per_token = plan.data_spec.bytes_per_token if plan.loss.per_token else None

    train_set, valid_set, test_set = load_splits(plan.data, config.seed)
    train_set, test_set = train_set.to(device), test_set.to(device)
    valid_set = valid_set.to(device) if valid_set is not None else None
    # Augmentation draws from its own generator (components/augment.py), not the global RNG
    augment = getattr(train_set.augment, "generator", None)

    model, loss_fn, penalty, optimizer = build_training(plan)
    if config.compile:  # compiled at its first call: that step's seconds are logged
        model.compile()
    first_step: float | None = None  # this process's first step, timed when compiled
    clipping = None
    if config.clip_grad_norm is not None:  # clipped before every step, its norms logged
        parameters = [p for p in model.parameters() if p.requires_grad]
        clipping = GradientClipping(optimizer, parameters, config.clip_grad_norm)
    scheduler = plan.build_scheduler(optimizer)
    step_scheduler_each_batch = plan.scheduler is not None and plan.scheduler.per_step
    protocol = plan.optimizer.protocol  # how this optimizer steps (components/stepping.py)
    # Schedule-Free evaluates other weights than it trains: BatchNorm's statistics must follow
    recompute_statistics = protocol.train_eval and has_batch_norm(model)
    # Test functions with a known optimum log their distance to it; 2-D ones also their path
    # (the point after every step, in the epoch's row: the checkpoint keeps it for --resume).
    distance = getattr(model, "distance_to_optimum", None)
    point = getattr(model, "point", None) if getattr(model, "records_path", False) else None

    drop_last = plan.drop_last
    loader, shuffle = training_loader(
        train_set, config.data.batch_size, config.seed, plan.shuffle_once, drop_last
    )
    evaluator = Evaluator(
        model,
        loss_fn,
        valid_set,
        test_set,
        config.data.test_batch_size,
        classify,
        drop_last,
        bytes_per_token,
        functools.partial(precision_context, plan),
    )
    eval_every = config.eval_every  # None: once per epoch, and no `step` column
    accumulate = config.accumulate or 1  # batches per optimizer step
    steps_in_epoch = -(-len(loader) // accumulate)

    result = TrainResult(status=Status.COMPLETED)
    saved = checkpoints.load(device) if checkpoints else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        load_optimizer_state(optimizer, saved["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        restore_rng(saved["rng"], shuffle, device, augment)
        for row in saved["rows"]:
            result.rows.append(row)
            observer.epoch_finished(row)
    done = completed_epochs(result.rows)
    steps = done * steps_in_epoch  # optimizer steps taken so far

    def between_steps(epoch: int, train_loss: float, seconds: float) -> dict[str, Any]:
        """The row of an evaluation after step `steps` of `epoch`, mid-epoch."""
        started = time.perf_counter()

        def evaluations() -> dict[str, Any]:
            if recompute_statistics:
                recompute_batch_norm(model, train_set, config.data.batch_size)
            return {
                **evaluator(),
                "distance_to_optimum": distance() if distance is not None else None,
            }

        measured = evaluate_between_steps(model, optimizer, protocol, evaluations)
        row = epoch_row(
            epoch=epoch,
            step=steps,
            train_loss=train_loss,
            lr=optimizer.param_groups[0].get("lr"),
            effective_lr=effective_lr(optimizer),
            seconds=seconds,
            eval_seconds=time.perf_counter() - started,
            **measured,
        )
        return {**row, BETWEEN: True}

    with torch.autograd.set_detect_anomaly(detect_anomaly):
        for epoch in range(done + 1, config.epochs + 1):
            model.train()
            protocol.training(optimizer)
            lr = optimizer.param_groups[0].get("lr")
            observer.epoch_started(epoch, steps_in_epoch)
            started = time.perf_counter()  # training time since the last row: `seconds`
            loss_sum, batches = torch.zeros((), device=device) if config.fast else 0.0, 0
            path = None if point is None else ([point()] if epoch == 1 else [])
            epoch_first_step = None
            for group in step_groups(loader, accumulate):  # one step's batches
                losses = [
                    precision_context(plan, functools.partial(_loss, model, loss_fn, x, y, penalty))
                    for x, y in group
                ]
                sizes = [len(y) for _, y in group]
                batch_loss = (
                    losses[0]
                    if len(group) == 1
                    else Accumulated(losses, [size / sum(sizes) for size in sizes])
                )
                step_started = time.perf_counter()
                loss = protocol.step(optimizer, batch_loss)
                if config.compile and first_step is None:
                    first_step = time.perf_counter() - step_started
                    epoch_first_step = first_step
                if path is not None:
                    path.append(point())
                batches += 1
                steps += 1
                if config.fast:  # summed on the device: no host synchronisation per batch
                    loss_sum += loss.detach()
                    value = None
                else:
                    value = loss.item()
                    if not math.isfinite(value):
                        return result.diverge(epoch, batches, f"loss is {value}")
                    loss_sum += value
                if step_scheduler_each_batch:
                    scheduler.step()
                observer.batch_finished(batches, value)
                if eval_every and steps % eval_every == 0 and batches < steps_in_epoch:
                    seconds = time.perf_counter() - started
                    row = between_steps(epoch, float(loss_sum) / batches, seconds)
                    result.rows.append(row)
                    observer.epoch_finished(row)
                    started = time.perf_counter()
            loss_sum = float(loss_sum)
            if not math.isfinite(loss_sum):  # fast mode: found at the end of the epoch
                return result.diverge(epoch, batches, f"epoch loss is {loss_sum}")
            seconds = time.perf_counter() - started
            adapted_lr = effective_lr(optimizer)  # the step size it chose, where it adapts one
            if not _parameters_finite(model):
                return result.diverge(epoch, batches, "parameters became NaN or infinite")

            # averaged weights (Schedule-Free), kept to the checkpoint
            protocol.evaluating(optimizer)
            started = time.perf_counter()
            if recompute_statistics:
                recompute_batch_norm(model, train_set, config.data.batch_size)
            measured = evaluator()
            eval_seconds = time.perf_counter() - started

            if scheduler is not None and not step_scheduler_each_batch:
                if plan.scheduler.info.steps_on_metric:  # never the test split, where it can
                    on = measured["valid_loss"]
                    scheduler.step(measured["test_loss"] if on is None else on)
                else:
                    scheduler.step()

            row = epoch_row(
                epoch=epoch,
                step=steps if eval_every else None,
                train_loss=loss_sum / batches,
                **measured,
                lr=lr,
                effective_lr=adapted_lr,
                seconds=seconds,
                eval_seconds=eval_seconds,
                distance_to_optimum=distance() if distance is not None else None,
                grad_norm=clipping.epoch_mean() if clipping is not None else None,
                first_step_seconds=epoch_first_step,
            )
            if path is not None:  # epoch 1 starts with the starting point
                row["path"] = torch.stack(path).tolist()
            result.rows.append(row)
            if checkpoints is not None:  # checkpoint first: it holds the rows, epochs.csv follows
                checkpoints.save(
                    {
                        "epoch": epoch,
                        "rows": result.rows,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None,
                        "rng": rng_state(shuffle, device, augment),
                    }
                )
            observer.epoch_finished(row)
    return result
