"""The shared tensor file: a dataset's uint8 tensors written once per data root, under a
lock, and memory-mapped by every process (parallel sweep workers share one copy)."""

from __future__ import annotations

import contextlib
import contextvars
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
CONTENT_PREFIX = "content-"  # an imported dataset's tensor file: content-<tensor_digest>.pt


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
        if not _write_tensor_file(path, train, test):  # a read-only root
            return train, test
        del train, test
        for stale in folder.glob(f"{name}-*.pt"):
            if stale != path:
                stale.unlink(missing_ok=True)
        return _map_tensor_file(path) or read()


@functools.lru_cache(maxsize=4)
def _held_inputs(dataset: InMemoryDataset) -> list[torch.Tensor]:
    """A dataset's input tensors: its named columns (ColumnsDataset), or its one tensor."""
    columns = getattr(dataset, "columns", None)
    return [dataset.inputs] if columns is None else [columns[key] for key in sorted(columns)]


def tensor_digest(train: InMemoryDataset, test: InMemoryDataset) -> str:
    """A hash of a dataset's tensors (dtype, shape, bytes), as a data file's bytes are hashed:
    a dataset function or class that reads a file then changes the run-id when the file does.
    A pair mapped from a content-keyed tensor file carries the digest it is filed under; others
    are hashed once per loaded pair (`bind._load_cached` returns the same objects)."""
    known = getattr(train, "content_digest", None)
    if known is not None and getattr(test, "content_digest", None) == known:
        return known
    digest = hashlib.sha256()
    for tensor in (*_held_inputs(train), train.targets, *_held_inputs(test), test.targets):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{flat.dtype}{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


_reuse_planned: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "reuse_planned_tensors", default=False
)


@contextlib.contextmanager
def reusing_planned_tensors() -> Iterator[None]:
    """Planning inside this (a sweep's worker, after the driver planned the same point) maps
    an imported dataset's tensor file by its pointer instead of calling the user's code."""
    token = _reuse_planned.set(True)
    try:
        yield
    finally:
        _reuse_planned.reset(token)


def content_tensor_file(root: str, digest: str) -> Path:
    """Where an imported dataset's tensors are shared: named by their content hash alone, so
    every spelling and every process that loads the same tensors maps one file."""
    return Path(root) / TENSOR_FOLDER / f"{CONTENT_PREFIX}{digest}.pt"


def through_content_file(
    name: str, root: str, key: str, read: Callable[[], tuple[InMemoryDataset, InMemoryDataset]]
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Load an imported dataset (a function, a class, a .pt/.npz file) through the shared
    tensor file of its content hash, as through_tensor_file does for the built-in ones.

    `read` is called, the tensors hashed (tensor_digest) and written once to root/
    optbench-tensors/content-<digest>.pt, which every process then maps; a pointer
    <name>-<key>.digest records which file the call `key` (the code's identity, its options
    and seed) gave. A sweep's worker, inside reusing_planned_tensors, maps the file the
    pointer names without calling the user's code again: the driver has just called it while
    planning, and the worker's run-id (which holds the digest) must still match the driver's.
    Everywhere else the code is called each time, so a file it reads may change between runs.
    Where root is not writable, each process keeps a private copy."""
    folder = Path(root) / TENSOR_FOLDER
    pointer = folder / f"{name}-{key}.digest"
    with exclusive(lock_path(root, f"{name}-{key}")):  # not the class loader's download lock
        if _reuse_planned.get():
            with contextlib.suppress(OSError):
                mapped = _map_tensor_file(content_tensor_file(root, pointer.read_text().strip()))
                if mapped is not None:
                    return mapped
        train, test = read()
        digest = tensor_digest(train, test)
        if hasattr(train, "columns"):  # named columns are not filed: read in each process
            return train, test
        path = content_tensor_file(root, digest)
        if _map_tensor_file(path) is None and not _write_tensor_file(path, train, test):
            return train, test
        try:
            write_atomic(pointer, digest.encode())
        except (OSError, ConfigError):
            return train, test
        return _map_tensor_file(path) or (train, test)


def _write_tensor_file(path: Path, train: InMemoryDataset, test: InMemoryDataset) -> bool:
    """Write a train/test pair as a tensor file (atomically); False where it cannot be."""
    tensors = {
        "format": TENSOR_FORMAT,
        "train_inputs": train.inputs,
        "train_targets": train.targets,
        "test_inputs": test.inputs,
        "test_targets": test.targets,
        "layout": train.layout,  # how imported arrays were laid out, for `validate`
    }
    try:
        write_atomic(path, functools.partial(torch.save, tensors))
    except (OSError, ConfigError):  # a read-only root
        return False
    return True


def _map_tensor_file(path: Path) -> tuple[InMemoryDataset, InMemoryDataset] | None:
    """The train and test sets in a tensor file, memory-mapped; None where the file is missing,
    damaged or of another format than TENSOR_FORMAT."""
    try:
        saved = torch.load(path, mmap=True, weights_only=True)
        if saved["format"] != TENSOR_FORMAT:
            return None
        layout = saved.get("layout")
        train = InMemoryDataset(saved["train_inputs"], saved["train_targets"], layout=layout)
        test = InMemoryDataset(saved["test_inputs"], saved["test_targets"], layout=layout)
    except Exception:  # missing, not a zip, not optbench's dict of tensors
        return None
    if path.name.startswith(CONTENT_PREFIX):  # its name is its content's hash
        train.content_digest = test.content_digest = path.stem[len(CONTENT_PREFIX) :]
    return train, test
