"""Compare finished runs: load them with pandas, aggregate seeds, rank configurations.

A configuration is a resolved config without its seed (and without where data lives or what
the experiment was called), so the same optimizer settings from results/baselines and
results/mine fall into one row. The columns shown are the hyperparameters that differ.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from optbench.errors import OptbenchError
from optbench.identity import NOT_IN_CONFIGURATION, configuration_key, identity

_HIGHER_IS_BETTER = {"best_test_accuracy", "final_test_accuracy"}
METRICS = [
    "final_test_loss",
    "best_test_loss",
    "final_train_loss",
    "final_test_accuracy",
    "best_test_accuracy",
]
_STATUS_ORDER = {"completed": 0, "running": 1, "interrupted": 2, "diverged": 3, "failed": 4}


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Every folder holding a summary.json at or under `paths`, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise OptbenchError(f"{path} does not exist")
        if (path / "summary.json").is_file():
            found.append(path)
        else:
            found.extend(sorted(p.parent for p in path.rglob("summary.json")))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise OptbenchError(
            f"no runs found under {', '.join(map(str, paths))} (a run folder has a summary.json)"
        )
    return unique


@dataclass(frozen=True)
class Run:
    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    epochs: pd.DataFrame


def read_run(path: Path) -> Run:
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        config_file = path / "config.yaml"
        config = (
            yaml.safe_load(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        )
        epochs_file = path / "epochs.csv"
        epochs = pd.read_csv(epochs_file) if epochs_file.exists() else pd.DataFrame()
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise OptbenchError(f"cannot read the run in {path}: {exc}") from None
    return Run(path, summary, config or {}, epochs)


def _reach(epochs: pd.DataFrame, target: tuple[str, float] | None) -> tuple[float, float]:
    """Epochs and training seconds until `target` (metric, value) is first reached."""
    if target is None or epochs.empty or target[0] not in epochs:
        return math.nan, math.nan
    metric, value = target
    higher = "accuracy" in metric
    hit = epochs[metric] >= value if higher else epochs[metric] <= value
    if not hit.any():
        return math.nan, math.nan
    first = int(hit.to_numpy().argmax())
    return float(epochs["epoch"].iloc[first]), float(epochs["seconds"].iloc[: first + 1].sum())


def runs_frame(runs: list[Run], target: tuple[str, float] | None = None) -> pd.DataFrame:
    """One row per run: its configuration key, flattened config and metrics."""
    rows = []
    for run in runs:
        config = identity(run.config, NOT_IN_CONFIGURATION)
        epochs = run.epochs
        has = not epochs.empty
        epochs_to, seconds_to = _reach(epochs, target)
        rows.append(
            {
                "configuration": configuration_key(run.config),
                "run_dir": str(run.path),
                "run_id": run.summary.get("run_id", run.path.name),
                "status": run.summary.get("status", "unknown"),
                "seed": run.summary.get("seed"),
                "epochs": len(epochs),
                "seconds": float(epochs["seconds"].sum()) if has else math.nan,
                "final_train_loss": epochs["train_loss"].iloc[-1] if has else math.nan,
                "final_test_loss": epochs["test_loss"].iloc[-1] if has else math.nan,
                "best_test_loss": epochs["test_loss"].min() if has else math.nan,
                "final_test_accuracy": epochs["test_accuracy"].iloc[-1] if has else math.nan,
                "best_test_accuracy": epochs["test_accuracy"].max() if has else math.nan,
                "best_accuracy_epoch": (
                    float(epochs["epoch"][epochs["test_accuracy"].idxmax()])
                    if has and epochs["test_accuracy"].notna().any()
                    else math.nan
                ),
                "epochs_to_target": epochs_to,
                "seconds_to_target": seconds_to,
                **{f"config.{k}": _hashable(v) for k, v in config.items()},
            }
        )
    return pd.DataFrame(rows)


def _hashable(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


_NAMED_SECTIONS = ("optimizer", "scheduler", "model", "loss")


def differing_keys(frame: pd.DataFrame) -> list[str]:
    """Config columns that tell configurations apart.

    Inside a named section (optimizer, scheduler, model, loss) a key counts only if it varies
    among configurations of the same class: Adam's betas are not news next to SGD, momentum 0
    vs 0.9 between two SGD runs is.
    """
    per_config = frame.drop_duplicates("configuration")

    def varies(rows: pd.DataFrame, column: str) -> bool:
        return rows[column].astype(str).nunique(dropna=False) > 1

    shown = []
    for column in (c for c in frame.columns if c.startswith("config.")):
        section, _, rest = column.removeprefix("config.").partition(".")
        class_column = f"config.{section}.name"
        if section in _NAMED_SECTIONS and rest != "name" and class_column in per_config:
            groups = per_config.groupby(class_column, dropna=False)
            if any(varies(rows, column) for _, rows in groups):
                shown.append(column)
        elif varies(per_config, column):
            shown.append(column)
    return shown


def rank(frame: pd.DataFrame, metric: str = "final_test_loss") -> pd.DataFrame:
    """One row per configuration: mean, std and n over seeds of every metric, status counts;
    best first by `metric`, configurations with diverged or failed runs last."""
    if metric not in METRICS:
        raise OptbenchError(f"--metric must be one of {', '.join(METRICS)}, not '{metric}'")
    shown = differing_keys(frame)
    numbers = [
        *METRICS,
        "best_accuracy_epoch",
        "epochs",
        "seconds",
        "epochs_to_target",
        "seconds_to_target",
    ]
    grouped = frame.groupby("configuration", sort=False)
    table = grouped[numbers].agg(["mean", "std"])
    table.columns = [f"{m}_{stat}" for m, stat in table.columns]
    table["n"] = grouped.size()
    table["reached_target"] = grouped["epochs_to_target"].count()
    table["status"] = grouped["status"].agg(_status_counts)
    table["worst_status"] = grouped["status"].agg(lambda s: max(_STATUS_ORDER.get(x, 5) for x in s))
    for column in shown:
        table[column.removeprefix("config.")] = grouped[column].first()
    ascending = metric not in _HIGHER_IS_BETTER
    table = table.sort_values(
        ["worst_status", f"{metric}_mean"], ascending=[True, ascending], na_position="last"
    )
    table.attrs["hyperparameters"] = [c.removeprefix("config.") for c in shown]
    table.attrs["metric"] = metric
    return table.reset_index()


def _status_counts(statuses: pd.Series) -> str:
    counts = statuses.value_counts()
    order = sorted(counts.index, key=lambda s: _STATUS_ORDER.get(s, 5))
    return ", ".join(f"{counts[s]} {s}" for s in order)


def label(row: pd.Series, hyperparameters: list[str]) -> str:
    """A short name for a configuration: its differing hyperparameters, keys shortened."""
    parts = []
    for key in hyperparameters:
        if row[key] == row[key] and row[key] is not None:  # NaN: this class has no such key
            parts.append(f"{key.split('.')[-1]}={row[key]}")
    return " ".join(parts) or str(row["configuration"])


def seed_bands(
    frame: pd.DataFrame, table: pd.DataFrame, runs: list[Run], metric: str, top: int
) -> dict[str, pd.DataFrame]:
    """Per configuration (the `top` of the ranking): min, mean and max of `metric` per epoch over
    its seeds. The means are the curves; min and max are the band a plot draws around them."""
    by_dir = {str(run.path): run for run in runs}
    columns = {c for run in runs for c in run.epochs.columns} - {"epoch"}
    if metric not in columns:
        raise OptbenchError(
            f"--curve must be a column of epochs.csv ({', '.join(sorted(columns))}), not '{metric}'"
        )
    bands = {}
    for _, row in table.head(top).iterrows():
        dirs = frame.loc[frame["configuration"] == row["configuration"], "run_dir"]
        series = [
            by_dir[d].epochs.set_index("epoch")[metric] for d in dirs if not by_dir[d].epochs.empty
        ]
        if not series:  # every seed diverged in its first epoch: no curve to draw
            continue
        stacked = pd.concat(series, axis=1)
        bands[label(row, table.attrs["hyperparameters"])] = pd.DataFrame(
            {"min": stacked.min(axis=1), "mean": stacked.mean(axis=1), "max": stacked.max(axis=1)}
        )
    return bands


def parse_target(text: str | None) -> tuple[str, float] | None:
    if text is None:
        return None
    metric, sep, value = text.partition("=")
    allowed = ("test_accuracy", "test_loss", "train_loss")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or metric not in allowed or math.isnan(number):
        raise OptbenchError(
            f"--target must look like test_accuracy=0.85 (metrics: {', '.join(allowed)}), "
            f"not '{text}'"
        )
    return metric, number


@dataclass
class Comparison:
    runs: list[Run]
    frame: pd.DataFrame  # one row per run
    table: pd.DataFrame  # one row per configuration, ranked
    target: tuple[str, float] | None


def compare_runs(
    paths: list[Path], metric: str = "final_test_loss", target: str | None = None
) -> Comparison:
    """Load every run under `paths` and rank their configurations."""
    parsed = parse_target(target)
    runs = [read_run(path) for path in find_run_dirs(paths)]
    frame = runs_frame(runs, parsed)
    return Comparison(runs, frame, rank(frame, metric), parsed)
