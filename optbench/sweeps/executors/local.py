"""Worker processes on this machine: the local executor. Each worker writes its run folders
itself, with checkpoints, so an interrupted sweep resumes mid-run; tiny runs train in a thread
of the driver until they prove not tiny (see run_local)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from optbench.core.byvalue import with_objects
from optbench.storage.results import Status
from optbench.sweeps.executors.base import (
    TINY_SAVE_SECONDS,
    OnMessage,
    OnResult,
    Pending,
    PipeReporter,
    Point,
    PointResult,
    check_workers,
    train_point,
)
from optbench.sweeps.openmp import WORKER_ENVIRONMENT


def _worker(connection: Connection, stop: threading.Event | None = None) -> None:
    """A sweep worker: trains the points the driver sends, one at a time, until it hangs up.

    Each worker talks to the driver over its own pipe and shares no queue or lock with the
    others, so one that dies (killed, out of memory) cannot wedge or take down the rest. The
    same loop runs in a thread of the driver (`_InProcess`, with `stop`) for tiny runs. Each
    run sets torch's threads to its own (plan.run_threads): never split by the pool's size,
    which would make its numbers depend on how many runs share the machine.
    """

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        if stop is None:
            signal.signal(signal.SIGTERM, interrupt)  # SIGTERM stops a run like Ctrl-C does
        save_every = 0.0 if stop is None else TINY_SAVE_SECONDS
        while True:
            run_id, config, results_dir, threads, *watch = connection.recv()
            connection.send(("start", run_id, os.getpid()))
            reporter = PipeReporter(connection.send, run_id, stop)
            options = {"save_every": save_every, "threads": threads}
            result = train_point(run_id, config, results_dir, reporter, *watch, **options)
            connection.send(("result", result))
    except (KeyboardInterrupt, EOFError, OSError):
        pass  # stopped, or the driver hung up; a run in flight has recorded itself
    finally:
        if stop is not None:
            connection.close()


# A run in the driver that lasts longer than this is no tiny run: the rest go to processes.
TINY_RUN_SECONDS = 1.0


class _InProcess:
    """A worker that is a thread of the driver, for tiny runs: it starts at once and imports
    nothing (a worker process pays seconds of Python start-up and `import torch`, more than a
    sweep of tiny runs trains). Quacks like the multiprocessing.Process run_local drives."""

    sentinel = None  # nothing to wait on but its pipe, which it closes when it ends
    exitcode = 0

    def __init__(self, connection: Connection) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_worker, args=(connection, self._stop), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def terminate(self) -> None:
        self._stop.set()  # the run in flight stops at its next batch, resumably

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def cpu_seconds(self) -> float:
        """CPU seconds its thread has used (wall seconds where the platform cannot tell): what
        its runs cost, however busy the machine is."""
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))
        except (AttributeError, OSError, TypeError):
            return time.monotonic()


@contextlib.contextmanager
def _worker_environment() -> Iterator[None]:
    """WORKER_ENVIRONMENT for the processes started inside (a variable the user set wins)."""
    added = {k: v for k, v in WORKER_ENVIRONMENT.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _startup_seconds() -> float:
    """What starting a worker process costs, estimated by what this process has spent in CPU
    so far (Python, `import torch`, planning): a worker pays the same before its first run."""
    return min(max(time.process_time(), 1.0), 10.0)


class _TinyRuns:
    """Whether the driver's thread should go on training the points itself (see run_local).

    Worker processes pay off when the CPU time they would save (the runs still to go, at the
    driver's CPU seconds per run, less the share one worker would train anyway) exceeds what
    starting them costs. For a stream of points of unknown length (a tune), the runs to go are
    taken to be those done so far: rent until the rent would have bought a worker."""

    def __init__(self, workers: int, total: int | None) -> None:
        self.share_saved = 1 - 1 / workers
        self.total, self.startup = total, _startup_seconds()
        self.handed = self.finished = 0
        self.cpu = self.since = self.cpu_since = 0.0

    def started(self, local: _InProcess) -> None:
        self.handed += 1
        self.since, self.cpu_since = time.monotonic(), local.cpu_seconds()

    def ended(self, local: _InProcess) -> None:
        self.finished += 1
        self.cpu += local.cpu_seconds() - self.cpu_since

    def still_tiny(self, local: _InProcess) -> bool:
        if time.monotonic() - self.since > TINY_RUN_SECONDS:
            return False
        current = local.cpu_seconds() - self.cpu_since
        if self.total is None:
            to_go = self.cpu + current
        else:
            per_run = self.cpu / self.finished if self.finished else current
            to_go = per_run * (self.total - self.handed) + max(0.0, per_run - current)
        return to_go * self.share_saved <= self.startup


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


def run_local(
    points: Iterable[Point],
    results_dir: str,
    workers: int,
    on_message: OnMessage,
    on_result: OnResult,
) -> None:
    """Run (run_id, config[, watch]) points on `workers` processes; `points` may be a lazy
    iterator, pulled only when a worker is free (see Pending).

    A worker that dies reports only the run it held as died (sweeps/reruns.py trains it again);
    a fresh process takes its place, and the runs on the other workers go on untouched.

    Runs start in a thread of the driver, one at a time, while they are tiny: worker processes
    start only once a run lasts longer than TINY_RUN_SECONDS, or once parallel workers would
    save more CPU time than their start-up costs (_TinyRuns). The run the driver holds then
    finishes there and processes take the rest.
    """
    _LocalPool(points, results_dir, workers, on_message, on_result).run()


class _LocalPool:
    """run_local's state: the workers, the points to go, and whether runs have proved not tiny
    (`spread`: worker processes take the points). One method per step of its loop."""

    def __init__(
        self,
        points: Iterable[Point],
        results_dir: str,
        workers: int,
        on_message: OnMessage,
        on_result: OnResult,
    ) -> None:
        from optbench.experiment.plan import TORCH_DEFAULT_THREADS

        self.results_dir, self.workers, self.threads = results_dir, workers, TORCH_DEFAULT_THREADS
        self.on_message, self.on_result = on_message, on_result
        self.context = multiprocessing.get_context("spawn")
        self.tiny = _TinyRuns(workers, len(points) if isinstance(points, Sized) else None)
        self.todo = Pending(points)
        self.pool: list[_Worker] = []
        self.retired: list[_Worker] = []  # told to exit, to be joined
        self.local: _Worker | None = None  # the driver's thread, while runs are tiny
        self.spread = False  # runs proved not tiny: worker processes take the points

    def run(self) -> None:
        try:
            while self.todo or self.pool:
                self.start_workers()
                if not self.pool:  # the points ran out
                    continue
                self.wait_for_news()
                for worker in list(self.pool):
                    self.serve(worker)
        finally:
            self.stop()

    def start_workers(self) -> None:
        """While runs may be tiny, the driver's thread takes the first point; once they proved
        not, worker processes start until `workers` of them hold a point."""
        if not self.spread and not self.pool and self.todo.peek():
            self.local = self.start(in_process=True)
            self.hand_out(self.local)
        busy = [w for w in self.pool if w is not self.local or w.run_id is not None]
        while self.spread and len(busy) < self.workers and self.todo.peek():
            busy.append(self.start(in_process=False))
            self.hand_out(busy[-1])

    def start(self, in_process: bool) -> _Worker:
        """A new worker in the pool: a thread of the driver, or a spawned process."""
        ours, theirs = self.context.Pipe()
        if in_process:  # the thread uses `theirs` and closes it when it ends
            process: Any = _InProcess(theirs)
            process.start()
        else:
            process = self.context.Process(target=_worker, args=(theirs,))
            with _worker_environment():
                process.start()
            theirs.close()  # the child has its own copy
        self.pool.append(_Worker(process, ours))
        return self.pool[-1]

    def hand_out(self, worker: _Worker) -> None:
        """Send the worker the next point."""
        worker.run_id, config, *watch = self.todo.pop()
        if worker is self.local:
            self.tiny.started(worker.process)
        with contextlib.suppress(OSError):  # it has just died: its death fails the point
            shipped = with_objects(config)  # Python objects it names, pickled by value
            message = (worker.run_id, shipped, self.results_dir, self.threads, *watch)
            worker.connection.send(message)

    def wait_for_news(self) -> None:
        """Block until a worker sends or dies; while the driver's thread trains a run that may
        be tiny, wake often to judge whether it still is."""
        local = self.local
        tiny_so_far = not self.spread and local in self.pool and local.run_id is not None
        wait(
            [w.connection for w in self.pool]
            + [w.process.sentinel for w in self.pool if w is not local],
            timeout=0.05 if tiny_so_far else None,
        )
        if tiny_so_far:
            self.spread = not self.tiny.still_tiny(local.process)

    def serve(self, worker: _Worker) -> None:
        """Pass on what the worker sent; then bury it if it died, give it the next point, or
        let it exit when there is none for it."""
        gone, messages = self.read(worker)
        for message in messages:
            self.deliver(worker, message)
        if gone:
            self.bury(worker)
        elif (
            worker.run_id is None
            and not (worker is self.local and self.spread)
            and self.todo.peek()
        ):
            self.hand_out(worker)
        elif worker.run_id is None:  # nothing left to give it
            self.retire(worker)

    def read(self, worker: _Worker) -> tuple[bool, list[Any]]:
        """Whether the worker is gone, and every message it sent."""
        gone = not worker.process.is_alive()  # checked first: all it sent is readable
        messages = []
        try:
            while worker.connection.poll():
                messages.append(worker.connection.recv())
        except (EOFError, OSError):  # only the pipe's errors say the worker is gone:
            gone = True  # one from on_result (a full disk) ends the sweep, in deliver
        return gone, messages

    def deliver(self, worker: _Worker, message: Any) -> None:
        if message[0] == "result":
            worker.run_id = None
            if worker is self.local:
                self.tiny.ended(worker.process)
            self.on_result(message[1])
        else:
            self.on_message(message)

    def bury(self, worker: _Worker) -> None:
        """A worker that died: out of the pool, its point failed (it resumes when trained
        again); a fresh process takes the next point."""
        worker.process.join()
        worker.connection.close()
        self.pool.remove(worker)
        if worker.run_id is not None:
            error = _death(worker.process.exitcode)
            self.on_result(PointResult(worker.run_id, Status.FAILED, error, died=True))

    def retire(self, worker: _Worker) -> None:
        """Nothing left to give it: it may exit now (joined at the end)."""
        worker.connection.close()
        self.pool.remove(worker)
        self.retired.append(worker)

    def stop(self) -> None:
        for worker in self.pool:  # only after Ctrl-C or an error here: stop their runs resumably
            worker.process.terminate()
        for worker in self.pool + self.retired:
            worker.connection.close()  # an idle worker reads the end of the pipe and exits
        _join_all(self.pool + self.retired)


# How long the workers get to stop their runs resumably once told to; then they are killed.
STOP_SECONDS = 30.0


def _join_all(workers: list[_Worker]) -> None:
    """Wait for the workers to end, killing a process that has not after STOP_SECONDS: a
    driver never waits forever on one (its run resumes from its last checkpoint)."""
    deadline = time.monotonic() + STOP_SECONDS
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive() and not isinstance(worker.process, _InProcess):
            worker.process.kill()  # a thread (a daemon) cannot be killed: it ends with us
            worker.process.join()


@dataclass(frozen=True)
class LocalExecutor:
    """Worker processes on this machine (`workers` of them; default: one per CPU core). Each
    writes its run folders itself, with checkpoints."""

    results_dir: Path
    workers: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "workers", check_workers(self.workers))

    @property
    def reruns_main_script(self) -> bool:
        """Spawned worker processes import the main script again (see api._guarded_main)."""
        return self.workers > 1  # type: ignore[operator]

    def run(self, points: Iterable[Point], on_message: OnMessage, on_result: OnResult) -> None:
        workers = int(self.workers or 1)
        if isinstance(points, Sized):  # no more processes than points
            workers = min(workers, max(1, len(points)))
        run_local(points, str(self.results_dir), workers, on_message, on_result)


EXECUTOR = LocalExecutor  # registered as `local` (executors/__init__.py)
