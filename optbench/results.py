"""Results on disk: results/<name>/<run-id>/{config.yaml, epochs.csv, summary.json}.

Every file is written to a temporary file in the same folder, fsynced and renamed into place,
so a reader (or a sweep deciding what is finished) sees the old file or the new one, never half.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

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


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` all at once (temp file + fsync + rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_atomic(self.summary_path, json.dumps(summary, indent=2, allow_nan=True) + "\n")


def prepare_run_dir(results_dir: str | Path, name: str, run_id: str, force: bool) -> RunDir:
    """Create results/<name>/<run-id>/, refusing to replace a finished run unless `force`."""
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise OptbenchError(f"results directory {results_dir} is a file, not a folder")
    run = RunDir(results_dir / name / run_id)
    summary = run.read_summary()
    if summary is not None and summary.get("status") in FINISHED and not force:
        raise OptbenchError(
            f"this run already finished ({summary.get('status')}) in {run.path}; "
            "pass --force to run it again"
        )
    if run.path.exists() and force:
        shutil.rmtree(run.path)
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptbenchError(f"cannot create {run.path}: {exc.strerror or exc}") from None
    return run
