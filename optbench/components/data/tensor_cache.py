"""The shared tensor file: a dataset's uint8 tensors written once per data root, under a
lock, and memory-mapped by every process (parallel sweep workers share one copy)."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from optbench.components.data.memory import InMemoryDataset
from optbench.core.errors import ConfigError
from optbench.storage.results import write_atomic

TENSOR_FOLDER = "optbench-tensors"
TENSOR_FORMAT = "optbench-tensors-2"  # in every tensor file; a file of another format is rebuilt


def lock_path(root: str, name: str) -> Path:
    """One lock per dataset and root, held while unpacking it and writing its tensor file."""
    return Path(root) / TENSOR_FOLDER / f"{name}.lock"


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[bool]:
    """Hold an exclusive flock on `lock` (created if need be), so one process writes the shared
    files while the others wait and then read them. Yields False, holding nothing, where the lock
    cannot be created (a read-only root): the writes that can happen there are atomic anyway."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the kernel drops it if the holder dies
        yield True
    finally:
        os.close(fd)


def _source_key(folder: Path) -> str:
    """Names, sizes and modification times of the dataset's files: a changed file, a new key."""
    stamps = sorted(
        f"{p.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}"
        for p in folder.rglob("*")
        if p.is_file() and (stat := p.stat())
    )
    return hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:16]


def through_tensor_file(
    name: str, root: str, source: Path, read: Callable[[], tuple[InMemoryDataset, InMemoryDataset]]
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Load a dataset's uint8 tensors from one file that every process memory-maps.

    Parallel sweep workers then share a single copy of the images in the page cache instead of
    each holding its own, and every load after the first skips torchvision's parsing. The file,
    root/optbench-tensors/<name>-<key>.pt, is keyed by the source files and written by one
    process under the dataset's lock while the others wait to map it; a damaged file or one of
    another format is rebuilt. Where root is not writable, each process keeps a private copy.
    A first download (`source` missing, `read` fetches it) happens under the same lock, so two
    workers on a fresh root never download into one folder at once: the second waits, then maps.
    """
    folder = Path(root) / TENSOR_FOLDER
    with exclusive(lock_path(root, name)) as locked:
        if source.is_dir():
            mapped = _map_tensor_file(folder / f"{name}-{_source_key(source)}.pt")
            if mapped is not None:
                return mapped
        if locked:  # what a writer killed mid-file left behind
            for leftover in folder.glob(f".{name}-*.tmp"):
                leftover.unlink(missing_ok=True)
        train, test = read()  # downloads first where the source is missing
        if not source.is_dir():  # a loader that keeps its files elsewhere: nothing to key on
            return train, test
        path = folder / f"{name}-{_source_key(source)}.pt"
        tensors = {
            "format": TENSOR_FORMAT,
            "train_inputs": train.inputs,
            "train_targets": train.targets,
            "test_inputs": test.inputs,
            "test_targets": test.targets,
        }
        try:
            write_atomic(path, functools.partial(torch.save, tensors))
        except (OSError, ConfigError):  # a read-only root
            return train, test
        del train, test, tensors
        for stale in folder.glob(f"{name}-*.pt"):
            if stale != path:
                stale.unlink(missing_ok=True)
        return _map_tensor_file(path) or read()


def _map_tensor_file(path: Path) -> tuple[InMemoryDataset, InMemoryDataset] | None:
    """The train and test sets in a tensor file, memory-mapped; None where the file is missing,
    damaged or of another format than TENSOR_FORMAT."""
    try:
        saved = torch.load(path, mmap=True, weights_only=True)
        if saved["format"] != TENSOR_FORMAT:
            return None
        return (
            InMemoryDataset(saved["train_inputs"], saved["train_targets"]),
            InMemoryDataset(saved["test_inputs"], saved["test_targets"]),
        )
    except Exception:  # missing, not a zip, not optbench's dict of tensors
        return None
