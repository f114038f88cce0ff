"""Optuna as a tune uses it, kept in one place so the driver speaks only of trials and budgets.

Optuna is imported here and only when a tune runs (`optbench` starts without it). This module
opens a storage (an RDB URL with Optuna's heartbeats, or a journal file whose appends are whole
records, recovered by `recover_journal` after a failed or killed write), builds the config's
samplers, pruners and distributions, and says which trials are stale (their owner process gone,
or their heartbeat stopped: asked again), which count against the budget, and which is best.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from optbench.core.config import Distribution
from optbench.core.errors import ConfigError, ResultsWriteError
from optbench.storage.results import cannot_write

JOURNAL_FILE = "optuna-journal.log"  # the default storage, next to the runs
# Trial user attributes (what the Optuna dashboard shows next to each trial).
RUN_ID, STATUS, EPOCHS, SECONDS, OWNER = "run_id", "status", "epochs", "seconds", "owner"
NOT_COUNTED = "not_counted"  # why a trial does not count against the budget (its retry does)
RETRY_OF = "retry_of"  # on a retry: the number of the trial it asks again (that one is not counted)
RETRY_WHY = "retry_why"  # on a retry of a trial Optuna failed itself (stale heartbeat): why


def import_optuna() -> Any:
    """Optuna, quiet, imported only when a tune runs; a clear refusal where it is missing."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("optbench tune needs Optuna: pip install 'optbench[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# A storage URL is Optuna's RDBStorage, with Optuna's heartbeat: the driver records one for
# each trial in flight every HEARTBEAT_SECONDS, and a RUNNING trial with none for GRACE_SECONDS
# is dead wherever it ran (another host's included) and is asked again. Optuna's journal
# storage has no heartbeat: there a trial's owner (host, pid) tells (see owner_alive).
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120


def open_storage(spec: str) -> Any:
    """An Optuna storage URL (sqlite:///..., postgresql://...) or the path of a journal file."""
    optuna = import_optuna()
    try:
        if "://" in spec:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    spec,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                    heartbeat_stale_trial_callback=_retry_stale,
                )
        return optuna.storages.JournalStorage(_journal_backend(spec))
    except ResultsWriteError:
        raise
    except Exception as exc:
        raise ConfigError(f"--storage: cannot open Optuna storage '{spec}': {exc}") from None


def _retry_stale(study: Any, trial: Any) -> None:
    """Optuna's heartbeat_stale_trial_callback: a trial whose heartbeat stopped (failed by
    `optuna.storages.fail_stale_trials`) is asked again with its parameters, as Optuna's
    RetryFailedTrialCallback does; the failed trial, finished already, cannot take a
    NOT_COUNTED attribute, so its retry's RETRY_OF is what leaves it uncounted (counted_trials)."""
    why = f"no heartbeat for {GRACE_SECONDS} s"
    study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number, RETRY_WHY: why})


def _journal_backend(path: str) -> Any:
    """Optuna's journal file, appended to so that it is never left unreadable.

    Optuna appends each record under its lock, but a write that fails part-way (a full disk)
    leaves the record's first bytes at the end of the file, and so does a process killed
    mid-append; the next record is then glued to them and every later read fails with a
    JSONDecodeError. Here, as a database treats its log, an append first drops a torn last
    record (under the same lock, so no other writer is mid-append) and a failed append is cut
    back to where it started, then raised as a ResultsWriteError naming the journal."""
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    class RecoveringJournalFile(JournalFileBackend):
        def __init__(self, file_path: str) -> None:
            self.lock = JournalFileSymlinkLock(file_path)
            super().__init__(file_path, self.lock)

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
            path = Path(self._file_path)
            held = getattr(_fsyncs, "held", None)
            if held is None:
                with _held(self.lock, self._file_path):
                    _append_whole(path, text.encode("utf-8"))
                return
            if path not in held:  # the block's first append here: locked until it ends
                _acquire(self.lock, self._file_path)
                held[path] = self.lock
            _append_whole(path, text.encode("utf-8"), sync=False)

    try:
        return RecoveringJournalFile(path)
    except OSError as exc:
        raise cannot_write(path, exc) from None


_fsyncs = threading.local()  # .held: the journals appended to within one_fsync(), their locks


@contextlib.contextmanager
def one_fsync() -> Iterator[None]:
    """The journal appends of the block (a trial told: its epochs reported, its attributes and
    its state, some 24 records) made under one hold of each journal's lock and fsynced once at
    its end, not each: every append is still whole and in the file at once, so a killed
    process loses none, and a power loss at most the block's (a trial not told is asked
    again). Another process appending to the journal waits for the block's end."""
    if getattr(_fsyncs, "held", None) is not None:  # already inside one
        yield
        return
    _fsyncs.held = held = {}
    try:
        yield
    finally:
        _fsyncs.held = None
        failure = None
        for path, lock in held.items():
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                failure = failure or cannot_write(path, exc)
            finally:
                lock.release()
        if failure is not None:
            raise failure


@contextlib.contextmanager
def _held(lock: Any, path: str) -> Iterator[None]:
    """Optuna's journal lock (its public acquire/release), a full disk said as such."""
    _acquire(lock, path)
    try:
        yield
    finally:
        lock.release()


def _acquire(lock: Any, path: str) -> None:
    try:
        lock.acquire()
    except OSError as exc:
        raise cannot_write(path, exc) from None


def _complete_end(fd: int, size: int) -> int:
    """Where the last complete record (one ending in a newline) of the file ends."""
    end, chunk = size, 1 << 16
    while end > 0:
        start = max(0, end - chunk)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _append_whole(path: Path, record: bytes, sync: bool = True) -> None:
    """Append `record` to the journal after dropping a torn last record (fsynced unless `sync`
    is False: one_fsync); on a failed write, cut the file back to where the record began
    (caller holds the journal's lock)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        size = os.fstat(fd).st_size
        end = _complete_end(fd, size) if size and os.pread(fd, 1, size - 1) != b"\n" else size
        try:
            if end != size:
                os.ftruncate(fd, end)
            written = 0
            while written < len(record):
                written += os.pwrite(fd, record[written:], end + written)
            if sync:
                os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
            raise cannot_write(path, exc) from None
    finally:
        os.close(fd)


def recover_journal(path: str | Path) -> int:
    """Make a journal file readable again before a tune opens it, as a database recovers its
    log: every complete record is kept, from the first record that is torn or unreadable (a
    failed or killed append; an older optbench glued later records onto one) the rest is
    dropped, since Optuna's records build on the ones before them. Returns the bytes dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    from optuna.storages.journal import JournalFileSymlinkLock

    with _held(JournalFileSymlinkLock(str(path)), str(path)):
        keep = 0
        with path.open("rb") as handle:
            for line in handle:
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("torn")
                    json.loads(line)
                except ValueError:
                    break
                keep += len(line)
        dropped = path.stat().st_size - keep
        if dropped:
            try:
                os.truncate(path, keep)
            except OSError as exc:
                raise cannot_write(path, exc) from None
    return dropped


# How each of the config's PRUNER_NAMES and SAMPLER_NAMES (core/config.py) is built; a test
# checks both cover exactly those names.
_PRUNERS: dict[str, Callable[[Any, int], Any]] = {
    # Optuna's defaults: 5 trials before any is pruned.
    "median": lambda pruners, epochs: pruners.MedianPruner(),
    "hyperband": lambda pruners, epochs: pruners.HyperbandPruner(
        min_resource=1, max_resource=epochs
    ),
    "none": lambda pruners, epochs: pruners.NopPruner(),
}
_SAMPLERS: dict[str, Callable[[Any, dict[str, Distribution], int], Any]] = {
    # In-flight trials count as seen.
    "tpe": lambda samplers, space, seed: samplers.TPESampler(constant_liar=True, seed=seed),
    "random": lambda samplers, space, seed: samplers.RandomSampler(seed=seed),
    "grid": lambda samplers, space, seed: samplers.GridSampler(
        {k: d.bounds for k, d in space.items()}, seed=seed
    ),
    # Seeded: the sequence continues across restarts (its index is stored).
    "qmc": lambda samplers, space, seed: _qmc(samplers, space, seed),
}


def _qmc(samplers: Any, space: dict[str, Distribution], seed: int) -> Any:
    """Optuna's QMCSampler (scrambled Sobol) over the whole space from the first trial on,
    without its "experimental" warning on every study a benchmark opens.

    Optuna's own infers the space from the study's first finished trial and draws from its
    random sampler until there is one, so which trials were Sobol points depended on whether
    earlier ones had ended, and completed rather than diverged: trial k of a study is the k-th
    Sobol point here, however many trials are in flight (batched trials, several workers) and
    however they end, as AlgoPerf's quasi-random search fixes its points before any trains."""
    distributions = {key: make_distribution(dist) for key, dist in space.items()}

    class SpaceQMCSampler(samplers.QMCSampler):  # type: ignore[misc, name-defined]
        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return dict(distributions)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", import_optuna().exceptions.ExperimentalWarning)
        return SpaceQMCSampler(scramble=True, seed=seed, warn_independent_sampling=False)


def make_pruner(name: str, epochs: int) -> Any:
    """The config's pruner for runs of `epochs` epochs (Hyperband's largest resource)."""
    return _PRUNERS[name](import_optuna().pruners, epochs)


def make_sampler(name: str, space: dict[str, Distribution], seed: int) -> Any:
    """The config's sampler over `space`, seeded (a tune asks the same trials every time)."""
    return _SAMPLERS[name](import_optuna().samplers, space, seed)


def make_distribution(dist: Distribution) -> Any:
    """Optuna's distribution for one key of the config's space."""
    d = import_optuna().distributions
    low, high = dist.bounds[0], dist.bounds[-1]
    if dist.kind == "uniform":
        return d.FloatDistribution(low, high)
    if dist.kind == "log_uniform":
        return d.FloatDistribution(low, high, log=True)
    if dist.kind == "int_uniform":
        return d.IntDistribution(low, high)
    return d.CategoricalDistribution(dist.bounds)


# --------------------------------------------------------------------------- trials


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, Linux), to tell it from a later
    process that got the same pid; None where /proc cannot say."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()[19]


def trial_owner() -> dict[str, Any]:
    """This process, as recorded on the trials it asks (see owner_alive)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def owner_alive(owner: Any) -> bool:
    """Whether the process that asked a trial may still run it. One on another host cannot be
    checked from here: it is taken as alive (its own restart recovers it)."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return True
    if pid == os.getpid():
        return True
    start = _start_time(pid)
    if start is not None or owner.get("start") is not None:
        return start is not None and start == owner.get("start")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def counted_trials(trials: list[Any]) -> list[Any]:
    """The trials that count against the budget: not those marked NOT_COUNTED, nor a failed
    trial that another asks again (RETRY_OF; Optuna's fail_stale_trials fails them itself)."""
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    return [
        t
        for t in trials
        if not t.user_attrs.get(NOT_COUNTED)
        and not (t.state.name == "FAIL" and t.number in retried)
    ]


def asked_as(trial: Any, trials: list[Any]) -> int:
    """The number of the trial that first asked this one's point: a retry (RETRY_OF, after a
    killed worker or driver) stands where its point was first asked, as in an undisturbed tune."""
    numbers = {t.number: t for t in trials}
    number = trial.number
    while (origin := numbers[number].user_attrs.get(RETRY_OF)) in numbers:
        number = origin
    return number


def told_trials(trials: list[Any]) -> list[Any]:
    """The counted trials that have ended (not running, not waiting in the queue)."""
    return [t for t in counted_trials(trials) if t.state.is_finished()]


def best_trial(study: Any) -> Any:
    """The study's best trial, None while none has completed."""
    try:
        return study.best_trial
    except ValueError:  # no completed trial
        return None
