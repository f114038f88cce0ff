"""From a shape-checked config to a run plan: every component looked up, bound and tried.

`make_plan` does all checking before anything trains: it binds every component to its
signature, builds the model once (parameter names for param groups), constructs the optimizer
and scheduler on it, pushes a batch that looks like the data through model and loss and
takes one optimizer step (trial_batch), then throws them away. The plan carries what was
bound; training, `params` and reports build from it and never read the raw config again.
Its resolved config is derived from the schema and the bound components, and the run-id from
that (core/identity.py).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from optbench.components.data import BoundData, DataSpec, bind_data, first_train_batch
from optbench.components.losses import LOSSES, LossInfo, get_loss, loss_of
from optbench.components.models import (
    ModelInfo,
    bind_model,
    construct,
    expand_short_form,
    get_model,
    with_channels,
)
from optbench.components.optimizers import BoundOptimizer, bind_optimizer, get_optimizer
from optbench.components.outputs import describe, forward, logits_of
from optbench.components.registry import unsigned_zero
from optbench.components.schedulers import BoundScheduler, bind_scheduler
from optbench.core import identity
from optbench.core.config import (
    OPTIONAL_DATA_FIELDS,
    OPTIONAL_RUN_FIELDS,
    ExperimentConfig,
    default_data_root,
)
from optbench.core.errors import ConfigError
from optbench.core.usercode import stage, time_limit, user_code
from optbench.experiment.checkpoint import check_round_trip, unsaveable_reason
from optbench.experiment.loggers.registry import BoundLogger, bind_loggers


@dataclass(frozen=True)
class BoundRegularization:
    """The L2 penalty bound once: its factor and the names of the parameters it covers (what
    `regularization.params` matched in the model while planning)."""

    l2: float
    names: tuple[str, ...]

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The covered parameters of a model built from this plan, in the model's order."""
        named = dict(model.named_parameters())
        return [named[name] for name in self.names]


def bind_regularization(config: ExperimentConfig, names: list[str]) -> BoundRegularization | None:
    """`regularization` against the model's parameter names; a pattern matching none is refused."""
    if config.regularization is None:
        return None
    for pattern in config.regularization.patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise ConfigError(
                "regularization.params",
                f"'{pattern}' matches no parameter; parameters are: {', '.join(names)}",
            )
    patterns = config.regularization.patterns
    covered = tuple(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))
    return BoundRegularization(config.regularization.l2, covered)


@dataclass(frozen=True)
class RunPlan:
    config: ExperimentConfig
    resolved: dict[str, Any]
    run_id: str
    device: torch.device
    data: BoundData
    model: ModelInfo
    model_options: dict[str, Any]
    loss: LossInfo
    loss_options: dict[str, Any]
    optimizer: BoundOptimizer
    scheduler: BoundScheduler | None
    parameters: tuple[tuple[str, tuple[int, ...]], ...]  # every trainable parameter's name, shape
    regularization: BoundRegularization | None = None  # the L2 penalty train.py's _loss adds
    threads: int = 1  # torch's intra-op threads while it trains (config.threads, see run_threads)
    loggers: tuple[BoundLogger, ...] = ()  # `log:` bound (experiment/loggers/); not in the run-id

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def data_spec(self) -> DataSpec:
        return self.data.spec

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(
            self.data.spec, self.config.data.batch_size, self.drop_last, self.config.accumulate
        )

    @property
    def drop_last(self) -> bool:
        return bool(self.config.data.drop_last)

    @property
    def shuffle_once(self) -> bool:
        """DeepOBS's pipeline: one shuffle order per run, replayed every epoch."""
        return self.config.data.shuffle == "once"

    def build_model(self, device: torch.device | None = None) -> nn.Module:
        return build_model(
            self.model,
            self.data.spec,
            self.model_options,
            device or self.device,
            self.config.data.channels,
        )

    def build_loss(self) -> nn.Module:
        return self.loss.build(self.loss_options)

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return self.optimizer.build(model)

    def build_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        return None if self.scheduler is None else self.scheduler.build(optimizer)


def build_model(
    info: ModelInfo,
    spec: DataSpec,
    options: dict[str, Any],
    device: torch.device,
    channels: int | None = None,
) -> nn.Module:
    with user_code("model", info.name):  # a bad value, or anything the model's code raises
        model = construct(info, spec, options, channels)
    return model.to(device)


def steps_per_epoch(
    spec: DataSpec, batch_size: int, drop_last: bool = False, accumulate: int | None = None
) -> int:
    """Optimizer steps per epoch: the DataLoader keeps the last, smaller batch (unless
    `data.drop_last`); with `accumulate`, one step per that many batches (the last group may
    hold fewer)."""
    batches = (
        spec.train_size // batch_size if drop_last else math.ceil(spec.train_size / batch_size)
    )
    return math.ceil(batches / (accumulate or 1))


# torch's default intra-op threads in this process (the CPU cores, or OMP_NUM_THREADS), read
# when optbench first imports it: what a notebook's own loop trains with.
TORCH_DEFAULT_THREADS = torch.get_num_threads()


def run_threads(config: ExperimentConfig) -> int:
    """The threads a run trains with: its config's `threads`, else torch's default. Never the
    number of runs sharing the machine: float sums (matmuls, reductions) are split by thread
    count, so that would make a run's numbers depend on its neighbours."""
    return config.threads or TORCH_DEFAULT_THREADS


def resolve_device(name: str) -> torch.device:
    """'auto' is the best available accelerator, else the CPU; others must exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device", f"'{name}' was asked for but CUDA is not available here")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                "device", f"'{name}' does not exist; {torch.cuda.device_count()} GPU(s) here"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", "'mps' was asked for but MPS is not available here")
    return torch.device(name)


def _plain(value: Any) -> Any:
    """YAML/JSON-friendly copy: tuples become lists, -0.0 is 0.0 (one number, one run-id)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return unsigned_zero(value)


def _section(dumped: dict[str, Any], extras: dict[str, Any] | None, bound: dict[str, Any]) -> Any:
    """A section of the resolved config: its schema fields as dumped, with the free options the
    user wrote replaced by what they were bound to (canonical, every default filled in)."""
    replaced = {*(extras or {}), *bound}
    return {**bound, **{k: v for k, v in dumped.items() if k not in replaced}}


def resolve_config(
    config: ExperimentConfig,
    data: BoundData,
    model: tuple[ModelInfo, dict[str, Any]],
    loss: tuple[LossInfo, dict[str, Any]],
    optimizer: BoundOptimizer,
    scheduler: BoundScheduler | None,
    loggers: tuple[BoundLogger, ...] = (),
) -> dict[str, Any]:
    """The resolved config (config.yaml): every field of the schema as dumped, so a new field
    can not be left out, with each component's section replaced by its binding."""
    dumped = config.model_dump(mode="json")
    del dumped["sweep"]  # `run` trains the base; the grid is not part of a run
    del dumped["tune"]  # nor is a search space (sweep/tune.py)
    for key in OPTIONAL_DATA_FIELDS:  # unset: absent, as in configs from before the field
        if getattr(config.data, key) is None:
            del dumped["data"][key]
    for key in OPTIONAL_RUN_FIELDS:  # likewise: absent when unset, so earlier run-ids hold
        if getattr(config, key) is None or getattr(config, key) is False:
            del dumped[key]
    resolved = {
        **dumped,
        "data": _section(dumped["data"], config.data.model_extra, data.resolved()),
        "model": _section(
            dumped["model"], config.model.model_extra, {"name": model[0].name, **model[1]}
        ),
        "loss": _section(
            dumped["loss"], config.loss.model_extra, {"name": loss[0].name, **loss[1]}
        ),
        "optimizer": _section(
            dumped["optimizer"], config.optimizer.model_extra, optimizer.resolved()
        ),
        "log": [logger.resolved() for logger in loggers],
    }
    if scheduler is not None and config.scheduler is not None:
        resolved["scheduler"] = _section(
            dumped["scheduler"],
            config.scheduler.model_extra,
            {"name": scheduler.info.name, **scheduler.options},
        )
    others = {
        "dataset": data.code,
        "model": model[0].code,
        "loss": loss[0].code,
        "scheduler": scheduler.info.code if scheduler is not None else None,
    }
    code = {kind: identity for kind, identity in others.items() if identity}
    code.update(optimizer.code)
    if code:  # imported code (a data file's content) is part of what the experiment is
        resolved["code"] = code
    return _plain(resolved)


TRIAL_BATCH = 2  # samples in planning's trial batch


def trial_batch(
    data: BoundData, seed: int, size: int = TRIAL_BATCH
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of `size` samples that looks like the data, for planning's trial forward and
    step: the first training samples when planning loaded the dataset already, else random
    values of the data's shape and range (standard normal when normalised, [0, 1] otherwise)
    with valid targets. Not zeros: optimizers that initialise from gradient statistics
    (heavyball's PSGDKron) refuse all-zero gradients. Drawn from its own generator, so no RNG
    of the run moves."""
    loaded = first_train_batch(data, seed, size)
    if loaded is not None:
        return loaded
    spec = data.spec
    generator = torch.Generator().manual_seed(seed)
    shape = (size, *spec.input_shape)
    if data.normalize is not None:
        inputs = torch.randn(shape, generator=generator)
    else:
        inputs = torch.rand(shape, generator=generator)
    if spec.num_classes:
        targets = torch.randint(spec.num_classes, (size,), generator=generator)
    else:
        targets = torch.randn(size, spec.num_outputs, generator=generator)
    return inputs, targets


def _try_batch(
    model: nn.Module,
    loss_fn: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    spec: DataSpec,
    model_name: str,
    loss: LossInfo,
) -> None:
    """Push the trial batch through the model and the loss, so a model that does not fit the
    data, a loss option torch checks only when called, or an imported loss that does not fit
    the outputs and targets fails while planning."""
    inputs, targets = batch
    model.eval()  # batch norm in training mode refuses tiny batches
    try:
        with torch.no_grad():
            outputs = forward(model, inputs)
    except Exception as exc:
        hint = ""
        if "channels" in str(exc) and len(spec.input_shape) == 3 and spec.input_shape[0] == 1:
            hint = (
                " (grayscale data: set the model's channel count, in_chans or in_channels, "
                "or data.channels: 3 to repeat the channel)"
            )
        raise ConfigError(
            "model",
            f"{model_name} fails on a batch of shape {describe(inputs)}: "
            f"{type(exc).__name__}: {exc}{hint}",
        ) from None
    logits = logits_of(outputs)
    # read as logits by a built-in loss and by accuracy; an imported loss on values takes them
    reads_logits = loss.targets is not None or spec.num_classes is not None
    if logits is None and not loss.from_model and reads_logits:
        raise ConfigError(
            "model",
            f"{model_name} returns a {type(outputs).__name__} with no logits to read; "
            "loss: from_model trains on the loss it computes itself",
        )
    shape = tuple(getattr(logits, "shape", ()))
    # what a built-in loss needs: one row of outputs per target (per token of a sequence)
    needs = (len(targets), *spec.target_shape, spec.num_outputs)
    if loss.targets is not None and shape != needs:
        raise ConfigError(
            "model",
            f"{model_name} gives outputs of shape {shape} for a batch of {len(targets)}; "
            f"{loss.name} needs {needs} here",
        )
    _try_evaluation(logits, targets, spec, model_name)
    try:
        value = loss_of(loss_fn, outputs, targets)
    except Exception as exc:
        if loss.targets is not None:
            raise ConfigError("loss", f"{loss.name} rejects these settings: {exc}") from None
        if loss.from_model:
            raise ConfigError("loss", f"from_model: {exc}") from None
        raise ConfigError(
            "loss",
            f"{loss.name} fails on outputs of shape {shape} and {targets.dtype} targets of "
            f"shape {tuple(targets.shape)}: {type(exc).__name__}: {exc}",
        ) from None
    if not (isinstance(value, torch.Tensor) and value.numel() == 1):
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ConfigError("loss", f"{loss.name} returns {got}, not a single number")


def _try_evaluation(
    logits: torch.Tensor | None, targets: torch.Tensor, spec: DataSpec, model_name: str
) -> None:
    """What evaluation reads, tried on the trial batch: for classes, the argmax over the
    outputs' last axis, one per target; so outputs the metrics cannot read are refused now,
    not after an epoch of training."""
    if not spec.num_classes:
        return
    predicted = None if logits is None else tuple(logits.shape[:-1])
    if predicted != tuple(targets.shape):
        got = "no logits" if logits is None else f"logits of shape {tuple(logits.shape)}"
        raise ConfigError(
            "model",
            f"{model_name}'s outputs cannot be scored against targets of shape "
            f"{tuple(targets.shape)}: accuracy needs class scores on the last axis, one row per "
            f"target, and it gives {got}",
        )


def _try_step(
    optimizer: BoundOptimizer,
    model: nn.Module,
    loss_fn: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    model_name: str,
) -> None:
    """One step of the optimizer's protocol on the trial batch, on the throwaway model: an
    optimizer optbench cannot step (wrong protocol, a model it does not support) is refused
    while planning, with torch's reason, and never run wrongly."""
    trial = optimizer.build(model)
    protocol = optimizer.protocol
    _try_switch(protocol.training, trial, optimizer.info.name)
    try:
        protocol.step(trial, lambda: loss_of(loss_fn, forward(model, batch[0]), batch[1]))
    except Exception as exc:
        raise ConfigError(
            "optimizer",
            f"{optimizer.info.name} cannot take a step ({protocol.name} protocol) on "
            f"{model_name}: {type(exc).__name__}: {exc} (optimizer.protocol forces another: "
            "plain, closure, sharpness or second_order)",
        ) from None
    _try_switch(protocol.evaluating, trial, optimizer.info.name)
    try:
        check_round_trip(trial)
    except Exception as exc:
        raise ConfigError(
            "optimizer",
            f"{optimizer.info.name}'s state cannot be checkpointed, so a run of it could not "
            f"resume: {unsaveable_reason(exc)}",
        ) from None


def _try_switch(
    switch: Callable[[torch.optim.Optimizer], None], trial: torch.optim.Optimizer, name: str
) -> None:
    """The protocol's optimizer.train() or eval() (a no-op for most classes); when the class's
    own method fails, no other protocol helps, so the refusal says only that."""
    try:
        switch(trial)
    except Exception as exc:
        raise ConfigError(
            "optimizer", f"{name}'s train()/eval() fail: {type(exc).__name__}: {exc}"
        ) from None


def _check_steps(config: ExperimentConfig, spec: DataSpec, drop_last: bool) -> None:
    """An epoch must have a step (drop_last with a batch larger than the training set has
    none), and `eval_every` must fall within the run; text draws random windows, so DeepOBS's
    pipeline options do not apply to it."""
    if spec.bytes_per_token is not None and (config.data.shuffle == "once" or drop_last):
        field = "data.shuffle" if config.data.shuffle == "once" else "data.drop_last"
        raise ConfigError(
            field, "does not apply to text: each training batch draws its windows at random"
        )
    steps = steps_per_epoch(spec, config.data.batch_size, drop_last, config.accumulate)
    if steps == 0:
        raise ConfigError(
            "data.drop_last",
            f"batch_size {config.data.batch_size} is more than the {spec.train_size} training "
            "samples: dropping the partial batch leaves no step",
        )
    total = steps * config.epochs
    if config.eval_every is not None and config.eval_every > total:
        raise ConfigError(
            "eval_every",
            f"{config.eval_every} is more than the run's {total} optimizer steps "
            f"(epochs x steps per epoch: {config.epochs} x {steps})",
        )


def _check_per_token(loss: LossInfo, spec: DataSpec, dataset: str) -> None:
    """Sequence data (a target per token) takes a per-token loss, and only it does."""
    if loss.targets is None or loss.per_token == bool(spec.target_shape):
        return
    per_token = ", ".join(info.name for info in LOSSES if info.per_token)
    if spec.target_shape:
        raise ConfigError(
            "loss",
            f"{dataset} has a target per token; {loss.name} reads one per sample: use {per_token}",
        )
    raise ConfigError("loss", f"{loss.name} reads a target per token; {dataset} has one per sample")


def _check_clipping(config: ExperimentConfig, optimizer: BoundOptimizer) -> None:
    """Clipping sits between backward and step, which only the plain protocol exposes;
    accumulation runs backward per micro-batch, which second-order steps cannot."""
    protocol = optimizer.protocol.name
    if (config.accumulate or 1) > 1 and protocol == "second_order":
        raise ConfigError(
            "accumulate",
            f"{optimizer.info.name} steps by the second_order protocol, whose Hessian estimate "
            "reads one backward graph; it cannot accumulate gradients over micro-batches",
        )
    if config.clip_grad_norm is not None and protocol != "plain":
        raise ConfigError(
            "clip_grad_norm",
            f"{optimizer.info.name} steps by the {protocol} protocol, which computes its "
            "gradients inside step(); clipping applies to plain steps (backward, clip, step)",
        )


def _check_precision(config: ExperimentConfig, device: torch.device) -> None:
    """bf16 autocast where the device has it: the CPU always, CUDA on bf16-capable GPUs."""
    if config.precision != "bf16":
        return
    supported = device.type == "cpu" or (
        device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    )
    if not supported:
        raise ConfigError("precision", f"bf16 autocast is not supported on {device} here")


def make_plan(config: ExperimentConfig) -> RunPlan:
    """Check every component of `config` against what it builds; raise ConfigError on the first
    problem, naming its field, or on the component still running after planning's time limit
    ($OPTBENCH_PLAN_TIMEOUT, optbench/core/usercode.py)."""
    with time_limit():
        return _make_plan(config)


def _make_plan(config: ExperimentConfig) -> RunPlan:
    loggers = bind_loggers(config.log)  # first: cheap, and a bad entry needs no data
    with stage("data.dataset", config.data.dataset):
        data = bind_data(config.data, default_data_root(), config.seed)
    spec = data.spec
    drop_last = bool(config.data.drop_last)
    _check_steps(config, spec, drop_last)

    with stage("model", config.model.name):
        model_name, model_given = expand_short_form(config.model.name, config.model.options)
        model_info = get_model(model_name)
        model_options = bind_model(
            model_info, model_given, with_channels(spec, config.data.channels)
        )

    with stage("loss", config.loss.name):
        loss_info = get_loss(config.loss.name)
        loss_options = loss_info.bind(config.loss.options)
    wants = "classes" if spec.num_classes else "values"
    if loss_info.targets is not None and loss_info.targets != wants:  # imported: tried below
        kind = "classification" if spec.num_classes else "regression"
        raise ConfigError(
            "loss",
            f"{loss_info.name} expects {loss_info.targets} as targets, but {data.info.name} is a "
            f"{kind} dataset; use "
            + ", ".join(
                info.name
                for info in LOSSES
                if info.targets == wants and info.per_token == bool(spec.target_shape)
            ),
        )
    _check_per_token(loss_info, spec, data.info.name)

    with stage("optimizer", config.optimizer.name):
        optimizer_info = get_optimizer(config.optimizer.name)
    scheduler = None
    if config.scheduler is not None:
        with stage("scheduler", config.scheduler.name):
            scheduler = bind_scheduler(
                config.scheduler,
                config.epochs,
                steps_per_epoch(spec, config.data.batch_size, drop_last, config.accumulate),
            )

    # Build everything once and take one step, away from the global RNG, so bad values fail
    # now and not mid-run.
    with torch.random.fork_rng(devices=[]):
        model = build_model(
            model_info, spec, model_options, torch.device("cpu"), config.data.channels
        )
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not trainable:
            raise ConfigError(
                "model",
                f"{model_info.name} has no trainable parameters: the optimizer would have "
                "nothing to train",
            )
        regularization = bind_regularization(config, list(trainable))
        run = {  # RUN_ARGS: what an optimizer may ask about the run
            "num_iterations": config.epochs
            * steps_per_epoch(spec, config.data.batch_size, drop_last, config.accumulate),
            "num_data": spec.train_size,
        }
        with stage("optimizer", optimizer_info.name):
            optimizer = bind_optimizer(optimizer_info, config.optimizer, trainable, run, model)
            optimizer.check(model)
        _check_clipping(config, optimizer)
        if scheduler is not None:
            with stage("scheduler", scheduler.info.name):
                scheduler.build(optimizer.build(model))
        with stage("loss", loss_info.name):
            loss_fn = loss_info.build(loss_options)
        with stage("model", model_info.name):  # the model's forward, then the loss
            batch = trial_batch(data, config.seed)
            _try_batch(model, loss_fn, batch, spec, model_info.name, loss_info)
        with stage("optimizer", optimizer_info.name):
            _try_step(optimizer, model, loss_fn, batch, model_info.name)

    resolved = resolve_config(
        config,
        data,
        (model_info, model_options),
        (loss_info, loss_options),
        optimizer,
        scheduler,
        loggers,
    )
    device = resolve_device(config.device)
    _check_precision(config, device)
    return RunPlan(
        config=config,
        resolved=resolved,
        run_id=identity.run_id(resolved),
        device=device,
        data=data,
        model=model_info,
        model_options=model_options,
        loss=loss_info,
        loss_options=loss_options,
        optimizer=optimizer,
        scheduler=scheduler,
        parameters=tuple((n, tuple(p.shape)) for n, p in trainable.items()),
        regularization=regularization,
        threads=run_threads(config),
        loggers=loggers,
    )
