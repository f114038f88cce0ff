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
    # A batch point's (sweeps/batching.py): each of its trials' own PointResult.
    parts: list[PointResult] | None = None


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

    def for_run(self, run_id: str) -> PipeReporter:
        """The same pipe's reporter for another run: a batch's trials each report their own."""
        return PipeReporter(self.send, run_id, self.stop)


# A tiny run writes its epoch's files (checkpoint, epochs.csv) once per this many seconds and
# after its last epoch (storage/results.py EpochSaves), not every epoch: a run in the driver's
# thread while runs are tiny (local.py), and each trial of a batch, whose K trials each end an
# epoch every fraction of a second. A kill costs at most this much training, done again.
TINY_SAVE_SECONDS = 1.0

# A batch point's config (sweeps/batching.py): the trials' shared config with, under this key,
# each trial's run-id and the fields it sets itself (optimizer, scheduler, seed, name...).
BATCH = "batch_of"


def train_point(
    run_id: str,
    config: dict[str, Any],
    results_dir: str,
    display: Any | None = None,
    *watch: Callable[[], Any] | None,
    save_every: float = 0.0,
    threads: int | None = None,
) -> PointResult:
    """Run one sweep point to the end (resuming it if it was interrupted) and say how it went;
    a batch point's trials (its config holds BATCH) trained as one batch, their PointResults
    its `parts`.

    `threads`: torch's default thread count in the driver, which planned the point; a run whose
    config sets no `threads` trains with it wherever it lands (a Ray task's process is started
    with one thread), so its numbers are the driver's `optbench run`'s.

    `watch`, when a point carries one (`optbench tune`'s pruning), makes one more observer of
    the run here, where it trains; it may end the run early with StopTraining (a batch point
    carries one per trial, or none).

    `run_id` is what the driver planned; a worker on another machine whose code or packages
    differ plans another id, and that point fails instead of landing under the wrong id.
    """
    from optbench.experiment.runner import run_plan

    try:
        config = without_objects(config)  # the Python objects it names, sent by value
    except ConfigError as exc:
        return PointResult(run_id, Status.FAILED, f"cannot plan it here: {exc}")
    if BATCH in config:
        parts = _train_batch(config, results_dir, display, list(watch), save_every, threads)
        failed = [part for part in parts if part.status != Status.COMPLETED]
        status = failed[0].status if failed else Status.COMPLETED
        return PointResult(run_id, status, failed[0].error if failed else None, parts=parts)
    plan = _planned(run_id, config, threads)
    if isinstance(plan, PointResult):
        return plan
    observer = _observer(display, run_id, watch[0] if watch else None)
    (result,) = _results(
        [run_id],
        results_dir,
        plan.name,
        lambda: [run_plan(plan, results_dir, resume=True, display=observer, save_every=save_every)],
    )
    return result


def _planned(run_id: str, config: dict[str, Any], threads: int | None) -> Any:
    """The point's RunPlan, or the failed PointResult saying why it cannot be planned here."""
    from optbench.components.data.tensor_cache import reusing_planned_tensors
    from optbench.core.config import validate_config
    from optbench.experiment.plan import make_plan

    try:
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
    return plan


def _observer(display: Any | None, run_id: str, watch: Callable[[], Any] | None) -> Any:
    """A run's observer: the display (a batch's pipe reporter, re-aimed at this run) and the
    run's watch, when it has one."""
    if isinstance(display, PipeReporter):
        display = display.for_run(run_id)
    observer = display or SilentObserver()
    return observer if watch is None else Observers(observer, watch())


def _train_batch(
    config: dict[str, Any],
    results_dir: str,
    display: Any | None,
    watches: list[Callable[[], Any] | None],
    save_every: float,
    threads: int | None,
) -> list[PointResult]:
    """A batch point's trials trained as one batch (experiment/batched.py), each one's
    PointResult; those that cannot plan here fail, and a batch that cannot train exactly as its
    trials would alone (checked again here, where it trains) trains them one by one."""
    from optbench.experiment.batched import decide_batch, run_batch

    shared = {key: value for key, value in config.items() if key != BATCH}
    trials = [(own.pop("run_id"), {**shared, **own}) for own in map(dict, config[BATCH])]
    watches = watches or [None] * len(trials)
    planned = {run_id: _planned(run_id, trial_config, threads) for run_id, trial_config in trials}
    ready = [(rid, plan) for rid, plan in planned.items() if not isinstance(plan, PointResult)]
    plans = [plan for _, plan in ready]
    decision = decide_batch(plans)
    if len(plans) < 2 or decision.refusal is not None:
        return [
            train_point(
                run_id,
                trial_config,
                results_dir,
                display,
                watch,
                save_every=save_every,
                threads=threads,
            )
            for (run_id, trial_config), watch in zip(trials, watches, strict=True)
        ]
    observers = {
        run_id: _observer(display, run_id, watch)
        for (run_id, _), watch in zip(trials, watches, strict=True)
    }
    ids = [run_id for run_id, _ in ready]
    trained = _results(
        ids,
        results_dir,
        plans[0].name,
        lambda: run_batch(
            plans,
            results_dir,
            resume=True,
            displays=[observers[run_id] for run_id in ids],
            save_every=max(save_every, TINY_SAVE_SECONDS),
            decision=decision,
        ),
    )
    results = dict(zip(ids, trained, strict=True))
    return [results.get(run_id) or planned[run_id] for run_id, _ in trials]


def _results(
    run_ids: list[str], results_dir: str, name: str, train: Callable[[], list[Any]]
) -> list[PointResult]:
    """The runs' PointResults from `train` (their RunOutcomes, in order), or every run's
    failure where it raised: stopped (Ctrl-C), busy (another process trains one), a full disk
    (the sweep stops, exit 3) or an error recorded in each summary.json (the sweep goes on)."""

    def each(status: Status, error: str, **flags: bool) -> list[PointResult]:
        return [PointResult(run_id, status, error, **flags) for run_id in run_ids]

    try:
        outcomes = train()
    except KeyboardInterrupt:
        return each(Status.INTERRUPTED, "interrupted")
    except RunBusyError as exc:
        return each(Status.FAILED, str(exc), busy=True)
    except ConfigError as exc:
        return each(Status.FAILED, str(exc))
    except ResultsWriteError as exc:
        return each(Status.FAILED, str(exc), write_failed=True)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            return each(Status.FAILED, f"{type(exc).__name__}: {exc}")
        where = exc.filename or Path(results_dir) / name / run_ids[0]
        return each(Status.FAILED, str(cannot_write(where, exc)), write_failed=True)
    except Exception as exc:  # recorded in its summary.json; the sweep goes on
        return each(Status.FAILED, f"{type(exc).__name__}: {exc}")
    return [
        PointResult(run_id, Status(outcome.summary.status or Status.FAILED), outcome.summary.error)
        for run_id, outcome in zip(run_ids, outcomes, strict=True)
    ]


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
