"""The `Logger` protocol: what a logger (TensorBoard, MLflow, W&B, a user's own class) implements.

A logger is a class named in the config's `log:` list, by a registered name (`tensorboard`) or
an import path (`mypkg.loggers.Mine`); its `__init__` takes the entry's options, bound to its
signature while planning, so a wrong key fails before anything runs. The run's own files
(epochs.csv, summary.json) stay the record: a logger mirrors them into a tool, and one that
fails is reported once and dropped (experiment/loggers/run.py); logging never stops a run.

The lifecycle of one logger for one run, driven by `RunLoggers`:

1. `start(run)` when training begins (the first epoch starts, or the run ends before one):
   open the tool's run for `run` (a `LoggedRun`). With `run.resuming`, continue the run an
   earlier attempt logged, and return the last step it already holds: rows at or below it are
   not passed again, so a resumed run logs no step twice. Return 0 for a fresh run.
2. `log_epoch(row, step)` once per finished epoch, in order, `step` = the epoch: `row` holds
   epochs.csv's columns (`EPOCH_METRICS`; a sparse one such as valid_loss only when measured).
3. `finish(status)` once, after summary.json is written: the run's status (summary.json's
   `status`: completed, diverged, failed, pruned, interrupted).

Optional methods, called when a class has them:

- `check(cls, options)` (a classmethod): refuse, while planning, options the signature cannot
  judge (W&B online with no credentials): raise ConfigError(option, problem).
- `log_batch(step, loss)`: each optimizer step's training loss, step = global step (not in
  `fast` mode, where the loop reads none).
- `abandon()`: close quietly after one of the methods above raised (the logger is dropped).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from optbench.core.identity import flatten, in_run_id
from optbench.core.metrics import EPOCH_COLUMNS

# Scalars of each epoch, named as epochs.csv's columns.
EPOCH_METRICS = [c for c in EPOCH_COLUMNS if c != "epoch"]


@dataclass(frozen=True)
class LoggedRun:
    """What a logger is told about the run it logs."""

    name: str  # the experiment's name: a sweep's or a tune's runs share it
    run_id: str  # the run's id, its folder's name
    config: dict[str, Any]  # the resolved config (config.yaml)
    folder: Path  # the run's folder, <results>/<name>/<run-id>/
    resuming: bool  # continues from a checkpoint: the same logged run goes on
    first_epoch: int  # the epoch training starts (or resumes) at
    batches_per_epoch: int  # optimizer steps per epoch: global step = (epoch-1) * this + batch
    optimizer: str  # the optimizer's name, as `optbench list` shows it

    @property
    def results_dir(self) -> Path:
        return self.folder.parents[1]

    def files(self) -> list[Path]:
        """The run's result files that exist (config.yaml, epochs.csv, summary.json, and a 2-D
        problem's path.csv): what a logger stores as the run's artifacts."""
        from optbench.storage.results import RunDir

        names = (*RunDir.RESULT_FILES, RunDir.PATH)
        return [self.folder / name for name in names if (self.folder / name).is_file()]

    def summary(self) -> dict[str, Any]:
        """summary.json as written (empty before it is)."""
        from optbench.storage.results import RunDir

        path = self.folder / RunDir.SUMMARY
        return json.loads(path.read_text()) if path.is_file() else {}


class Logger(Protocol):
    """A logger of runs (see the module's docstring for the lifecycle). Options come from the
    config entry through `__init__`. Optional class attributes: `requires`, the module that
    must import, and `extra`, the optbench extra that installs it (checked while planning)."""

    def start(self, run: LoggedRun) -> int: ...

    def log_epoch(self, row: dict[str, Any], step: int) -> None: ...

    def finish(self, status: str) -> None: ...


def hyperparameters(config: dict[str, Any]) -> dict[str, bool | float | int | str]:
    """The resolved config's keys that make the run-id, each a bool, number or string (lists
    as JSON text; None left out): what a tool shows as a run's hyperparameters."""
    values: dict[str, bool | float | int | str] = {}
    for key, value in flatten(config).items():
        if not in_run_id(key) or value is None:
            continue
        values[key] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return values


def run_label(config: dict[str, Any]) -> str:
    """What a run is called in a tool's legend, after its optimizer: '<Optimizer> lr=<lr>'."""
    optimizer = config.get("optimizer", {})
    name = str(optimizer.get("name", "?")).rsplit(".", 1)[-1].rsplit(":", 1)[-1]
    lr = optimizer.get("lr")
    label = f"{name} lr={lr:g}" if isinstance(lr, (int, float)) else name
    return re.sub(r"[^A-Za-z0-9_.+=, -]", "_", label)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
