"""Results on disk: results/<name>/<run-id>/{config.yaml, epochs.csv, summary.json}.

Every file is written to a temporary file in the same folder, fsynced and renamed into place,
so a reader (or a sweep deciding what is finished) sees the old file or the new one, never half.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import yaml

from optbench.errors import OptbenchError

EPOCH_COLUMNS = [
    "epoch",
    "train_loss",
    "test_loss",
    "test_accuracy",
    "lr",
    "seconds",
    "eval_seconds",
]
FINISHED = {"completed", "diverged"}


# Fault injection for the crash tests: "checkpoint.pt:2" SIGKILLs this process during the 2nd
# write of checkpoint.pt, after the temporary file is complete and before it is renamed.
_KILL_DURING_WRITE = os.environ.get("OPTBENCH_KILL_DURING_WRITE", "")
_writes: dict[str, int] = {}
_UMASK = os.umask(0o022)  # read the process umask (and put it back): new files honour it
os.umask(_UMASK)


def _maybe_die_mid_write(name: str) -> None:
    target, _, count = _KILL_DURING_WRITE.partition(":")
    if target != name:
        return
    _writes[name] = _writes.get(name, 0) + 1
    if str(_writes[name]) == count:
        os.kill(os.getpid(), signal.SIGKILL)


class ResultsWriteError(OptbenchError):
    """A results file could not be written (disk full, permissions); the old file is intact."""


def write_atomic(path: Path, content: str | bytes | Callable[[BinaryIO], None]) -> None:
    """Replace `path` with `content` all at once: temp file in the same folder, fsync, rename.

    `content` is text, bytes, or a function that writes into the open file (torch.save), so
    large objects go to disk without an extra copy in memory. A reader sees the old file or the
    new one, never a part; on any failure (full disk, interrupt) the temporary file is removed
    and the old file stays as it was.
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
            os.fsync(handle.fileno())
        if _KILL_DURING_WRITE:
            _maybe_die_mid_write(path.name)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise ResultsWriteError(
            f"cannot write {path}: {exc.strerror or exc}; the previous version is kept"
        ) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def epochs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=EPOCH_COLUMNS)


class RunDir:
    """One run's folder and the files in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def read_summary(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.summary_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise OptbenchError(f"cannot read {self.summary_path}: {exc}") from None

    def write_config(self, resolved: dict[str, Any]) -> None:
        text = yaml.safe_dump(resolved, sort_keys=False, default_flow_style=None)
        write_atomic(self.path / "config.yaml", text)

    def write_epochs(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        epochs_frame(rows).to_csv(buffer, index=False)
        write_atomic(self.path / "epochs.csv", buffer.getvalue())

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def remove_partial_files(self) -> None:
        """Delete temporary files a killed writer left behind (only the lock holder calls this)."""
        for leftover in self.path.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)

    def clear(self, keep: tuple[str, ...] = ("lock",)) -> None:
        """Remove the run's files (for --force), keeping the lock we hold."""
        for entry in self.path.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_atomic(self.summary_path, json.dumps(summary, indent=2, allow_nan=True) + "\n")


def create_run_dir(results_dir: str | Path, name: str, run_id: str) -> RunDir:
    """results/<name>/<run-id>/, created if needed, with one clear sentence when it cannot be."""
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise OptbenchError(f"results directory {results_dir} is a file, not a folder")
    run = RunDir(results_dir / name / run_id)
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptbenchError(f"cannot create {run.path}: {exc.strerror or exc}") from None
    return run
