"""Name -> record registries: every component family, and the test problems, is one.

Torch-free, so the problems' catalog and the config loader can use one without the components.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from optbench.core.errors import ConfigError, did_you_mean

Record = TypeVar("Record")


class Registry(Generic[Record]):
    """An ordered, case-insensitive mapping from names to records of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._records: dict[str, Record] = {}
        self._names: dict[str, str] = {}
        self._sources: dict[str, str] = {}  # qualified name of what a record wraps -> its name

    def register(self, name: str, record: Record, source: Any = None) -> Record:
        """Add `record` as `name`. `source` is the class or function it wraps (or that object's
        qualified name, to spare an import): given by import path, it resolves to this record."""
        if name.lower() in self._names:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._records[name] = record
        self._names[name.lower()] = name
        if source is not None:
            self._sources[qualified_name(source)] = name
        return record

    def find(self, obj: Any) -> Record | None:
        """The record registered for `obj` (see `register`'s source), if any."""
        name = self._sources.get(qualified_name(obj))
        return None if name is None else self._records[name]

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


# package.module.Name or package.module:Name (the entry-point spelling)


def qualified_name(obj: Any) -> str:
    """'module.QualName' of a class or function (a string is taken as one already): the one
    name of an imported component however its path was spelled."""
    if isinstance(obj, str):
        return obj
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
