"""Where sweep runs execute: worker processes on this machine, or tasks on a Ray cluster.

Both run the very same `run_plan`; only the transport differs. Local workers write their run
folders themselves (with checkpoints, so an interrupted sweep resumes mid-run). Ray tasks
train in a scratch folder on whichever node runs them and send the files back; the driver
writes them, so the cluster needs no shared filesystem.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from optbench.errors import OptbenchError
from optbench.storage.results import RunDir, Status


@dataclass
class PointResult:
    run_id: str
    status: Status
    error: str | None = None


# Progress messages from workers: (kind, run_id, *values).
Message = tuple[Any, ...]


class _PipeReporter:
    """A TrainingObserver that sends progress to the sweep's display, a few times a second."""

    def __init__(self, send: Callable[[Message], None], run_id: str) -> None:
        self.send, self.run_id, self._last = send, run_id, 0.0

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        self.send(("epoch", self.run_id, epoch, num_batches))

    def batch_finished(self, batch: int, loss: float | None) -> None:
        now = time.monotonic()
        if now - self._last > 0.25:
            self._last = now
            self.send(("batch", self.run_id, batch, loss))

    def epoch_finished(self, row: dict[str, Any]) -> None:
        self.send(("row", self.run_id, row["epoch"], row["train_loss"]))


def train_point(
    run_id: str, config: dict[str, Any], results_dir: str, display: Any | None = None
) -> PointResult:
    """Run one sweep point to the end (resuming it if it was interrupted) and say how it went.

    `run_id` is what the driver planned; a worker on another machine whose code or packages
    differ plans another id, and that point fails instead of landing under the wrong id.
    """
    from optbench.experiment.config import validate_config
    from optbench.experiment.plan import make_plan
    from optbench.experiment.runner import run_plan
    from optbench.experiment.train import SilentObserver

    try:
        plan = make_plan(validate_config(config))
    except OptbenchError as exc:
        return PointResult(run_id, Status.FAILED, f"cannot plan it here: {exc}")
    if plan.run_id != run_id:
        return PointResult(
            run_id,
            Status.FAILED,
            f"this machine plans it as {plan.run_id}: its code or packages differ from the "
            "driver's",
        )
    try:
        outcome = run_plan(plan, results_dir, resume=True, display=display or SilentObserver())
    except KeyboardInterrupt:
        return PointResult(run_id, Status.INTERRUPTED, "interrupted")
    except OptbenchError as exc:
        return PointResult(run_id, Status.FAILED, str(exc))
    except Exception as exc:  # recorded in its summary.json; the sweep goes on
        return PointResult(run_id, Status.FAILED, f"{type(exc).__name__}: {exc}")
    summary = outcome.summary
    return PointResult(run_id, Status(summary.get("status", Status.FAILED)), summary.get("error"))


# --------------------------------------------------------------------------- local processes


def _worker(threads: int, connection: Connection) -> None:
    """A sweep worker: trains the points the driver sends, one at a time, until it hangs up.

    Each worker talks to the driver over its own pipe and shares no queue or lock with the
    others, so one that dies (killed, out of memory) cannot wedge or take down the rest.
    """

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, interrupt)  # SIGTERM stops a run like Ctrl-C does
        import torch

        torch.set_num_threads(threads)  # the cores are split between the workers
        while True:
            run_id, config, results_dir = connection.recv()
            connection.send(("start", run_id, os.getpid()))
            reporter = _PipeReporter(connection.send, run_id)
            connection.send(("result", train_point(run_id, config, results_dir, reporter)))
    except (KeyboardInterrupt, EOFError, OSError):
        pass  # stopped, or the driver hung up; a run in flight has recorded itself


@dataclass
class _Worker:
    """A worker process as the driver sees it: its pipe, and the point it was last given."""

    process: Any  # a multiprocessing Process
    connection: Connection
    run_id: str | None = None  # the point it holds


def _death(exitcode: int | None) -> str:
    """The error recorded for the run of a worker that died: how it died, so a user can tell
    the kernel's out-of-memory killer (SIGKILL) from a crash."""
    how = f"exit status {exitcode}"
    if exitcode is not None and exitcode < 0:
        try:
            how = f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"killed by signal {-exitcode}"
    return f"the worker process running it died ({how})"


def default_workers() -> int:
    """The CPU cores this process may use: one single-threaded-ish run per core."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def run_local(
    points: list[tuple[str, dict[str, Any]]],
    results_dir: str,
    workers: int,
    on_message: Callable[[Message], None],
    on_result: Callable[[PointResult], None],
) -> None:
    """Run (run_id, config) points on `workers` processes.

    A worker that dies fails only the run it held; a fresh process takes its place, and the
    runs on the other workers go on untouched.
    """
    threads = max(1, default_workers() // workers)
    context = multiprocessing.get_context("spawn")
    todo = list(reversed(points))  # popped from the end: in order
    pool: list[_Worker] = []
    retired: list[_Worker] = []  # told to exit, to be joined

    def hand_out(worker: _Worker) -> None:
        worker.run_id, config = todo.pop()
        with contextlib.suppress(OSError):  # it has just died: its death fails the point
            worker.connection.send((worker.run_id, config, results_dir))

    try:
        while todo or pool:
            while todo and len(pool) < workers:
                ours, theirs = context.Pipe()
                process = context.Process(target=_worker, args=(threads, theirs))
                process.start()
                theirs.close()
                pool.append(_Worker(process, ours))
                hand_out(pool[-1])
            wait([w.connection for w in pool] + [w.process.sentinel for w in pool])
            for worker in list(pool):
                gone = not worker.process.is_alive()  # checked first: all it sent is readable
                try:
                    while worker.connection.poll():
                        message = worker.connection.recv()
                        if message[0] == "result":
                            worker.run_id = None
                            on_result(message[1])
                        else:
                            on_message(message)
                except (EOFError, OSError):
                    gone = True
                if gone:
                    worker.process.join()
                    worker.connection.close()
                    pool.remove(worker)
                    if worker.run_id is not None:
                        error = _death(worker.process.exitcode)
                        on_result(PointResult(worker.run_id, Status.FAILED, error))
                elif worker.run_id is None and todo:
                    hand_out(worker)
                elif worker.run_id is None:  # nothing left to give it: it may exit now
                    worker.connection.close()
                    pool.remove(worker)
                    retired.append(worker)
    finally:
        for worker in pool:  # only after Ctrl-C or an error here: stop their runs resumably
            worker.process.terminate()
        for worker in pool + retired:
            worker.connection.close()  # an idle worker reads the end of the pipe and exits
            worker.process.join()


# --------------------------------------------------------------------------- Ray


def _train_on_ray_node(run_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """Ray task: train in a scratch folder on the node and return the run's files."""
    with tempfile.TemporaryDirectory(prefix="optbench-ray-") as scratch:
        result = train_point(run_id, config, scratch)
        folder = next(Path(scratch).glob(f"*/{result.run_id}"), None)
        files = {}
        if folder is not None:
            files = {
                n: (folder / n).read_bytes() for n in RunDir.RESULT_FILES if (folder / n).exists()
            }
    return {"result": result, "files": files}


def run_ray(
    points: list[tuple[str, dict[str, Any]]],
    address: str | None,
    workers: int,
    write_files: Callable[[str, dict[str, bytes]], None],
    on_result: Callable[[PointResult], None],
) -> None:
    """Run points as Ray tasks (one CPU each) and write what they send back on this machine."""
    try:
        import ray
    except ImportError:
        raise OptbenchError("--executor ray needs Ray: pip install 'optbench[ray]'") from None
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            else:
                ray.init(
                    num_cpus=workers,
                    include_dashboard=False,
                    logging_level="WARNING",
                    log_to_driver=False,
                )
        except Exception as exc:
            raise OptbenchError(
                f"cannot connect to Ray at {address or 'a local instance'}: {exc}"
            ) from None
    task = ray.remote(num_cpus=1, max_retries=0)(_train_on_ray_node)
    refs = {task.remote(run_id, config): run_id for run_id, config in points}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            for ref in ready:
                run_id = refs.pop(ref)
                try:
                    payload = ray.get(ref)
                except Exception as exc:  # the task itself died (node lost, OOM)
                    on_result(PointResult(run_id, Status.FAILED, f"Ray task failed: {exc}"))
                    continue
                write_files(run_id, payload["files"])
                on_result(payload["result"])
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
