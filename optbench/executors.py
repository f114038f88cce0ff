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
import queue as queue_module
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.errors import OptbenchError
from optbench.results import RunDir, Status


@dataclass
class PointResult:
    run_id: str
    status: Status
    error: str | None = None


# Progress messages from workers: (kind, run_id, *values).
Message = tuple[Any, ...]


class _QueueReporter:
    """A TrainingObserver that forwards progress to the sweep's display, a few times a second."""

    def __init__(self, messages: Any, run_id: str) -> None:
        self.messages, self.run_id, self._last = messages, run_id, 0.0

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        self.messages.put(("epoch", self.run_id, epoch, num_batches))

    def batch_finished(self, batch: int, loss: float | None) -> None:
        now = time.monotonic()
        if now - self._last > 0.25:
            self._last = now
            self.messages.put(("batch", self.run_id, batch, loss))

    def epoch_finished(self, row: dict[str, Any]) -> None:
        self.messages.put(("row", self.run_id, row["epoch"], row["train_loss"]))


def train_point(
    config: dict[str, Any], results_dir: str, display: Any | None = None
) -> PointResult:
    """Run one sweep point to the end (resuming it if it was interrupted) and say how it went."""
    from optbench.config import validate_config
    from optbench.plan import make_plan
    from optbench.runner import run_plan
    from optbench.train import SilentObserver

    plan = make_plan(validate_config(config))
    try:
        outcome = run_plan(plan, results_dir, resume=True, display=display or SilentObserver())
    except KeyboardInterrupt:
        return PointResult(plan.run_id, Status.INTERRUPTED, "interrupted")
    except OptbenchError as exc:
        return PointResult(plan.run_id, Status.FAILED, str(exc))
    except Exception as exc:  # recorded in its summary.json; the sweep goes on
        return PointResult(plan.run_id, Status.FAILED, f"{type(exc).__name__}: {exc}")
    summary = outcome.summary
    return PointResult(
        plan.run_id, Status(summary.get("status", Status.FAILED)), summary.get("error")
    )


# --------------------------------------------------------------------------- local processes

_worker_messages: Any = None


def _init_worker(threads: int, messages: Any) -> None:
    """Split the cores between workers and make SIGTERM stop a run like Ctrl-C does."""
    import torch

    global _worker_messages
    _worker_messages = messages
    torch.set_num_threads(threads)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _run_in_worker(run_id: str, config: dict[str, Any], results_dir: str) -> PointResult:
    _worker_messages.put(("start", run_id, os.getpid()))
    return train_point(config, results_dir, _QueueReporter(_worker_messages, run_id))


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
    """Run (run_id, config) points on `workers` processes; a dead worker fails only its runs."""
    cores = default_workers()
    threads = max(1, cores // workers)
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    remaining = list(points)
    while remaining:
        started: dict[str, int] = {}
        finished: set[str] = set()
        pool = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(threads, messages)
        )
        try:
            futures = {
                pool.submit(_run_in_worker, run_id, config, results_dir): run_id
                for run_id, config in remaining
            }
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for message in _drain(messages):
                    if message[0] == "start":
                        started[message[1]] = message[2]
                    on_message(message)
                for future in done:
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        continue
                    finished.add(result.run_id)
                    on_result(result)
        except KeyboardInterrupt:
            for pid in started.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        lost = [run_id for run_id in started if run_id not in finished]
        for run_id in lost:  # a worker died under these (killed, out of memory): record, go on
            on_result(PointResult(run_id, Status.FAILED, "the worker process running it died"))
        remaining = [(r, c) for r, c in remaining if r not in finished and r not in started]


def _drain(messages: Any) -> Iterator[Message]:
    while True:
        try:
            yield messages.get_nowait()
        except queue_module.Empty:
            return


# --------------------------------------------------------------------------- Ray


def _train_on_ray_node(config: dict[str, Any]) -> dict[str, Any]:
    """Ray task: train in a scratch folder on the node and return the run's files."""
    with tempfile.TemporaryDirectory(prefix="optbench-ray-") as scratch:
        result = train_point(config, scratch)
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
    refs = {task.remote(config): run_id for run_id, config in points}
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
