"""Where sweep runs execute: worker processes on this machine, or tasks on a Ray cluster.

Both run the very same `run_plan`; only the transport differs. Local workers write their run
folders themselves (with checkpoints, so an interrupted sweep resumes mid-run). Ray tasks
train in a scratch folder on whichever node runs them and send the files back; the driver
writes them, so the cluster needs no shared filesystem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

from optbench.core.byvalue import with_objects, without_objects
from optbench.core.errors import ConfigError, ResultsWriteError
from optbench.experiment.train import Observers, SilentObserver
from optbench.storage.results import (
    DISK_FULL,
    RunBusyError,
    RunDir,
    Status,
    cannot_write,
    create_run_dir,
    write_atomic,
)


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


class _PipeReporter(SilentObserver):
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


# --------------------------------------------------------------------------- local processes


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
        sync_every = 0.0 if stop is None else TINY_SYNC_SECONDS
        while True:
            run_id, config, results_dir, threads, *watch = connection.recv()
            connection.send(("start", run_id, os.getpid()))
            reporter = _PipeReporter(connection.send, run_id, stop)
            options = {"sync_every": sync_every, "threads": threads}
            result = train_point(run_id, config, results_dir, reporter, *watch, **options)
            connection.send(("result", result))
    except (KeyboardInterrupt, EOFError, OSError):
        pass  # stopped, or the driver hung up; a run in flight has recorded itself
    finally:
        if stop is not None:
            connection.close()


# A run in the driver that lasts longer than this is no tiny run: the rest go to processes.
TINY_RUN_SECONDS = 1.0
# A tiny run fsyncs one epoch's files per this many seconds (storage/results.py SyncPolicy).
TINY_SYNC_SECONDS = 1.0


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


# How a worker process's idle torch threads wait: asleep, not spinning. Each run keeps its own
# thread count (plan.run_threads), so N workers may run N x that many threads on the cores;
# OpenMP's default spin-wait then starves the runs (20-100x slower measured on 2 cores).
WORKER_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}


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


def default_workers() -> int:
    """The CPU cores this process may use: one single-threaded-ish run per core."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


class _Pending:
    """Points taken one at a time, pulled from their iterator only when a worker can start one
    (so `optbench tune` asks Optuna for a trial then, knowing every result told so far)."""

    def __init__(self, points: Iterable[tuple[Any, ...]]) -> None:
        self._points, self._next, self._done = iter(points), None, False

    def __bool__(self) -> bool:  # there may be more
        return self._next is not None or not self._done

    def peek(self) -> bool:
        """Whether there is another point, pulling it when none is waiting."""
        if self._next is None and not self._done:
            self._next = next(self._points, None)
            self._done = self._next is None
        return self._next is not None

    def pop(self) -> tuple[Any, ...]:
        self.peek()
        point, self._next = self._next, None
        assert point is not None, "pop() after peek() said there was none"
        return point


def run_local(
    points: Iterable[tuple[Any, ...]],
    results_dir: str,
    workers: int,
    on_message: Callable[[Message], None],
    on_result: Callable[[PointResult], None],
) -> None:
    """Run (run_id, config[, watch]) points on `workers` processes; `points` may be a lazy
    iterator, pulled only when a worker is free (see _Pending).

    A worker that dies reports only the run it held as died (sweeps/reruns.py trains it again);
    a fresh process takes its place, and the runs on the other workers go on untouched.

    Runs start in a thread of the driver, one at a time, while they are tiny: worker processes
    start only once a run lasts longer than TINY_RUN_SECONDS, or once parallel workers would
    save more CPU time than their start-up costs (_TinyRuns). The run the driver holds then
    finishes there and processes take the rest.
    """
    from optbench.experiment.plan import TORCH_DEFAULT_THREADS as threads

    context = multiprocessing.get_context("spawn")
    tiny = _TinyRuns(workers, len(points) if isinstance(points, Sized) else None)
    todo = _Pending(points)
    pool: list[_Worker] = []
    retired: list[_Worker] = []  # told to exit, to be joined
    local: _Worker | None = None  # the driver's thread, while runs are tiny
    spread = False  # runs proved not tiny: worker processes take the points

    def hand_out(worker: _Worker) -> None:
        worker.run_id, config, *watch = todo.pop()
        if worker is local:
            tiny.started(worker.process)
        with contextlib.suppress(OSError):  # it has just died: its death fails the point
            shipped = with_objects(config)  # Python objects it names, pickled by value
            worker.connection.send((worker.run_id, shipped, results_dir, threads, *watch))

    def start(in_process: bool) -> _Worker:
        ours, theirs = context.Pipe()
        if in_process:  # the thread uses `theirs` and closes it when it ends
            process: Any = _InProcess(theirs)
            process.start()
        else:
            process = context.Process(target=_worker, args=(theirs,))
            with _worker_environment():
                process.start()
            theirs.close()  # the child has its own copy
        pool.append(_Worker(process, ours))
        return pool[-1]

    try:
        while todo or pool:
            if not spread and not pool and todo.peek():
                local = start(in_process=True)
                hand_out(local)
            busy = [w for w in pool if w is not local or w.run_id is not None]
            while spread and len(busy) < workers and todo.peek():
                busy.append(start(in_process=False))
                hand_out(busy[-1])
            if not pool:  # the points ran out
                continue
            tiny_so_far = not spread and local in pool and local.run_id is not None
            wait(
                [w.connection for w in pool] + [w.process.sentinel for w in pool if w is not local],
                timeout=0.05 if tiny_so_far else None,
            )
            if tiny_so_far:
                spread = not tiny.still_tiny(local.process)
            for worker in list(pool):
                gone = not worker.process.is_alive()  # checked first: all it sent is readable
                messages = []
                try:
                    while worker.connection.poll():
                        messages.append(worker.connection.recv())
                except (EOFError, OSError):  # only the pipe's errors say the worker is gone:
                    gone = True  # one from on_result (a full disk) ends the sweep, below
                for message in messages:
                    if message[0] == "result":
                        worker.run_id = None
                        if worker is local:
                            tiny.ended(worker.process)
                        on_result(message[1])
                    else:
                        on_message(message)
                if gone:
                    worker.process.join()
                    worker.connection.close()
                    pool.remove(worker)
                    if worker.run_id is not None:
                        error = _death(worker.process.exitcode)
                        on_result(PointResult(worker.run_id, Status.FAILED, error, died=True))
                elif worker.run_id is None and not (worker is local and spread) and todo.peek():
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
        _join_all(pool + retired)


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


# --------------------------------------------------------------------------- Ray


# Left out of the config's folder when it is shipped: caches and results, rebuilt or sent back.
SHIP_EXCLUDES = [".git", "__pycache__", "optbench-tensors", "results", "*.lock"]
SHIPPED_FILES = "optbench-ray-files"  # a node's cache of data files by sha256, in its temp dir


@dataclass(frozen=True)
class ShippedFile:
    """A data file the config names, sent through Ray's object store and written on the node
    under its sha256 (once per node), keeping its name (the dataset's name)."""

    name: str
    sha256: str
    content: Any  # a Ray ObjectRef to the file's bytes

    def place(self) -> str:
        """The file on this node, written on first use; its path."""
        import ray

        path = Path(tempfile.gettempdir()) / SHIPPED_FILES / self.sha256 / self.name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, ray.get(self.content))
        return str(path)


def _train_on_ray_node(
    run_id: str,
    config: dict[str, Any],
    data_file: ShippedFile | None,
    threads: int,
    *watch: Callable[[], Any],
) -> dict[str, Any]:
    """Ray task: train in a scratch folder on the node and return the run's files. The config's
    folder, when shipped as Ray's working_dir, is this process's working directory: its modules
    are made importable as anchor_to_folder makes them on the driver."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    if data_file is not None:
        config = {**config, "data": {**config["data"], "dataset": data_file.place()}}
    with tempfile.TemporaryDirectory(prefix="optbench-ray-") as scratch:
        result = train_point(run_id, config, scratch, None, *watch, threads=threads)
        folder = next(Path(scratch).glob(f"*/{result.run_id}"), None)
        files = {}
        if folder is not None:
            files = {
                n: (folder / n).read_bytes() for n in RunDir.RESULT_FILES if (folder / n).exists()
            }
    return {"result": result, "files": files}


class _Shipper:
    """What a point needs on a node besides optbench: the config's folder (its modules), sent
    as Ray's runtime_env working_dir, and a data file the config names, sent by content once
    per file and rewritten to a path inside that folder's copy where it lies in it."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder.resolve() if folder is not None else None
        self._sent: dict[str, ShippedFile] = {}

    def runtime_env(self) -> dict[str, Any]:
        """For ray.init: a Ray instance this process did not start keeps its own."""
        if self.folder is None:
            return {}
        return {"working_dir": str(self.folder), "excludes": SHIP_EXCLUDES}

    def point(self, config: dict[str, Any]) -> tuple[dict[str, Any], ShippedFile | None]:
        """The config as the node reads it, and the data file to place there (if any)."""
        import ray

        from optbench.core.config import is_data_file

        dataset = (config.get("data") or {}).get("dataset")
        if not (isinstance(dataset, str) and is_data_file(dataset) and Path(dataset).is_file()):
            return config, None
        path = Path(dataset).resolve()
        if self.folder is not None and path.is_relative_to(self.folder):
            relative = str(path.relative_to(self.folder))  # the node's copy: its working dir
            return {**config, "data": {**config["data"], "dataset": relative}}, None
        if dataset not in self._sent:
            content = path.read_bytes()
            digest = hashlib.sha256(content).hexdigest()
            self._sent[dataset] = ShippedFile(path.name, digest, ray.put(content))
        return config, self._sent[dataset]


def run_ray(
    points: Iterable[tuple[Any, ...]],
    address: str | None,
    workers: int,
    write_files: Callable[[str, dict[str, bytes], str | None], None],
    on_result: Callable[[PointResult], None],
    folder: Path | None = None,
) -> None:
    """Run points as Ray tasks (one CPU each) and write what they send back on this machine.

    Points are taken from `points` as the cluster has CPUs for them (it may be a lazy iterator,
    see _Pending), so no more tasks wait in Ray's queue than it can start. `folder` (the
    config's) and the data files the points name are shipped to the nodes (_Shipper), so a
    cluster of other machines needs neither copied by hand."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'optbench[ray]'") from None
    # Ray uploads a working_dir for a whole job only, at init: into a Ray instance already
    # started here (library use) the data file alone is sent.
    shipper = _Shipper(None if ray.is_initialized() else folder)
    if not ray.is_initialized():
        options: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
        options["runtime_env"] = shipper.runtime_env()
        if not address:
            options.update(num_cpus=workers, include_dashboard=False)
        try:
            ray.init(address=address or None, **options)
        except Exception as exc:  # unreachable, or a folder over Ray's upload limit
            raise ConfigError(
                f"cannot connect to Ray at {address or 'a local instance'}: {exc}"
            ) from None
    from optbench.experiment.plan import TORCH_DEFAULT_THREADS as threads

    task = ray.remote(num_cpus=1, max_retries=0)(_train_on_ray_node)
    slots = max(1, int(ray.cluster_resources().get("CPU", workers)))
    todo = _Pending(points)
    refs: dict[Any, str] = {}
    names: dict[str, str | None] = {}  # run-id -> its config's name: its folder
    try:
        while refs or todo:
            while len(refs) < slots and todo.peek():
                run_id, config, *watch = todo.pop()
                shipped = shipper.point(with_objects(config))  # objects pickled by value
                refs[task.remote(run_id, *shipped, threads, *watch)] = run_id
                names[run_id] = config.get("name")
            if not refs:
                continue
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            for ref in ready:
                run_id = refs.pop(ref)
                try:
                    payload = ray.get(ref)
                except Exception as exc:  # the task itself died (node lost, OOM)
                    error = f"Ray task failed: {exc}"
                    on_result(PointResult(run_id, Status.FAILED, error, died=True))
                    continue
                write_files(run_id, payload["files"], names.pop(run_id, None))
                on_result(payload["result"])
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise


# --------------------------------------------------------------------------- the interface

EXECUTORS = ("local", "ray")  # the names --executor takes
Point = tuple[Any, ...]  # (run_id, config[, watch]): what an executor trains
OnMessage = Callable[[Message], None]
OnResult = Callable[[PointResult], None]


class Executor(Protocol):
    """Where a sweep's or a tune's points train: `run` trains every point of `points` (a list,
    or a lazy iterator pulled only when a worker is free), hands progress messages to
    `on_message` and each point's PointResult to `on_result` as it ends."""

    def run(self, points: Iterable[Point], on_message: OnMessage, on_result: OnResult) -> None:
        """Train the points; returns when all have ended (KeyboardInterrupt passes through)."""


@dataclass(frozen=True)
class LocalExecutor:
    """Worker processes on this machine (run_local); they write their run folders themselves."""

    results_dir: Path
    workers: int

    def run(self, points: Iterable[Point], on_message: OnMessage, on_result: OnResult) -> None:
        workers = self.workers
        if isinstance(points, Sized):  # no more processes than points
            workers = min(workers, max(1, len(points)))
        run_local(points, str(self.results_dir), workers, on_message, on_result)


@dataclass(frozen=True)
class RayExecutor:
    """Tasks on a Ray cluster (run_ray); the files each sends back are written here, into
    results_dir/<name>/<run-id>/ (name: the point's config's, else `name`), so the cluster
    needs no shared filesystem."""

    results_dir: Path
    name: str
    workers: int
    address: str | None = None
    folder: Path | None = None  # the config's, shipped to the nodes (see _Shipper)

    def write_files(self, run_id: str, files: dict[str, bytes], name: str | None = None) -> None:
        """`name`: the run's config's (several tunes may share one run, `optbench benchmark`)."""
        run = create_run_dir(self.results_dir, name or self.name, run_id)
        for file_name, content in files.items():
            write_atomic(run.path / file_name, content)

    def run(self, points: Iterable[Point], on_message: OnMessage, on_result: OnResult) -> None:
        run_ray(points, self.address, self.workers, self.write_files, on_result, self.folder)


def make_executor(
    kind: str, workers: int | None, address: str | None, results_dir: str | Path, name: str
) -> Executor:
    """The executor `optbench sweep` and `optbench tune` train on: `kind` local or ray, with
    `workers` (None: one per CPU core, default_workers) and, for Ray, the cluster's `address`
    (None: a local Ray instance). ConfigError naming --executor or --workers on bad input."""
    if kind not in EXECUTORS:
        raise ConfigError("--executor", f"unknown executor '{kind}'; valid: {', '.join(EXECUTORS)}")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ConfigError("--workers", f"must be at least 1, got {workers}")
    if kind == "local":
        return LocalExecutor(Path(results_dir), workers)
    from optbench.core.config import config_folder

    return RayExecutor(Path(results_dir), name, workers, address, config_folder())
