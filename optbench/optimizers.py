"""Optimizers: every torch.optim optimizer by name (or an import path), and param groups.

A parameter joins the first `param_groups` entry whose glob matches its name; parameters that
no entry matches form the default group (group 0), which uses the top-level hyperparameters.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from optbench.config import OptimizerConfig
from optbench.errors import ConfigError
from optbench.registry import (
    Registry,
    bind_options,
    code_identity,
    import_object,
    is_import_path,
    signature_defaults,
)

_NOT_TRAINABLE_HERE: dict[type, str] = {
    torch.optim.SparseAdam: "needs sparse gradients, which optbench's models do not produce",
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
    code: dict[str, Any] = field(default_factory=dict)  # what identifies an imported class's code

    @classmethod
    def from_class(
        cls,
        name: str,
        optimizer_cls: type[torch.optim.Optimizer],
        code: dict[str, Any] | None = None,
    ) -> OptimInfo:
        doc = inspect.getdoc(optimizer_cls) or ""
        return cls(
            name=name,
            cls=optimizer_cls,
            description=doc.splitlines()[0] if doc else "",
            needs_closure=optimizer_cls is torch.optim.LBFGS,
            defaults=signature_defaults(optimizer_cls, skip=("params",)),
            code=code or {},
        )


def _torch_optimizers() -> Registry[OptimInfo]:
    registry: Registry[OptimInfo] = Registry("optimizer")
    for name in sorted(dir(torch.optim)):
        obj = getattr(torch.optim, name)
        if (
            inspect.isclass(obj)
            and issubclass(obj, torch.optim.Optimizer)
            and obj is not torch.optim.Optimizer
            and obj not in _NOT_TRAINABLE_HERE
        ):
            registry.register(name, OptimInfo.from_class(name, obj))
    return registry


OPTIMIZERS = _torch_optimizers()


def get_optimizer(name: str, field: str = "optimizer.name") -> OptimInfo:
    """A torch.optim name (any case) or an import path to an Optimizer subclass. A registered
    class comes back as its record whatever the spelling (SGD, sgd, torch.optim.SGD), so one
    experiment has one run-id; other classes are named module.Class and carry their code's
    identity."""
    if not is_import_path(name):
        refused = next((c for c in _NOT_TRAINABLE_HERE if c.__name__.lower() == name.lower()), None)
        if refused is not None:
            raise ConfigError(field, f"{refused.__name__} {_NOT_TRAINABLE_HERE[refused]}")
        return OPTIMIZERS.get(name, field)
    obj = import_object(name, field)
    if not (inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)):
        raise ConfigError(field, f"'{name}' is not a torch.optim.Optimizer subclass")
    if obj in _NOT_TRAINABLE_HERE:
        raise ConfigError(field, f"{obj.__name__} {_NOT_TRAINABLE_HERE[obj]}")
    registered = next((info for info in OPTIMIZERS if info.cls is obj), None)
    if registered is not None:
        return registered
    return OptimInfo.from_class(f"{obj.__module__}.{obj.__qualname__}", obj, code_identity(obj))


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


@dataclass(frozen=True)
class BoundOptimizer:
    """An optimizer bound once, while planning: its class, canonical hyperparameters and the
    model's parameters split into groups. Training builds from this; nothing binds again."""

    info: OptimInfo
    hyperparameters: dict[str, Any]  # top level, every default filled in
    group_settings: tuple[dict[str, Any], ...]  # each param_groups entry as configured, canonical
    groups: tuple[ParamGroup, ...]  # the torch param groups, default group first

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over `model`'s trainable parameters with its groups."""
        named = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if len(self.groups) == 1:
            return _construct(self.info, list(named.values()), self.hyperparameters)
        torch_groups = [
            {"params": [named[n] for n in g.names], **g.hyperparameters} for g in self.groups
        ]
        return _construct(self.info, torch_groups, self.groups[0].hyperparameters)

    def check(self, model: nn.Module) -> None:
        """Construct each group on its own: torch checks values only for the constructor's
        defaults, so a bad group value would otherwise surface at the first step."""
        named = dict(model.named_parameters())
        for group in self.groups:
            _construct(self.info, [named[n] for n in group.names], group.hyperparameters)
        self.build(model)

    def resolved(self) -> dict[str, Any]:
        return {
            "name": self.info.name,
            **self.hyperparameters,
            "param_groups": [dict(g) for g in self.group_settings],
        }


def bind_optimizer(
    info: OptimInfo, config: OptimizerConfig, names: Iterable[str]
) -> BoundOptimizer:
    """Check the optimizer's settings against its signature and split parameter `names` into
    groups: a parameter joins the first param_groups entry whose glob matches it; the rest form
    the default group."""
    names = list(names)
    hyper = bind_options(info.cls, config.options, "optimizer", skip=("params",), label=info.name)
    _check_ranges(hyper, "optimizer")
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
        groups.append(ParamGroup(",".join(group.patterns), members, {**hyper, **overrides[i]}))
    settings = tuple(
        {"params": group.params, **overrides[i]} for i, group in enumerate(config.param_groups)
    )
    return BoundOptimizer(info, hyper, settings, tuple(g for g in groups if g.names))


def _construct(info: OptimInfo, params: list[Any], hyper: dict[str, Any]) -> torch.optim.Optimizer:
    try:
        return info.cls(params, **hyper)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError("optimizer", f"{info.name} rejects these settings: {exc}") from None
