"""Live training output: a rich table that grows per epoch plus a batch progress bar with the
time left, or plain lines when stdout is not a terminal (logs, pipes, CI).

Times left are estimated from what this session has seen (batches, epochs, runs), with an
injectable clock so the arithmetic can be tested without waiting.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from optbench.core.metrics import BETWEEN, format_cell, shown_columns
from optbench.storage.results import Status

Clock = Callable[[], float]


def format_eta(seconds: float | None) -> str:
    """0:04:05 for a time left, "-" while there is nothing to estimate it from."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class EpochClock:
    """Times left in the epoch and in the run, from the batches and epochs seen so far.

    The epoch's time left is its batches still to go at the rate of this epoch's batches, plus
    what the epochs before spent after their last batch (evaluation, saving). The run's adds
    the epochs still to go at the mean length of the finished ones (or, during the first, at
    this one's projected length). Epochs restored from a checkpoint were not timed here and do
    not count."""

    def __init__(self, epochs: int | None, clock: Clock = time.monotonic) -> None:
        self.epochs, self.clock = epochs, clock
        self.epoch, self.batches, self.batch = 0, 0, 0
        self.started = self.last_batch = 0.0
        self.durations: list[float] = []  # of the epochs timed here
        self.tails: list[float] = []  # each one's time after its last batch

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        self.epoch, self.batches, self.batch = epoch, num_batches, 0
        self.started = self.last_batch = self.clock()

    def batch_finished(self, batch: int) -> None:
        self.batch, self.last_batch = batch, self.clock()

    def epoch_finished(self) -> None:
        now = self.clock()
        self.durations.append(now - self.started)
        self.tails.append(now - self.last_batch if self.batch >= self.batches else 0.0)
        self.batch = self.batches

    def epoch_left(self) -> float | None:
        if self.batch <= 0 or self.batches <= 0:
            return None
        rate = (self.clock() - self.started) / self.batch
        tail = sum(self.tails) / len(self.tails) if self.tails else 0.0
        return rate * max(0, self.batches - self.batch) + tail

    def run_left(self) -> float | None:
        left = self.epoch_left()
        if self.epochs is None or left is None:
            return None
        if self.durations:
            per_epoch = sum(self.durations) / len(self.durations)
        else:
            per_epoch = self.clock() - self.started + left
        return left + max(0, self.epochs - self.epoch) * per_epoch


class LiveTable:
    """A TrainingObserver that draws the run for a person watching it: the epochs so far, and a
    bar over this epoch's batches with the time left in the epoch and in the run (`epochs`,
    the run's length, when known)."""

    def __init__(
        self,
        title: str,
        console: Console | None = None,
        epochs: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.console = console or Console()
        self.title = title
        self.rows: list[dict[str, Any]] = []
        self.eta = EpochClock(epochs, clock)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("epoch ETA {task.fields[epoch_eta]}  run ETA {task.fields[run_eta]}"),
            console=self.console,
            get_time=clock,
        )
        self.task = None
        self.live: Live | None = None

    def _table(self) -> Table:
        table = Table(title=self.title, title_justify="left")
        columns = shown_columns(self.rows)
        for name, _ in columns:
            table.add_column(name, justify="right")
        for row in self.rows:
            table.add_row(*(format_cell(row.get(name), fmt) for name, fmt in columns))
        return table

    def __enter__(self) -> LiveTable:
        if self.console.is_terminal:
            self.live = Live(self._table(), console=self.console, refresh_per_second=8)
            self.live.__enter__()
        else:
            self.console.print(self.title)  # the header follows with the first row
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(*exc)

    def run_started(self, title: str, epochs: int) -> None:
        """As a run's observer: the live view starts with the run (runner.run_plan)."""
        self.title, self.eta.epochs = title, epochs
        self.__enter__()

    def run_ended(self, status: str) -> None:
        self.__exit__(None, None, None)

    def _etas(self) -> dict[str, str]:
        return {
            "epoch_eta": format_eta(self.eta.epoch_left()),
            "run_eta": format_eta(self.eta.run_left()),
        }

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        self.eta.epoch_started(epoch, num_batches)
        if self.live is None:
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            "train", total=num_batches, epoch=epoch, loss="-", **self._etas()
        )
        self.live.update(Group(self._table(), self.progress))

    def batch_finished(self, batch: int, loss: float | None) -> None:
        """`loss` is None in fast mode, which reads losses once per epoch."""
        self.eta.batch_finished(batch)
        if self.live is not None and self.task is not None:
            shown = "…" if loss is None else f"{loss:.4f}"
            self.progress.update(self.task, completed=batch, loss=shown, **self._etas())

    def epoch_finished(self, row: dict[str, Any]) -> None:
        if not row.get(BETWEEN):  # an evaluation between steps does not end the epoch
            self.eta.epoch_finished()
        self.rows.append(row)
        if self.live is not None:
            self.live.update(Group(self._table(), self.progress))
            return
        columns = shown_columns(self.rows[:1])  # plain lines: the first row fixes the columns
        if len(self.rows) == 1:
            self.console.print("  ".join(name for name, _ in columns))
        cells = (format_cell(row.get(name), fmt) for name, fmt in columns)
        self.console.print("  ".join(cells), highlight=False)


class SweepDisplay:
    """One display for a whole sweep (or tune): runs done/total with the time left, and one line
    per run in flight: the worker holding it, its grid point, epoch, batch and loss. Plain
    lines, one per finished run with the time left, when stdout is not a terminal.

    `labels` and `epochs` (run-id -> label, run length) may be given up front or with `add` as
    runs are handed out (a tune's trials are made as it goes). The sweep's time left is the
    runs not started at the mean length of the runs finished here (before any, the projected
    length of those in flight), plus what those in flight have left, shared by as many runs at
    once as were seen in flight (and never less than the longest run in flight has left). The
    Ray executor reports only results: its time left is the runs to go at the rate results
    came in."""

    def __init__(
        self,
        total: int,
        skipped: int,
        labels: dict[str, str] | None,
        console: Console,
        *,
        epochs: dict[str, int] | None = None,
        clock: Clock = time.monotonic,
        title: str = "sweep",  # what the progress bar is called: sweep, tune
        header: str | None = None,  # printed once, before the progress
    ) -> None:
        self.console, self.clock, self.header = console, clock, header
        self.labels = dict(labels or {})
        self.epochs = dict(epochs or {})
        self.total, self.done, self.finished_here = total, skipped, 0
        self.started = clock()
        self.durations: list[float] = []  # of the runs seen from start to result here
        self.in_flight: dict[str, dict[str, Any]] = {}
        self.peak = 1  # the most runs seen in flight at once: the workers
        self.progress = Progress(
            TextColumn(title),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("{task.fields[note]}"),
            console=console,
            get_time=clock,
        )
        self.task = self.progress.add_task("runs", total=total, completed=skipped, eta="-", note="")
        self.noted = ""  # what note() said last (a benchmark's pairs done), shown beside the ETA
        self.live: Live | None = None

    def add(self, run_id: str, label: str, epochs: int | None = None) -> None:
        """A run handed out after the display started (a tune's next trial)."""
        self.labels[run_id] = label
        if epochs is not None:
            self.epochs[run_id] = epochs

    @staticmethod
    def _progress(state: dict[str, Any]) -> float | None:
        """How far a run in flight is, 0 to 1, when its length is known."""
        epochs, batches = state.get("of"), state.get("batches")
        if not epochs or not batches or "epoch" not in state:
            return None
        done = (state["epoch"] - 1 + state.get("batch", 0) / batches) / epochs
        return max(done, state.get("finished", 0) / epochs)

    def _run_left(self, state: dict[str, Any], now: float, mean: float | None) -> float | None:
        """What a run in flight has left: projected from the epochs and batches it trained here
        when its length is known (a resumed run's earlier epochs were not timed here), else the
        mean run length less its time so far. Until a quarter of the run is done the mean of
        the finished runs, where there is one, is the steadier guess (start-up, warm-up)."""
        elapsed = now - state["since"]
        progress = self._progress(state)
        trained = 0.0 if progress is None else progress - state["from"]
        if trained > 0 and (trained >= 0.25 or mean is None):
            return elapsed / trained * (1 - progress)
        return None if mean is None else max(0.0, mean - elapsed)

    def time_left(self) -> float | None:
        now = self.clock()
        to_go = self.total - self.done
        if to_go <= 0:
            return 0.0
        if not self.in_flight:  # nothing reported but results (Ray)
            if not self.finished_here:
                return None
            return (now - self.started) / self.finished_here * to_go
        mean = sum(self.durations) / len(self.durations) if self.durations else None
        lefts = [self._run_left(state, now, mean) for state in self.in_flight.values()]
        if mean is None:
            projected = [
                left + now - state["since"]
                for left, state in zip(lefts, self.in_flight.values(), strict=True)
                if left is not None
            ]
            if not projected:
                return None
            mean = sum(projected) / len(projected)
        known = [left if left is not None else mean for left in lefts]
        waiting = max(0, to_go - len(self.in_flight))
        return max(max(known), (waiting * mean + sum(known)) / self.peak)

    def _render(self) -> Group:
        table = Table(title_justify="left", box=None, pad_edge=False)
        for column in ("worker", "run", "grid point", "epoch", "batch", "loss"):
            left = column in ("worker", "run", "grid point")
            table.add_column(column, justify="left" if left else "right")
        for run_id, state in self.in_flight.items():
            epoch = str(state.get("epoch", "-"))
            table.add_row(
                str(state.get("worker", "-")),
                run_id,
                self.labels.get(run_id, ""),
                f"{epoch}/{state['of']}" if state.get("of") else epoch,
                f"{state.get('batch', 0)}/{state.get('batches', '-')}",
                format_cell(state.get("loss"), "{:.4f}"),
            )
        return Group(self.progress, table)

    def _refresh(self) -> None:
        self.progress.update(
            self.task, completed=self.done, eta=format_eta(self.time_left()), note=self.noted
        )
        if self.live is not None:
            self.live.update(self._render())

    def __enter__(self) -> SweepDisplay:
        if self.header is not None:
            self.console.print(self.header, markup=False)
        if self.console.is_terminal:
            self.live = Live(self._render(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.in_flight.clear()
            self._refresh()
            self.live.__exit__(*exc)

    def message(self, message: tuple[Any, ...]) -> None:
        kind, run_id, *values = message
        state = self.in_flight.get(run_id)
        if state is None:
            state = self.in_flight[run_id] = {"since": self.clock()}
            self.peak = max(self.peak, len(self.in_flight))
            if run_id in self.epochs:
                state["of"] = self.epochs[run_id]
        if kind == "start":  # the process id of the worker holding it
            state.update(worker="driver" if values[0] == os.getpid() else values[0])
        elif kind == "epoch":
            state.update(epoch=values[0], batches=values[1], batch=0)
            if "from" not in state:  # where it started (a resumed run, past its first epochs)
                state["from"] = self._progress(state) or 0.0
        elif kind == "batch":
            state.update(batch=values[0])
            if values[1] is not None:  # fast mode reads losses once per epoch
                state.update(loss=values[1])
        elif kind == "row":
            state.update(loss=values[1], finished=values[0])
        self._refresh()

    def result(self, result: Any, line: str | None = None) -> None:
        """A run came back: counted, and printed as `line` (by default its status, run-id,
        label and error) after the progress."""
        state = self.in_flight.pop(result.run_id, None)
        if state is not None:
            self.durations.append(self.clock() - state["since"])
        self.finished_here += 1
        if line is None:
            note = f": {result.error}" if result.error and result.status != Status.COMPLETED else ""
            line = f"{result.status:<11} {result.run_id}  {self.labels.get(result.run_id, '')}"
            line += note
        self.answered(line)

    def answered(self, line: str) -> None:
        """One more of the total done without training here (a tune's trial answered from
        disk or refused), printed as `line` after the progress."""
        self.done += 1
        eta = format_eta(self.time_left())
        self._refresh()
        noted = f", {self.noted}" if self.noted else ""
        self.console.print(
            f"[{self.done}/{self.total}{noted}, ETA {eta}] {line}", markup=False, highlight=False
        )

    def note(self, text: str) -> None:
        """A word on the whole beside the runs done (`pairs 3/24`: a benchmark's pairs finished)."""
        self.noted = text
        self._refresh()

    def skip(self, count: int) -> None:
        """`count` of the total found done already (a tune's seed reruns on disk)."""
        self.done += count
        self._refresh()
