"""What `optbench list` shows, without importing torch on every call.

The catalogue (every registered optimizer, scheduler, model, dataset and loss with its options)
is read from the registries, which import torch: about 2 s. It only changes when torch,
torchvision or optbench's own code changes, so it is cached as JSON under a key made of the
stamps (size, modification time) of optbench's modules and of torch's and torchvision's
version.py, found without importing them; `optbench list` then takes about as long as `--help`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from optbench.errors import OptbenchError

KINDS = ("optimizers", "schedulers", "models", "datasets", "losses")
Row = tuple[str, str, str]  # name, options or shape, description


def cache_dir() -> Path:
    """$OPTBENCH_CACHE, else $XDG_CACHE_HOME/optbench, else ~/.cache/optbench."""
    if "OPTBENCH_CACHE" in os.environ:
        return Path(os.environ["OPTBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "optbench"


def _cache_key() -> str:
    """Changes whenever anything the catalogue is built from may have changed."""
    package = Path(__file__).parent
    stamps = [
        f"{path.name}:{path.stat().st_mtime_ns}:{path.stat().st_size}"
        for path in sorted(package.glob("*.py"))
    ]
    for name in ("torch", "torchvision"):  # a reinstall rewrites version.py; no import needed
        spec = importlib.util.find_spec(name)
        version = Path(spec.origin).with_name("version.py") if spec and spec.origin else None
        stat = version.stat() if version and version.is_file() else None
        stamps.append(f"{name}:{stat.st_mtime_ns}:{stat.st_size}" if stat else f"{name}:absent")
    return hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:16]


def show_value(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "(required)"
    if callable(value):  # a default that is code, not a setting a config could write
        return "(code)"
    if isinstance(value, tuple):
        value = list(value)
    return repr(value) if isinstance(value, str) else str(value)


def _options(defaults: dict[str, Any]) -> str:
    return ", ".join(f"{k}={show_value(v)}" for k, v in defaults.items())


def build_rows(kind: str) -> list[Row]:
    """The catalogue of `kind`, read from the registries (imports torch)."""
    if kind == "optimizers":
        from optbench.optimizers import OPTIMIZERS

        return [_optimizer_row(i) for i in OPTIMIZERS]
    if kind == "schedulers":
        from optbench.schedulers import SCHEDULERS

        return [(i.name, _options(i.defaults), i.description) for i in SCHEDULERS]
    if kind == "models":
        from optbench.models import MODELS
        from optbench.registry import signature_defaults

        return [
            (i.name, _options(signature_defaults(i.build, skip=("spec",))), i.description)
            for i in MODELS
        ]
    if kind == "datasets":
        from optbench.data import DATASETS, dataset_options

        rows = []
        for info in DATASETS:
            spec = info.spec(dataset_options(info, {}))
            classes = f"{spec.num_classes} classes" if spec.num_classes else "regression"
            shape = "x".join(map(str, spec.input_shape))
            rows.append((info.name, f"{shape}, {classes}", info.description))
        return rows
    if kind == "losses":
        from optbench.losses import LOSSES

        return [(i.name, f"targets: {i.targets}", i.description) for i in LOSSES]
    raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")


def catalog_rows(kind: str) -> list[Row]:
    """The catalogue of `kind`, from the cache when it is current, else built and cached."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    path = cache_dir() / f"catalog-{_cache_key()}.json"
    try:
        return [tuple(row) for row in json.loads(path.read_text())[kind]]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing, stale or damaged: build it again
    catalog = {k: build_rows(k) for k in KINDS}
    try:
        from optbench.results import write_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(catalog))
    except (OSError, OptbenchError):
        pass  # a read-only home only costs speed
    return catalog[kind]


def _optimizer_row(info: Any) -> Row:
    """An optimizer's row; the description says how it steps when that is not plain."""
    steps = [] if info.protocol == "plain" else [f"steps: {info.protocol}"]
    if info.train_eval:
        steps.append("train/eval modes")
    prefix = f"[{'; '.join(steps)}] " if steps else ""
    return info.name, _options(info.defaults), prefix + info.description


def collection_rows(package: str) -> list[Row]:
    """Every optimizer `package` exports (pytorch_optimizer, ...), named by the import path a
    config can use, with its defaults and how it steps; not cached (it imports the package)."""
    from optbench.optimizers import OptimInfo, collection_optimizers

    found = collection_optimizers(package)
    if not found:
        raise OptbenchError(f"--from {package}: it exports no torch.optim.Optimizer subclass")
    return [_optimizer_row(OptimInfo.from_class(f"{package}.{n}", c)) for n, c in found.items()]


def plugin_rows() -> list[Row]:
    """Optimizers that installed packages register under the `optbench.optimizers` entry-point
    group, by their short name (cheap to find: only package metadata is read)."""
    from importlib.metadata import entry_points

    return [
        (ep.name, f"(plug-in) {ep.value}", "registered by an installed package")
        for ep in entry_points(group="optbench.optimizers")
    ]


def catalog_table(kind: str, source: str | None = None) -> Table:
    """One row per registered component of `kind`, with its options and their defaults;
    optimizers also from a package (`source`), or with the installed plug-ins."""
    if source is not None and kind != "optimizers":
        raise OptbenchError(f"--from lists optimizers only, not {kind}")
    title = f"optbench {kind}" + (f" from {source}" if source else "")
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("options (defaults)" if kind != "datasets" else "shape")
    table.add_column("description")
    if source is not None:
        rows = collection_rows(source)
    else:
        rows = catalog_rows(kind) + (plugin_rows() if kind == "optimizers" else [])
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))  # docstrings hold [brackets]
    return table
