"""Optimizers: every torch.optim optimizer by name (or a dotted import path), and param groups.

A parameter joins the first `param_groups` entry whose glob matches its name; parameters that
no entry matches form the default group (group 0), which uses the top-level hyperparameters.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from optbench.config import OptimizerConfig
from optbench.errors import ConfigError
from optbench.registry import Registry, bind_options, signature_defaults

_NOT_TRAINABLE_HERE = {
    "SparseAdam": "needs sparse gradients, which optbench's models do not produce",
}
# Limits torch itself does not check on every group; an out-of-range value is a config error.
_RANGES: dict[str, tuple[float, float, bool]] = {  # name: (low, high, high is inclusive)
    "lr": (0.0, float("inf"), True),
    "momentum": (0.0, 1.0, False),
    "dampening": (0.0, 1.0, True),
    "weight_decay": (0.0, float("inf"), True),
}


@dataclass(frozen=True)
class OptimInfo:
    """One optimizer class and what optbench knows about it."""

    name: str
    cls: type[torch.optim.Optimizer]
    description: str
    needs_closure: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_class(cls, name: str, optimizer_cls: type[torch.optim.Optimizer]) -> OptimInfo:
        doc = inspect.getdoc(optimizer_cls) or ""
        return cls(
            name=name,
            cls=optimizer_cls,
            description=doc.splitlines()[0] if doc else "",
            needs_closure=optimizer_cls is torch.optim.LBFGS,
            defaults=signature_defaults(optimizer_cls, skip=("params",)),
        )


def _torch_optimizers() -> Registry[OptimInfo]:
    registry: Registry[OptimInfo] = Registry("optimizer")
    for name in sorted(dir(torch.optim)):
        obj = getattr(torch.optim, name)
        if (
            inspect.isclass(obj)
            and issubclass(obj, torch.optim.Optimizer)
            and obj is not torch.optim.Optimizer
            and name not in _NOT_TRAINABLE_HERE
        ):
            registry.register(name, OptimInfo.from_class(name, obj))
    return registry


OPTIMIZERS = _torch_optimizers()


def get_optimizer(name: str, field: str = "optimizer.name") -> OptimInfo:
    """Look up a torch.optim name (any case) or import a dotted path to an Optimizer subclass."""
    if name in _NOT_TRAINABLE_HERE:
        raise ConfigError(field, f"{name} {_NOT_TRAINABLE_HERE[name]}")
    if "." not in name:
        return OPTIMIZERS.get(name, field)
    module_name, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(field, f"cannot import '{name}': {exc}") from None
    if not (inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)):
        raise ConfigError(field, f"'{name}' is not a torch.optim.Optimizer subclass")
    return OptimInfo.from_class(name, obj)


def _check_ranges(hyper: dict[str, Any], field: str) -> None:
    for key, (low, high, inclusive) in _RANGES.items():
        value = hyper.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        inside = low <= value <= high if inclusive else low <= value < high
        if not inside:  # written this way round so that NaN is outside too
            bound = "]" if inclusive else ")"
            raise ConfigError(
                f"{field}.{key}", f"must be in [{low:g}, {high:g}{bound}, got {value}"
            )


def resolve_hyperparameters(info: OptimInfo, config: OptimizerConfig) -> dict[str, Any]:
    """The top-level hyperparameters with every signature default filled in."""
    hyper = bind_options(info.cls, config.options, "optimizer", skip=("params",), label=info.name)
    _check_ranges(hyper, "optimizer")
    return hyper


def _group_overrides(info: OptimInfo, config: OptimizerConfig) -> list[dict[str, Any]]:
    overrides = []
    for i, group in enumerate(config.param_groups):
        where = f"optimizer.param_groups.{i}"
        bound = bind_options(
            info.cls, group.hyperparameters, where, skip=("params",), label=info.name
        )
        given = {k: bound[k] for k in group.hyperparameters}
        _check_ranges(given, where)
        overrides.append(given)
    return overrides


@dataclass(frozen=True)
class ParamGroup:
    """One optimizer group: its label, parameter names and effective hyperparameters."""

    label: str
    names: list[str]
    hyperparameters: dict[str, Any]


def assign_param_groups(
    names: Iterable[str], info: OptimInfo, config: OptimizerConfig
) -> list[ParamGroup]:
    """Split parameter names into groups: default group first, then the configured groups."""
    names = list(names)
    hyper = resolve_hyperparameters(info, config)
    overrides = _group_overrides(info, config)
    claimed: dict[str, int] = {}
    literal_owner: dict[str, int] = {}
    for i, group in enumerate(config.param_groups):
        where = f"optimizer.param_groups.{i}.params"
        for pattern in group.patterns:
            matches = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not matches:
                raise ConfigError(
                    where,
                    f"'{pattern}' matches no parameter; parameters are: {', '.join(names)}",
                )
            if not any(ch in pattern for ch in "*?["):
                if pattern in literal_owner and literal_owner[pattern] != i:
                    raise ConfigError(
                        where,
                        f"'{pattern}' is already listed in param_groups.{literal_owner[pattern]}",
                    )
                literal_owner[pattern] = i
            for name in matches:
                claimed.setdefault(name, i)
    groups = [ParamGroup("default", [n for n in names if n not in claimed], hyper)]
    for i, group in enumerate(config.param_groups):
        members = [n for n in names if claimed.get(n) == i]
        if not members:
            raise ConfigError(
                f"optimizer.param_groups.{i}.params",
                "every parameter it matches is already taken by an earlier group",
            )
        label = ",".join(group.patterns)
        groups.append(ParamGroup(label, members, {**hyper, **overrides[i]}))
    return [g for g in groups if g.names]


def create_optimizer(
    model: nn.Module, info: OptimInfo, config: OptimizerConfig
) -> tuple[torch.optim.Optimizer, list[ParamGroup]]:
    """Build the optimizer over `model`'s trainable parameters with its configured groups."""
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    groups = assign_param_groups(named, info, config)
    for group in groups:  # torch checks hyperparameter values only for the constructor's defaults
        _construct(info, [named[n] for n in group.names], group.hyperparameters)
    if len(groups) == 1:
        optimizer = _construct(info, list(named.values()), groups[0].hyperparameters)
    else:
        torch_groups = [
            {"params": [named[n] for n in g.names], **g.hyperparameters} for g in groups
        ]
        optimizer = _construct(info, torch_groups, groups[0].hyperparameters)
    return optimizer, groups


def _construct(info: OptimInfo, params: list[Any], hyper: dict[str, Any]) -> torch.optim.Optimizer:
    try:
        return info.cls(params, **hyper)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError("optimizer", f"{info.name} rejects these settings: {exc}") from None
