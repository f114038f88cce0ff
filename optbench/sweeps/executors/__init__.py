"""Executors: where a sweep's, tune's or benchmark's runs train. Built like every component: a
registered name (`local`, `ray`, `submitit`), a name an installed package registers under the
`optbench.executors` entry-point group, or an import path to a class implementing `Executor`
(base.py); its options are bound to the class's signature while planning, so a wrong key or
value fails naming the field before anything trains. The config's `executor:` section (or a
suite's) gives it, `--executor NAME --executor-opt K=V` overrides it; `--workers` and
`--address` are shorthands for those two options.

Adding an executor is one module here naming its class `EXECUTOR` (the module's name is the
executor's: submitit.py is `submitit`), plus its test and doc paragraph; or, from another
package, an entry point of the `optbench.executors` group.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optbench.core.config import ConfigSource, Overrides, parse_yaml, read_source
from optbench.core.errors import ConfigError, did_you_mean
from optbench.core.registry import Registry
from optbench.sweeps.executors.base import (
    Executor,
    Message,
    OnMessage,
    OnResult,
    Pending,
    Point,
    PointResult,
    QuietSweep,
    SweepView,
    default_workers,
    train_point,
)
from optbench.sweeps.executors.local import LocalExecutor
from optbench.sweeps.executors.ray import RayExecutor
from optbench.sweeps.executors.submitit import SubmititExecutor

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "Message",
    "OnMessage",
    "OnResult",
    "Pending",
    "Point",
    "PointResult",
    "QuietSweep",
    "RayExecutor",
    "SubmititExecutor",
    "SweepView",
    "default_workers",
    "executor_section",
    "parse_executor_options",
    "plan_executor",
    "train_point",
]

ENTRY_POINT_GROUP = "optbench.executors"
_NOT_EXECUTORS = {"base", "shipping"}  # this package's modules that hold no executor


def _builtin_executors() -> Registry[type]:
    """Every module of this package that names its class EXECUTOR, by the module's name
    (importing them imports neither Ray nor submitit: each imports its own when it runs)."""
    registry: Registry[type] = Registry("executor")
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name != "local"):
        if module.name not in _NOT_EXECUTORS:
            found = getattr(importlib.import_module(f"{__name__}.{module.name}"), "EXECUTOR", None)
            if found is not None:
                registry.register(module.name, found, source=found)
    return registry


EXECUTORS = _builtin_executors()
NAME_FIELD = "executor.name"


def plugin_executors() -> dict[str, str]:
    """Executors installed packages register: name -> import path (entry points)."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def find_executor(name: str) -> type:
    """The executor class a name stands for: registered, a plug-in's, or an import path."""
    from optbench.components.registry import import_object, is_import_path

    if is_import_path(name):
        found = import_object(name, NAME_FIELD)
        if not callable(getattr(found, "run", None)):
            raise ConfigError(
                NAME_FIELD, f"'{name}' is not an executor: it has no run(points, ...) method"
            )
        return found
    if name in EXECUTORS:
        return EXECUTORS.get(name, NAME_FIELD)
    plugins = plugin_executors()
    for short, path in plugins.items():
        if short.lower() == name.lower():
            return find_executor(path)
    names = [*EXECUTORS.names(), *sorted(plugins)]
    raise ConfigError(
        NAME_FIELD,
        f"unknown executor '{name}'{did_you_mean(name, names)}; valid: {', '.join(names)}, "
        "or an import path to an Executor class",
    )


def parse_executor_options(options: Mapping[str, Any] | list[str] | None) -> dict[str, Any]:
    """`--executor-opt K=V` texts (values read as YAML, as --set reads them) or a mapping, as a
    mapping; a key given twice is refused."""
    from optbench.core.config import refuse_repeated_key

    if options is None:
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    parsed: dict[str, Any] = {}
    seen: set[str] = set()
    for text in options:
        key, sep, raw = str(text).partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(
                "--executor-opt", f"'{text}' is not KEY=VALUE (e.g. --executor-opt workers=4)"
            )
        refuse_repeated_key(key, seen, "--executor-opt")
        parsed[key] = parse_yaml(raw, f"--executor-opt {key}") if raw.strip() else None
    return parsed


def executor_spec(
    section: Any = None,
    name: str | None = None,
    options: Mapping[str, Any] | list[str] | None = None,
    workers: int | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """The executor's name and options: the config's `executor:` section (a name, or a mapping
    with `name`, default local), with `name` (another name drops the section's options: they
    were another executor's), `options`, `workers` and `address` on top."""
    if section is None:
        section = {}
    if isinstance(section, str):
        section = {"name": section}
    if not isinstance(section, Mapping):
        raise ConfigError("executor", "must be a name or a mapping like {name: local, workers: 4}")
    spec = {"name": "local", **section}
    if not isinstance(spec["name"], str) or not spec["name"]:
        raise ConfigError(NAME_FIELD, f"must be an executor's name, got {spec['name']!r}")
    if name is not None and name.lower() != spec["name"].lower():
        spec = {"name": name}
    spec.update(parse_executor_options(options))
    if workers is not None:
        spec["workers"] = workers
    if address is not None:
        spec["address"] = address
    return spec


def plan_executor(
    results_dir: str | Path,
    section: Any = None,
    name: str | None = None,
    options: Mapping[str, Any] | list[str] | None = None,
    *,
    workers: int | None = None,
    address: str | None = None,
) -> Executor:
    """The executor runs train on, bound and checked (see executor_spec for what wins): its
    class called with `results_dir` and the options bound to its signature. A ConfigError
    naming the field (executor.name, executor.<option>) on bad input; nothing is written."""
    from optbench.components.registry import bind_options

    spec = executor_spec(section, name, options, workers, address)
    label = spec.pop("name")
    cls = find_executor(label)
    bound = bind_options(
        cls, spec, "executor", skip=("results_dir",), label=f"the {label} executor"
    )
    return cls(results_dir=Path(results_dir), **bound)


def executor_section(source: ConfigSource, overrides: Overrides | None = None) -> Any:
    """The config's `executor:` section (None without one): where its runs train, never part
    of a run (read_grid drops it before the points are planned; config.yaml never holds it)."""
    data, _ = read_source(source, overrides)
    return data.get("executor")
