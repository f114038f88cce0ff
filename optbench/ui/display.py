"""Live training output: a rich table that grows per epoch plus a batch progress bar, or plain
lines when stdout is not a terminal (logs, pipes, CI)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from optbench.storage.results import EPOCH_FORMATS, Status

COLUMNS = list(EPOCH_FORMATS.items())  # the per-epoch table: epochs.csv's columns
OPTIONAL = {"distance_to_optimum"}  # only problems with a known optimum log it


def shown_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The columns worth a table: every one, except optional ones no row has a value for."""
    return [
        (name, fmt)
        for name, fmt in COLUMNS
        if name not in OPTIONAL or any(format_cell(row.get(name), fmt) != "-" for row in rows)
    ]


def format_cell(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


class LiveTable:
    """A TrainingObserver that draws the run for a person watching it."""

    def __init__(self, title: str, console: Console | None = None) -> None:
        self.console = console or Console()
        self.title = title
        self.rows: list[dict[str, Any]] = []
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            console=self.console,
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

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        if self.live is None:
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("train", total=num_batches, epoch=epoch, loss="-")
        self.live.update(Group(self._table(), self.progress))

    def batch_finished(self, batch: int, loss: float | None) -> None:
        """`loss` is None in fast mode, which reads losses once per epoch."""
        if self.live is not None and self.task is not None:
            shown = "…" if loss is None else f"{loss:.4f}"
            self.progress.update(self.task, completed=batch, loss=shown)

    def epoch_finished(self, row: dict[str, Any]) -> None:
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
    """One display for a whole sweep: runs done/total, and each run in flight with its epoch and
    current loss. Plain lines, one per finished run, when stdout is not a terminal."""

    def __init__(self, total: int, skipped: int, labels: dict[str, str], console: Console) -> None:
        self.console, self.labels = console, labels
        self.total, self.done = total, skipped
        self.in_flight: dict[str, dict[str, Any]] = {}
        self.progress = Progress(
            TextColumn("sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("runs", total=total, completed=skipped)
        self.live: Live | None = None

    def _render(self) -> Group:
        table = Table(title_justify="left", box=None, pad_edge=False)
        for column in ("run", "grid point", "epoch", "batch", "loss"):
            table.add_column(column, justify="left" if column in ("run", "grid point") else "right")
        for run_id, state in self.in_flight.items():
            table.add_row(
                run_id,
                self.labels.get(run_id, ""),
                str(state.get("epoch", "-")),
                f"{state.get('batch', 0)}/{state.get('batches', '-')}",
                format_cell(state.get("loss"), "{:.4f}"),
            )
        return Group(self.progress, table)

    def __enter__(self) -> SweepDisplay:
        if self.console.is_terminal:
            self.live = Live(self._render(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.in_flight.clear()
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def message(self, message: tuple[Any, ...]) -> None:
        kind, run_id, *values = message
        state = self.in_flight.setdefault(run_id, {})
        if kind == "epoch":
            state.update(epoch=values[0], batches=values[1], batch=0)
        elif kind == "batch":
            state.update(batch=values[0])
            if values[1] is not None:  # fast mode reads losses once per epoch
                state.update(loss=values[1])
        elif kind == "row":
            state.update(loss=values[1])
        if self.live is not None:
            self.live.update(self._render())

    def result(self, result: Any) -> None:
        self.in_flight.pop(result.run_id, None)
        self.done += 1
        self.progress.update(self.task, completed=self.done)
        note = f": {result.error}" if result.error and result.status != Status.COMPLETED else ""
        self.console.print(
            f"[{self.done}/{self.total}] {result.status:<11} {result.run_id}  "
            f"{self.labels.get(result.run_id, '')}{note}",
            markup=False,
            highlight=False,
        )
        if self.live is not None:
            self.live.update(self._render())
