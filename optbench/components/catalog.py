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

import pandas as pd
from rich.markup import escape
from rich.table import Table

from optbench.core.errors import ConfigError

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
    package = Path(__file__).parents[1]
    stamps = [
        f"{path.relative_to(package)}:{path.stat().st_mtime_ns}:{path.stat().st_size}"
        for path in sorted(package.rglob("*.py"))
    ]
    for name in ("torch", "torchvision"):  # a reinstall rewrites version.py; no import needed
        spec = importlib.util.find_spec(name)
        version = Path(spec.origin).with_name("version.py") if spec and spec.origin else None
        stat = version.stat() if version and version.is_file() else None
        stamps.append(f"{name}:{stat.st_mtime_ns}:{stat.st_size}" if stat else f"{name}:absent")
    return hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:16]


def show_value(value: Any) -> str:
    from optbench.components.registry import is_setting  # not at import: `list` starts fast

    if value is inspect.Parameter.empty:
        return "(required)"
    if not is_setting(value):  # a default that is code (registry.code_defaults)
        return "(code)"
    if isinstance(value, tuple):
        value = list(value)
    return repr(value) if isinstance(value, str) else str(value)


def _options(defaults: dict[str, Any]) -> str:
    return ", ".join(f"{k}={show_value(v)}" for k, v in defaults.items())


def build_rows(kind: str) -> list[Row]:
    """The catalogue of `kind`, read from the registries (imports torch)."""
    if kind == "optimizers":
        from optbench.components.optimizers import OPTIMIZERS

        return [_optimizer_row(i) for i in OPTIMIZERS]
    if kind == "schedulers":
        from optbench.components.schedulers import SCHEDULERS

        return [(i.name, _options(i.defaults), i.description) for i in SCHEDULERS]
    if kind == "models":
        from optbench.components.models import MODELS
        from optbench.components.registry import signature_defaults

        return [
            (i.name, _options(signature_defaults(i.build, skip=("spec",))), i.description)
            for i in MODELS
        ]
    if kind == "datasets":
        from optbench.components.data import DATASETS, dataset_options

        rows = []
        for info in DATASETS:
            if info.spec is None:  # read off the data (token windows of a file)
                rows.append((info.name, info.listed, info.description))
                continue
            spec = info.spec(dataset_options(info, {}))
            classes = f"{spec.num_classes} classes" if spec.num_classes else "regression"
            shape = "x".join(map(str, spec.input_shape))
            rows.append((info.name, f"{shape}, {classes}", info.description))
        return rows
    if kind == "losses":
        from optbench.components.losses import LOSSES

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
        from optbench.storage.results import write_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(catalog))
    except (OSError, ConfigError):
        pass  # a read-only home only costs speed
    return catalog[kind]


def class_rows(
    classes: dict[str, type], plugins: dict[str, str], skip: tuple[str, ...]
) -> list[Row]:
    """Rows of components registered by name as classes (loggers, executors): the options
    their constructor binds, with defaults, and the first line of the docstring; installed
    plug-ins by the import path their entry point names (not imported)."""
    from optbench.components.registry import signature_defaults

    rows = [
        (name, _options(signature_defaults(cls, skip=skip)), _first_line(cls))
        for name, cls in classes.items()
    ]
    rows += [
        (name, f"(plug-in) {path}", "registered by an installed package")
        for name, path in plugins.items()
        if name not in classes
    ]
    return rows


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


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
    from optbench.components.optimizers import OptimInfo, collection_optimizers

    found = collection_optimizers(package)
    if not found:
        raise ConfigError(f"--from {package}: it exports no torch.optim.Optimizer subclass")
    return [_optimizer_row(OptimInfo.from_class(f"{package}.{n}", c)) for n, c in found.items()]


def plugin_rows() -> list[Row]:
    """Optimizers that installed packages register under the `optbench.optimizers` entry-point
    group, by their short name (cheap to find: only package metadata is read)."""
    from importlib.metadata import entry_points

    return [
        (ep.name, f"(plug-in) {ep.value}", "registered by an installed package")
        for ep in entry_points(group="optbench.optimizers")
    ]


def problem_rows() -> list[Row]:
    """Every problem with its exact parameter count, data, budget and what it is judged by
    (torch-free: the records are plain data)."""
    from optbench.core.problems import PROBLEMS

    rows = []
    for info in PROBLEMS:
        data = info.config.get("data", {})
        budget = f"{info.config.get('epochs', '?')} epochs, batch {data.get('batch_size', '?')}"
        what = f"{info.parameters} parameters; {data.get('dataset', '?')}; {budget}"
        notes = f" Differs from the source: {info.differs}" if info.differs else ""
        if info.validation is not None:
            held, why = info.validation
            notes += f" A tune holds out data.validation: {held} ({why})."
        description = f"{info.description} (v{info.version}; judged by {info.metric}; "
        rows.append((info.name, what, f"{description}from {info.source}).{notes}"))
    return rows


REFERENCE_COLUMNS = ("problem", "optimizer", "metric", "value", "epoch", "settings", "source")


def reference_rows(names: list[str] | None = None) -> list[tuple[str, ...]]:
    """The published figures of the problems `names` (all when None), as REFERENCE_COLUMNS:
    numbers someone reported, shown beside runs (terminal, report), never mixed with them."""
    from optbench.core.problems import PROBLEMS

    infos = [i for i in PROBLEMS if names is None or i.name in names]
    return [
        (i.name, r.optimizer, r.metric, f"{r.value:g}", str(r.epoch), r.settings, r.source)
        for i in infos
        for r in i.references
    ]


def reference_table(names: list[str] | None = None) -> Table | None:
    """reference_rows as a terminal table; None when the problems have no published figure."""
    rows = reference_rows(names)
    if not rows:
        return None
    table = Table(title="published figures (not runs)", title_justify="left")
    for column in REFERENCE_COLUMNS:
        table.add_column(column, justify="right" if column in ("value", "epoch") else "left")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


CATALOG_COLUMNS = ("name", "options", "description")


def catalog_frame(kind: str, source: str | None = None) -> pd.DataFrame:
    """One row per registered component of `kind` (optimizers, schedulers, models, datasets,
    losses, problems), with its options and their defaults; optimizers also from a package
    (`source`), or with the installed plug-ins."""
    if source is not None and kind != "optimizers":
        raise ConfigError(f"--from lists optimizers only, not {kind}")
    if source is not None:
        rows = collection_rows(source)
    elif kind == "problems":
        rows = problem_rows()
    else:
        rows = catalog_rows(kind) + (plugin_rows() if kind == "optimizers" else [])
    return pd.DataFrame(rows, columns=list(CATALOG_COLUMNS))


def catalog_table(frame: pd.DataFrame, kind: str, source: str | None = None) -> Table:
    """catalog_frame as a terminal table."""
    title = f"optbench {kind}" + (f" from {source}" if source else "")
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("name", style="bold")
    options = {"datasets": "shape", "problems": "parameters; data; budget"}
    table.add_column(options.get(kind, "options (defaults)"))
    table.add_column("description")
    for row in frame.itertuples(index=False):
        table.add_row(*(escape(cell) for cell in row))  # docstrings hold [brackets]
    return table
