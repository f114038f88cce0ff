"""Sweeps: a grid of dotted keys expanded into ordinary runs, each with its stable run-id.

The grid comes from the config's `sweep:` section and `--grid KEY=V1,V2` options (the shell
wins for a key given in both); `--seeds` is a grid over `seed`. A grid value that is a mapping
replaces the whole section it names, so `optimizer: [{name: SGD, momentum: 0.9}, {name: Adam}]`
varies the optimizer class with its own keys; longer keys (`optimizer.lr`) apply on top. Every
point is validated when the grid is expanded, before anything trains.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from optbench.core.config import (
    ConfigSource,
    Overrides,
    anchor_to_folder,
    apply_override,
    objects_to_paths,
    parse_dotted_key,
    parse_yaml,
    read_source,
    refuse_repeated_key,
    validate_config,
)
from optbench.core.errors import ConfigError, ResultsWriteError
from optbench.sweeps.executors import Executor, QuietSweep, SweepView, plan_executor
from optbench.sweeps.reruns import Rerunning, show_rerun

MAX_POINTS = 10_000


@dataclass(frozen=True)
class SweepPoint:
    """One run of the sweep: what the grid set, the full config it makes, and its plan (the
    RunPlan its run-id comes from, for whoever plans the point next: a tune's arms)."""

    assignments: dict[str, Any]
    config: dict[str, Any]
    run_id: str = ""
    plan: Any = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_short(v)}" for k, v in self.assignments.items()) or "(base)"


def _short(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:
        extra = ",".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{value['name']}({extra})" if extra else str(value["name"])
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def parse_grid_option(text: str) -> tuple[str, list[Any]]:
    """'optimizer.lr=0.1,0.01' -> ('optimizer.lr', [0.1, 0.01]); values are YAML read exactly as
    `--set` reads them (1e-3 is a number), so lists and mappings work:
    'optimizer.betas=[0.9,0.99],[0.8,0.9]'."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            "--grid", f"'{text}' is not KEY=V1,V2 (e.g. --grid optimizer.lr=0.1,0.01)"
        )
    key = ".".join(parse_dotted_key(key, "--grid"))
    try:
        values = parse_yaml(f"[{raw}]", "--grid")  # as --set and config files read values
    except ConfigError as exc:
        problem = exc.problem.partition("invalid YAML: ")[2] or exc.problem
        raise ConfigError(
            f"--grid {key}", f"'{raw}' is not a list of YAML values: {problem}"
        ) from None
    if not isinstance(values, list):
        raise ConfigError(f"--grid {key}", f"'{raw}' is not a list of YAML values")
    return key, values


def merge_grid_options(
    grid: dict[str, list[Any]], grid_options: list[str] | None
) -> dict[str, list[Any]]:
    """The config's `sweep:` grid with the shell's `--grid` options on top (the shell wins for a
    key in both); a key given in two `--grid` options is refused, not the last one kept."""
    merged = dict(grid)
    seen: set[str] = set()
    for text in grid_options or []:
        key, values = parse_grid_option(text)
        refuse_repeated_key(key, seen, "--grid")
        merged[key] = values
    return merged


def _check_grid(grid: Any, where: str) -> dict[str, list[Any]]:
    if not isinstance(grid, dict):
        raise ConfigError(where, "must map dotted keys to lists of values")
    for key, values in grid.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(where, f"key {key!r} is not a dotted key")
        if not isinstance(values, list) or not values:
            field = f"{where} {key}" if where.startswith("--") else f"{where}.{key}"
            raise ConfigError(field, "must be a non-empty list of values")
        if key == "name":
            raise ConfigError(where, "the grid cannot vary `name`: a sweep lands in one folder")
    return grid


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError("--seeds", f"'{text}' is not a list of integers like 0,1,2") from None
    if not seeds:
        raise ConfigError("--seeds", "needs at least one seed")
    return seeds


def expand_grid(
    base: dict[str, Any], grid: dict[str, list[Any]], folder: Path | None = None
) -> list[SweepPoint]:
    """The cartesian product of `grid` applied to `base`, each point shape-checked and planned.

    Points that resolve to the same run-id are kept once. `folder` is the config's: a data file
    a point names relative to it is found there (see `anchor_to_folder`).
    """
    from optbench.experiment.plan import make_plan

    keys = sorted(grid, key=lambda k: k.count("."))  # sections before the keys inside them
    total = 1
    for key in keys:
        total *= len(grid[key])
    if total > MAX_POINTS:
        raise ConfigError("sweep", f"the grid has {total} points; at most {MAX_POINTS}")
    points: list[SweepPoint] = []
    seen: set[str] = set()
    for combination in itertools.product(*(grid[k] for k in keys)):
        config = copy.deepcopy(base)
        assignments = dict(zip(keys, combination, strict=True))
        point = SweepPoint({k: assignments[k] for k in grid}, config)
        try:
            for key, value in assignments.items():
                apply_override(config, key.split("."), copy.deepcopy(value), source="sweep")
            if folder is not None:
                anchor_to_folder(config, folder)
            plan = make_plan(validate_config(config))
        except ConfigError as exc:
            raise ConfigError(
                f"sweep point [{point.label}]: {exc.field}" if exc.field else "sweep point",
                exc.problem,
            ) from None
        if plan.run_id not in seen:
            seen.add(plan.run_id)
            points.append(SweepPoint(point.assignments, plan.config.to_dict(), plan.run_id, plan))
    return points


# A grid: dotted keys to lists of values, or `--grid KEY=V1,V2` strings (values read as YAML).
Grid = Mapping[str, list[Any]] | list[str]


def read_grid(
    source: ConfigSource,
    grid: Grid | None = None,
    seeds: list[int] | str | None = None,
    overrides: Overrides | None = None,
) -> tuple[dict[str, Any], dict[str, list[Any]], Path]:
    """The config (overridden, its modules importable), its `sweep:` section merged with `grid`
    (which wins for a key in both; a key given in two `--grid` options is refused) and `seeds`
    (a list, or `--seeds` text like 0,1,2), and its folder: what sweep and tune expand."""
    data, folder = read_source(source, overrides)
    sweep = _check_grid(data.pop("sweep", None) or {}, "sweep")
    data.pop("executor", None)  # where the runs train, not what (api.py plans the executor)
    if isinstance(grid, Mapping):
        given = {
            key: list(values) if isinstance(values, list) else values
            for key, values in grid.items()
        }
        objects_to_paths(given, "grid")  # classes and functions as values: their import paths
        merged = {**sweep, **_check_grid(given, "grid")}
    else:
        merged = merge_grid_options(sweep, grid)
    if seeds is not None:
        merged["seed"] = parse_seeds(seeds) if isinstance(seeds, str) else list(seeds)
    _check_grid(merged, "--grid")
    anchor_to_folder(data, folder)  # its modules importable before any point is planned
    return data, merged, folder


def load_sweep(
    source: ConfigSource,
    grid: Grid | None = None,
    seeds: list[int] | str | None = None,
    overrides: Overrides | None = None,
) -> tuple[str, list[SweepPoint]]:
    """Read a config and its grid (`read_grid`), and expand it."""
    data, merged, folder = read_grid(source, grid, seeds, overrides)
    points = expand_grid(data, merged, folder)
    return points[0].config["name"], points


@dataclass
class SweepReport:
    total: int
    skipped: list[str]
    results: list[Any]
    interrupted: bool = False


def point_status(results_dir: str | Path, name: str, point: SweepPoint) -> str:
    """'new', or the status in the run's summary.json (completed, diverged, interrupted...)."""
    from optbench.storage.results import RunDir

    summary = RunDir(Path(results_dir) / name / point.run_id).read_summary()
    return (summary.status or "unknown") if summary else "new"


def run_sweep(
    name: str,
    points: list[SweepPoint],
    results_dir: str | Path,
    *,
    executor: Executor | None = None,
    view: SweepView = QuietSweep,
    batch_trials: int | None = None,
) -> SweepReport:
    """Run every point that has not finished on `executor` (planned by plan_executor; default:
    local workers, one per CPU core); finished ones are skipped, interrupted ones resume.
    `view` makes what the sweep reports to as it goes (the CLI's live view; by default nothing).
    `batch_trials`: points of one problem trained K at a time (sweeps/batching.py)."""
    from optbench.storage.results import FINISHED, check_results_dir
    from optbench.sweeps.batching import batching_for

    results_dir = Path(results_dir)
    check_results_dir(results_dir)
    runner = executor or plan_executor(results_dir)
    runner = batching_for(runner, batch_trials, [p.config for p in points])
    skipped = [p.run_id for p in points if point_status(results_dir, name, p) in FINISHED]
    todo = [(p.run_id, p.config) for p in points if p.run_id not in skipped]
    report = SweepReport(len(points), skipped, [])

    def record(result: Any) -> None:
        report.results.append(result)
        display.result(result)
        if result.write_failed:  # a full disk: the other runs would fail alike; exit 3
            raise ResultsWriteError(result.error)

    labels = {p.run_id: p.label for p in points}
    epochs = {p.run_id: p.config["epochs"] for p in points}
    header = f"sweep {name}: {len(points)} runs into {results_dir / name}"
    with view(len(points), len(skipped), labels, epochs=epochs, header=header) as display:
        rerunning = Rerunning(runner, results_dir, name, lambda died: show_rerun(display, died))
        try:  # a point whose worker died is trained again, not failed
            rerunning.run(todo, display.message, record)
        except KeyboardInterrupt:
            report.interrupted = True
    return report
