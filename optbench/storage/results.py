"""Results on disk: results/<name>/<run-id>/{config.yaml, epochs.csv, summary.json}.

Every file is written to a temporary file in the same folder, fsynced and renamed into place,
so a reader (or a sweep deciding what is finished) sees the old file or the new one, never half.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import yaml

from optbench.core.errors import ConfigError, ResultsWriteError
from optbench.core.metrics import written_columns
from optbench.storage.records import Summary

if TYPE_CHECKING:  # pandas is imported where a frame is made: a tune's telling reads none
    import pandas as pd

# <results>/<name>/tune.json: what `optbench tune` (sweep/tune.py) reports per optimizer (its
# study, space, budget spent, best trial, trial and seed-rerun run-ids), read by compare
# --tuned and the report.
TUNE_FILE = "tune.json"
BENCHMARK_FILE = "benchmark.json"  # DIR/<suite>/ of `optbench benchmark`


class Status(str, enum.Enum):
    """A run's status in summary.json (and a sweep point's outcome). A str, so it is written and
    compared as its plain value."""

    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PRUNED = "pruned"  # stopped early by `optbench tune`'s pruner (sweep/tune.py); finished

    __hash__ = str.__hash__  # a Status and its plain value are one dict key

    def __str__(self) -> str:
        return self.value


# A finished run is never trained again: a sweep skips it, `run` refuses it without --force.
FINISHED = frozenset({Status.COMPLETED, Status.DIVERGED, Status.PRUNED})


_UMASK = os.umask(0o022)  # read the process umask (and put it back): new files honour it
os.umask(_UMASK)


# The errors that say the disk (or the user's quota) has no room: a failed write, not bad input.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def cannot_write(path: Path | str, exc: OSError, kept: bool = False) -> ResultsWriteError:
    """The one-line error for a results file that could not be written (exit 3)."""
    tail = "; the previous version is kept" if kept else ""
    return ResultsWriteError(f"cannot write {path}: {exc.strerror or exc}{tail}")


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: Path, content: str | bytes | Callable[[BinaryIO], None], *, sync: bool = True
) -> None:
    """Replace `path` with `content` all at once: temp file in the same folder, fsync, rename.

    `content` is text, bytes, or a function that writes into the open file (torch.save), so
    large objects go to disk without an extra copy in memory. A reader sees the old file or the
    new one, never a part; on any failure (full disk, interrupt) the temporary file is removed
    and the old file stays as it was. `sync=False` skips the fsyncs: the file still survives a
    killed process, not yet a power loss.
    """
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; others may share results
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        if sync:
            _fsync_folder(path.parent)  # the rename survives a power loss, not only a kill
    except OSError as exc:
        raise cannot_write(path, exc, kept=True) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


class EpochSaves:
    """Which epochs' files (checkpoint, epochs.csv, path.csv) are written.

    By default every epoch's. A sweep's tiny runs and a batch's trials, whose epochs last
    milliseconds, pass `interval` seconds: an epoch's files are written when that long has
    passed since the last written ones, and after the run's last epoch; the rows in between
    reach epochs.csv with the next write, or before the summary when the run ends earlier
    (pruned, diverged, interrupted). Writing them costs more than such an epoch (a checkpoint
    about 1.5 ms, an fsync 1-10 ms). A run killed meanwhile loses at most `interval` seconds:
    it resumes from its last checkpoint and trains the epochs since again, to the same numbers.
    Every file written is fsynced."""

    def __init__(self, interval: float = 0.0, last_epoch: int | None = None) -> None:
        self.interval, self.last_epoch = interval, last_epoch
        self.last = time.monotonic()  # when the last files were written
        self.epoch: int | None = None
        self.is_due = True

    def due(self, epoch: int) -> bool:
        """Whether this epoch's files are written; one decision per epoch for all of them."""
        if self.interval <= 0:
            return True
        if epoch != self.epoch:
            self.epoch, now = epoch, time.monotonic()
            self.is_due = now - self.last >= self.interval or epoch == self.last_epoch
            if self.is_due:
                self.last = now
        return self.is_due


def epochs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows, columns=written_columns(rows))


def epochs_csv(rows: list[dict[str, Any]]) -> str:
    """epochs.csv's text: `epochs_frame(rows).to_csv(index=False)`, byte for byte, written
    without pandas where every column holds only numbers and blanks (every run's rows do).
    A run rewrites the file after every epoch, and pandas took 2-3 ms of a small model's epoch.
    """
    columns = written_columns(rows)
    lines = [",".join(columns)]
    cells = [_csv_column([row.get(name) for row in rows]) for name in columns]
    if any(column is None for column in cells):  # text, bools, numpy integers...: pandas'
        return epochs_frame(rows).to_csv(index=False)
    lines.extend(",".join(row) for row in zip(*cells, strict=True))
    return "\n".join(lines) + "\n"


def _csv_column(values: list[Any]) -> list[str] | None:
    """A column's cells as pandas writes them: integers alone as integers; mixed with floats or
    blanks, as float64 (repr: `1.0`); None and NaN blank. None where a value is of another type
    (bool is an int to Python, not to pandas) or an integer beyond float64's exact ones."""
    if any(type(value) is int and abs(value) > 2**53 for value in values):
        return None
    if all(type(value) is int for value in values):
        return [str(value) for value in values]
    if not all(
        value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        for value in values
    ):
        return None
    return ["" if value is None or value != value else repr(float(value)) for value in values]


def epochs_records(text: str) -> list[dict[str, Any]] | None:
    """epochs.csv's rows as `pandas.read_csv(...).to_dict("records")` gives them (blanks as
    None), without pandas, for files of numbers and blanks (what `epochs_csv` writes for every
    run): a column of integers alone is int, any other number column float. None for a file of
    anything else (quoted text, words), which pandas reads."""
    lines = text.splitlines()
    if not lines:
        return None
    names = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:] if line]  # pandas skips blank lines
    if '"' in text or any(len(row) != len(names) for row in rows):
        return None
    columns = [_number_column([row[i] for row in rows]) for i in range(len(names))]
    if any(column is None for column in columns):
        return None
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _number_column(cells: list[str]) -> list[Any] | None:
    """A column's cells as pandas types them: all integers as int, else floats (a blank None,
    `nan`... as read_csv's NaN); None where a cell is not a number."""
    if any(_LONG_INTEGER.fullmatch(cell) for cell in cells):
        return None  # pandas reads it as an integer, not always a float
    if cells and all(_INTEGER.fullmatch(cell) for cell in cells):
        return [int(cell) for cell in cells]
    values: list[Any] = []
    for cell in cells:
        if cell == "":
            values.append(None)
        elif _FLOAT.fullmatch(cell):
            value = float(cell)
            values.append(None if value != value else value)
        else:
            return None
    return values


_INTEGER = re.compile(r"-?[0-9]{1,15}")  # exact as a float64 too
_LONG_INTEGER = re.compile(r"-?[0-9]{16,}")
_FLOAT = re.compile(r"-?(?:inf|nan|[0-9]+(?:\.[0-9]*)?(?:e[-+]?[0-9]+)?)")


class RunDir:
    """One run's folder and the files in it; the only place that knows their names."""

    CONFIG = "config.yaml"
    EPOCHS = "epochs.csv"
    SUMMARY = "summary.json"
    CHECKPOINT = "checkpoint.pt"
    WEIGHTS = "weights.pt"  # language models: the final weights, kept for optbench.sample
    LOCK = "lock"
    PATH = "path.csv"  # 2-D problems only: the parameters (u, v) after every step
    RESULT_FILES = (CONFIG, EPOCHS, SUMMARY)  # what a finished run consists of
    TENSORBOARD = "tensorboard"  # the tensorboard logger's event files (experiment/loggers/)

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def summary_path(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def epochs_path(self) -> Path:
        return self.path / self.EPOCHS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def weights_path(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def lock_path(self) -> Path:
        return self.path / self.LOCK

    def read_epochs(self) -> pd.DataFrame:
        """epochs.csv as a frame; an empty one when the run wrote none yet."""
        import pandas as pd

        return pd.read_csv(self.epochs_path) if self.epochs_path.exists() else pd.DataFrame()

    def epoch_rows(self) -> list[dict[str, Any]]:
        """epochs.csv's rows, blanks as None (`read_epochs` as records); none while it is not
        written (or gone meanwhile). Read without pandas where it holds numbers alone."""
        try:
            text = self.epochs_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        records = epochs_records(text)
        if records is not None:
            return records
        import pandas as pd

        try:
            frame = self.read_epochs()
        except (FileNotFoundError, pd.errors.EmptyDataError):  # gone meanwhile, or empty
            return []
        return [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict("records")
        ]

    def read_summary(self) -> Summary | None:
        """summary.json as a record; None when the run wrote none yet."""
        try:
            return Summary.from_dict(json.loads(self.summary_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self.summary_path}: {exc}") from None

    def write_config(self, resolved: dict[str, Any]) -> None:
        text = yaml.safe_dump(resolved, sort_keys=False, default_flow_style=None)
        write_atomic(self.config_path, text)

    def write_epochs(self, rows: list[dict[str, Any]]) -> None:
        write_atomic(self.epochs_path, epochs_csv(rows))

    @property
    def path_path(self) -> Path:
        return self.path / self.PATH

    def write_path(self, rows: list[dict[str, Any]]) -> None:
        """path.csv from the rows' `path` points (step 0 is the start), rewritten whole each
        epoch like epochs.csv, so it always matches the epochs on disk."""
        lines = ["epoch,step,u,v"]
        step = 0
        for row in rows:
            for u, v in row.get("path") or ():
                lines.append(f"{row['epoch'] if step else 0},{step},{u!r},{v!r}")
                step += 1
        write_atomic(self.path_path, "\n".join(lines) + "\n")

    def read_path(self) -> pd.DataFrame | None:
        """path.csv (epoch, step, u, v), or None for a run that records none."""
        import pandas as pd

        try:
            return pd.read_csv(self.path_path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self.path_path}: {exc}") from None

    def remove_partial_files(self) -> None:
        """Delete temporary files a killed writer left behind (only the lock holder calls this)."""
        for leftover in self.path.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove the run's files (for --force), keeping the lock we hold."""
        for entry in self.path.iterdir():
            if entry.name == self.LOCK:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def write_summary(self, summary: Summary) -> None:
        text = json.dumps(summary.to_dict(), indent=2, allow_nan=True) + "\n"
        write_atomic(self.summary_path, text)

    def is_locked(self) -> bool:
        """Whether a live process holds this run's lock (a `running` summary without one is
        stale: its process was killed)."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also drops the shared lock we may have taken
        return False


class RunBusyError(ConfigError):
    """The run is being trained by another live process (its lock is held)."""


class RunLock:
    """An exclusive flock on <run>/lock holding the owner's pid.

    The kernel drops the lock when its process dies, however it dies, so a lock left by a
    killed process is simply taken over; a live owner is named in the error.
    """

    def __init__(self, run: RunDir) -> None:
        self.path = run.lock_path
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunBusyError(
                f"run {self.path.parent} is being trained by process {owner}; "
                "wait for it or stop it first"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            os.close(fd)
            raise cannot_write(self.path, exc) from None
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


@dataclass(frozen=True)
class Run:
    """A run as it lies on disk, read once: its folder, summary.json, config.yaml (the resolved
    config) and epochs.csv as a DataFrame. What `optbench.run` and `optbench.load` return, and
    what compare and the report rank."""

    dir: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    epochs: pd.DataFrame

    @property
    def record(self) -> Summary:
        """summary.json read as its typed record (what the library's readers use)."""
        return Summary.from_dict(self.summary)

    @property
    def run_id(self) -> str:
        return self.record.run_id or self.dir.name

    @property
    def status(self) -> str:
        """summary.json's status: completed, diverged, failed, interrupted, pruned or running."""
        return self.record.status or "unknown"


def read_run(path: str | Path) -> Run:
    """Read the run in `path` (a folder with summary.json); ConfigError when it is not one."""
    path = Path(path)
    run = RunDir(path)
    if not run.summary_path.is_file():
        raise ConfigError(f"{path} is not a run folder (it has no {RunDir.SUMMARY})")
    try:
        summary = json.loads(run.summary_path.read_text(encoding="utf-8"))
        config_file = run.config_path
        config = (
            yaml.safe_load(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        )
        epochs = run.read_epochs()
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the run in {path}: {exc}") from None
    for name, value in ((RunDir.SUMMARY, summary), (RunDir.CONFIG, config)):
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"cannot read the run in {path}: {name} is not a mapping")
    return Run(path, summary, config or {}, epochs)


def check_results_dir(results_dir: Path) -> None:
    """A results directory that is a file, or a symlink to nothing, refused in one line."""
    if results_dir.exists() and not results_dir.is_dir():
        raise ConfigError(f"results directory {results_dir} is a file, not a folder")
    if results_dir.is_symlink() and not results_dir.exists():
        target = os.readlink(results_dir)
        raise ConfigError(
            f"results directory {results_dir} is a symbolic link to {target}, which does not exist"
        )


def create_run_dir(results_dir: str | Path, name: str, run_id: str) -> RunDir:
    """results/<name>/<run-id>/, created if needed, with one clear sentence when it cannot be."""
    results_dir = Path(results_dir)
    check_results_dir(results_dir)
    run = RunDir(results_dir / name / run_id)
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise cannot_write(run.path, exc) from None
        raise ConfigError(f"cannot create {run.path}: {exc.strerror or exc}") from None
    return run
