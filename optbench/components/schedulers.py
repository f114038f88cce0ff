"""Learning-rate schedulers: torch.optim.lr_scheduler classes by name (or any LRScheduler
subclass by import path), with their arguments.

Step counts are runtime facts, so code supplies them: CosineAnnealingLR's T_max and
OneCycleLR's total_steps default to the run's length in the scheduler's interval (epochs, or
optimizer steps when `interval: step`). ReduceLROnPlateau is stepped with the epoch's test loss.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import lr_scheduler

from optbench.components.registry import (
    Range,
    bind_options,
    check_ranges,
    resolve_component,
    signature_defaults,
    summary,
)
from optbench.core.config import SchedulerConfig
from optbench.core.errors import ConfigError
from optbench.core.registry import Registry

# Schedulers whose arguments are Python callables or other schedulers cannot come from YAML.
_NEEDS_CODE = {"LRScheduler", "LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler"}
_CODE_ARGS = ("optimizer", "last_epoch")
# Arguments measured in scheduler steps that default to the whole run when the config omits them
# (for these classes and their subclasses).
_RUN_LENGTH_ARGS = {lr_scheduler.CosineAnnealingLR: "T_max", lr_scheduler.OneCycleLR: "total_steps"}
# Learning rates and factors a scheduler sets, which torch does not check (OneCycleLR trains
# with max_lr -1.0): checked as the optimizer's lr is, for any scheduler taking these names.
_RANGES: dict[str, Range] = {
    "max_lr": (0.0, float("inf"), True),
    "base_lr": (0.0, float("inf"), True),
    "eta_min": (0.0, float("inf"), True),
    "min_lr": (0.0, float("inf"), True),
    "gamma": (0.0, float("inf"), True),
}


@dataclass(frozen=True)
class SchedulerInfo:
    name: str
    cls: type
    description: str
    steps_on_metric: bool
    defaults: dict[str, Any] = field(default_factory=dict)
    code: dict[str, Any] = field(default_factory=dict)  # what identifies an imported class's code

    @classmethod
    def from_class(cls, name: str, scheduler_cls: type, code: dict[str, Any]) -> SchedulerInfo:
        return cls(
            name=name,
            cls=scheduler_cls,
            description=summary(scheduler_cls),
            steps_on_metric=issubclass(scheduler_cls, lr_scheduler.ReduceLROnPlateau),
            defaults=signature_defaults(scheduler_cls, skip=_CODE_ARGS),
            code=code,
        )


def _torch_schedulers() -> Registry[SchedulerInfo]:
    registry: Registry[SchedulerInfo] = Registry("scheduler")
    for name in sorted(dir(lr_scheduler)):
        obj = getattr(lr_scheduler, name)
        is_scheduler = inspect.isclass(obj) and (
            issubclass(obj, lr_scheduler.LRScheduler) or obj is lr_scheduler.ReduceLROnPlateau
        )
        if not is_scheduler or name.startswith("_") or name in _NEEDS_CODE:
            continue
        registry.register(name, SchedulerInfo.from_class(name, obj, {}), source=obj)
    return registry


class WarmupCosineLR(lr_scheduler.LRScheduler):
    """Linear warmup, then cosine decay to min_lr_ratio of each group's lr: nanoGPT's get_lr
    (train.py). Step i < warmup_steps: lr·(i + 1)/(warmup_steps + 1); then
    min + 0.5·(1 + cos(π·(i - warmup)/(total - warmup)))·(lr - min); past total_steps, min.
    total_steps defaults to the run's length in the scheduler's interval (use interval: step)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"warmup_steps must be in [0, total_steps {total_steps}), got {warmup_steps}"
            )
        if not 0 <= min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if step > self.total_steps:
            return self.min_lr_ratio
        ratio = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return self.min_lr_ratio + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (1 - self.min_lr_ratio)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]


_RUN_LENGTH_ARGS[WarmupCosineLR] = "total_steps"
SCHEDULERS = _torch_schedulers()
SCHEDULERS.register(
    "WarmupCosineLR",
    SchedulerInfo.from_class("WarmupCosineLR", WarmupCosineLR, {}),
    source=WarmupCosineLR,
)


def _check_scheduler(obj: Any) -> str | None:
    if not (
        inspect.isclass(obj)
        and issubclass(obj, (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau))
    ):
        return "is not a torch.optim.lr_scheduler.LRScheduler subclass"
    if obj.__module__ == lr_scheduler.__name__ and obj.__name__ in _NEEDS_CODE:
        return "takes Python callables or other schedulers, which a config cannot give"
    return None


def get_scheduler(name: str, field: str = "scheduler.name") -> SchedulerInfo:
    """A torch.optim.lr_scheduler class by name (any case), or an import path to an LRScheduler
    subclass; a registered one by its path comes back as its record."""
    return resolve_component(SCHEDULERS, name, field, _check_scheduler, SchedulerInfo.from_class)


@dataclass(frozen=True)
class BoundScheduler:
    """A scheduler bound once, while planning: its class, arguments and stepping interval."""

    info: SchedulerInfo
    options: dict[str, Any]
    per_step: bool  # stepped after every optimizer step, not once per epoch

    def build(self, optimizer: torch.optim.Optimizer) -> Any:
        try:
            return self.info.cls(optimizer, **self.options)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(
                "scheduler", f"{self.info.name} rejects these settings: {exc}"
            ) from None


def bind_scheduler(config: SchedulerConfig, epochs: int, steps_per_epoch: int) -> BoundScheduler:
    """Check the scheduler's settings; run-length arguments default to the whole run, counted
    in the scheduler's interval (epochs, or optimizer steps with `interval: step`)."""
    info = get_scheduler(config.name)
    per_step = config.interval == "step"
    if per_step and info.steps_on_metric:
        raise ConfigError(
            "scheduler.interval",
            f"{info.name} steps on the epoch's test loss, so its interval must be 'epoch'",
        )
    run_length = epochs * (steps_per_epoch if per_step else 1)
    provided = {}
    for cls, length_arg in _RUN_LENGTH_ARGS.items():
        by_epochs = cls is lr_scheduler.OneCycleLR and "epochs" in config.options
        if issubclass(info.cls, cls) and not by_epochs:
            provided[length_arg] = run_length
    options = bind_options(
        info.cls, config.options, "scheduler", skip=_CODE_ARGS, provided=provided, label=info.name
    )
    check_ranges(options, _RANGES, "scheduler")
    return BoundScheduler(info, options, per_step)
