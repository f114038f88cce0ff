"""The run's loggers in front of its display: the training loop's observer calls turned into
the Logger protocol's (loggers/base.py), once for every logger.

The rules every logger shares live here: a logger starts when training does, a resumed run's
rows the logger already holds are not passed again, evaluations between steps are not epoch
rows, and a logger that raises is reported once on stderr and dropped (the run goes on).
"""

from __future__ import annotations

import contextlib
from typing import Any

from optbench.core.metrics import BETWEEN
from optbench.experiment.loggers.base import LoggedRun, one_line, warn
from optbench.experiment.loggers.registry import BoundLogger


def _abandon(logger: Any) -> None:
    """A failed logger's `abandon()`, if it has one; what it raises was reported already."""
    with contextlib.suppress(Exception):
        abandon = getattr(logger, "abandon", None)
        if abandon is not None:
            abandon()


class _Active:
    """One logger in use: its name (for warnings), the object, and the last step it holds."""

    def __init__(self, name: str, logger: Any) -> None:
        self.name, self.logger, self.logged = name, logger, 0


class RunLoggers:
    """The plan's loggers for one run in front of `display`. `observer` is what the loop
    reports to: the display itself when the run logs nowhere, so a plain run pays nothing."""

    def __init__(
        self,
        loggers: tuple[BoundLogger, ...],
        display: Any,
        run: dict[str, Any],
    ) -> None:
        self.display, self.run = display, run  # LoggedRun's fields but the first epoch's
        self.pending = list(loggers)  # built and started when training starts
        self.active: list[_Active] = []
        self.started = False
        self.replayed: list[dict[str, Any]] = []  # rows a resumed run reports before training
        self.epoch = self.batches = 0
        self.observer = self if loggers else display

    def _start(self, first_epoch: int, batches: int) -> None:
        self.started = True
        run = LoggedRun(**self.run, first_epoch=first_epoch, batches_per_epoch=batches)
        for bound in self.pending:
            active = _Active(bound.name, None)
            try:
                active.logger = bound.build()
                active.logged = int(active.logger.start(run) or 0)
                self.active.append(active)
            except Exception as exc:
                warn(f"{bound.name} logging is off for this run ({one_line(exc)}); it trains on")
                _abandon(active.logger)
        self.pending = []
        for row in self.replayed:
            self._log_row(row)
        self.replayed = []

    def _each(self, method: str, *args: Any, active: list[_Active] | None = None) -> None:
        for entry in list(self.active if active is None else active):
            try:
                getattr(entry.logger, method)(*args)
            except Exception as exc:
                self._drop(entry, exc)

    def _drop(self, entry: _Active, exc: Exception) -> None:
        self.active.remove(entry)
        folder = self.run["folder"]
        warn(
            f"{entry.name} logging stopped ({one_line(exc)}); the run goes on and its results "
            f"are complete in {folder}"
        )
        _abandon(entry.logger)

    def _log_row(self, row: dict[str, Any]) -> None:
        if row.get(BETWEEN):  # an evaluation between steps: its epoch's end is the row
            return
        step = int(row["epoch"])
        for entry in list(self.active):
            if step <= entry.logged:  # logged by an earlier attempt of this run
                continue
            try:
                entry.logger.log_epoch(row, step)
                entry.logged = step
            except Exception as exc:
                self._drop(entry, exc)

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        if not self.started:
            self._start(epoch, num_batches)
        self.epoch, self.batches = epoch, num_batches
        self.display.epoch_started(epoch, num_batches)

    def batch_finished(self, batch: int, loss: float | None) -> None:
        if loss is not None:
            step = (self.epoch - 1) * self.batches + batch
            batched = [e for e in self.active if hasattr(e.logger, "log_batch")]
            self._each("log_batch", step, loss, active=batched)
        self.display.batch_finished(batch, loss)

    def epoch_finished(self, row: dict[str, Any]) -> None:
        if self.started:
            self._log_row(row)
        else:
            self.replayed.append(row)  # a resumed run's earlier epochs, from its checkpoint
        self.display.epoch_finished(row)

    def close(self, status: str) -> None:
        """Finish every logger with the run's status (after summary.json is written)."""
        if not self.started:  # ended before an epoch started (resumed at its last epoch)
            last = max((int(r["epoch"]) for r in self.replayed), default=0)
            self._start(last + 1, self.batches)
        self._each("finish", str(status))
        self.active = []


def open_loggers(plan: Any, folder: Any, display: Any, resuming: bool) -> RunLoggers:
    """The plan's loggers (`plan.loggers`, bound while planning) for the run in `folder`;
    `resuming`: the run continues from a checkpoint, and so does each logger's run."""
    run = {
        "name": plan.name,
        "run_id": plan.run_id,
        "config": plan.resolved,
        "folder": folder,
        "resuming": resuming,
        "optimizer": plan.optimizer.info.name,
    }
    return RunLoggers(plan.loggers, display, run)
