"""K trials of one problem trained at once, as K parameter groups of ONE optimizer.

Trials that differ only in optimizer hyperparameters (and seed) share a model architecture,
data and run options. Each trial gets its own copy of the model, built, seeded and restored
exactly as its lone run builds it (experiment/train.py's `prepare` and `restore`); the copies'
parameters become the groups of one optimizer (each group keeps its trial's lr, momentum,
betas, weight decay), so one `zero_grad` and one `step` serve all K. Each copy's loss and
gradients come from its own trial's batch (its seed's data order), computed as the strategy
chosen while planning says (experiment/copy_gradients.py): one `torch.func.vmap` over the
stacked copies where one step computed both ways agrees to the bit, else each copy's forward in
turn (its own global RNG state swapped in where the forward draws: dropout) and one `backward`
of the summed losses. Each copy's evaluation, rows, checkpoint and run-id are its lone run's.

Exact, not approximately equal: the gradient of a sum of independent losses is each loss's
own gradient (the sum passes 1.0 to each), and torch.optim steps each group with its own
call. That is proven for the problem at hand while planning (`batching_refusal`: two steps of
the K groups stepped together compared, to the bit, with K lone optimizers), and whatever cannot
be proven so is refused with one line: closure optimizers (LBFGS), two-pass ones (SAM),
second-order ones, Schedule-Free's train/eval modes, state coupled across groups (D-Adaptation,
Prodigy: found by the trial step) and run options that act on the whole step (compile,
clip_grad_norm, accumulate, eval_every, fast, bf16). A trial that diverges, or that its observer
stops (a tuner's pruner), leaves the batch; the others go on.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from optbench.components.data import InMemoryDataset, ShuffledBatches
from optbench.core.errors import ConfigError
from optbench.experiment.checkpoint import CheckpointFile
from optbench.experiment.copy_gradients import CopyGradients, copy_gradients
from optbench.experiment.plan import RunPlan, trial_batch
from optbench.experiment.runner import (
    RunOutcome,
    check_inputs,
    claim_run,
    end_run,
    fail_run,
    start_run,
    torch_threads,
)
from optbench.experiment.stacked_layers import GatheredBatches
from optbench.experiment.stacked_update import StackedStep, rule_refusal
from optbench.experiment.train import (
    EpochProgress,
    Evaluated,
    SilentObserver,
    StopTraining,
    Training,
    TrainingObserver,
    TrainResult,
    _loss,
    after_step,
    end_epoch,
    epoch_divergence,
    evaluate_outputs,
    prepare,
    restore,
    start_epoch,
)
from optbench.storage.results import RunLock, create_run_dir

# Run options that act on a whole step or change how losses are read: refused in a batch.
_WHOLE_STEP_OPTIONS = {
    "compile": lambda c: c.compile,
    "clip_grad_norm": lambda c: c.clip_grad_norm is not None,
    "accumulate": lambda c: (c.accumulate or 1) > 1,
    "eval_every": lambda c: c.eval_every is not None,
    "fast": lambda c: c.fast,
    "precision": lambda c: c.precision is not None,
}
# What may differ between the trials of one batch; everything else is the shared problem.
PER_TRIAL = {"name", "seed", "optimizer", "scheduler", "sweep", "tune", "log"}


def shared_config(config: Any) -> dict[str, Any]:
    """The config a batch's trials share: all but optimizer, scheduler, seed and name."""
    return {k: v for k, v in config.model_dump().items() if k not in PER_TRIAL}


def _static_refusal(plans: Sequence[RunPlan]) -> str | None:
    """Why these plans cannot batch, from their configs alone."""
    first = plans[0]
    for plan in plans[1:]:
        shared, first_shared = shared_config(plan.config), shared_config(first.config)
        if shared != first_shared:
            differing = sorted(k for k, v in shared.items() if first_shared.get(k) != v)
            return f"the trials differ in {', '.join(differing)}, not only in optimizer and seed"
        if plan.optimizer.info.cls is not first.optimizer.info.cls:
            return "the trials use different optimizer classes"
        if plan.device != first.device:
            return "the trials run on different devices"
    options = [name for name, used in _WHOLE_STEP_OPTIONS.items() if used(first.config)]
    if options:
        return f"{', '.join(options)} act on the whole step; a batch runs without them"
    protocol, name = first.optimizer.protocol, first.optimizer.info.name
    if protocol.name != "plain":
        return f"{name} steps with the {protocol.name} protocol; only plain steps batch"
    if protocol.train_eval:
        return f"{name} switches train()/eval() modes (Schedule-Free); they act on every group"
    return None


def _together(optimizers: Sequence[torch.optim.Optimizer]) -> torch.optim.Optimizer:
    """One optimizer whose groups are the lone optimizers' own group dicts (a scheduler that
    sets one trial's lr sets it here too), holding their states."""
    first = optimizers[0]
    groups = [group for optimizer in optimizers for group in optimizer.param_groups]
    accepted = inspect.signature(type(first)).parameters
    options = {k: v for k, v in first.defaults.items() if k in accepted}  # every group has all
    combined = type(first)(groups, **options)
    for optimizer in optimizers:
        combined.state.update(optimizer.state)
    return combined


def _hand_back_state(combined: torch.optim.Optimizer, lone: torch.optim.Optimizer) -> None:
    """The lone optimizer's state, as its state_dict() reads it, from the combined one's."""
    params = [p for group in lone.param_groups for p in group["params"]]
    lone.state = defaultdict(dict, {p: combined.state[p] for p in params if p in combined.state})


def _seeded_builds(plans: Sequence[RunPlan]) -> tuple[list[Any], list[torch.optim.Optimizer]]:
    """Each trial's model and optimizer, built as its lone run builds them."""
    models = []
    for plan in plans:
        torch.manual_seed(plan.config.seed)
        models.append(plan.build_model())
    return models, [plan.optimizer.build(m) for plan, m in zip(plans, models, strict=True)]


def _planning_batch(plans: Sequence[RunPlan]) -> tuple[Any, Any, Any]:
    """The loss and the trial batch (on the run's device) the planning proofs step on."""
    plan = plans[0]
    inputs, targets = trial_batch(plan.data, plan.config.seed)
    return plan.build_loss(), inputs.to(plan.device), targets.to(plan.device)


def _step_alone(models: Sequence[Any], optimizers: Sequence[Any], batch: tuple) -> None:
    """One step of each lone optimizer on its own model's loss."""
    loss_fn, inputs, targets = batch
    for k, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
        optimizer.zero_grad()
        torch.manual_seed(k)  # a forward that draws (dropout) draws alike both ways
        _loss(model, loss_fn, inputs, targets).backward()
        optimizer.step()


def _backward_together(models: Sequence[Any], batch: tuple) -> None:
    """One backward of the models' summed losses, as a batch computes its gradients."""
    loss_fn, inputs, targets = batch
    losses = []
    for k, model in enumerate(models):
        torch.manual_seed(k)
        losses.append(_loss(model, loss_fn, inputs, targets))
    torch.stack(losses).sum().backward()


def _trial_step_refusal(plans: Sequence[RunPlan]) -> str | None:
    """Two steps of the K trials' optimizers stepped as one, against K lone optimizers, on the
    same gradients (the planning trial batch's): None when every parameter agrees to the bit."""
    rng = torch.get_rng_state()
    try:
        lone_models, lone = _seeded_builds(plans)
        together_models, built = _seeded_builds(plans)
        try:
            combined = _together(built)
        except Exception as exc:
            return f"its groups cannot form one optimizer ({type(exc).__name__}: {exc})"
        batch = _planning_batch(plans)
        for _ in range(2):
            _step_alone(lone_models, lone, batch)
            combined.zero_grad()
            _backward_together(together_models, batch)
            combined.step()
        for a, b in zip(lone_models, together_models, strict=True):
            for p, q in zip(a.parameters(), b.parameters(), strict=True):
                if not torch.equal(p, q):
                    return (
                        f"{plans[0].optimizer.info.name}'s groups stepped together differ from "
                        "lone optimizers (its state couples groups, as D-Adaptation's and "
                        "Prodigy's do)"
                    )
        return None
    finally:
        torch.set_rng_state(rng)


def stacked_refusal(plans: Sequence[RunPlan]) -> str | None:
    """Why the trials' optimizers cannot step as stacks (experiment/stacked_update.py), None
    when they can: three steps of their lone optimizers against the stack on the planning trial
    batch (handed back and stacked again after two, as an epoch's end does), every parameter
    and state tensor compared to the bit, under the run's threads."""
    with torch_threads(plans[0].threads):
        return _stacked_refusal(plans)


def _stacked_refusal(plans: Sequence[RunPlan]) -> str | None:
    rng = torch.get_rng_state()
    try:
        stacked_models, stacked = _seeded_builds(plans)
        refusal = rule_refusal(stacked)
        if refusal is not None:
            return refusal
        lone_models, lone = _seeded_builds(plans)
        batch = _planning_batch(plans)
        stack = StackedStep(stacked)
        for step in range(3):
            _step_alone(lone_models, lone, batch)
            if step == 2:
                stack.hand_back()
                stack = StackedStep(stacked)
            stack.zero_grad()
            _backward_together(stacked_models, batch)
            stack.step()
        stack.hand_back()
        for a, b, x, y in zip(lone_models, stacked_models, lone, stacked, strict=True):
            pairs = zip(a.parameters(), b.parameters(), strict=True)
            same = all(torch.equal(p, q) for p, q in pairs)
            states = x.state_dict()["state"], y.state_dict()["state"]
            same = same and states[0].keys() == states[1].keys()
            for index, state in states[0].items():
                other = states[1].get(index, {})
                same = same and state.keys() == other.keys()
                same = same and all(torch.equal(v, other[key]) for key, v in state.items())
            if not same:
                return "its stacked update differs from torch.optim's by a bit"
        return None
    except Exception as exc:  # a model whose parameters cannot be views of one stack
        return f"cannot stack its parameters ({type(exc).__name__}: {exc})"
    finally:
        torch.set_rng_state(rng)


@dataclass(frozen=True)
class BatchDecision:
    """What planning a batch decided: why it cannot train as one (None: it can), and whether
    its optimizers step as stacks (else torch.optim steps their groups)."""

    refusal: str | None
    stacked: bool = False


def decide_batch(plans: Sequence[RunPlan]) -> BatchDecision:
    """The static rules, then the update proven on a trial step (under the run's threads:
    torch's default, every core, makes its small kernels wait on each other on a loaded
    machine): the stacked update where it equals torch.optim's, else torch.optim's own step
    over the groups where that equals K lone optimizers'."""
    if not plans:
        return BatchDecision("no trials to batch")
    if (refusal := _static_refusal(plans)) is not None or len(plans) == 1:
        return BatchDecision(refusal)
    with torch_threads(plans[0].threads):
        if stacked_refusal(plans) is None:
            return BatchDecision(None, stacked=True)
        return BatchDecision(_trial_step_refusal(plans))


def batching_refusal(plans: Sequence[RunPlan]) -> str | None:
    """Why `plans` cannot train as one batch exactly as they train alone (one line), or None
    when they can (decide_batch)."""
    return decide_batch(plans).refusal


@dataclass
class _Trial:
    """One trial in a batch: its loop's pieces, files, observer, own global RNG state and how
    it ended (None while it trains)."""

    training: Training
    checkpoints: CheckpointFile | None
    observer: TrainingObserver
    rng: torch.Tensor
    cuda_rng: torch.Tensor | None = None
    progress: EpochProgress | None = None
    batches: Iterator[Any] | None = None
    ended: TrainResult | StopTraining | None = None
    last_loss: Any = field(default=None, repr=False)

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        """The global RNG (CUDA's too) set to this trial's for the block, saved back after."""
        device = self.training.plan.device
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, device)
        try:
            yield
        finally:
            self.rng = torch.get_rng_state()
            if self.cuda_rng is not None:
                self.cuda_rng = torch.cuda.get_rng_state(device)


def _global_rng(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _prepared(
    plans: Sequence[RunPlan],
    observers: Sequence[TrainingObserver],
    checkpoints: Sequence[CheckpointFile | None],
) -> list[_Trial]:
    """Each trial built and restored as its lone run is, its global RNG state kept."""
    trials = []
    for plan, observer, saved in zip(plans, observers, checkpoints, strict=True):
        training = prepare(plan)
        restore(training, saved, observer)
        trials.append(_Trial(training, saved, observer, *_global_rng(plan.device)))
    return trials


class _GroupedUpdate:
    """torch.optim's own step over every trial's group: one optimizer holding them all."""

    stacked = None

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.combined = _together(optimizers)
        self.trials: list[_Trial] = []

    def start(self, trials: list[_Trial]) -> None:
        self.trials = trials
        self.combined.param_groups = [g for t in trials for g in t.training.optimizer.param_groups]

    def zero_grad(self) -> None:
        self.combined.zero_grad()

    def step(self) -> None:
        self.combined.step()

    def hand_back(self) -> None:
        for trial in self.trials:
            _hand_back_state(self.combined, trial.training.optimizer)


class _StackedUpdate:
    """The trials' optimizers stepped as stacks (experiment/stacked_update.py), stacked at each
    start from their own tensors and state and handed back after."""

    stacked: StackedStep | None = None

    def start(self, trials: list[_Trial]) -> None:
        self.stacked = StackedStep([trial.training.optimizer for trial in trials])

    def zero_grad(self) -> None:
        self.stacked.zero_grad()  # type: ignore[union-attr]

    def step(self) -> None:
        self.stacked.step()  # type: ignore[union-attr]

    def hand_back(self) -> None:
        self.stacked.hand_back()  # type: ignore[union-attr]


def _step(
    trials: list[_Trial], update: Any, gradients: CopyGradients, shared: InMemoryDataset | None
) -> None:
    """One step of every trial in `trials`: each copy's loss and gradients on its own trial's
    batch (vmapped or looped, as planned; fetched in one gather from the training split the
    trials share, where they share one), then one update of them all."""
    update.zero_grad()
    if shared is None:
        batches = [next(trial.batches) for trial in trials]  # type: ignore[arg-type]
    else:  # each trial's batch indices (trial.batches: ShuffledBatches.indices), one gather
        index = torch.stack([next(trial.batches) for trial in trials])  # type: ignore[arg-type]
        inputs, targets = shared.fetch(index.view(-1))
        batches = GatheredBatches(
            inputs.unflatten(0, index.shape), targets.unflatten(0, index.shape)
        )
    for trial, loss in zip(trials, gradients(trials, batches, update.stacked), strict=True):
        trial.last_loss = loss
    update.step()


def train_batched(
    plans: Sequence[RunPlan],
    observers: Sequence[TrainingObserver] | None = None,
    checkpoints: Sequence[CheckpointFile | None] | None = None,
    detect_anomaly: bool = False,
    decision: BatchDecision | None = None,
) -> list[TrainResult | StopTraining]:
    """Train `plans` (checked by `decide_batch`, whose `decision` says how they step) as one
    batch; each trial's result as `train` would return it alone, or the StopTraining its
    observer raised (its rows kept by that observer). Checkpoints continue each trial from its
    own last saved epoch."""
    observers = observers or [SilentObserver() for _ in plans]
    checkpoints = checkpoints or [None for _ in plans]
    gradients = copy_gradients(plans)  # vmapped where proven exact, else one copy at a time
    stacked = (decision or decide_batch(plans)).stacked  # the flat stacks, where exact
    trials = _prepared(plans, observers, checkpoints)
    together = (  # evaluated in one pass over shared splits, the copies' outputs together
        not any(t.training.recompute_statistics for t in trials)
        and gradients.outputs_of([t.training.model for t in trials]) is not None
        and _evaluates_together(trials)
    )
    _transform_once(trials, together)
    shared = _shared_train_set(trials)
    optimizers = [trial.training.optimizer for trial in trials]
    update = _StackedUpdate() if stacked else _GroupedUpdate(optimizers)
    epochs = plans[0].config.epochs
    first = min(trial.training.done for trial in trials) + 1
    with torch.autograd.set_detect_anomaly(detect_anomaly):
        for epoch in range(first, epochs + 1):
            active = [t for t in trials if t.ended is None and t.training.done < epoch]
            if not active:
                break
            _train_epoch(active, update, epoch, gradients, together, shared)
    return [trial.ended or trial.training.result for trial in trials]


def _end_pass(trial: _Trial) -> None:
    """The trial's batch iterator run to its end, as a lone run's `for` loop runs it: a loader
    may draw after its last batch (ShuffledBatches runs its generator past the permutation when
    the last batch is full or dropped, as DataLoader's sampler does), and the next epoch's order
    follows from that draw."""
    assert trial.batches is not None
    with trial.own_rng():
        leftover = next(trial.batches, None)
    if leftover is not None:
        raise RuntimeError(f"{trial.training.plan.name}: the loader had more batches than steps")


def _train_epoch(
    trials: list[_Trial],
    update: Any,
    epoch: int,
    gradients: CopyGradients,
    evaluate_together: bool = False,
    shared: InMemoryDataset | None = None,
) -> None:
    """One epoch of the trials still training: their steps together, then each one's
    evaluation (together where the trials share their splits), row and checkpoint as its lone
    run's (the epoch's seconds shared out)."""
    started = time.perf_counter()
    for trial in trials:
        with trial.own_rng():
            trial.progress = start_epoch(trial.training, epoch, trial.observer)
            loader = trial.training.loader
            trial.batches = iter(loader) if shared is None else loader.indices()
    active = list(trials)
    update.start(active)
    for _ in range(trials[0].training.steps_in_epoch):
        _step(active, update, gradients, shared)
        for trial in active:
            trial.ended = after_step(
                trial.training,
                trial.progress,  # type: ignore[arg-type]
                trial.last_loss,
                trial.observer,
            )
        if any(trial.ended is not None for trial in active):  # diverged: it leaves the batch
            update.hand_back()
            active = [trial for trial in active if trial.ended is None]
            if not active:
                return
            update.start(active)
    update.hand_back()
    for trial in active:
        _end_pass(trial)
    seconds = (time.perf_counter() - started) / len(trials)  # each trial's share of the epoch
    ending = []
    for trial in active:
        assert trial.progress is not None
        trial.ended = epoch_divergence(trial.training, trial.progress)
        if trial.ended is None:
            trial.progress.seconds = seconds
            ending.append(trial)
    evaluations = _evaluated_together(ending, gradients) if evaluate_together else None
    for k, trial in enumerate(ending):
        with trial.own_rng():
            try:
                end_epoch(
                    trial.training,
                    trial.progress,  # type: ignore[arg-type]
                    trial.checkpoints,
                    trial.observer,
                    None if evaluations is None else evaluations[k],
                )
            except StopTraining as stop:  # a tuner's pruner: this trial only
                trial.ended = stop


# The largest split a batch transforms once for all its trials (normalised float32): above it,
# the copy's memory is more than the transforms it saves are worth.
TRANSFORMED_ONCE_BYTES = 256 * 2**20


def _transform_once(trials: Sequence[_Trial], evaluate_together: bool) -> None:
    """The trials' splits transformed once (`InMemoryDataset.normalized`) and shared, where they
    hold the same samples: each trial would otherwise transform every batch it reads, the same
    batches K times. Training's split unless it augments; the evaluation's where the trials
    evaluate together."""
    first = trials[0].training
    train = first.train_set
    if (
        train.augment is None
        and isinstance(first.loader, ShuffledBatches)
        and train.inputs.numel() * 4 <= TRANSFORMED_ONCE_BYTES
        and all(train.same_samples(t.training.train_set) for t in trials[1:])
    ):
        shared = train.normalized()
        for trial in trials:
            trial.training.loader.dataset = shared
    evaluator = first.evaluator
    splits = [s for s in (evaluator.valid_set, evaluator.test_set) if s is not None]
    if evaluate_together and sum(s.inputs.numel() * 4 for s in splits) <= TRANSFORMED_ONCE_BYTES:
        valid = None if evaluator.valid_set is None else evaluator.valid_set.normalized()
        test = evaluator.test_set.normalized()
        for trial in trials:
            trial.training.evaluator.valid_set, trial.training.evaluator.test_set = valid, test


def _shared_train_set(trials: Sequence[_Trial]) -> InMemoryDataset | None:
    """The training split every trial's loader serves (`_transform_once` shares it), when it
    does not augment: a step then fetches all trials' batches in one gather, the same rows."""
    loaders = [trial.training.loader for trial in trials]
    data = getattr(loaders[0], "dataset", None)
    if type(data) is not InMemoryDataset or data.augment is not None:  # not columns, tokens
        return None
    first = loaders[0]
    shared = all(
        isinstance(each, ShuffledBatches)
        and each.dataset is data
        and (each.batch_size, each.drop_last) == (first.batch_size, first.drop_last)
        for each in loaders
    )
    return data if shared else None


def _evaluates_together(trials: Sequence[_Trial]) -> bool:
    """Whether the trials' evaluations read the same batches the same way, so that one pass
    over them can evaluate every copy (where the copies' outputs can be computed together)."""
    first = trials[0].training.evaluator
    for trial in trials[1:]:
        other = trial.training.evaluator
        settings = ("batch_size", "classify", "drop_last", "bytes_per_token")
        if any(getattr(first, name) != getattr(other, name) for name in settings):
            return False
        if (first.valid_set is None) != (other.valid_set is None):
            return False
        splits = [(first.test_set, other.test_set), (first.valid_set, other.valid_set)]
        if not all(a is None or a.same_samples(b) for a, b in splits):
            return False
    return True


def _evaluated_together(trials: list[_Trial], gradients: CopyGradients) -> list[Evaluated] | None:
    """Each trial's evaluation as its lone run's (`evaluate`: its draw from its own global RNG
    per split, its model in eval mode), from one pass over the shared splits where the copies'
    outputs are computed together (each batch's inputs transformed once); None where they
    are not."""
    models = [trial.training.model for trial in trials]
    outputs_of = gradients.outputs_of(models) if len(models) > 1 else None
    if outputs_of is None:
        return None
    started = time.perf_counter()
    first = trials[0].training.evaluator
    splits = [data for data in (first.valid_set, first.test_set) if data is not None]
    for trial in trials:
        with trial.own_rng():
            for _ in splits:  # what iterating each split's DataLoader draws
                torch.empty((), dtype=torch.int64).random_()
        trial.training.model.eval()
    with torch.no_grad(), first.precision():
        measured = [
            evaluate_outputs(
                outputs_of, first.loss_fn, data, first.batch_size, first.classify, first.drop_last
            )
            for data in splits
        ]
    for model in models:
        model.train()
    seconds = (time.perf_counter() - started) / len(trials)
    rows = []
    for k, trial in enumerate(trials):
        *valid, test = [per_model[k] for per_model in measured]
        rows.append((trial.training.evaluator.row(valid[0] if valid else None, test), seconds))
    return rows


def run_batch(
    plans: Sequence[RunPlan],
    results_dir: str | Path,
    *,
    force: bool = False,
    resume: bool = False,
    displays: Sequence[TrainingObserver] | None = None,
    save_every: float = 0.0,
    decision: BatchDecision | None = None,
) -> list[RunOutcome]:
    """`run_plan` for K plans trained as one batch: each trial's run folder, config, epochs.csv,
    summary and checkpoint written as its lone run writes them (a finished one answered from
    disk with `resume`). ConfigError naming batch_trials when the plans cannot batch exactly
    (`decision`: decide_batch's, when the caller has it); nothing is written then."""
    decision = decision or decide_batch(plans)
    if decision.refusal is not None:
        raise ConfigError(
            "batch_trials", f"these trials cannot train as one batch: {decision.refusal}"
        )
    for plan in plans:
        check_inputs(plan)
    displays = displays or [SilentObserver() for _ in plans]
    outcomes: list[RunOutcome | None] = [None] * len(plans)
    with contextlib.ExitStack() as locks:
        todo = []
        for index, plan in enumerate(plans):
            run = create_run_dir(results_dir, plan.name, plan.run_id)
            locks.enter_context(RunLock(run))
            checkpoints, finished = claim_run(
                run, plan, force=force, resume=resume, save_every=save_every
            )
            if finished is not None:
                outcomes[index] = finished
            else:
                todo.append((index, start_run(run, plan, checkpoints, displays[index])))
        if todo:
            trained = [started for _, started in todo]
            try:
                with torch_threads(plans[0].threads):
                    results = train_batched(
                        [s.plan for s in trained],
                        [s.observer for s in trained],
                        [s.checkpoints for s in trained],
                        decision=decision if len(trained) == len(plans) else None,
                    )
            except BaseException as exc:
                for started in trained:
                    fail_run(started, exc)
                raise
            for (index, started), result in zip(todo, results, strict=True):
                if isinstance(result, StopTraining):
                    outcomes[index] = end_run(started, TrainResult(status=result.status), result)
                else:
                    outcomes[index] = end_run(started, result)
    return [outcome for outcome in outcomes if outcome is not None]
