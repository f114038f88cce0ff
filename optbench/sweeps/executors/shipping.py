"""Sending a point to a machine that shares no filesystem with the driver, and its run's files
back: written once, for every executor whose workers train elsewhere (ray.py today).

The worker trains in a scratch folder and returns the run's result files; the driver writes
them under results_dir/<name>/<run-id>/. What a point needs besides optbench travels with it:
the config's folder (its modules; the transport copies it, as Ray's runtime_env working_dir
does) and a data file the config names, sent by content once per file (`put`, the transport's
way of storing bytes where workers can `fetch` them) and written once per machine.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.storage.results import RunDir, create_run_dir, write_atomic
from optbench.sweeps.executors.base import train_point

# Left out of the config's folder when it is shipped: caches and results, rebuilt or sent back.
SHIP_EXCLUDES = [".git", "__pycache__", "optbench-tensors", "results", "*.lock"]
# A machine's cache of shipped data files by sha256, in its temp dir.
SHIPPED_FILES = "optbench-shipped-files"


@dataclass(frozen=True)
class ShippedFile:
    """A data file the config names, stored by the transport (`content`, read back with
    `fetch`) and written on the worker's machine under its sha256 (once per machine), keeping
    its name (the dataset's name)."""

    name: str
    sha256: str
    content: Any  # the transport's handle on the file's bytes (a Ray ObjectRef)
    fetch: Callable[[Any], bytes]  # handle -> bytes, on the worker (ray.get)

    def place(self) -> str:
        """The file on this machine, written on first use; its path."""
        path = Path(tempfile.gettempdir()) / SHIPPED_FILES / self.sha256 / self.name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, self.fetch(self.content))
        return str(path)


class Shipper:
    """What a point needs on a worker besides optbench: the config's `folder` (shipped whole by
    the transport; its modules importable there), and a data file the config names, stored
    with `put` once per file, or rewritten to a path inside the folder's copy where it lies in
    it."""

    def __init__(self, folder: Path | None, put: Callable[[bytes], Any]) -> None:
        self.folder = folder.resolve() if folder is not None else None
        self.put = put
        self._sent: dict[str, ShippedFile] = {}

    def point(
        self, config: dict[str, Any], fetch: Callable[[Any], bytes]
    ) -> tuple[dict[str, Any], ShippedFile | None]:
        """The config as the worker reads it, and the data file to place there (if any)."""
        from optbench.core.config import is_data_file

        dataset = (config.get("data") or {}).get("dataset")
        if not (isinstance(dataset, str) and is_data_file(dataset) and Path(dataset).is_file()):
            return config, None
        path = Path(dataset).resolve()
        if self.folder is not None and path.is_relative_to(self.folder):
            relative = str(path.relative_to(self.folder))  # the worker's copy: its working dir
            return {**config, "data": {**config["data"], "dataset": relative}}, None
        if dataset not in self._sent:
            content = path.read_bytes()
            digest = hashlib.sha256(content).hexdigest()
            self._sent[dataset] = ShippedFile(path.name, digest, self.put(content), fetch)
        return config, self._sent[dataset]


def train_shipped(
    run_id: str,
    config: dict[str, Any],
    data_file: ShippedFile | None,
    threads: int,
    *watch: Callable[[], Any],
) -> dict[str, Any]:
    """On the worker: train in a scratch folder and return {"result", "runs"}: for each run it
    trained (a batch point's: each of its trials), its folder's name and result files by name.
    The config's folder, when shipped, is this process's working directory: its modules are
    made importable as anchor_to_folder makes them on the driver."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    if data_file is not None:
        config = {**config, "data": {**config["data"], "dataset": data_file.place()}}
    with tempfile.TemporaryDirectory(prefix="optbench-shipped-") as scratch:
        result = train_point(run_id, config, scratch, None, *watch, threads=threads)
        runs = {}
        for part in result.parts or [result]:
            folder = next(Path(scratch).glob(f"*/{part.run_id}"), None)
            if folder is not None:
                files = {
                    n: (folder / n).read_bytes()
                    for n in RunDir.RESULT_FILES
                    if (folder / n).exists()
                }
                runs[part.run_id] = (folder.parent.name, files)
    return {"result": result, "runs": runs}


def write_run_files(results_dir: Path, runs: dict[str, tuple[str, dict[str, bytes]]]) -> None:
    """On the driver: what train_shipped sent back, each run's files written into
    results_dir/<name>/<run-id>/ (`name`: the run's config's; several tunes may share one run,
    `optbench benchmark`)."""
    for run_id, (name, files) in runs.items():
        run = create_run_dir(results_dir, name, run_id)
        for file_name, content in files.items():
            write_atomic(run.path / file_name, content)
