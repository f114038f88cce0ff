"""What every executor shares: the `Executor` protocol, one point's training (`train_point`), its
result, the progress reporter a worker sends through a pipe, and the lazy queue of points.

Every executor runs the very same `train_point` (hence `run_plan`); only the transport differs
(local.py: worker processes; ray.py: Ray tasks; submitit.py: Slurm jobs).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from optbench.core.byvalue import without_objects
from optbench.core.errors import ConfigError, ResultsWriteError
from optbench.experiment.train import Observers, SilentObserver
from optbench.storage.results import DISK_FULL, RunBusyError, Status, cannot_write


@dataclass
class PointResult:
    run_id: str
    status: Status
    error: str | None = None
    # A results file could not be written (full disk): not the run's fault, and every other run
    # would fail the same way, so the sweep or tune stops with exit 3 (`error` names the file).
    write_failed: bool = False
    # Another process holds the run's lock: it trains this very run (a tune sharing the study).
    busy: bool = False
    # The process training it died (SIGKILL, the out-of-memory killer, a lost Ray node): not
    # the run's own failure; it resumes from its checkpoint when trained again.
    died: bool = False


class QuietSweep:
    """What a sweep or tune reports to as it goes, when nobody watches (library use): every
    call a no-op. The CLI hands in a live view instead (ui/display.py's SweepDisplay), made by
    a `SweepView` from the sweep's size, so nothing here imports the UI."""

    def __init__(self, total: int, done: int, labels: dict[str, str] | None, **_: Any) -> None:
        pass

    def __enter__(self) -> QuietSweep:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def message(self, message: tuple[Any, ...]) -> None:
        pass

    def result(self, result: Any, line: str | None = None) -> None:
        pass

    def answered(self, line: str) -> None:
        pass

    def add(self, run_id: str, label: str, epochs: int | None = None) -> None:
        pass

    def skip(self, count: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass


# Makes a sweep's observer: (total runs, runs done already, run-id -> label, epochs=run-id ->
# epochs, title=sweep|tune) -> a context manager with QuietSweep's methods.
SweepView = Callable[..., Any]


# Progress messages from workers: (kind, run_id, *values).
Message = tuple[Any, ...]


class PipeReporter(SilentObserver):
    """A TrainingObserver that sends progress to the sweep's display, a few times a second.

    `stop`, set by the driver, interrupts the run at its next batch as Ctrl-C would (a worker
    that is a thread of the driver gets no signals)."""

    def __init__(
        self, send: Callable[[Message], None], run_id: str, stop: threading.Event | None = None
    ) -> None:
        self.send, self.run_id, self._last, self.stop = send, run_id, 0.0, stop

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        if self.stop is not None and self.stop.is_set():
            raise KeyboardInterrupt
        self.send(("epoch", self.run_id, epoch, num_batches))

    def batch_finished(self, batch: int, loss: float | None) -> None:
        if self.stop is not None and self.stop.is_set():
            raise KeyboardInterrupt
        now = time.monotonic()
        if now - self._last > 0.25:
            self._last = now
            self.send(("batch", self.run_id, batch, loss))

    def epoch_finished(self, row: dict[str, Any]) -> None:
        self.send(("row", self.run_id, row["epoch"], row["train_loss"]))


def train_point(
    run_id: str,
    config: dict[str, Any],
    results_dir: str,
    display: Any | None = None,
    *watch: Callable[[], Any],
    sync_every: float = 0.0,
    threads: int | None = None,
) -> PointResult:
    """Run one sweep point to the end (resuming it if it was interrupted) and say how it went.

    `threads`: torch's default thread count in the driver, which planned the point; a run whose
    config sets no `threads` trains with it wherever it lands (a Ray task's process is started
    with one thread), so its numbers are the driver's `optbench run`'s.

    `watch`, when a point carries one (`optbench tune`'s pruning), makes one more observer of
    the run here, where it trains; it may end the run early with StopTraining.

    `run_id` is what the driver planned; a worker on another machine whose code or packages
    differ plans another id, and that point fails instead of landing under the wrong id.
    """
    from optbench.components.data.tensor_cache import reusing_planned_tensors
    from optbench.core.config import validate_config
    from optbench.experiment.plan import make_plan
    from optbench.experiment.runner import run_plan

    try:
        config = without_objects(config)  # the Python objects it names, sent by value
        with reusing_planned_tensors():  # the driver planned it: its data is in the tensor file
            plan = make_plan(validate_config(config))
    except ConfigError as exc:
        return PointResult(run_id, Status.FAILED, f"cannot plan it here: {exc}")
    if plan.run_id != run_id:
        return PointResult(
            run_id,
            Status.FAILED,
            f"this machine plans it as {plan.run_id}: its code or packages differ from the "
            "driver's",
        )
    if threads is not None and plan.config.threads is None:
        plan = dataclasses.replace(plan, threads=threads)
    observer = display or SilentObserver()
    if watch:
        observer = Observers(observer, watch[0]())
    try:
        outcome = run_plan(plan, results_dir, resume=True, display=observer, sync_every=sync_every)
    except KeyboardInterrupt:
        return PointResult(run_id, Status.INTERRUPTED, "interrupted")
    except RunBusyError as exc:
        return PointResult(run_id, Status.FAILED, str(exc), busy=True)
    except ConfigError as exc:
        return PointResult(run_id, Status.FAILED, str(exc))
    except ResultsWriteError as exc:
        return PointResult(run_id, Status.FAILED, str(exc), write_failed=True)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            return PointResult(run_id, Status.FAILED, f"{type(exc).__name__}: {exc}")
        where = exc.filename or Path(results_dir) / plan.name / run_id
        return PointResult(run_id, Status.FAILED, str(cannot_write(where, exc)), write_failed=True)
    except Exception as exc:  # recorded in its summary.json; the sweep goes on
        return PointResult(run_id, Status.FAILED, f"{type(exc).__name__}: {exc}")
    summary = outcome.summary
    return PointResult(run_id, Status(summary.status or Status.FAILED), summary.error)


Point = tuple[Any, ...]  # (run_id, config[, watch]): what an executor trains
OnMessage = Callable[[Message], None]
OnResult = Callable[[PointResult], None]


class Executor(Protocol):
    """Where a sweep's, tune's or benchmark's points train. Built from the config's `executor:`
    section (or `--executor NAME --executor-opt K=V`) by `plan_executor`: the class is called
    with `results_dir` (where runs land) and the section's options, bound to its signature.

    `run` trains every point of `points` (a list, or a lazy iterator pulled only when a worker
    is free: see Pending), hands progress messages to `on_message` and each point's
    PointResult to `on_result` as it ends; it returns when all have ended, and lets a
    KeyboardInterrupt through once the runs in flight were stopped (they resume later).

    An executor whose workers re-import the caller's main script (multiprocessing's spawn) says
    so with a true `reruns_main_script` attribute (the API then refuses an unguarded call)."""

    def run(self, points: Iterable[Point], on_message: OnMessage, on_result: OnResult) -> None:
        """Train the points; returns when all have ended (KeyboardInterrupt passes through)."""


def default_workers() -> int:
    """The CPU cores this process may use: one single-threaded-ish run per core."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def check_workers(workers: int | None) -> int:
    """`workers` as given (None: one per CPU core); ConfigError naming executor.workers below 1."""
    if workers is None:
        return default_workers()
    if workers < 1:
        raise ConfigError("executor.workers", f"must be at least 1, got {workers}")
    return workers


class Pending:
    """Points taken one at a time, pulled from their iterator only when a worker can start one
    (so `optbench tune` asks Optuna for a trial then, knowing every result told so far)."""

    def __init__(self, points: Iterable[Point]) -> None:
        self._points, self._next, self._done = iter(points), None, False

    def __bool__(self) -> bool:  # there may be more
        return self._next is not None or not self._done

    def peek(self) -> bool:
        """Whether there is another point, pulling it when none is waiting."""
        if self._next is None and not self._done:
            self._next = next(self._points, None)
            self._done = self._next is None
        return self._next is not None

    def pop(self) -> Point:
        self.peek()
        point, self._next = self._next, None
        assert point is not None, "pop() after peek() said there was none"
        return point
