"""Name -> record registries, and binding config options to a component's signature.

Every component family (optimizers, schedulers, models, datasets, losses) is a `Registry` of
small frozen records, looked up case-insensitively, with the valid names in every error.
`bind_options` checks a config section against the builder's own signature, so a wrong key or
a wrong type fails at load time with the field's name instead of deep inside torch.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from optbench.errors import ConfigError, did_you_mean

Record = TypeVar("Record")


class Registry(Generic[Record]):
    """An ordered, case-insensitive mapping from names to records of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._records: dict[str, Record] = {}
        self._names: dict[str, str] = {}

    def register(self, name: str, record: Record) -> Record:
        if name.lower() in self._names:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._records[name] = record
        self._names[name.lower()] = name
        return record

    def names(self) -> list[str]:
        return list(self._records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self._records.values())

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._names

    def get(self, name: str, field: str) -> Record:
        """The record called `name`; a ConfigError on `field` listing the valid names otherwise."""
        key = self._names.get(name.lower())
        if key is None:
            raise ConfigError(
                field,
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._names.values())}; "
                f"valid: {', '.join(self.names())}",
            )
        return self._records[key]


def _same_kind(value: Any, default: Any) -> bool:
    """Whether `value` may replace `default`: bools for bools, numbers for numbers, and so on.
    NaN is never a setting."""
    if isinstance(value, float) and math.isnan(value):
        return False
    if default is None or default is inspect.Parameter.empty:
        return True
    if isinstance(default, list):
        return isinstance(value, list) and all(_same_kind(v, default[0]) for v in value)
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(default)
            and all(_same_kind(v, d) for v, d in zip(value, default, strict=True))
        )
    return True


def _kind_name(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, (int, float)):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, tuple):
        return f"a list of {len(default)} values like {list(default)}"
    if isinstance(default, list):
        return f"a list of {_kind_name(default[0]).removeprefix('a ')}s"
    return type(default).__name__


_EXAMPLE_OF_TYPE = {"int": 0, "float": 0.0, "bool": False, "str": "", "list[int]": [0]}


def _example_value(parameter: inspect.Parameter) -> Any:
    """A value of the kind the argument takes: its default, or, where the default says nothing
    (required, or None), one read off a plain annotation such as `int` or `int | None`."""
    if parameter.default not in (None, inspect.Parameter.empty):
        return parameter.default
    annotation = parameter.annotation
    text = annotation if isinstance(annotation, str) else str(annotation)
    if not isinstance(annotation, str) and isinstance(annotation, type):
        text = annotation.__name__
    text = text.replace(" | None", "").replace("None | ", "")
    return _EXAMPLE_OF_TYPE.get(text, inspect.Parameter.empty)


def signature_defaults(fn: Callable[..., Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Keyword options of `fn` (minus `skip`) with their defaults; required ones map to `empty`."""
    skip = set(skip)
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.name not in skip
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def bind_options(
    fn: Callable[..., Any],
    options: dict[str, Any],
    field: str,
    *,
    skip: Iterable[str] = (),
    provided: dict[str, Any] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Check `options` against `fn`'s signature and return them with every default filled in.

    `skip` names arguments that code passes (params, optimizer); `provided` holds values that
    code supplies when the config leaves them out (step counts). Tuples in defaults come back
    as tuples, so YAML lists work for betas and the like.
    """
    label = label or getattr(fn, "__name__", str(fn))
    accepted = signature_defaults(fn, skip)
    for key in options:
        if key not in accepted:
            valid = ", ".join(accepted) or "no options"
            raise ConfigError(
                f"{field}.{key}",
                f"{label} does not accept '{key}'{did_you_mean(key, accepted)}; "
                f"it accepts: {valid}",
            )
    resolved: dict[str, Any] = {}
    parameters = inspect.signature(fn).parameters
    for key, default in accepted.items():
        if key in options:
            value = options[key]
            example = _example_value(parameters[key])
            nullable = parameters[key].default is None
            if not (value is None and nullable) and not _same_kind(value, example):
                raise ConfigError(f"{field}.{key}", f"must be {_kind_name(example)}, got {value!r}")
            if isinstance(default, tuple):
                value = tuple(value)
            resolved[key] = value
        elif provided and key in provided:
            resolved[key] = provided[key]
        elif default is inspect.Parameter.empty:
            raise ConfigError(f"{field}.{key}", f"is required by {label}")
        else:
            resolved[key] = default
    return resolved
