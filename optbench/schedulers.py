"""Learning-rate schedulers: torch.optim.lr_scheduler classes by name, with their arguments.

Step counts are runtime facts, so code supplies them: CosineAnnealingLR's T_max and
OneCycleLR's total_steps default to the run's length in the scheduler's interval (epochs, or
optimizer steps when `interval: step`). ReduceLROnPlateau is stepped with the epoch's test loss.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import lr_scheduler

from optbench.config import SchedulerConfig
from optbench.errors import ConfigError
from optbench.registry import Registry, bind_options, signature_defaults

# Schedulers whose arguments are Python callables or other schedulers cannot come from YAML.
_NEEDS_CODE = {"LRScheduler", "LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler"}
_CODE_ARGS = ("optimizer", "last_epoch")
# Arguments measured in scheduler steps that default to the whole run when the config omits them.
_RUN_LENGTH_ARGS = {"CosineAnnealingLR": "T_max", "OneCycleLR": "total_steps"}


@dataclass(frozen=True)
class SchedulerInfo:
    name: str
    cls: type
    description: str
    steps_on_metric: bool
    defaults: dict[str, Any] = field(default_factory=dict)


def _torch_schedulers() -> Registry[SchedulerInfo]:
    registry: Registry[SchedulerInfo] = Registry("scheduler")
    for name in sorted(dir(lr_scheduler)):
        obj = getattr(lr_scheduler, name)
        is_scheduler = inspect.isclass(obj) and (
            issubclass(obj, lr_scheduler.LRScheduler) or obj is lr_scheduler.ReduceLROnPlateau
        )
        if not is_scheduler or name.startswith("_") or name in _NEEDS_CODE:
            continue
        doc = inspect.getdoc(obj) or ""
        registry.register(
            name,
            SchedulerInfo(
                name=name,
                cls=obj,
                description=doc.splitlines()[0] if doc else "",
                steps_on_metric=obj is lr_scheduler.ReduceLROnPlateau,
                defaults=signature_defaults(obj, skip=_CODE_ARGS),
            ),
        )
    return registry


SCHEDULERS = _torch_schedulers()


def resolve_scheduler_options(
    info: SchedulerInfo, config: SchedulerConfig, run_length: int
) -> dict[str, Any]:
    """The scheduler's arguments with defaults filled and run-length arguments supplied."""
    provided = {}
    length_arg = _RUN_LENGTH_ARGS.get(info.name)
    if length_arg and not (info.name == "OneCycleLR" and "epochs" in config.options):
        provided[length_arg] = run_length
    return bind_options(
        info.cls, config.options, "scheduler", skip=_CODE_ARGS, provided=provided, label=info.name
    )


def create_scheduler(
    optimizer: torch.optim.Optimizer, info: SchedulerInfo, options: dict[str, Any]
) -> Any:
    try:
        return info.cls(optimizer, **options)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError("scheduler", f"{info.name} rejects these settings: {exc}") from None
