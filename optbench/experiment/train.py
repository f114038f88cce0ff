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
from collections.abc import Callable, Sequence
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
    seed_global_rngs,
)
from optbench.experiment.plan import RunPlan
from optbench.storage.results import Status

# An epoch's evaluation columns and the seconds it took (experiment/batched.py makes its
# trials' together).
Evaluated = tuple[dict[str, float | None], float]


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
    with torch.no_grad():
        (measured,) = evaluate_outputs(
            lambda inputs: [forward(model, inputs)], loss_fn, data, batch_size, classify, drop_last
        )
    model.train()
    return measured


def evaluate_outputs(
    outputs_of: Callable[[Any], Sequence[Any]],
    loss_fn: nn.Module,
    data: InMemoryDataset,
    batch_size: int,
    classify: bool,
    drop_last: bool,
) -> list[tuple[float, float | None]]:
    """`evaluate`'s loss and accuracy for each of the models whose outputs on a batch
    `outputs_of` gives (a batch of trials evaluates its copies together: experiment/batched.py),
    each summed as a lone evaluation sums it."""
    totals: list[list[Any]] = []  # per model: loss, correct, count, predicted
    whole = len(data) - len(data) % batch_size if drop_last else len(data)
    for inputs, targets in data.batches(batch_size, whole or len(data)):
        for k, outputs in enumerate(outputs_of(inputs)):
            if k == len(totals):
                totals.append([0.0, 0, 0, 0])
            total = totals[k]
            total[0] += loss_of(loss_fn, outputs, targets).item() * len(targets)
            total[2] += len(targets)
            if classify:  # planning checked that the outputs have logits to read
                total[1] += int((logits_of(outputs).argmax(dim=-1) == targets).sum())
                total[3] += targets.numel()
    return [
        (loss / count, correct / predicted if classify else None)
        for loss, correct, count, predicted in totals
    ]


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
            valid = None if self.valid_set is None else self._on(self.valid_set)
            test = self._on(self.test_set)
        return self.row(valid, test)

    def row(
        self, valid: tuple[float, float | None] | None, test: tuple[float, float | None]
    ) -> dict[str, float | None]:
        """The row's evaluation columns from the (loss, accuracy) of each split."""
        valid_loss, valid_accuracy = (None, None) if valid is None else valid
        test_loss, test_accuracy = test
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
    seed_global_rngs(plan.config.seed)
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


@dataclass
class Training:
    """One run's loop, built once by `prepare`: what it trains, how it steps and evaluates, and
    where it stands (`result`'s rows so far, `steps` taken). The batched trainer
    (experiment/batched.py) holds one per trial and drives the same pieces."""

    plan: RunPlan
    model: nn.Module
    loss_fn: nn.Module
    penalty: L2Penalty | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    protocol: Any  # how this optimizer steps (components/stepping.py)
    train_set: InMemoryDataset
    loader: ShuffledBatches
    shuffle: torch.Generator
    augment: torch.Generator | None  # augmentation's own generator (components/augment.py)
    evaluator: Evaluator
    clipping: GradientClipping | None
    result: TrainResult = field(default_factory=lambda: TrainResult(status=Status.COMPLETED))
    steps: int = 0  # optimizer steps taken so far
    first_step: float | None = None  # this process's first step, timed when compiled

    @property
    def config(self) -> Any:
        return self.plan.config

    @property
    def step_scheduler_each_batch(self) -> bool:
        return self.plan.scheduler is not None and self.plan.scheduler.per_step

    @property
    def recompute_statistics(self) -> bool:
        """Schedule-Free evaluates other weights than it trains: BatchNorm's statistics follow."""
        return self.protocol.train_eval and has_batch_norm(self.model)

    @property
    def distance(self) -> Callable[[], Any] | None:
        """Test functions with a known optimum log their distance to it."""
        return getattr(self.model, "distance_to_optimum", None)

    @property
    def point(self) -> Callable[[], Any] | None:
        """2-D functions also log their path (the point after every step, in the epoch's row:
        the checkpoint keeps it for --resume)."""
        records = getattr(self.model, "records_path", False)
        return getattr(self.model, "point", None) if records else None

    @property
    def accumulate(self) -> int:
        return self.config.accumulate or 1  # batches per optimizer step

    @property
    def steps_in_epoch(self) -> int:
        return -(-len(self.loader) // self.accumulate)

    @property
    def done(self) -> int:
        return completed_epochs(self.result.rows)


def prepare(plan: RunPlan) -> Training:
    """Data on the device, model, loss, optimizer, scheduler, loader and evaluator, built in the
    order the notebook loop builds them (the seed's draws land where they do there)."""
    config, device = plan.config, plan.device
    classify = plan.data_spec.num_classes is not None
    bytes_per_token = plan.data_spec.bytes_per_token if plan.loss.per_token else None

    train_set, valid_set, test_set = load_splits(plan.data, config.seed)
    train_set, test_set = train_set.to(device), test_set.to(device)
    valid_set = valid_set.to(device) if valid_set is not None else None
    augment = getattr(train_set.augment, "generator", None)

    model, loss_fn, penalty, optimizer = build_training(plan)
    if config.compile:  # compiled at its first call: that step's seconds are logged
        model.compile()
    clipping = None
    if config.clip_grad_norm is not None:  # clipped before every step, its norms logged
        parameters = [p for p in model.parameters() if p.requires_grad]
        clipping = GradientClipping(optimizer, parameters, config.clip_grad_norm)
    scheduler = plan.build_scheduler(optimizer)
    loader, shuffle = training_loader(
        train_set, config.data.batch_size, config.seed, plan.shuffle_once, plan.drop_last
    )
    evaluator = Evaluator(
        model,
        loss_fn,
        valid_set,
        test_set,
        config.data.test_batch_size,
        classify,
        plan.drop_last,
        bytes_per_token,
        functools.partial(precision_context, plan),
    )
    return Training(
        plan,
        model,
        loss_fn,
        penalty,
        optimizer,
        scheduler,
        plan.optimizer.protocol,
        train_set,
        loader,
        shuffle,
        augment,
        evaluator,
        clipping,
    )


def restore(
    training: Training, checkpoints: CheckpointFile | None, observer: TrainingObserver
) -> None:
    """Continue from the last saved epoch, when there is one: weights, optimizer, scheduler,
    generators and the rows so far (reported again to `observer`)."""
    saved = checkpoints.load(training.plan.device) if checkpoints else None
    if saved is not None:
        training.model.load_state_dict(saved["model"])
        load_optimizer_state(training.optimizer, saved["optimizer"])
        if training.scheduler is not None:
            training.scheduler.load_state_dict(saved["scheduler"])
        restore_rng(saved["rng"], training.shuffle, training.plan.device, training.augment)
        for row in saved["rows"]:
            training.result.rows.append(row)
            observer.epoch_finished(row)
    training.steps = training.done * training.steps_in_epoch


@dataclass
class EpochProgress:
    """An epoch's training so far: its first learning rate, the summed batch losses, batches
    stepped, the 2-D path, and when the training time since the last row started."""

    epoch: int
    lr: Any
    loss_sum: Any
    started: float
    path: list[Any] | None
    batches: int = 0
    first_step: float | None = None
    seconds: float = 0.0  # the epoch's training time, read once its steps are done


def start_epoch(training: Training, epoch: int, observer: TrainingObserver) -> EpochProgress:
    """Training mode on, the epoch announced, its counters at zero."""
    training.model.train()
    training.protocol.training(training.optimizer)
    lr = training.optimizer.param_groups[0].get("lr")
    observer.epoch_started(epoch, training.steps_in_epoch)
    point = training.point
    fast = training.config.fast
    return EpochProgress(
        epoch=epoch,
        lr=lr,
        loss_sum=torch.zeros((), device=training.plan.device) if fast else 0.0,
        started=time.perf_counter(),  # training time since the last row: `seconds`
        path=None if point is None else ([point()] if epoch == 1 else []),
    )


def _step_loss(training: Training, group: list[Any]) -> Any:
    """One step's batch loss: a function of no arguments, or micro-batches accumulated."""
    plan = training.plan
    losses = [
        precision_context(
            plan, functools.partial(_loss, training.model, training.loss_fn, x, y, training.penalty)
        )
        for x, y in group
    ]
    sizes = [len(y) for _, y in group]
    if len(group) == 1:
        return losses[0]
    return Accumulated(losses, [size / sum(sizes) for size in sizes])


def after_step(
    training: Training, progress: EpochProgress, loss: torch.Tensor, observer: TrainingObserver
) -> TrainResult | None:
    """Everything after one optimizer step: the path, the counters, the loss read (or summed on
    the device in fast mode), the per-step scheduler, an evaluation due between steps. The
    diverged result when the loss is not finite, else None."""
    if progress.path is not None:
        progress.path.append(training.point())  # type: ignore[misc]
    progress.batches += 1
    training.steps += 1
    if training.config.fast:  # summed on the device: no host synchronisation per batch
        progress.loss_sum += loss.detach()
        value = None
    else:
        value = loss.item()
        if not math.isfinite(value):
            return training.result.diverge(progress.epoch, progress.batches, f"loss is {value}")
        progress.loss_sum += value
    if training.step_scheduler_each_batch:
        training.scheduler.step()
    observer.batch_finished(progress.batches, value)
    eval_every = training.config.eval_every
    if (
        eval_every
        and training.steps % eval_every == 0
        and progress.batches < training.steps_in_epoch
    ):
        seconds = time.perf_counter() - progress.started
        row = between_steps(
            training, progress.epoch, float(progress.loss_sum) / progress.batches, seconds
        )
        training.result.rows.append(row)
        observer.epoch_finished(row)
        progress.started = time.perf_counter()
    return None


def train_epoch(
    training: Training, progress: EpochProgress, observer: TrainingObserver
) -> TrainResult | None:
    """The epoch's steps; the diverged result if a loss was not finite, else None."""
    for group in step_groups(training.loader, training.accumulate):  # one step's batches
        batch_loss = _step_loss(training, group)
        step_started = time.perf_counter()
        loss = training.protocol.step(training.optimizer, batch_loss)
        if training.config.compile and training.first_step is None:
            training.first_step = time.perf_counter() - step_started
            progress.first_step = training.first_step
        diverged = after_step(training, progress, loss, observer)
        if diverged is not None:
            return diverged
    return None


def between_steps(
    training: Training, epoch: int, train_loss: float, seconds: float
) -> dict[str, Any]:
    """The row of an evaluation after step `steps` of `epoch`, mid-epoch."""
    started = time.perf_counter()
    distance = training.distance

    def evaluations() -> dict[str, Any]:
        if training.recompute_statistics:
            recompute_batch_norm(
                training.model, training.train_set, training.config.data.batch_size
            )
        return {
            **training.evaluator(),
            "distance_to_optimum": distance() if distance is not None else None,
        }

    measured = evaluate_between_steps(
        training.model, training.optimizer, training.protocol, evaluations
    )
    row = epoch_row(
        epoch=epoch,
        step=training.steps,
        train_loss=train_loss,
        lr=training.optimizer.param_groups[0].get("lr"),
        effective_lr=effective_lr(training.optimizer),
        seconds=seconds,
        eval_seconds=time.perf_counter() - started,
        **measured,
    )
    return {**row, BETWEEN: True}


def epoch_divergence(training: Training, progress: EpochProgress) -> TrainResult | None:
    """The diverged result when the epoch's summed loss (fast mode) or the parameters are not
    finite, else None (the summed loss then read as a float)."""
    progress.loss_sum = float(progress.loss_sum)
    if not math.isfinite(progress.loss_sum):  # fast mode: found at the end of the epoch
        return training.result.diverge(
            progress.epoch, progress.batches, f"epoch loss is {progress.loss_sum}"
        )
    progress.seconds = time.perf_counter() - progress.started
    if not _parameters_finite(training.model):
        return training.result.diverge(
            progress.epoch, progress.batches, "parameters became NaN or infinite"
        )
    return None


def finish_epoch(
    training: Training, progress: EpochProgress, evaluated: Evaluated | None = None
) -> dict[str, Any]:
    """Evaluation at the epoch's end (of the averaged weights, Schedule-Free, kept so to the
    checkpoint; `evaluated`: made already, with its seconds, by a batch evaluating its trials
    together), the per-epoch scheduler step, and the epoch's row (appended to the result)."""
    plan, scheduler = training.plan, training.scheduler
    adapted_lr = effective_lr(training.optimizer)  # the step size it chose, where it adapts one
    training.protocol.evaluating(training.optimizer)
    if evaluated is None:
        started = time.perf_counter()
        if training.recompute_statistics:
            recompute_batch_norm(
                training.model, training.train_set, training.config.data.batch_size
            )
        measured = training.evaluator()
        evaluated = measured, time.perf_counter() - started
    measured, eval_seconds = evaluated

    if scheduler is not None and not training.step_scheduler_each_batch:
        if plan.scheduler.info.steps_on_metric:  # never the test split, where it can
            on = measured["valid_loss"]
            scheduler.step(measured["test_loss"] if on is None else on)
        else:
            scheduler.step()

    distance = training.distance
    row = epoch_row(
        epoch=progress.epoch,
        step=training.steps if training.config.eval_every else None,
        train_loss=progress.loss_sum / progress.batches,
        **measured,
        lr=progress.lr,
        effective_lr=adapted_lr,
        seconds=progress.seconds,
        eval_seconds=eval_seconds,
        distance_to_optimum=distance() if distance is not None else None,
        grad_norm=training.clipping.epoch_mean() if training.clipping is not None else None,
        first_step_seconds=progress.first_step,
    )
    if progress.path is not None:  # epoch 1 starts with the starting point
        row["path"] = torch.stack(progress.path).tolist()
    training.result.rows.append(row)
    return row


def checkpoint_state(training: Training, epoch: int) -> dict[str, Any]:
    """What a checkpoint holds after `epoch` (experiment/checkpoint.py)."""
    scheduler = training.scheduler
    return {
        "epoch": epoch,
        "rows": training.result.rows,
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(training.shuffle, training.plan.device, training.augment),
    }


def end_epoch(
    training: Training,
    progress: EpochProgress,
    checkpoints: CheckpointFile | None,
    observer: TrainingObserver,
    evaluated: Evaluated | None = None,
) -> None:
    """The epoch's row, saved to the checkpoint first (it holds the rows, epochs.csv follows;
    on the epochs its `saves` say are due) then reported."""
    row = finish_epoch(training, progress, evaluated)
    if checkpoints is not None and checkpoints.saves.due(progress.epoch):
        checkpoints.save(checkpoint_state(training, progress.epoch))
    observer.epoch_finished(row)


def train(
    plan: RunPlan,
    observer: TrainingObserver | None = None,
    checkpoints: CheckpointFile | None = None,
    detect_anomaly: bool = False,
) -> TrainResult:
    """Run `plan` and return its per-epoch rows. With `checkpoints`, continue from the last
    saved epoch when there is one, and save after every epoch."""
    observer = observer or SilentObserver()
    training = prepare(plan)
    restore(training, checkpoints, observer)
    with torch.autograd.set_detect_anomaly(detect_anomaly):
        for epoch in range(training.done + 1, plan.config.epochs + 1):
            progress = start_epoch(training, epoch, observer)
            diverged = train_epoch(training, progress, observer) or epoch_divergence(
                training, progress
            )
            if diverged is not None:
                return diverged
            end_epoch(training, progress, checkpoints, observer)
    return training.result
