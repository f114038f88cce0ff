"""Compare finished runs: load them with pandas, aggregate seeds, rank configurations.

A configuration is a resolved config without its seed (and without where data lives or what
the experiment was called), so the same optimizer settings from results/baselines and
results/mine fall into one row. The columns shown are the hyperparameters that differ.

Only comparable numbers are averaged:

- A run is counted once. Copies of it (the same run-id in two folders) are one seed, not two:
  the finished copy is kept (else the one with more epochs) and a note names the others.
- The final_* metrics of a configuration are the mean over its runs that completed every
  planned epoch, so they are all taken at the same epoch (a configuration's runs share its
  `epochs`), and over runs an observer ended on purpose as completed (early stopping with
  StopTraining), taken at their last epoch. Runs that stopped early otherwise (diverged,
  failed, interrupted, still running, stale) are counted in n and named with the epoch they
  stopped in ("2 completed, 1 diverged at epoch 3"), but their last epoch never enters a
  final mean; a configuration without a completed run has no final numbers. Best-so-far
  numbers (best_*, at epoch, epochs to a target) use every epoch of every run, and a curve's
  mean at an epoch is over the runs that reached that epoch.
- A `running` run whose lock no live process holds was killed: it is shown as `stale`.
- A run without a config.yaml is a configuration of its own, named by its folder (column
  `run`): with nothing to compare, two such runs are never assumed to be the same experiment.

DeepOBS's metrics (Schneider et al., ICLR 2019; its deepobs/analyzer code) are here too, over a
configuration's complete runs, in the epochs.csv column of the metric ranked by (`epoch_column`):

- final performance: the final_* means above;
- best performance: the best point of the *mean curve* over seeds and its epoch
  (`mean_curve`, `best_of_curve`), not the mean of each seed's best;
- speed: per run, the first epoch the target is reached, a run that never reaches it counting
  as its planned epochs + 1 (DeepOBS: argmax over its curve of epochs + 1 points, else that
  curve's length); then the mean over runs (`deepobs_speed`). The target is --target, else the
  problem's (ProblemInfo.target: DeepOBS's convergence performance);
- tuneability: final performance against the learning rate, per optimizer, with the chosen lr
  (`tuneability_frame`), and one row per optimizer with its tuned configuration, from a
  tune.json when the folder has one (`tuned_frame`).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from optbench.core.errors import ConfigError, UnreadableRunWarning
from optbench.core.identity import NOT_IN_CONFIGURATION, configuration_key, identity
from optbench.core.metrics import (
    BEST,
    DEFAULT_RANKING,
    FINAL,
    METRICS,
    RANKABLE,
    RANKING_METRICS,
    epoch_column,
    higher_is_better,
    validation_metric,
)
from optbench.storage.records import TuneFile, learning_rate
from optbench.storage.results import (
    FINISHED,
    TUNE_FILE,
    Run,
    RunDir,
    Status,
    read_run,
)

# Statuses compare shows beyond summary.json's: a `running` run no process trains any more, and
# a `completed` summary whose epochs.csv lacks planned epochs (a partial copy).
STALE = "stale"
INCOMPLETE = "incomplete"
_STATUS_ORDER = {
    Status.COMPLETED: 0,
    Status.RUNNING: 1,
    Status.INTERRUPTED: 2,
    STALE: 3,
    INCOMPLETE: 4,
    Status.PRUNED: 5,  # stopped early on purpose by optbench tune's pruner
    Status.DIVERGED: 6,
    Status.FAILED: 7,
}
_UNKNOWN_STATUS = len(_STATUS_ORDER)


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Every folder holding a summary.json at or under `paths`, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise ConfigError(f"{path} does not exist")
        if (path / RunDir.SUMMARY).is_file():
            found.append(path)
        else:
            found.extend(sorted(p.parent for p in path.rglob(RunDir.SUMMARY)))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise ConfigError(
            f"no runs found under {', '.join(map(str, paths))} (a run folder has a summary.json)"
        )
    return unique


def run_status(run: Run) -> str:
    """summary.json's status, except that a `running` run nobody holds the lock of is stale."""
    status = run.status
    if status == Status.RUNNING and not RunDir(run.dir).is_locked():
        return STALE
    return status


def epochs_logged(epochs: pd.DataFrame) -> int:
    """The epochs an epochs.csv has rows of (several rows each with `eval_every`)."""
    return int(epochs["epoch"].nunique()) if "epoch" in epochs else 0


def by_epoch(epochs: pd.DataFrame) -> pd.DataFrame:
    """epochs.csv indexed by epoch, one row each: the epoch's last (its end, where `eval_every`
    adds rows between steps)."""
    return epochs.drop_duplicates("epoch", keep="last").set_index("epoch")


def planned_epochs(run: Run) -> int:
    """How many epochs the run was meant to train (summary.json, else config.yaml)."""
    if run.record.epochs is not None:
        return run.record.epochs
    if isinstance(run.config.get("epochs"), int):
        return run.config["epochs"]
    return epochs_logged(run.epochs)


def _epochs_of_a_complete(run: Run) -> int:
    """How many epochs a completed run's epochs.csv must hold to count as complete: the planned
    ones, or those it trained when an observer ended it on purpose (StopTraining, early
    stopping: summary.json's stopped_early)."""
    stopped = run.record.stopped_epoch
    return stopped if stopped is not None and stopped >= 1 else planned_epochs(run)


def _stopped_in(run: Run) -> int:
    """The epoch an unfinished run stopped in: where it diverged, its last if it was pruned
    (after that epoch), else the one after its last."""
    diverged = run.record.diverged_epoch
    if diverged is not None:
        return diverged
    if run.status == Status.PRUNED:
        return epochs_logged(run.epochs)
    return epochs_logged(run.epochs) + 1


def drop_copies(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """One run per run-id: a copy of a run in another folder is the same seed, not another.

    Keeps a finished copy over an unfinished one, then the one with more epochs, then the first
    found; returns the runs kept and a note for each run-id found more than once.
    """
    kept: dict[str, Run] = {}
    copies: dict[str, list[Run]] = {}
    for run in runs:
        key = run.record.run_id or str(run.dir)
        copies.setdefault(key, []).append(run)
        if key not in kept or _preference(run) > _preference(kept[key]):
            kept[key] = run
    notes = [
        f"run {key} is in {len(found)} folders; counted once, from {kept[key].dir} "
        f"(also in {', '.join(str(r.dir) for r in found if r is not kept[key])})"
        for key, found in copies.items()
        if len(found) > 1
    ]
    return list(kept.values()), notes


def _preference(run: Run) -> tuple[bool, int]:
    return run.status in FINISHED, epochs_logged(run.epochs)


def _reach(epochs: pd.DataFrame, target: tuple[str, float] | None) -> tuple[float, float]:
    """Epochs and training seconds until `target` (metric, value) is first reached."""
    if target is None or epochs.empty or target[0] not in epochs:
        return math.nan, math.nan
    metric, value = target
    higher = higher_is_better(metric)
    hit = epochs[metric] >= value if higher else epochs[metric] <= value
    if not hit.any():
        return math.nan, math.nan
    first = int(hit.to_numpy().argmax())
    return float(epochs["epoch"].iloc[first]), float(epochs["seconds"].iloc[: first + 1].sum())


def deepobs_speed(epochs: pd.DataFrame, target: tuple[str, float], planned: int) -> float:
    """DeepOBS's speed of one run: the first epoch `target` (metric, value) is reached at, or
    `planned` + 1 when it never is (DeepOBS's curves hold epochs + 1 points, epoch 0 first, and
    a run that never reaches the target counts as that length: deepobs/analyzer/analyze.py)."""
    reached, _ = _reach(epochs, target)
    return float(planned + 1) if math.isnan(reached) else reached


def runs_frame(runs: list[Run], target: tuple[str, float] | None = None) -> pd.DataFrame:
    """One row per run: its configuration key, flattened config, status and metrics.

    `complete` says whether the run trained every planned epoch (only those enter a
    configuration's final_* means); `stopped_in` is the epoch an unfinished run stopped in;
    `speed` is `deepobs_speed` for complete runs (NaN without a target).
    """
    rows = []
    for run in runs:
        if run.config:
            key = configuration_key(run.config)
            config = identity(run.config, NOT_IN_CONFIGURATION)
        else:  # nothing says what it trained: a configuration of its own
            key, config = str(run.dir), {"run": str(run.dir)}
        epochs = run.epochs
        has = not epochs.empty
        epochs_to, seconds_to = _reach(epochs, target)
        status = run_status(run)
        complete = status == Status.COMPLETED and epochs_logged(epochs) >= _epochs_of_a_complete(
            run
        )
        if status == Status.COMPLETED and not complete:
            status = INCOMPLETE
        rows.append(
            {
                "configuration": key,
                "run_dir": str(run.dir),
                "run_id": run.run_id,
                "status": status,
                "complete": complete,
                "stopped_in": math.nan if complete else _stopped_in(run),
                "seed": run.record.seed,
                "lr": _nan_if_none(learning_rate(run.config)),
                "epochs": epochs_logged(epochs),
                "seconds": float(epochs["seconds"].sum()) if has else math.nan,
                **_summaries(epochs),
                "best_accuracy_epoch": (
                    float(epochs["epoch"][epochs["test_accuracy"].idxmax()])
                    if has and epochs["test_accuracy"].notna().any()
                    else math.nan
                ),
                "epochs_to_target": epochs_to,
                "seconds_to_target": seconds_to,
                "speed": (
                    deepobs_speed(epochs, target, planned_epochs(run))
                    if complete and target is not None
                    else math.nan
                ),
                **{f"config.{k}": _hashable(v) for k, v in config.items()},
            }
        )
    return pd.DataFrame(rows)


def _summaries(epochs: pd.DataFrame) -> dict[str, float]:
    """Every ranking metric of one run: each rankable column at the last epoch (final_) and at
    its best (best_); NaN for a column the run logs none of (older epochs.csv files lack the
    optional ones)."""
    values = {}
    for metric in METRICS:
        if not metric.rankable:
            continue
        column = epochs[metric.name] if metric.name in epochs else pd.Series(dtype=float)
        column = pd.to_numeric(column, errors="coerce")
        best = column.max() if metric.higher_is_better else column.min()
        values[metric.ranking(FINAL)] = column.iloc[-1] if len(column) else math.nan
        values[metric.ranking(BEST)] = best if len(column) else math.nan
    return values


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


def rank(frame: pd.DataFrame, metric: str = DEFAULT_RANKING) -> pd.DataFrame:
    """One row per configuration: mean, std and n over seeds of every metric, status counts;
    best first by `metric`, configurations with diverged or failed runs last.

    final_* means are over the configuration's complete runs only (`completed` counts them):
    a run that stopped early has its last epoch somewhere else, not at the final one.
    """
    if metric not in RANKING_METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(RANKING_METRICS)}, not '{metric}'")
    shown = differing_keys(frame)
    frame = frame.copy()
    finals = [m for m in RANKING_METRICS if m.startswith(f"{FINAL}_")]
    frame.loc[~frame["complete"].astype(bool), finals] = math.nan
    numbers = [
        *RANKING_METRICS,
        "best_accuracy_epoch",
        "epochs",
        "seconds",
        "epochs_to_target",
        "seconds_to_target",
        "speed",
    ]
    grouped = frame.groupby("configuration", sort=False)
    table = grouped[numbers].agg(["mean", "std"])
    table.columns = [f"{m}_{stat}" for m, stat in table.columns]
    table["n"] = grouped.size()
    table["completed"] = grouped["complete"].sum().astype(int)
    table["reached_target"] = grouped["epochs_to_target"].count()
    table["status"] = pd.Series({key: _status_counts(rows) for key, rows in grouped})
    table["worst_status"] = grouped["status"].agg(
        lambda s: max(_STATUS_ORDER.get(x, _UNKNOWN_STATUS) for x in s)
    )
    for column in shown:
        table[column.removeprefix("config.")] = grouped[column].first()
    ascending = not higher_is_better(metric)
    table = table.sort_values(
        ["worst_status", f"{metric}_mean"], ascending=[True, ascending], na_position="last"
    )
    table.attrs["hyperparameters"] = [c.removeprefix("config.") for c in shown]
    table.attrs["metric"] = metric
    return table.reset_index()


def _status_counts(rows: pd.DataFrame) -> str:
    """'2 completed, 1 diverged at epoch 3': how many runs ended how, and where they stopped."""
    parts = []
    order = sorted(set(rows["status"]), key=lambda s: (_STATUS_ORDER.get(s, _UNKNOWN_STATUS), s))
    for status in order:
        these = rows[rows["status"] == status]
        text = f"{len(these)} {status}"
        stopped = sorted({int(e) for e in these["stopped_in"].dropna()})
        if stopped:
            text += f" at epoch{'s' if len(stopped) > 1 else ''} {', '.join(map(str, stopped))}"
        parts.append(text)
    return ", ".join(parts)


def show_hyperparameter(value: Any) -> str:
    """A hyperparameter as a table or a label shows it: floats to 4 significant digits (a
    tune's sampled lr is 0.004643, not 0.0046431803257...), '-' where a configuration has none."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float) and float(f"{value:.4g}") != value:
        return f"{value:.4g}"
    return str(value)  # exact values as written: 0.0, 0.9, 1e-05


def label(row: pd.Series, hyperparameters: list[str]) -> str:
    """A short name for a configuration: its differing hyperparameters, keys shortened."""
    parts = []
    for key in hyperparameters:
        if row[key] == row[key] and row[key] is not None:  # NaN: this class has no such key
            parts.append(f"{key.split('.')[-1]}={show_hyperparameter(row[key])}")
    return " ".join(parts) or str(row["configuration"])


def seed_bands(
    frame: pd.DataFrame, table: pd.DataFrame, runs: list[Run], metric: str, top: int
) -> dict[str, pd.DataFrame]:
    """Per configuration (the `top` of the ranking): min, mean and max of `metric` per epoch over
    its seeds. The means are the curves; min and max are the band a plot draws around them."""
    by_dir = {str(run.dir): run for run in runs}
    columns = {c for run in runs for c in run.epochs.columns} - {"epoch"}
    if metric not in columns:
        raise ConfigError(
            f"--curve must be a column of epochs.csv ({', '.join(sorted(columns))}), not '{metric}'"
        )
    bands = {}
    for _, row in table.head(top).iterrows():
        dirs = frame.loc[frame["configuration"] == row["configuration"], "run_dir"]
        series = [by_epoch(by_dir[d].epochs)[metric] for d in dirs if not by_dir[d].epochs.empty]
        if not series:  # every seed diverged in its first epoch: no curve to draw
            continue
        stacked = pd.concat(series, axis=1)
        bands[label(row, table.attrs["hyperparameters"])] = pd.DataFrame(
            {"min": stacked.min(axis=1), "mean": stacked.mean(axis=1), "max": stacked.max(axis=1)}
        )
    return bands


def two_d_paths(
    frame: pd.DataFrame, table: pd.DataFrame, runs: list[Run]
) -> tuple[str, dict[str, list[pd.DataFrame]]] | None:
    """When every run is of one 2-D test function and recorded its path (path.csv): that
    function's name and, per configuration in ranking order, each seed's path (u, v by step).
    None otherwise (the plot then shows curves)."""
    from optbench.components.twod import FUNCTIONS

    models = {
        model.get("name") if isinstance(model := run.config.get("model"), dict) else None
        for run in runs
    }
    if len(models) != 1 or (function := models.pop()) not in FUNCTIONS:
        return None
    by_dir: dict[str, pd.DataFrame] = {}
    for run in runs:
        path = RunDir(run.dir).read_path()
        if path is None:
            return None
        by_dir[str(run.dir)] = path
    paths = {}
    for _, row in table.iterrows():
        dirs = frame.loc[frame["configuration"] == row["configuration"], "run_dir"]
        paths[label(row, table.attrs["hyperparameters"])] = [by_dir[d] for d in dirs]
    return function, paths


def parse_target(text: str | None) -> tuple[str, float] | None:
    if text is None:
        return None
    metric, sep, value = text.partition("=")
    allowed = RANKABLE
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or metric not in allowed or math.isnan(number):
        raise ConfigError(
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
    notes: list[str] = field(default_factory=list)  # e.g. copies of a run counted once
    tune: TuneFile | None = None  # the compared folders' tune.json (`find_tune`), read


def problems_of(runs: list[Run]) -> list[str]:
    """The test problems the runs are of (`problem:` in their config.yaml), in order."""
    names = []
    for run in runs:
        problem = run.config.get("problem")
        if isinstance(problem, dict) and isinstance(problem.get("name"), str):
            names.append(problem["name"])
    return list(dict.fromkeys(names))


def default_metric(runs: list[Run]) -> str:
    """What to rank by when the user does not say: the metric of the problem every run is of
    (final test accuracy, test loss or distance to the optimum), else final_test_loss."""
    from optbench.core.problems import PROBLEMS

    names = problems_of(runs)
    if len(names) == 1 and all(run.config.get("problem") for run in runs) and names[0] in PROBLEMS:
        return f"{FINAL}_{PROBLEMS.get(names[0], 'problem').metric}"
    return DEFAULT_RANKING


def default_target(runs: list[Run]) -> tuple[str, float] | None:
    """The target speed is measured to when --target is not given: the problem's
    (ProblemInfo.target, DeepOBS's convergence performance) when every run is of that one
    problem, else none."""
    from optbench.core.problems import PROBLEMS

    names = problems_of(runs)
    if len(names) != 1 or not all(run.config.get("problem") for run in runs):
        return None
    if names[0] not in PROBLEMS:
        return None
    target = getattr(PROBLEMS.get(names[0], "problem"), "target", None)
    return (str(target[0]), float(target[1])) if target else None


def read_runs(dirs: list[Path]) -> tuple[list[Run], list[str]]:
    """The runs in `dirs`, and a line for each one that cannot be read (a value YAML or JSON
    refuses in its files: a `!!python` tag, a 5000-digit integer): skipped with a warning
    naming it, so one bad run never hides the others. Nothing in a run's files is executed."""
    runs, skipped = [], []
    for path in dirs:
        try:
            runs.append(read_run(path))
        except ConfigError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            skipped.append(f"{first} (skipped; the other runs are compared)")
            warnings.warn(skipped[-1], UnreadableRunWarning, stacklevel=3)
    return runs, skipped


def compare_runs(
    paths: list[Path], metric: str | None = None, target: str | None = None
) -> Comparison:
    """Load every run under `paths` (copies of one run counted once) and rank configurations
    by `metric` (by default the runs' problem's, see `default_metric`). Speed is measured to
    `target`, by default the runs' problem's (`default_target`)."""
    parsed = parse_target(target)
    readable, skipped = read_runs(find_run_dirs(paths))
    runs, notes = drop_copies(readable)
    notes[:0] = skipped
    if parsed is None and (parsed := default_target(runs)) is not None:
        (problem,) = problems_of(runs)
        notes.append(
            f"target {parsed[0]}={parsed[1]:g} is {problem}'s (DeepOBS's convergence "
            "performance); --target sets another"
        )
    frame = runs_frame(runs, parsed)
    table = add_mean_curve_best(rank(frame, metric or default_metric(runs)), frame, runs)
    try:
        found = find_tune(paths)
    except ConfigError as exc:  # unreadable, or two tunes: compare the runs all the same
        found = None
        notes.append(f"tune.json ignored: {exc}")
    return Comparison(runs, frame, table, parsed, notes, found[1] if found else None)


# --------------------------------------------------------------------------- DeepOBS's metrics


def mean_curve(epochs: list[pd.DataFrame], column: str) -> pd.Series:
    """The mean over runs of `column` at each epoch (index: epoch), as DeepOBS aggregates a
    setting's seeds. Give it runs of one length (a configuration's complete runs): at an epoch
    only some runs reached, the mean would be over those alone."""
    series = [by_epoch(e)[column] for e in epochs if not e.empty and column in e]
    if not series:
        return pd.Series(dtype=float)
    return pd.concat(series, axis=1).mean(axis=1).sort_index()


def best_of_curve(curve: pd.Series, higher: bool) -> tuple[float, float]:
    """The best value of a curve and the (first) epoch it is at; NaN, NaN for no values.
    On a `mean_curve` this is DeepOBS's best performance: the best epoch of the mean over
    seeds, not the mean of each seed's best."""
    values = curve.dropna()
    if values.empty:
        return math.nan, math.nan
    epoch = values.idxmax() if higher else values.idxmin()
    return float(values[epoch]), float(epoch)


def _complete_epochs(rows: pd.DataFrame, by_dir: dict[str, Run]) -> list[pd.DataFrame]:
    return [by_dir[d].epochs for d in rows.loc[rows["complete"].astype(bool), "run_dir"]]


def add_mean_curve_best(table: pd.DataFrame, frame: pd.DataFrame, runs: list[Run]) -> pd.DataFrame:
    """The ranking with DeepOBS's best performance per configuration: `mean_curve_best` and
    `mean_curve_best_epoch`, of the mean curve over its complete runs of the ranking metric's
    column (table.attrs["performance"])."""
    column = epoch_column(table.attrs["metric"])
    by_dir = {str(run.dir): run for run in runs}
    bests = {
        key: best_of_curve(
            mean_curve(_complete_epochs(rows, by_dir), column), higher_is_better(column)
        )
        for key, rows in frame.groupby("configuration", sort=False)
    }
    table["mean_curve_best"] = [bests[key][0] for key in table["configuration"]]
    table["mean_curve_best_epoch"] = [bests[key][1] for key in table["configuration"]]
    table.attrs["performance"] = column
    return table


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def tuneability_frame(comparison: Comparison, tune: TuneFile | None = None) -> pd.DataFrame:
    """DeepOBS's tuneability: one row per configuration with its optimizer, learning rate and
    final performance (mean, std over its complete runs, in the ranking's column), and `chosen`
    marking the learning rate each optimizer's result is given at: tune.json's best params
    when `tune` names that optimizer, else its best-ranked configuration with a final value.
    Configurations without a final value (every run pruned, diverged, ...) keep NaN there."""
    table = comparison.table
    column = f"final_{table.attrs['performance']}"
    # chosen on the validation split where the runs have one, never on what is reported
    selected = f"final_{validation_metric(table.attrs['performance'])}"
    if f"{selected}_mean" not in table or table[f"{selected}_mean"].isna().all():
        selected = column
    firsts = comparison.frame.groupby("configuration", sort=False).first()
    rows = []
    for _, row in table.iterrows():
        key = row["configuration"]
        name = firsts.get("config.optimizer.name", pd.Series(dtype=object)).get(key)
        rows.append(
            {
                "configuration": key,
                "optimizer": name if isinstance(name, str) else "?",  # ?: the run has no config
                "lr": firsts.at[key, "lr"],
                "final_mean": row[f"{column}_mean"],
                "final_std": row[f"{column}_std"],
                "selected_on": row[f"{selected}_mean"],
                "n": int(row["n"]),
                "completed": int(row["completed"]),
            }
        )
    columns = [
        "configuration",
        "optimizer",
        "lr",
        "final_mean",
        "final_std",
        "selected_on",
        "n",
        "completed",
    ]
    out = pd.DataFrame(rows, columns=columns)
    out["chosen"] = False
    tuned = tune.optimizers if tune is not None else {}
    for name, rows_of in out.groupby("optimizer", sort=False):
        best = tuned[name].best if name in tuned else None
        chosen = None
        if best is not None:
            key = _configuration_of(comparison.frame, [best.run_id])
            chosen = rows_of.index[rows_of["configuration"] == key]
        scored = rows_of["selected_on"].dropna()
        if (chosen is None or not len(chosen)) and selected != column and len(scored):
            chosen = [scored.idxmax() if higher_is_better(selected) else scored.idxmin()]
        if chosen is None or not len(chosen):
            with_final = rows_of.index[rows_of["final_mean"].notna()]
            # the table is ranked: the first is the best (none has a final value: the first)
            chosen = (with_final if len(with_final) else rows_of.index)[:1]
        out.loc[chosen, "chosen"] = True
    out.attrs = {"metric": column, "performance": table.attrs["performance"], "selected": selected}
    return out


def _configuration_of(frame: pd.DataFrame, run_ids: list[Any]) -> str | None:
    found = frame.loc[frame["run_id"].isin([r for r in run_ids if isinstance(r, str)])]
    return str(found["configuration"].iloc[0]) if len(found) else None


def find_tune(paths: list[Path]) -> tuple[Path, TuneFile] | None:
    """The tune.json in the compared folders (at one of `paths` or a folder right under it),
    read; None when there is none. Two of them: an error, since which optimizers were tuned
    together is then unclear."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += [path / TUNE_FILE] if (path / TUNE_FILE).is_file() else []
            found += sorted(path.glob(f"*/{TUNE_FILE}"))
    found = list(dict.fromkeys(p.resolve() for p in found))
    if not found:
        return None
    if len(found) > 1:
        raise ConfigError(
            f"{len(found)} tune.json files under the compared folders "
            f"({', '.join(map(str, found))}); compare one tune's folder"
        )
    return found[0], TuneFile.read(found[0])


def _aggregate(rows: pd.DataFrame, by_dir: dict[str, Run], performance: str) -> dict[str, Any]:
    """DeepOBS's numbers over some runs of one configuration (final, best of the mean curve,
    speed: all over the complete runs), with n and the status counts."""
    complete = rows[rows["complete"].astype(bool)]
    final = complete[f"final_{performance}"]
    best, epoch = best_of_curve(
        mean_curve(_complete_epochs(rows, by_dir), performance), higher_is_better(performance)
    )
    return {
        "n": len(rows),
        "completed": len(complete),
        "status": _status_counts(rows) if len(rows) else "no runs found",
        "final_mean": final.mean(),
        "final_std": final.std(),
        "mean_curve_best": best,
        "mean_curve_best_epoch": epoch,
        "speed_mean": complete["speed"].mean(),
        "speed_std": complete["speed"].std(),
    }


def tuned_frame(comparison: Comparison, tune: TuneFile | None = None) -> pd.DataFrame:
    """One row per optimizer, ranked by final performance (the ranking's column): its tuned
    configuration's runs aggregated with DeepOBS's metrics and the learning rate chosen.

    With `tune` (a tune.json) the rows are its tuned optimizers, each over its `seed_run_ids`
    (the best trial's reruns; its best trial alone if none are found), the lr from its best
    params, and the budget spent (trials, completed, pruned, failed, epochs, seconds). Without,
    each optimizer's best-ranked configuration stands for it (`configurations`: how many it
    was tried in), as DeepOBS picks a setting from a grid.
    """
    table, frame = comparison.table, comparison.frame
    performance = table.attrs["performance"]
    by_dir = {str(run.dir): run for run in comparison.runs}
    rows = []
    if tune is not None:
        for name, spent in tune.optimizers.items():
            best = spent.best
            runs = frame[frame["run_id"].isin(spent.seed_run_ids)]
            if runs.empty and best is not None and best.run_id is not None:
                runs = frame[frame["run_id"] == best.run_id]
            lr = learning_rate(best.params) if best is not None else None
            if lr is None and not runs.empty:
                lr = runs["lr"].iloc[0]
            rows.append(
                {
                    "optimizer": name,
                    "lr": _nan_if_none(lr),
                    **_aggregate(runs, by_dir, performance),
                    "trials": spent.trials,
                    "trials_completed": spent.completed,
                    "trials_pruned": spent.pruned,
                    "trials_failed": spent.failed,
                    "budget_epochs": spent.epochs,
                    "budget_seconds": spent.seconds,
                }
            )
    else:
        tuneability = tuneability_frame(comparison)
        chosen = tuneability[tuneability["chosen"]]
        for _, row in chosen.iterrows():
            runs = frame[frame["configuration"] == row["configuration"]]
            configurations = int((tuneability["optimizer"] == row["optimizer"]).sum())
            rows.append(
                {
                    "optimizer": row["optimizer"],
                    "lr": row["lr"],
                    **_aggregate(runs, by_dir, performance),
                    "configurations": configurations,
                }
            )
    out = pd.DataFrame(rows)
    if not out.empty:
        out = out.sort_values(
            "final_mean", ascending=not higher_is_better(performance), na_position="last"
        ).reset_index(drop=True)
    out.attrs = {"performance": performance, "tuned": tune is not None}
    return out
