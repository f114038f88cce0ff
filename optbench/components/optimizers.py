"""Optimizers: every torch.optim optimizer by name (or an import path), and param groups.

A parameter joins the first `param_groups` entry whose glob matches its name; parameters that
no entry matches form the default group (group 0), which uses the top-level hyperparameters.
How each class is stepped is its protocol (components/stepping.py), fixed while binding. A
sharpness-aware optimizer (SAM...) names its base optimizer in the config, by name or import
path, with that optimizer's own hyperparameters: `base_optimizer: {name: SGD, lr: 0.1}`. So
does a wrapper, whose constructor takes an optimizer object instead of parameters (Lookahead,
ScheduleFreeWrapper): optbench builds the base over the parameters and hands it over.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import importlib.util
import inspect
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from optbench.components.registry import (
    Range,
    bind_options,
    check_ranges,
    import_object,
    is_import_path,
    resolve_component,
    signature_defaults,
    summary,
)
from optbench.components.stepping import StepProtocol, detect_protocol, has_train_eval
from optbench.core.config import OptimizerConfig, ProtocolName
from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.core.usercode import user_code

_NOT_TRAINABLE_HERE: dict[type, str] = {
    torch.optim.SparseAdam: "needs sparse gradients, which optbench's models do not produce",
}
# Arguments the code supplies to an optimizer's constructor, never the config.
CODE_ARGS = ("params", "model")
# Arguments that describe the run, supplied when the constructor asks for them and the config
# leaves them out (Ranger21's schedule length, BSAM's dataset size).
RUN_ARGS = ("num_iterations", "num_data")
# The first constructor argument of a wrapper optimizer: an optimizer object, not parameters.
WRAPPED_ARGS = ("optimizer", "base_optimizer", "base")
# Optimizers with a step no protocol here performs, by class name, with the reason.
_CANNOT_STEP = {
    "GSAM": "it takes its loss through set_closure() with a model and a rho scheduler built in "
    "code, a step no optbench protocol performs",
}
# Limits torch itself does not check on every group; an out-of-range value is a config error.
_RANGES: dict[str, Range] = {
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
    protocol: ProtocolName = "plain"
    train_eval: bool = False  # optimizer.train()/eval() switch its parameters (Schedule-Free)
    defaults: dict[str, Any] = field(default_factory=dict)
    code: dict[str, Any] = field(default_factory=dict)  # what identifies an imported class's code
    wraps: str | None = None  # a wrapper's argument for the base optimizer object (`wrapped_arg`)

    @classmethod
    def from_class(
        cls,
        name: str,
        optimizer_cls: type[torch.optim.Optimizer],
        code: dict[str, Any] | None = None,
    ) -> OptimInfo:
        wraps = wrapped_arg(optimizer_cls)
        return cls(
            name=name,
            cls=optimizer_cls,
            description=summary(optimizer_cls),
            protocol=detect_protocol(optimizer_cls),
            train_eval=has_train_eval(optimizer_cls),
            defaults=signature_defaults(optimizer_cls, skip=(*CODE_ARGS, *WRAPPED_ARGS)),
            code=code or {},
            wraps=wraps,
        )


def wrapped_arg(cls: type) -> str | None:
    """The name of a wrapper's first constructor argument when it takes an optimizer object
    instead of parameters (torch_optimizer.Lookahead's `optimizer`, schedulefree's
    ScheduleFreeWrapper's `base`); None for an optimizer over parameters (SAM's
    `base_optimizer` comes after `params`, and is a class)."""
    try:
        first = next(iter(inspect.signature(cls).parameters.values()), None)
    except (ValueError, TypeError):
        return None
    if first is None or first.name not in WRAPPED_ARGS:
        return None
    annotation = first.annotation
    if annotation is inspect.Parameter.empty or "Optimizer" in str(annotation):
        return first.name
    if inspect.isclass(annotation) and issubclass(annotation, torch.optim.Optimizer):
        return first.name
    return None


# Keys (true or false) some optimizers read from each param group rather than take as
# arguments, each with the rule that gives every parameter its value when no param_groups
# entry sets it (`param_groups: [{params: [head.weight], use_muon: true}]` does).
# `use_muon` (pytorch_optimizer's Muon family: Muon, MuonClip, NorMuon, AdaMuon, AdaGO,
# DistributedMuon): true for the >= 2-D weights of hidden layers, which Muon orthogonalises;
# false for 1-D parameters (biases, norms), embeddings and the output layer (the last module
# holding a >= 2-D weight), which take its AdamW update.
GROUP_KEYS = ("use_muon",)


def group_keys(cls: type) -> tuple[str, ...]:
    """The GROUP_KEYS `cls` reads from its groups: a key among the constants of a function of
    the class or its bases (its code names it, as `'use_muon' not in group` does)."""
    constants: set[Any] = set()
    for klass in inspect.getmro(cls):
        if klass.__module__.startswith("torch."):
            continue
        for member in vars(klass).values():
            code = getattr(member, "__code__", None)
            if code is not None:
                constants.update(c for c in code.co_consts if isinstance(c, str))
    return tuple(key for key in GROUP_KEYS if key in constants)


def use_muon(model: nn.Module) -> dict[str, bool]:
    """GROUP_KEYS' `use_muon` rule for every parameter of `model`, by name."""
    owners = [
        (name, module)
        for name, module in model.named_modules()
        if any(p.dim() >= 2 for p in module.parameters(recurse=False))
    ]
    output = owners[-1][1] if owners else None
    rule: dict[str, bool] = {}
    for module_name, module in model.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            hidden = module is not output and not isinstance(module, nn.Embedding)
            rule[f"{module_name}.{name}" if module_name else name] = hidden and parameter.dim() >= 2
    return rule


def effective_lr(optimizer: torch.optim.Optimizer) -> float | None:
    """The step size an optimizer that adapts its own (Prodigy, D-Adaptation: their groups
    carry the estimate `d`) takes now, `d * lr` of its first group; None for the others."""
    group = optimizer.param_groups[0]
    d, lr = group.get("d"), group.get("lr")
    if d is None or lr is None:
        return None
    return float(d) * float(lr)


# Packages whose optimizers compile their step with torch.compile: the module and attribute
# that set it (None: not compiled), and what the compilation cost here (docs/components.md).
COMPILING_PACKAGES: dict[str, tuple[str, str, str]] = {
    "heavyball": (
        "heavyball.utils",
        "compile_mode",
        "on a CPU, AdamW's first 5 steps took 3.4 s and PSGDKron's 100 s",
    ),
}


def compile_note(info: OptimInfo) -> str | None:
    """A line saying the first steps pay torch.compile's compilation, when `info`'s package
    compiles its step as it is set now; None otherwise."""
    package = info.cls.__module__.partition(".")[0]
    if package not in COMPILING_PACKAGES:
        return None
    module_name, attribute, cost = COMPILING_PACKAGES[package]
    mode = getattr(importlib.import_module(module_name), attribute, None)
    if mode is None:
        return None
    return (
        f"{info.name} compiles its step with torch.compile ({module_name}.{attribute} = "
        f"{mode!r}): the first steps of each run pay the compilation ({cost})"
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
            registry.register(name, OptimInfo.from_class(name, obj), source=obj)
    return registry


OPTIMIZERS = _torch_optimizers()

# Where a short name that torch.optim does not have is looked up: installed packages that
# register plug-ins under this entry-point group, then these collections, when installed.
ENTRY_POINT_GROUP = "optbench.optimizers"
COLLECTIONS = ("pytorch_optimizer",)


def collection_optimizers(package: str) -> dict[str, type[torch.optim.Optimizer]]:
    """Every Optimizer subclass `package` exports at its top level, by its exported name."""
    with user_code("--from", package, f"cannot import '{package}'"):  # sys.exit() included
        module = importlib.import_module(package)
    return {
        name: obj
        for name, obj in sorted(vars(module).items())
        if inspect.isclass(obj)
        and issubclass(obj, torch.optim.Optimizer)
        and obj is not torch.optim.Optimizer
        and not name.startswith("_")
    }


def plugin_optimizers() -> dict[str, str]:
    """Entry points of the `optbench.components.optimizers` group: short name -> import path."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _by_short_name(name: str) -> dict[type, str]:
    """The classes a short name (any case) stands for among plug-ins and installed collections,
    each with the import path it was found under."""
    found: dict[type, str] = {}
    for short, path in plugin_optimizers().items():
        if short.lower() == name.lower():
            found.setdefault(import_object(path, "optimizer.name"), path)
    for package in COLLECTIONS:
        if importlib.util.find_spec(package) is None:
            continue
        for exported, obj in collection_optimizers(package).items():
            if exported.lower() == name.lower():
                found.setdefault(obj, f"{package}.{exported}")
    return found


def get_optimizer(name: str, field: str = "optimizer.name") -> OptimInfo:
    """A torch.optim name (any case), a short name from a plug-in or collection (`lion`, when
    torch.optim has none and exactly one is found), or an import path to an Optimizer
    subclass. A registered class comes back as its record whatever the spelling (SGD, sgd,
    torch.optim.SGD), so one experiment has one run-id; other classes are named module.Class,
    whatever path found them, and carry their code's identity."""
    if not is_import_path(name):
        refused = next((c for c in _NOT_TRAINABLE_HERE if c.__name__.lower() == name.lower()), None)
        if refused is not None:
            raise ConfigError(field, f"{refused.__name__} {_NOT_TRAINABLE_HERE[refused]}")
        if name in OPTIMIZERS:
            return OPTIMIZERS.get(name, field)
        found = _by_short_name(name)
        if len(found) > 1:
            raise ConfigError(
                field,
                f"'{name}' is ambiguous: {', '.join(sorted(found.values()))}; give the import path",
            )
        if not found:
            try:
                return OPTIMIZERS.get(name, field)
            except ConfigError as unknown:  # it lists torch.optim's names; say where else to look
                raise ConfigError(
                    field,
                    f"{unknown.problem}; or an import path (package.module.Name), or a short "
                    "name `optbench list optimizers --from PACKAGE` shows",
                ) from None
        (name,) = found.values()
    return resolve_component(OPTIMIZERS, name, field, _cannot_train, OptimInfo.from_class)


def _cannot_train(obj: Any) -> str | None:
    """Why an imported object cannot be trained with, or None. A wrapper need not subclass
    Optimizer (ScheduleFreeWrapper), only step like one."""
    wrapper = (
        inspect.isclass(obj)
        and wrapped_arg(obj) is not None
        and callable(getattr(obj, "step", None))
    )
    if not wrapper and not (inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)):
        return "is not a torch.optim.Optimizer subclass"
    if obj in _NOT_TRAINABLE_HERE:
        return _NOT_TRAINABLE_HERE[obj]
    if obj.__name__ in _CANNOT_STEP:
        return f"cannot be stepped: {_CANNOT_STEP[obj.__name__]}"
    return None


def _check_ranges(hyper: dict[str, Any], field: str) -> None:
    check_ranges(hyper, _RANGES, field)


def _group_overrides(
    info: OptimInfo, base: BoundBase | None, config: OptimizerConfig
) -> list[dict[str, Any]]:
    """Each param group's own hyperparameters, bound to the optimizer's signature (a key only
    the base optimizer takes, such as SAM's lr, to the base optimizer's; a wrapper's groups
    are its base optimizer's)."""
    skip = (*CODE_ARGS, *WRAPPED_ARGS)
    base_keys = signature_defaults(base.info.cls, skip=CODE_ARGS) if base else {}
    own_keys = {} if info.wraps else signature_defaults(info.cls, skip=skip)
    keyed = group_keys(info.cls)
    overrides = []
    for i, group in enumerate(config.param_groups):
        where = f"optimizer.param_groups.{i}"
        read = {k: v for k, v in group.hyperparameters.items() if k in keyed}
        for key, value in read.items():
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}", f"must be true or false, not {value!r}")
        to_base = {
            k: v for k, v in group.hyperparameters.items() if k in base_keys and k not in own_keys
        }
        to_own = {k: v for k, v in group.hyperparameters.items() if k not in to_base | read}
        bound = (
            {} if info.wraps else bind_options(info.cls, to_own, where, skip=skip, label=info.name)
        )
        if info.wraps and to_own:
            key = next(iter(to_own))
            raise ConfigError(
                f"{where}.{key}", f"{base.info.name if base else info.name} does not accept '{key}'"
            )
        if base is not None:
            label = base.info.name
            bound |= bind_options(base.info.cls, to_base, where, skip=CODE_ARGS, label=label)
        given = {k: {**bound, **read}[k] for k in group.hyperparameters}
        _check_ranges(given, where)
        overrides.append(given)
    return overrides


@dataclass(frozen=True)
class ParamGroup:
    """One optimizer group: its label, parameter names and effective hyperparameters."""

    label: str
    names: list[str]
    hyperparameters: dict[str, Any]
    keys: dict[str, Any] = field(default_factory=dict)  # GROUP_KEYS the optimizer reads


@dataclass(frozen=True)
class BoundBase:
    """The base optimizer a sharpness-aware one updates with, and its hyperparameters."""

    info: OptimInfo
    hyperparameters: dict[str, Any]


@dataclass(frozen=True)
class BoundOptimizer:
    """An optimizer bound once, while planning: its class, canonical hyperparameters, how it is
    stepped, and the model's parameters split into groups. Training builds from this; nothing
    binds again."""

    info: OptimInfo
    hyperparameters: dict[str, Any]  # its own, top level, every default filled in
    group_settings: tuple[dict[str, Any], ...]  # each param_groups entry as configured, canonical
    groups: tuple[ParamGroup, ...]  # the torch param groups, default group first
    protocol: StepProtocol
    base: BoundBase | None = None  # sharpness-aware optimizers only

    def _arguments(self, model: nn.Module) -> dict[str, Any]:
        """Constructor arguments besides the parameters: the base optimizer's class, and the
        model for the classes that ask for it (WSAM)."""
        arguments: dict[str, Any] = {}
        if self.base is not None and self.info.wraps is None:
            arguments["base_optimizer"] = self.base.info.cls
        if "model" in inspect.signature(self.info.cls).parameters:
            arguments["model"] = model
        return arguments

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over `model`'s trainable parameters with its groups."""
        named = {n: p for n, p in model.named_parameters() if p.requires_grad}
        arguments = self._arguments(model)
        if len(self.groups) == 1 and not self.groups[0].keys:
            return self._construct(list(named.values()), self.groups[0].hyperparameters, arguments)
        return self._construct(self._torch_groups(named, self.groups), self._top(), arguments)

    def _top(self) -> dict[str, Any]:
        """The constructor's hyperparameters: a class that reads GROUP_KEYS fills each group
        from them itself (Muon's adamw_lr for its AdamW groups); others get group 0's."""
        keyed = any(g.keys for g in self.groups)
        return self.hyperparameters if keyed else self.groups[0].hyperparameters

    @staticmethod
    def _torch_groups(
        named: dict[str, nn.Parameter], groups: Iterable[ParamGroup]
    ) -> list[dict[str, Any]]:
        return [
            {"params": [named[n] for n in g.names], **g.hyperparameters, **g.keys} for g in groups
        ]

    def _construct(
        self, params: list[Any], hyper: dict[str, Any], arguments: dict[str, Any]
    ) -> torch.optim.Optimizer:
        """The optimizer over `params`; a wrapper's base optimizer is built over them first
        (with the base's keys of `hyper`) and handed to the wrapper with its own."""
        if self.info.wraps is None or self.base is None:
            return _construct(self.info, params, hyper, arguments)
        inner = _construct(self.base.info, params, hyper, {})
        return _construct(
            self.info, None, self.hyperparameters, {**arguments, self.info.wraps: inner}
        )

    def check(self, model: nn.Module) -> None:
        """Construct each group on its own: torch checks values only for the constructor's
        defaults, so a bad group value would otherwise surface at the first step."""
        named = dict(model.named_parameters())
        arguments = self._arguments(model)
        for group in self.groups:
            if group.keys:
                self._construct(self._torch_groups(named, [group]), self._top(), arguments)
            else:
                self._construct([named[n] for n in group.names], group.hyperparameters, arguments)
        self.build(model)

    def compile_notes(self) -> list[str]:
        """compile_note's lines for the optimizer and its base optimizer."""
        infos = [self.info, *([self.base.info] if self.base is not None else [])]
        return [note for info in infos if (note := compile_note(info)) is not None]

    def resolved(self) -> dict[str, Any]:
        base = {}
        if self.base is not None:
            base = {"base_optimizer": {"name": self.base.info.name, **self.base.hyperparameters}}
        return {
            "name": self.info.name,
            "protocol": self.protocol.name,
            **self.hyperparameters,
            **base,
            "param_groups": [dict(g) for g in self.group_settings],
        }

    @property
    def code(self) -> dict[str, Any]:
        """What identifies the imported code among the optimizer and its base."""
        code = {"optimizer": self.info.code} if self.info.code else {}
        if self.base is not None and self.base.info.code:
            code["base_optimizer"] = self.base.info.code
        return code


def _bind_base(info: OptimInfo, options: dict[str, Any]) -> tuple[dict[str, Any], BoundBase | None]:
    """Split `base_optimizer` off a sharpness-aware optimizer's options and bind it."""
    takes_base = info.wraps or "base_optimizer" in inspect.signature(info.cls).parameters
    if not takes_base:
        return options, None
    section = options.get("base_optimizer")
    field = "optimizer.base_optimizer"
    if not isinstance(section, dict) or not isinstance(section.get("name"), str):
        raise ConfigError(
            field,
            f"{info.name} {'wraps' if info.wraps else 'updates with'} a base optimizer: give "
            "it as a mapping with a name and its hyperparameters, e.g. "
            "base_optimizer: {name: SGD, lr: 0.1, momentum: 0.9}",
        )
    base_info = get_optimizer(section["name"], f"{field}.name")
    if base_info.protocol != "plain":
        raise ConfigError(f"{field}.name", f"{base_info.name} cannot be a base optimizer")
    own = signature_defaults(info.cls, skip=(*CODE_ARGS, *WRAPPED_ARGS))
    hyper_options = {k: v for k, v in section.items() if k != "name"}
    for key in hyper_options:
        if key in own and not info.wraps:  # SAM takes this argument itself (foreach, ...)
            raise ConfigError(
                f"{field}.{key}", f"{info.name} takes '{key}' itself; set optimizer.{key}"
            )
    hyper = bind_options(base_info.cls, hyper_options, field, skip=CODE_ARGS, label=base_info.name)
    _check_ranges(hyper, field)
    if not info.wraps:  # a wrapper's base keeps its own; SAM passes them through its groups
        hyper = {k: v for k, v in hyper.items() if k not in own}
    rest = {k: v for k, v in options.items() if k != "base_optimizer"}
    return rest, BoundBase(base_info, hyper)


def bind_optimizer(
    info: OptimInfo,
    config: OptimizerConfig,
    names: Iterable[str],
    run: dict[str, Any] | None = None,
    model: nn.Module | None = None,
) -> BoundOptimizer:
    """Check the optimizer's settings against its signature (and its base optimizer's) and
    split parameter `names` into groups: a parameter joins the first param_groups entry whose
    glob matches it; the rest form the default group. `run` holds RUN_ARGS' values. A class
    that reads GROUP_KEYS has each group split by their values: an entry's own value, else
    the key's rule on `model`."""
    names = list(names)
    options, base = _bind_base(info, config.options)
    skip = (*CODE_ARGS, *WRAPPED_ARGS) if base else CODE_ARGS
    own = bind_options(info.cls, options, "optimizer", skip=skip, provided=run, label=info.name)
    _check_ranges(own, "optimizer")
    # What every group starts from; a wrapper's groups are its base optimizer's.
    hyper = {**({} if info.wraps else own), **(base.hyperparameters if base else {})}
    overrides = _group_overrides(info, base, config)
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
    keys = group_keys(info.cls)
    if keys and model is not None:
        groups = _split_by_keys(groups, [{}, *overrides], keys, model)
    protocol = StepProtocol(config.protocol or info.protocol, info.train_eval)
    return BoundOptimizer(info, own, settings, tuple(g for g in groups if g.names), protocol, base)


_KEY_RULES = {"use_muon": use_muon}


def _split_by_keys(
    groups: list[ParamGroup],
    overrides: list[dict[str, Any]],
    keys: tuple[str, ...],
    model: nn.Module,
) -> list[ParamGroup]:
    """Each group split by the values of GROUP_KEYS its parameters take (its entry's own value,
    else the key's rule), holding only what its entry sets: the optimizer fills the rest from
    its arguments per group (Muon's lr for Muon groups, adamw_lr for AdamW ones)."""
    rules = {key: _KEY_RULES[key](model) for key in keys}
    split: list[ParamGroup] = []
    for group, given in zip(groups, overrides, strict=True):
        by_values: dict[tuple[Any, ...], list[str]] = {}
        for name in group.names:
            values = tuple(given.get(key, rules[key][name]) for key in keys)
            by_values.setdefault(values, []).append(name)
        own = {k: v for k, v in given.items() if k not in keys}
        for values, names in by_values.items():
            chosen = dict(zip(keys, values, strict=True))
            label = ", ".join(f"{k}={v}" for k, v in chosen.items())
            split.append(ParamGroup(f"{group.label} ({label})", names, own, chosen))
    return split


# The hook tables torch.optim.Optimizer.__init__ makes, which its step (once load_state_dict
# has patched the class), state_dict() and load_state_dict() read. A wrapper that subclasses
# Optimizer without calling its __init__ (torch_optimizer.Lookahead) lacks them and has no
# hooks: empty tables are what that means.
_HOOK_TABLES = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)


def _with_hook_tables(optimizer: Any) -> Any:
    if isinstance(optimizer, torch.optim.Optimizer):
        for table in _HOOK_TABLES:
            if not hasattr(optimizer, table):
                setattr(optimizer, table, OrderedDict())
    return optimizer


def _construct(
    info: OptimInfo, params: list[Any] | None, hyper: dict[str, Any], arguments: dict[str, Any]
) -> torch.optim.Optimizer:
    """`info`'s class over `params` (None: a wrapper, its base optimizer in `arguments`)."""
    given = arguments if params is None else {"params": params, **arguments}
    try:
        return _with_hook_tables(info.cls(**given, **hyper))
    except ImportError as exc:
        raise ConfigError(
            "optimizer", f"{info.name} needs a package that is not installed: {exc}"
        ) from None
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError("optimizer", f"{info.name} rejects these settings: {exc}") from None
