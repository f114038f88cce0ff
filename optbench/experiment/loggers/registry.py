"""Loggers found and bound as every component is: a registered name or an import path, options
bound to the class's signature while planning, did-you-mean for a name that is not one.

A logger registers itself by being a module of this package that names its class `LOGGER`
(the module's name is the logger's name: tensorboard.py is `tensorboard`), or, from another
package, an entry point of the `optbench.loggers` group (`wandb2 = mypkg.log:MyLogger`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import pkgutil
from dataclasses import dataclass
from functools import cache
from typing import Any

from optbench.components.registry import bind_options, import_object, is_import_path
from optbench.core.byvalue import is_token, lookup, short_name
from optbench.core.config import LoggerConfig
from optbench.core.errors import ConfigError, did_you_mean
from optbench.core.registry import qualified_name

ENTRY_POINT_GROUP = "optbench.loggers"
_NOT_LOGGERS = {"base", "registry", "run"}  # this package's modules that hold no logger
REQUIRED_METHODS = ("start", "log_epoch", "finish")


@cache
def builtin_loggers() -> dict[str, type]:
    """name -> class of every logger module of this package (importing them imports none of
    the tools: each imports its own inside its methods)."""
    from optbench.experiment import loggers as package

    found = {}
    for module in pkgutil.iter_modules(package.__path__):
        if module.name in _NOT_LOGGERS:
            continue
        cls = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "LOGGER", None)
        if cls is not None:
            found[module.name] = cls
    return found


def plugin_loggers() -> dict[str, str]:
    """Entry points of the `optbench.loggers` group: name -> import path (package metadata
    only is read; the plug-in is imported when a config names it)."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def logger_names() -> list[str]:
    return [*builtin_loggers(), *(n for n in plugin_loggers() if n not in builtin_loggers())]


def _not_a_logger(obj: Any) -> str | None:
    if not inspect.isclass(obj):
        return "is not a class"
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(obj, m, None))]
    if missing:
        return f"is not a logger: it has no {', '.join(missing)} (the Logger protocol)"
    return None


def get_logger(name: str, field: str) -> tuple[str, type]:
    """(the name it is known by, the class) for a logger name: a registered one (any case), a
    plug-in's entry point, or an import path to a class implementing the Logger protocol."""
    builtin = {n.lower(): (n, cls) for n, cls in builtin_loggers().items()}
    if name.lower() in builtin:
        return builtin[name.lower()]
    plugins = {n.lower(): (n, path) for n, path in plugin_loggers().items()}
    if is_token(name):  # a class given by value (a notebook's): core/byvalue.py
        cls, path = lookup(name, field), short_name(name)
    elif name.lower() in plugins:
        name, path = plugins[name.lower()]
        cls = import_object(path, field)
    elif is_import_path(name):
        path = name
        cls = import_object(path, field)
    else:
        names = logger_names()
        raise ConfigError(
            field,
            f"unknown logger '{name}'{did_you_mean(name, names)}; valid: {', '.join(names)}, "
            "or an import path to a class (package.module.Name)",
        )
    problem = _not_a_logger(cls)
    if problem:
        raise ConfigError(field, f"'{path}' {problem}")
    known = {qualified_name(c): n for n, c in builtin_loggers().items()}
    return known.get(qualified_name(cls), name), cls


@dataclass(frozen=True)
class BoundLogger:
    """One `log:` entry as planning bound it: the class and its options, every default filled
    in. What the plan carries; `build` makes the logger when the run starts."""

    name: str
    cls: type
    options: dict[str, Any]

    def resolved(self) -> dict[str, Any]:
        """The entry as the resolved config (config.yaml) holds it."""
        return {"name": self.name, **self.options}

    def build(self) -> Any:
        return self.cls(**self.options)


def _fields(log: list[LoggerConfig]) -> list[str]:
    """Each entry's field: `log.<name>` where the name is given once (what `--set` reaches
    too), else `log.<index>`."""
    names = [entry.name.lower() for entry in log]
    return [
        f"log.{entry.name}" if names.count(entry.name.lower()) == 1 else f"log.{i}"
        for i, entry in enumerate(log)
    ]


def bind_loggers(log: list[LoggerConfig]) -> tuple[BoundLogger, ...]:
    """Every `log:` entry resolved and bound: an unknown name, an option the class does not
    take, a tool that is not installed, or options its `check` refuses fail here, naming the
    field, before anything is trained or written."""
    bound = []
    for entry, field in zip(log, _fields(log), strict=True):
        name, cls = get_logger(entry.name, field)
        options = bind_options(cls, entry.options, field, label=cls.__name__)
        _require(cls, name, field)
        check = getattr(cls, "check", None)
        if callable(check):
            try:
                check(options)
            except ConfigError as exc:
                where = f"{field}.{exc.field}" if exc.field else field
                raise ConfigError(where, exc.problem) from None
        bound.append(BoundLogger(name, cls, options))
    return tuple(bound)


def _require(cls: type, name: str, field: str) -> None:
    """Refuse a logger whose tool is not installed, naming the extra that installs it."""
    module = getattr(cls, "requires", None)
    if not module:
        return
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing; a module set to None
        found = False
    if not found:
        extra = getattr(cls, "extra", None)
        how = f"pip install 'optbench[{extra}]'" if extra else f"pip install {module}"
        raise ConfigError(field, f"logging to {name} needs {module}: {how}")


def log_overrides(tensorboard: bool = False, mlflow: bool | str = False) -> list[str]:
    """The CLI's --tensorboard / --mlflow / --mlflow-uri as config overrides, so every run, in
    whichever worker, logs itself: `--set log.tensorboard=true` (added to a list `log:` by
    name, see core/config.py loggers_by_name)."""
    overrides = []
    if tensorboard:
        overrides.append("log.tensorboard=true")
    if isinstance(mlflow, str) and mlflow:
        overrides.append(f"log.mlflow={json.dumps(mlflow)}")  # a JSON string is a YAML string
    elif mlflow is True:
        overrides.append("log.mlflow=true")
    return overrides
