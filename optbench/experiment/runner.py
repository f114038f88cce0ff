"""One experiment, end to end: config -> plan -> data -> run folder -> training -> summary."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from optbench.components.data import load_data
from optbench.core.errors import ResultsWriteError, RunExistsError
from optbench.core.metrics import METRICS, RANKABLE
from optbench.core.version import VERSION
from optbench.experiment.checkpoint import CheckpointFile, keep_weights
from optbench.experiment.loggers import RunLoggers, open_loggers
from optbench.experiment.plan import RunPlan
from optbench.experiment.train import (
    SilentObserver,
    StopTraining,
    TrainingObserver,
    TrainResult,
    completed_epochs,
    train,
)
from optbench.storage.records import Summary
from optbench.storage.results import (
    FINISHED,
    EpochSaves,
    RunDir,
    RunLock,
    Status,
    create_run_dir,
)


@dataclass
class RunOutcome:
    run_dir: Path
    summary: Summary
    already_finished: bool = False


def _best(rows: list[dict[str, Any]], key: str, highest: bool) -> tuple[Any, Any]:
    scored = [r for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    if not scored:
        return None, None
    best = (max if highest else min)(scored, key=lambda r: r[key])
    return best[key], best["epoch"]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to the run's for its training, then put back (a notebook's,
    or a sweep worker thread's driver, keeps its own)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hardware(device: torch.device) -> dict[str, Any]:
    """What a run trained on, for a benchmark's statement of its setup: the CPU's model and
    the cores the process may use, and the GPU's name where it trained on one."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    found: dict[str, Any] = {"cpu": cpu, "cpus": len(usable) if usable else os.cpu_count()}
    if device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
    return found


def summarize(
    plan: RunPlan,
    result: TrainResult | None,
    status: str,
    started: float,
    error: str | None,
    stopped: dict[str, Any] | None = None,
) -> Summary:
    """summary.json: status, final and best metrics, what ran where, and how long it took."""
    rows = result.rows if result else []
    last = rows[-1] if rows else {}
    best = {}
    for metric in METRICS:
        if metric.rankable and not (
            metric.sparse and all(r.get(metric.name) is None for r in rows)
        ):
            best[metric.name], best[f"{metric.name}_epoch"] = _best(
                rows, metric.name, metric.higher_is_better
            )
    return Summary(
        name=plan.name,
        run_id=plan.run_id,
        status=str(status),
        seed=plan.config.seed,
        device=str(plan.device),
        threads=plan.threads,
        epochs=plan.config.epochs,
        epochs_completed=completed_epochs(rows),
        steps_per_epoch=plan.steps_per_epoch,
        final={name: last.get(name) for name in RANKABLE if name in best},
        best=best,
        diverged_at=result.diverged_at if result else None,
        stopped_early=stopped,
        error=error,
        wall_seconds=round(time.time() - started, 3),
        started_at=dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(),
        versions={
            "optbench": VERSION,
            "torch": torch.__version__,
            "torchvision": metadata.version("torchvision"),
            "python": platform.python_version(),
        },
        hardware=hardware(plan.device),
    )


class _SaveEachEpoch:
    """Writes epochs.csv after every epoch (those `saves` says are due), so a crash keeps every
    finished epoch (those since the last write are trained again on resume)."""

    def __init__(
        self, run: RunDir, display: TrainingObserver, saves: EpochSaves | None = None
    ) -> None:
        self.run, self.display, self.rows = run, display, []
        self.saves = saves or EpochSaves()
        self.written = 0  # how many of the rows are on disk

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        self.display.epoch_started(epoch, num_batches)

    def batch_finished(self, batch: int, loss: float | None) -> None:
        self.display.batch_finished(batch, loss)

    def epoch_finished(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.saves.due(row["epoch"]):
            self.flush()
        self.display.epoch_finished(row)

    def flush(self) -> None:
        """The rows not written yet to epochs.csv (and a 2-D problem's path.csv, kept in step)."""
        if self.written == len(self.rows):
            return
        self.run.write_epochs(self.rows)
        if any("path" in row for row in self.rows):
            self.run.write_path(self.rows)
        self.written = len(self.rows)


def check_inputs(plan: RunPlan) -> None:
    """What would fail the run before any write: a missing dataset (its loggers were checked
    while planning)."""
    load_data(plan.data, plan.config.seed)


def claim_run(
    run: RunDir, plan: RunPlan, *, force: bool, resume: bool, save_every: float
) -> tuple[CheckpointFile, RunOutcome | None]:
    """The run folder readied for training (held under its RunLock by the caller): its
    checkpoint file, and the outcome to return instead of training when the run is finished
    and `resume` asks only for it. Raises RunExistsError for a run that would be overwritten."""
    earlier = run.read_summary()
    status = earlier.status if earlier else None
    saves = EpochSaves(save_every, last_epoch=plan.config.epochs)
    checkpoints = CheckpointFile(run.checkpoint_path, plan.run_id, saves)
    run.remove_partial_files()
    if force:
        run.clear()
    elif status in FINISHED:
        if resume:
            return checkpoints, RunOutcome(run.path, earlier or Summary(), already_finished=True)
        raise RunExistsError(run.path, str(status), resumable=False)
    elif checkpoints.exists() and not resume:
        raise RunExistsError(run.path, str(status or "no summary"), resumable=True)
    return checkpoints, None


def run_plan(
    plan: RunPlan,
    results_dir: str | Path,
    *,
    force: bool = False,
    resume: bool = False,
    detect_anomaly: bool = False,
    display: TrainingObserver | None = None,
    save_every: float = 0.0,
) -> RunOutcome:
    """Train a checked plan into results_dir/<name>/<run-id>/, reporting to `display` (the
    caller's observer: a live table, a progress bar; by default nothing). `save_every` > 0
    writes the epoch's files (checkpoint, epochs.csv) once per that many seconds (EpochSaves; a
    sweep's tiny runs), not every epoch.

    Nothing is written on bad input. A finished run is left alone (RunExistsError without
    `force`, returned as it is with `resume`); an interrupted one continues from its checkpoint
    with `resume`.
    """
    check_inputs(plan)  # refused before any write
    run = create_run_dir(results_dir, plan.name, plan.run_id)
    with RunLock(run):
        checkpoints, finished = claim_run(
            run, plan, force=force, resume=resume, save_every=save_every
        )
        if finished is not None:
            return finished
        return _train_in(run, plan, checkpoints, detect_anomaly, display or SilentObserver())


@dataclass
class StartedRun:
    """A run whose files are open: config and a `running` summary written, loggers open, and
    the observer that keeps epochs.csv current (its `rows`)."""

    run: RunDir
    plan: RunPlan
    checkpoints: CheckpointFile
    display: TrainingObserver
    loggers: RunLoggers
    observer: _SaveEachEpoch
    started: float


def start_run(
    run: RunDir, plan: RunPlan, checkpoints: CheckpointFile, display: TrainingObserver
) -> StartedRun:
    """Write the config and a `running` summary, open the loggers, announce the run."""
    run.write_config(plan.resolved)
    started = time.time()
    run.write_summary(summarize(plan, None, Status.RUNNING, started, None))
    title = f"{plan.name} / {plan.run_id}  ({plan.optimizer.info.name}, {plan.device})"
    display.run_started(title, plan.config.epochs)
    loggers = open_loggers(plan, run.path, display, resuming=checkpoints.exists())
    observer = _SaveEachEpoch(run, loggers.observer, checkpoints.saves)
    return StartedRun(run, plan, checkpoints, display, loggers, observer, started)


def end_run(
    started: StartedRun, result: TrainResult, stop: StopTraining | None = None
) -> RunOutcome:
    """The final summary after training ended (or was stopped on purpose by `stop`, a tuner's
    pruner: its finished epochs kept). The checkpoint is deleted only once the summary is on
    disk, so a write that fails (full disk) never costs the training done."""
    run, plan, checkpoints = started.run, started.plan, started.checkpoints
    error = stopped = None
    if stop is not None:
        result, error = TrainResult(status=stop.status, rows=started.observer.rows), stop.reason
        stopped = {"epoch": len(started.observer.rows), "reason": stop.reason}
    started.display.run_ended(str(result.status))
    started.observer.flush()  # the epochs on disk before the summary that says how it ended
    run.write_summary(summarize(plan, result, result.status, started.started, error, stopped))
    started.loggers.close(result.status)
    if result.status in FINISHED:  # nothing left to resume: the checkpoint only costs disk now
        if plan.data_spec.integer_inputs:  # a language model: sampled from (optbench.sample)
            keep_weights(checkpoints.path, run.weights_path)
        checkpoints.path.unlink(missing_ok=True)
    return RunOutcome(run.path, run.read_summary() or Summary())


def fail_run(started: StartedRun, exc: BaseException) -> None:
    """Record a run ended by `exc` (its finished epochs kept, the checkpoint left to resume)."""
    status, error = _failure(exc)
    failed = TrainResult(status=status, rows=started.observer.rows)
    with contextlib.suppress(ResultsWriteError):  # the first failure is the one to report
        started.observer.flush()
        started.run.write_summary(summarize(started.plan, failed, status, started.started, error))
    started.loggers.close(status)
    started.display.run_ended(str(status))


def _train_in(
    run: RunDir,
    plan: RunPlan,
    checkpoints: CheckpointFile,
    detect_anomaly: bool,
    display: TrainingObserver,
) -> RunOutcome:
    """Train with the run's files kept current."""
    started = start_run(run, plan, checkpoints, display)
    try:
        with torch_threads(plan.threads):
            result = train(plan, started.observer, checkpoints, detect_anomaly)
    except StopTraining as stop:  # ended on purpose by an observer (a tuner's pruner)
        return end_run(started, TrainResult(status=stop.status), stop)
    except BaseException as exc:
        fail_run(started, exc)
        raise
    return end_run(started, result)


def _failure(exc: BaseException) -> tuple[Status, str]:
    """The status and summary `error` for a run stopped by `exc`."""
    if isinstance(exc, KeyboardInterrupt):
        return Status.INTERRUPTED, "interrupted (Ctrl-C or SIGTERM)"
    if isinstance(exc, ResultsWriteError):
        return Status.FAILED, f"{exc} (the checkpoint is kept: --resume continues the run)"
    return Status.FAILED, f"{type(exc).__name__}: {exc}"
