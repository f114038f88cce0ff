"""Datasets, loaded once (through torchvision, a function or a tensor file) and kept in memory.

Images stay uint8 in memory (4x smaller than float32) and each batch is converted with the
very float ops of ToTensor + Normalize, so batches are bit-identical to the notebook pipeline.
`InMemoryDataset.__getitems__` lets torch's DataLoader fetch a whole batch by index, which keeps
DataLoader's exact shuffling (same generator, same permutation) without per-sample Python work.

Besides the registered datasets, `data.dataset` may be an import path to a torchvision-style
dataset class or to a function returning the train and test sets, or a .pt/.npz file of
tensors; these are read into tensors while planning, and their shape and classes read off them.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import hashlib
import inspect
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optbench.components.augment import make_augment
from optbench.components.registry import (
    bind_options,
    parameters_of,
    resolve_component,
    signature_defaults,
    summary,
)
from optbench.core.config import SYSTEM_DATA_DIR, DataConfig, is_data_file
from optbench.core.errors import ConfigError, did_you_mean
from optbench.core.registry import Registry, qualified_name
from optbench.storage.results import write_atomic


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data, without loading it."""

    input_shape: tuple[int, ...]
    num_classes: int | None  # None: regression with one output
    train_size: int

    @property
    def num_outputs(self) -> int:
        return self.num_classes or 1


class InMemoryDataset(torch.utils.data.Dataset):
    """Inputs and targets as whole tensors; batches are fetched by index in one operation."""

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        augment: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        self.inputs = inputs
        self.targets = targets
        # Applied to the batches __getitems__ fetches (training), not to `batches` (evaluation)
        self.augment = augment
        self._scale = inputs.dtype == torch.uint8
        self._mean = self._std = None
        if mean is not None and std is not None:
            shape = (-1,) + (1,) * (inputs.dim() - 2)
            self._mean = torch.as_tensor(mean, dtype=torch.float32).view(shape)
            self._std = torch.as_tensor(std, dtype=torch.float32).view(shape)

    def __len__(self) -> int:
        return len(self.targets)

    def to(self, device: torch.device) -> InMemoryDataset:
        moved = InMemoryDataset(
            self.inputs.to(device), self.targets.to(device), augment=self.augment
        )
        moved._scale = self._scale
        if self._mean is not None and self._std is not None:
            moved._mean, moved._std = self._mean.to(device), self._std.to(device)
        return moved

    def transform(self, inputs: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """uint8 -> float in [0, 1] -> normalized: the same ops as ToTensor then Normalize;
        with `augment` (and an augmentation), augmented before normalising."""
        if augment and self.augment is not None:
            inputs = self.augment(inputs, scale=self._scale)
        elif self._scale:
            inputs = inputs.to(torch.float32).div(255)
        if self._mean is not None:
            inputs = inputs.sub_(self._mean).div_(self._std)
        return inputs

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, device=self.targets.device)
        # index_select is several times cheaper than fancy indexing on a 4-D tensor
        return (
            self.transform(self.inputs.index_select(0, index), augment=True),
            self.targets.index_select(0, index),
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.__getitems__([index])
        return inputs[0], targets[0]

    def batches(self, batch_size: int):
        """Consecutive batches in order (evaluation): plain slicing, no sampler, no RNG."""
        for start in range(0, len(self), batch_size):
            end = start + batch_size
            yield self.transform(self.inputs[start:end]), self.targets[start:end]


def keep_batch(batch: Any) -> Any:
    """DataLoader collate_fn for datasets that already return whole batches."""
    return batch


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    spec: Callable[[dict[str, Any]], DataSpec] | None  # from the options; None: from the tensors
    load: Callable[..., tuple[InMemoryDataset, InMemoryDataset]]  # (root, download, **options)
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None  # default (mean, std)
    options: Callable[..., Any] | None = None  # the data section's own keys bind to its signature
    code_args: tuple[str, ...] = ()  # arguments of `options` that code passes, not the config
    check_options: Callable[[dict[str, Any]], None] | None = None  # limits beyond the types
    takes_seed: bool = False  # loaded with the run's seed (as option `seed`): data varies by seed
    code: dict[str, Any] = field(default_factory=dict)  # what identifies imported code or a file
    by_tensors: bool = False  # identified by the tensors it returns too (it may read any file)


DATASETS: Registry[DatasetInfo] = Registry("dataset")


# --------------------------------------------------------------------------- torchvision loading


def _missing(name: str, looked: list[Path], hint: str) -> ConfigError:
    places = " and ".join(str(p) for p in looked)
    return ConfigError(f"dataset {name} was not found in {places}; {hint}")


def _unpack_system_copy(folder: Path, system_dir: Path, files: list[str], lock: Path) -> bool:
    """Unpack Debian's gzipped IDX files into torchvision's raw folder; False if absent.

    One process unpacks while the others wait on the dataset's `lock`, so parallel workers on a
    fresh root unpack it once. Each file goes through a temporary name of its own and is renamed
    into place, so even unlocked no process reads or clobbers another's half-written file.
    """
    if not all((system_dir / f"{f}.gz").is_file() for f in files):
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _exclusive(lock) as locked:
            if locked:  # what an unpacker killed mid-file left behind
                for leftover in folder.glob(".*.tmp"):
                    leftover.unlink(missing_ok=True)
            for f in files:
                if not (folder / f).exists():
                    with gzip.open(system_dir / f"{f}.gz", "rb") as src:
                        write_atomic(folder / f, functools.partial(shutil.copyfileobj, src))
    except (OSError, ConfigError) as exc:  # write_atomic's errors included
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(
            f"cannot unpack {system_dir} into {folder}: {reason}; "
            "set data.root (or $OPTBENCH_DATA) to a writable folder"
        ) from None
    return True


TENSOR_FOLDER = "optbench-tensors"
TENSOR_FORMAT = "optbench-tensors-2"  # in every tensor file; a file of another format is rebuilt
CIFAR10_FOLDER = "cifar-10-batches-py"  # torchvision.datasets.CIFAR10.base_folder


def _lock_path(root: str, name: str) -> Path:
    """One lock per dataset and root, held while unpacking it and writing its tensor file."""
    return Path(root) / TENSOR_FOLDER / f"{name}.lock"


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[bool]:
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


def _through_tensor_file(
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
    with _exclusive(_lock_path(root, name)) as locked:
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


def _load_mnist_like(
    name: str, cls_name: str, debian_dir: str, root: str, download: bool
) -> tuple[InMemoryDataset, InMemoryDataset]:
    raw = Path(root) / cls_name / "raw"
    files = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    system_dir = SYSTEM_DATA_DIR / debian_dir
    have_files = all((raw / f).is_file() for f in files)
    lock = _lock_path(root, name)
    if not have_files and not download and not _unpack_system_copy(raw, system_dir, files, lock):
        raise _missing(
            name,
            [raw, system_dir],
            f"set data.download: true to fetch it, or install Debian's dataset-{debian_dir}",
        )

    def read() -> tuple[InMemoryDataset, InMemoryDataset]:
        import torchvision  # only when parsing: the tensor file spares its import (~0.5 s)

        cls = getattr(torchvision.datasets, cls_name)
        splits = []
        for train in (True, False):
            try:
                ds = cls(root, train=train, download=download)
            except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError...
                raise ConfigError(f"could not load {name} from {root}: {exc}") from None
            splits.append(InMemoryDataset(ds.data.unsqueeze(1).contiguous(), ds.targets.long()))
        return splits[0], splits[1]

    return _through_tensor_file(name, root, raw, read)


def _load_cifar10(root: str, download: bool) -> tuple[InMemoryDataset, InMemoryDataset]:
    folder = Path(root) / CIFAR10_FOLDER
    if not folder.is_dir() and not download:
        raise _missing(
            "cifar10",
            [folder],
            "set data.download: true to fetch it from www.cs.toronto.edu (needs internet)",
        )

    def read() -> tuple[InMemoryDataset, InMemoryDataset]:
        import torchvision

        splits = []
        for train in (True, False):
            try:
                ds = torchvision.datasets.CIFAR10(root, train=train, download=download)
            except Exception as exc:
                raise ConfigError(f"could not load cifar10 from {root}: {exc}") from None
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
            splits.append(InMemoryDataset(images, torch.as_tensor(ds.targets, dtype=torch.long)))
        return splits[0], splits[1]

    return _through_tensor_file("cifar10", root, folder, read)


def _register_torchvision() -> None:
    """cifar10, fashion_mnist and mnist; their sources are named, not imported (torchvision's
    import costs ~0.5 s), so `torchvision.datasets.CIFAR10` resolves to `cifar10`."""
    DATASETS.register(
        "cifar10",
        DatasetInfo(
            "cifar10",
            "CIFAR-10: 50k/10k colour images 3x32x32, 10 classes (torchvision.datasets.CIFAR10)",
            lambda options: DataSpec((3, 32, 32), 10, 50_000),
            lambda root, download: _load_cifar10(root, download),
            ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ),
        source="torchvision.datasets.cifar.CIFAR10",
    )
    for name, cls_name, debian_dir, mean, std, what in (
        ("fashion_mnist", "FashionMNIST", "fashion-mnist", 0.5, 0.5, "clothing"),
        ("mnist", "MNIST", "mnist", 0.1307, 0.3081, "digit"),
    ):
        DATASETS.register(
            name,
            DatasetInfo(
                name,
                f"{cls_name}: 60k/10k grey {what} images 1x28x28, 10 classes "
                f"(torchvision.datasets.{cls_name})",
                lambda options: DataSpec((1, 28, 28), 10, 60_000),
                functools.partial(_load_mnist_like, name, cls_name, debian_dir),
                ((mean,), (std,)),
            ),
            source=f"torchvision.datasets.mnist.{cls_name}",
        )


# --------------------------------------------------------------------------- synthetic data


def synthetic_regression(
    seed: int,
    n_train: int = 1000,
    n_test: int = 200,
    features: int = 10,
    noise: float = 0.1,
    data_seed: int | None = None,
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """y = x @ w + b + noise, x ~ N(0, I): the classic nn.Linear(10, 1) regression problem.

    Drawn from its own generator (seeded by `data_seed`, else the run's seed), so making the
    data never moves the global RNG that initialises the model.
    """
    generator = torch.Generator().manual_seed(seed if data_seed is None else data_seed)
    total = n_train + n_test
    x = torch.randn(total, features, generator=generator)
    w = torch.randn(features, 1, generator=generator)
    b = torch.randn(1, generator=generator)
    y = x @ w + b + noise * torch.randn(total, 1, generator=generator)
    return InMemoryDataset(x[:n_train], y[:n_train]), InMemoryDataset(x[n_train:], y[n_train:])


_SYNTHETIC_MINIMUM = {"n_train": 1, "n_test": 1, "features": 1, "noise": 0, "data_seed": 0}


def _check_synthetic(bound: dict[str, Any]) -> None:
    for key, minimum in _SYNTHETIC_MINIMUM.items():
        if bound[key] is not None and not bound[key] >= minimum:
            raise ConfigError(f"data.{key}", f"must be >= {minimum}, got {bound[key]}")


DATASETS.register(
    "synthetic_regression",
    DatasetInfo(
        "synthetic_regression",
        "y = x·w + b + noise with x ~ N(0, I), generated from the seed (options: n_train, "
        "n_test, features, noise, data_seed)",
        lambda options: DataSpec((options["features"],), None, options["n_train"]),
        lambda root, download, **options: synthetic_regression(**options),
        None,
        options=synthetic_regression,
        code_args=("seed",),
        check_options=_check_synthetic,
        takes_seed=True,
    ),
    source=synthetic_regression,
)
_register_torchvision()


# --------------------------------------------------------------------------- imported datasets

DATA_FILE_KEYS = ("x_train", "y_train", "x_test", "y_test")  # the tensors a .pt/.npz file holds
# Arguments of a torchvision-style dataset class that code passes (or leaves at their default).
_CLASS_CODE_ARGS = ("root", "train", "download", "transform", "target_transform", "transforms")


def _tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def _input_tensor(sample: Any) -> torch.Tensor:
    """One input as a tensor: a PIL image as PILToTensor makes it (uint8, channels first)."""
    if type(sample).__module__.startswith("PIL."):
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(sample)
    return _tensor(sample)


def _from_attributes(dataset: Any, first: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """A torchvision dataset's `.data` and `.targets` as (N, *first.shape) tensors, or None when
    they are absent or are not laid out like its samples (checked against the first one)."""
    data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
    if data is None or targets is None:
        return None
    try:
        inputs, labels = _tensor(data), _tensor(targets)
    except (TypeError, ValueError, RuntimeError):
        return None
    shape = tuple(first.shape)
    if inputs.dim() == 3 and len(shape) == 3 and shape[0] == 1:
        inputs = inputs.unsqueeze(1)  # MNIST: N x H x W
    elif inputs.dim() == 4 and tuple(inputs.shape[1:]) != shape:
        inputs = inputs.permute(0, 3, 1, 2)  # CIFAR: N x H x W x C
    if (
        tuple(inputs.shape[1:]) != shape
        or inputs.dtype != first.dtype
        or len(inputs) != len(dataset)
        or len(labels) != len(dataset)
        or not torch.equal(inputs[0], first)
    ):
        return None
    return inputs.contiguous(), labels


def _from_dataset(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A Dataset's samples as two tensors: from `.data`/`.targets` when they hold them, else
    read one by one (PIL images through PILToTensor)."""
    first = _input_tensor(dataset[0][0])
    held = _from_attributes(dataset, first)
    if held is not None:
        return held[0], held[1]
    inputs, targets = [first], [_tensor(dataset[0][1])]
    for index in range(1, len(dataset)):
        sample, target = dataset[index]
        inputs.append(_input_tensor(sample))
        targets.append(_tensor(target))
    return torch.stack(inputs), torch.stack(targets)


def _held(split: Any, name: str, which: str) -> InMemoryDataset:
    """A train or test split in memory, served by index like the built-in datasets: a pair
    (inputs, targets) of tensors or arrays, or a Dataset read once. uint8 inputs stay uint8
    (scaled to [0, 1] per batch), others become float32; integer targets are classes, float
    targets one regression value per sample."""
    where = f"{name}'s {which} set"
    try:
        if isinstance(split, torch.utils.data.Dataset):
            if len(split) == 0:  # type: ignore[arg-type]
                raise ConfigError("data.dataset", f"{where} is empty")
            inputs, targets = _from_dataset(split)
        elif isinstance(split, (tuple, list)) and len(split) == 2:
            inputs, targets = _tensor(split[0]), _tensor(split[1])
        else:
            raise ConfigError(
                "data.dataset",
                f"{where} is a {type(split).__name__}; it must be a torch Dataset or a pair "
                "(inputs, targets)",
            )
    except (TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise ConfigError("data.dataset", f"cannot hold {where} as tensors: {exc}") from None
    if inputs.dim() < 2 or len(inputs) != len(targets) or len(inputs) == 0:
        raise ConfigError(
            "data.dataset",
            f"{where} has inputs of shape {tuple(inputs.shape)} and targets of shape "
            f"{tuple(targets.shape)}; it needs N >= 1 samples of each",
        )
    if inputs.dtype != torch.uint8:
        inputs = inputs.to(torch.float32)
    if targets.is_floating_point():
        targets = targets.reshape(len(targets), -1).to(torch.float32)
        if targets.shape[1] != 1:
            raise ConfigError("data.dataset", f"{where}: regression targets must be one value")
    elif targets.dtype != torch.bool and not targets.is_complex():
        targets = targets.reshape(-1).long()
        if len(targets) != len(inputs) or targets.min() < 0:
            raise ConfigError(
                "data.dataset", f"{where}: class targets must be one integer >= 0 per sample"
            )
    else:
        raise ConfigError(
            "data.dataset",
            f"{where}: targets must be integers (classes) or floats (regression), "
            f"not {targets.dtype}",
        )
    return InMemoryDataset(inputs.contiguous(), targets)


def _spec_of(train: InMemoryDataset, test: InMemoryDataset, name: str) -> DataSpec:
    """Input shape, classes (integer targets: max + 1) or regression, read off the tensors."""
    if train.inputs.shape[1:] != test.inputs.shape[1:]:
        raise ConfigError(
            "data.dataset",
            f"{name}'s train inputs are {tuple(train.inputs.shape[1:])} per sample, its test "
            f"inputs {tuple(test.inputs.shape[1:])}",
        )
    if train.targets.is_floating_point() != test.targets.is_floating_point():
        raise ConfigError("data.dataset", f"{name}: train and test targets differ in kind")
    classes = None
    if not train.targets.is_floating_point():
        classes = int(max(train.targets.max(), test.targets.max())) + 1
    return DataSpec(tuple(train.inputs.shape[1:]), classes, len(train))


@dataclass(frozen=True)
class _ClassLoader:
    """A torchvision-style dataset class, made as cls(root, train=..., download=..., **options).
    Frozen, so equal loaders share `_load_cached`'s entry."""

    cls: type

    def __call__(
        self, root: str, download: bool, **options: Any
    ) -> tuple[InMemoryDataset, InMemoryDataset]:
        name = qualified_name(self.cls)
        splits = []
        # A download takes the lock the built-in datasets take: one worker fetches at a time.
        with _exclusive(_lock_path(root, name)) if download else contextlib.nullcontext():
            for train in (True, False):
                try:
                    dataset = self.cls(root, train=train, download=download, **options)
                except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError...
                    hint = "" if download else "; data.download: true fetches it (needs internet)"
                    raise ConfigError(f"could not load {name} from {root}: {exc}{hint}") from None
                splits.append(_held(dataset, name, "train" if train else "test"))
        return splits[0], splits[1]


@dataclass(frozen=True)
class _FunctionLoader:
    """A function returning (train, test), called with its bound options (and `seed`)."""

    fn: Callable[..., Any]

    def __call__(
        self, root: str, download: bool, **options: Any
    ) -> tuple[InMemoryDataset, InMemoryDataset]:
        name = qualified_name(self.fn)
        try:
            splits = self.fn(**options)
        except Exception as exc:  # the user's code
            raise ConfigError(
                "data.dataset", f"{name} failed: {type(exc).__name__}: {exc}"
            ) from None
        if not (isinstance(splits, (tuple, list)) and len(splits) == 2):
            raise ConfigError(
                "data.dataset",
                f"{name} returned a {type(splits).__name__}; it must return (train, test), each a "
                "torch Dataset or a pair (inputs, targets)",
            )
        return _held(splits[0], name, "train"), _held(splits[1], name, "test")


@dataclass(frozen=True)
class _FileLoader:
    """A .pt (torch.save of a dict) or .npz file holding DATA_FILE_KEYS."""

    path: str
    sha256: str  # in the cache key: an edited file is read again

    def __call__(self, root: str, download: bool) -> tuple[InMemoryDataset, InMemoryDataset]:
        name = Path(self.path).name
        try:
            if self.path.lower().endswith(".npz"):
                with np.load(self.path, allow_pickle=False) as npz:
                    tensors: Any = {key: npz[key] for key in npz.files}
            else:
                tensors = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # not a zip, not tensors, pickled objects...
            raise ConfigError("data.dataset", f"cannot read {name}: {exc}") from None
        missing = [k for k in DATA_FILE_KEYS if not isinstance(tensors, dict) or k not in tensors]
        if missing:
            raise ConfigError(
                "data.dataset",
                f"{name} has no {', '.join(missing)}; a data file holds "
                f"{', '.join(DATA_FILE_KEYS)}",
            )
        return (
            _held((tensors["x_train"], tensors["y_train"]), name, "train"),
            _held((tensors["x_test"], tensors["y_test"]), name, "test"),
        )


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _data_file(name: str, root: str | None) -> Path:
    """Where a data file named in the config is: as written when absolute, else under data.root
    when set, else in the working directory (load_config made one next to the config absolute)."""
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = Path(root or ".") / path
    if not path.is_file():
        where = (
            ""
            if Path(name).is_absolute()
            else f" in {root}"
            if root
            else f" next to the config or in the working directory {Path.cwd()}"
        )
        raise ConfigError("data.dataset", f"data file '{name}' not found{where}")
    return path.resolve()


def _file_dataset(path: Path) -> DatasetInfo:
    """A data file is named by its file name and identified by its content, not its path."""
    stat = path.stat()
    digest = _file_digest(str(path), stat.st_size, stat.st_mtime_ns)
    return DatasetInfo(
        path.name,
        f"tensors from {path}",
        None,
        _FileLoader(str(path), digest),
        None,
        code={"sha256": digest},
    )


def _check_dataset(obj: Any) -> str | None:
    if inspect.isclass(obj):
        if issubclass(obj, torch.utils.data.Dataset):
            return None
    elif callable(obj):
        return None
    return "is not a torch Dataset class, a function returning (train, test), or a .pt/.npz file"


def _imported_dataset(name: str, obj: Any, code: dict[str, Any]) -> DatasetInfo:
    description = summary(obj)
    if inspect.isclass(obj):
        loader: Callable[..., Any] = _ClassLoader(obj)
        code_args, takes_seed = _CLASS_CODE_ARGS, False
    else:
        loader, code_args = _FunctionLoader(obj), ("seed",)
        takes_seed = "seed" in parameters_of(obj, "data.dataset", name)
    return DatasetInfo(
        name,
        description,
        None,
        loader,
        None,
        options=obj,
        code_args=code_args,
        takes_seed=takes_seed,
        code=code,
        by_tensors=True,
    )


def get_dataset(name: str, field: str = "data.dataset") -> DatasetInfo:
    """A registered dataset (any case), or an import path to a torchvision-style Dataset class
    or a function returning (train, test); a registered one by its path comes back as its
    record (torchvision.datasets.CIFAR10 is cifar10)."""
    return resolve_component(DATASETS, name, field, _check_dataset, _imported_dataset)


# --------------------------------------------------------------------------- entry points


def dataset_options(info: DatasetInfo, options: dict[str, Any]) -> dict[str, Any]:
    """Dataset-specific options (the data section's keys beyond the fixed ones), checked
    against the dataset's loader, every default filled in."""
    own = []
    if info.options is not None:
        parameters_of(info.options, "data.dataset", info.name)  # one that has none is refused
        own = list(signature_defaults(info.options, skip=info.code_args))
    for key in options:
        if key not in own:
            valid = [*DataConfig.model_fields, *own]
            raise ConfigError(
                f"data.{key}",
                f"unknown key{did_you_mean(key, valid)}; {info.name} takes: {', '.join(valid)}",
            )
    if info.options is None:
        return {}
    bound = bind_options(info.options, options, "data", skip=info.code_args, label=info.name)
    if info.check_options is not None:
        info.check_options(bound)
    return bound


def resolve_normalize(config: DataConfig, info: DatasetInfo, spec: DataSpec) -> Any:
    """The (mean, std) to apply, checked against the number of channels."""
    if config.normalize is None:
        return info.normalize
    if len(spec.input_shape) != 3:
        raise ConfigError(
            "data.normalize",
            f"{info.name} inputs are not images (channels, height, width) to normalize",
        )
    channels = spec.input_shape[0]
    for key in ("mean", "std"):
        values = getattr(config.normalize, key)
        if len(values) != channels:
            raise ConfigError(
                f"data.normalize.{key}",
                f"{info.name} has {channels} channel(s), got {len(values)} value(s)",
            )
    return tuple(config.normalize.mean), tuple(config.normalize.std)


@dataclass(frozen=True)
class BoundData:
    """The data section bound once, while planning: which dataset, its options, its shape and
    its normalisation. Training loads from this; nothing reads the raw config again."""

    info: DatasetInfo
    options: dict[str, Any]
    spec: DataSpec  # with `subset` applied
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None
    subset: int | None
    root: str
    download: bool
    augment: str | None = None  # training batches only (components/augment.py)
    tensors: str | None = None  # hash of what an imported dataset returned (DatasetInfo.by_tensors)

    def resolved(self) -> dict[str, Any]:
        """The keys this binding decides, for the resolved config."""
        mean_std = {"mean": self.normalize[0], "std": self.normalize[1]} if self.normalize else None
        return {"dataset": self.info.name, "root": self.root, "normalize": mean_std, **self.options}

    @property
    def code(self) -> dict[str, Any]:
        """What identifies the dataset's code and data, for the resolved config's `code:`."""
        return {**self.info.code, "tensors": self.tensors} if self.tensors else self.info.code


def bind_data(config: DataConfig, root: str, seed: int = 0) -> BoundData:
    """Look up the dataset and check the data section against it (`root` when it sets none).
    A dataset whose shape only its tensors tell (imported, a file) is loaded here, with the
    run's `seed` where it takes one; load_data then finds it in the cache."""
    if is_data_file(config.dataset):
        path = _data_file(config.dataset, config.root)
        info, root = _file_dataset(path), str(path.parent)
    else:
        info, root = get_dataset(config.dataset), config.root or root
    options = dataset_options(info, config.options)
    tensors = None
    if info.spec is not None:
        spec = info.spec(options)
    else:
        loaded = _load_cached(info.load, root, config.download, _options_key(info, options, seed))
        spec = _spec_of(*loaded, info.name)
        if info.by_tensors:  # for one seed, so every seed of an experiment has one identity
            if info.takes_seed and seed != 0:
                loaded = _load_cached(
                    info.load, root, config.download, _options_key(info, options, 0)
                )
            tensors = _tensor_digest(*loaded)
    if config.subset is not None:
        if config.subset > spec.train_size:
            raise ConfigError(
                "data.subset",
                f"{config.subset} is more than the {spec.train_size} training samples "
                f"of {info.name}",
            )
        spec = DataSpec(spec.input_shape, spec.num_classes, config.subset)
    normalize = resolve_normalize(config, info, spec)
    if config.augment is not None:
        shape = spec.input_shape
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise ConfigError(
                "data.augment",
                f"{config.augment} augments images (1 or 3 channels, height, width); "
                f"{info.name}'s inputs are {tuple(shape)}",
            )
    return BoundData(
        info,
        options,
        spec,
        normalize,
        config.subset,
        root,
        config.download,
        config.augment,
        tensors,
    )


@functools.lru_cache(maxsize=4)
def _tensor_digest(train: InMemoryDataset, test: InMemoryDataset) -> str:
    """A hash of a dataset's tensors (dtype, shape, bytes), as a data file's bytes are hashed:
    a dataset function or class that reads a file then changes the run-id when the file does.
    Cached per loaded pair (`_load_cached` returns the same objects)."""
    digest = hashlib.sha256()
    for tensor in (train.inputs, train.targets, test.inputs, test.targets):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{flat.dtype}{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def _options_key(info: DatasetInfo, options: dict[str, Any], seed: int) -> str:
    """The loader's options as JSON (hashable, for the cache), with the seed where it takes one
    (images are the same for every seed)."""
    return json.dumps({**options, "seed": seed} if info.takes_seed else options, sort_keys=True)


@functools.lru_cache(maxsize=4)
def _load_cached(
    load: Callable[..., tuple[InMemoryDataset, InMemoryDataset]],
    root: str,
    download: bool,
    options: str,
) -> tuple[InMemoryDataset, InMemoryDataset]:
    return load(root=root, download=download, **json.loads(options))


def load_data(data: BoundData, seed: int) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Train and test splits in memory (cached per process, so sweeps load each dataset once)."""
    train, test = _load_cached(
        data.info.load, data.root, data.download, _options_key(data.info, data.options, seed)
    )
    if data.subset is not None:
        train = InMemoryDataset(train.inputs[: data.subset], train.targets[: data.subset])
    mean, std = data.normalize if data.normalize else (None, None)
    augment = make_augment(data.augment, seed) if data.augment is not None else None
    return (
        InMemoryDataset(train.inputs, train.targets, mean, std, augment),
        InMemoryDataset(test.inputs, test.targets, mean, std),
    )


# --------------------------------------------------------------------------- scikit-learn data

SKLEARN_EXTRA = "pip install 'optbench[sklearn]'"


@dataclass(frozen=True)
class SklearnDataset:
    """One dataset bundled with scikit-learn, its sizes as sklearn's documentation gives them
    (tests/test_sklearn_data.py checks them against the data): its shape is then known, and
    `optbench list` works, without sklearn installed."""

    loader: str  # the sklearn.datasets function
    samples: int
    features: int
    classes: int | None  # None: regression, one float target
    what: str


SKLEARN_DATASETS: dict[str, SklearnDataset] = {
    "sklearn_digits": SklearnDataset(
        "load_digits", 1797, 64, 10, "8x8 grey digit images (values 0-16) as 64 flat features"
    ),
    "sklearn_breast_cancer": SklearnDataset(
        "load_breast_cancer", 569, 30, 2, "breast masses, 30 cell-nucleus features, benign or not"
    ),
    "sklearn_wine": SklearnDataset(
        "load_wine", 178, 13, 3, "wines, 13 chemical measurements, 3 cultivars"
    ),
    "sklearn_iris": SklearnDataset(
        "load_iris", 150, 4, 3, "iris flowers, 4 measurements, 3 species"
    ),
    "sklearn_diabetes": SklearnDataset(
        "load_diabetes", 442, 10, None, "diabetes, 10 baseline variables, progression (25-346)"
    ),
}


def sklearn_split(
    name: str, split_seed: int = 0, test_size: float = 0.25, standardize: bool = True
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """A scikit-learn bundled dataset, split once into train and test sets.

    The split is sklearn's train_test_split(X, y, test_size=test_size, random_state=split_seed,
    stratify=y for classes, None for regression): seeded by `split_seed`, not the run's seed,
    so every seed of a comparison trains and tests on the same samples. `standardize` scales
    each feature with a StandardScaler fit on the training split only (no test statistics leak
    in; a constant feature is only centred). Features float32; classes long, regression targets
    float32 (N, 1). sklearn is imported here only: it is an optional extra.
    """
    dataset = SKLEARN_DATASETS[name]
    try:
        import sklearn.datasets
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"dataset {name} needs scikit-learn ({reason}): {SKLEARN_EXTRA}"
        ) from None
    x, y = getattr(sklearn.datasets, dataset.loader)(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x,
        y,
        test_size=test_size,
        random_state=split_seed,
        stratify=y if dataset.classes is not None else None,
    )
    if standardize:
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

    def held(inputs: np.ndarray, targets: np.ndarray) -> InMemoryDataset:
        features = torch.as_tensor(inputs, dtype=torch.float32)
        if dataset.classes is None:
            return InMemoryDataset(
                features, torch.as_tensor(targets, dtype=torch.float32).view(-1, 1)
            )
        return InMemoryDataset(features, torch.as_tensor(targets, dtype=torch.long))

    return held(x_train, y_train), held(x_test, y_test)


def _sklearn_sizes(name: str, test_size: float) -> tuple[int, int]:
    """(train, test) sizes of the split, computed as train_test_split does for a fraction."""
    samples = SKLEARN_DATASETS[name].samples
    test = math.ceil(test_size * samples)
    return samples - test, test


def _check_sklearn(name: str, bound: dict[str, Any]) -> None:
    """Refuse, while planning, the options train_test_split would refuse while training."""
    if not 0 <= bound["split_seed"] < 2**32:
        raise ConfigError("data.split_seed", f"must be in [0, 2**32), got {bound['split_seed']}")
    test_size = bound["test_size"]
    if not 0 < test_size < 1:
        raise ConfigError("data.test_size", f"must be a fraction in (0, 1), got {test_size}")
    least = SKLEARN_DATASETS[name].classes or 1  # stratifying puts a sample of each class in each
    train, test = _sklearn_sizes(name, test_size)
    if min(train, test) < least:
        per = " (one per class)" if least > 1 else ""
        raise ConfigError(
            "data.test_size",
            f"{test_size} splits {name} into {train} train and {test} test samples; each needs "
            f"at least {least}{per}",
        )


def _sklearn_spec(name: str, options: dict[str, Any]) -> DataSpec:
    dataset = SKLEARN_DATASETS[name]
    train, _ = _sklearn_sizes(name, options["test_size"])
    return DataSpec((dataset.features,), dataset.classes, train)


def _load_sklearn(
    name: str, root: str, download: bool, **options: Any
) -> tuple[InMemoryDataset, InMemoryDataset]:
    return sklearn_split(name, **options)


def _register_sklearn() -> None:
    """The sklearn_* datasets; their sources are named, not imported, so
    `sklearn.datasets.load_digits` resolves to `sklearn_digits`."""
    for name, dataset in SKLEARN_DATASETS.items():
        DATASETS.register(
            name,
            DatasetInfo(
                name,
                f"scikit-learn's {dataset.what}, {dataset.samples} samples (sklearn.datasets."
                f"{dataset.loader}; options: split_seed, test_size, standardize; needs "
                "optbench[sklearn])",
                functools.partial(_sklearn_spec, name),
                functools.partial(_load_sklearn, name),
                None,
                options=sklearn_split,
                code_args=("name",),
                check_options=functools.partial(_check_sklearn, name),
            ),
            source=f"sklearn.datasets._base.{dataset.loader}",
        )


_register_sklearn()


# ------------------------------------------------------------------------ DeepOBS quadratic, 2-D


def _zero_targets(inputs: torch.Tensor) -> InMemoryDataset:
    """Test-function data: the inputs are noise, the model's output is the loss (no targets)."""
    return InMemoryDataset(inputs, torch.zeros(len(inputs), 1))


def deepobs_quadratic() -> tuple[InMemoryDataset, InMemoryDataset]:
    """DeepOBS's quadratic data: 1000 draws of N(0, 0.6^2 I) in 100 dimensions, train from
    RandomState(42), test from RandomState(43), as float32 (the same for every seed)."""
    train = np.random.RandomState(42).normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    test = np.random.RandomState(43).normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    return _zero_targets(torch.from_numpy(train)), _zero_targets(torch.from_numpy(test))


def deepobs_two_d() -> tuple[InMemoryDataset, InMemoryDataset]:
    """DeepOBS's two_d noise: 10000 (x, y) pairs of N(0, 1), x then y from RandomState(42);
    the test set is zeros, so the test loss is the deterministic function."""
    rng = np.random.RandomState(42)
    x = rng.normal(0.0, 1.0, 10_000).astype(np.float32)
    y = rng.normal(0.0, 1.0, 10_000).astype(np.float32)
    train = torch.from_numpy(np.stack([x, y], axis=1))
    return _zero_targets(train), _zero_targets(torch.zeros(10_000, 2))


for _name, _load, _spec, _what in (
    (
        "quadratic",
        deepobs_quadratic,
        DataSpec((100,), None, 1000),
        "DeepOBS's quadratic data: 1000/1000 draws of N(0, 0.6^2 I) in 100 dimensions, "
        "fixed seeds 42/43 (quadratic_deep)",
    ),
    (
        "two_d",
        deepobs_two_d,
        DataSpec((2,), None, 10_000),
        "DeepOBS's 2-D noise: 10000 (x, y) pairs of N(0, 1), fixed seed 42; test set zeros "
        "(rosenbrock, beale, branin)",
    ),
):
    DATASETS.register(
        _name,
        DatasetInfo(
            _name,
            _what,
            functools.partial(lambda options, spec: spec, spec=_spec),
            functools.partial(lambda root, download, load: load(), load=_load),
            None,
        ),
        source=_load,
    )
