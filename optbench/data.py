"""Datasets, loaded once through torchvision and kept in memory as tensors.

Images stay uint8 in memory (4x smaller than float32) and each batch is converted with the
very float ops of ToTensor + Normalize, so batches are bit-identical to the notebook pipeline.
`InMemoryDataset.__getitems__` lets torch's DataLoader fetch a whole batch by index, which keeps
DataLoader's exact shuffling (same generator, same permutation) without per-sample Python work.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from optbench.config import SYSTEM_DATA_DIR, DataConfig
from optbench.errors import ConfigError, OptbenchError, did_you_mean
from optbench.registry import Registry, bind_options, signature_defaults
from optbench.results import write_atomic


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
    ) -> None:
        self.inputs = inputs
        self.targets = targets
        self._scale = inputs.dtype == torch.uint8
        self._mean = self._std = None
        if mean is not None and std is not None:
            shape = (-1,) + (1,) * (inputs.dim() - 2)
            self._mean = torch.as_tensor(mean, dtype=torch.float32).view(shape)
            self._std = torch.as_tensor(std, dtype=torch.float32).view(shape)

    def __len__(self) -> int:
        return len(self.targets)

    def to(self, device: torch.device) -> InMemoryDataset:
        moved = InMemoryDataset(self.inputs.to(device), self.targets.to(device))
        moved._scale = self._scale
        if self._mean is not None and self._std is not None:
            moved._mean, moved._std = self._mean.to(device), self._std.to(device)
        return moved

    def transform(self, inputs: torch.Tensor) -> torch.Tensor:
        """uint8 -> float in [0, 1] -> normalized: the same ops as ToTensor then Normalize."""
        if self._scale:
            inputs = inputs.to(torch.float32).div(255)
        if self._mean is not None:
            inputs = inputs.sub_(self._mean).div_(self._std)
        return inputs

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, device=self.targets.device)
        # index_select is several times cheaper than fancy indexing on a 4-D tensor
        return (
            self.transform(self.inputs.index_select(0, index)),
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
    spec: Callable[[dict[str, Any]], DataSpec]  # from the bound dataset options
    load: Callable[..., tuple[InMemoryDataset, InMemoryDataset]]
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None  # default (mean, std)


DATASETS: Registry[DatasetInfo] = Registry("dataset")


# --------------------------------------------------------------------------- torchvision loading


def _missing(name: str, looked: list[Path], hint: str) -> OptbenchError:
    places = " and ".join(str(p) for p in looked)
    return OptbenchError(f"dataset {name} was not found in {places}; {hint}")


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
    except (OSError, OptbenchError) as exc:  # write_atomic's errors included
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise OptbenchError(
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
    """
    if not source.is_dir():  # first download: nothing to key on yet
        return read()
    folder = Path(root) / TENSOR_FOLDER
    with _exclusive(_lock_path(root, name)) as locked:
        path = folder / f"{name}-{_source_key(source)}.pt"
        mapped = _map_tensor_file(path)
        if mapped is not None:
            return mapped
        if locked:  # what a writer killed mid-file left behind
            for leftover in folder.glob(f".{name}-*.tmp"):
                leftover.unlink(missing_ok=True)
        train, test = read()
        tensors = {
            "format": TENSOR_FORMAT,
            "train_inputs": train.inputs,
            "train_targets": train.targets,
            "test_inputs": test.inputs,
            "test_targets": test.targets,
        }
        try:
            write_atomic(path, functools.partial(torch.save, tensors))
        except (OSError, OptbenchError):  # a read-only root
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
                raise OptbenchError(f"could not load {name} from {root}: {exc}") from None
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
                raise OptbenchError(f"could not load cifar10 from {root}: {exc}") from None
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
            splits.append(InMemoryDataset(images, torch.as_tensor(ds.targets, dtype=torch.long)))
        return splits[0], splits[1]

    return _through_tensor_file("cifar10", root, folder, read)


def _register_torchvision() -> None:
    DATASETS.register(
        "cifar10",
        DatasetInfo(
            "cifar10",
            "CIFAR-10: 50k/10k colour images 3x32x32, 10 classes (torchvision.datasets.CIFAR10)",
            lambda options: DataSpec((3, 32, 32), 10, 50_000),
            lambda root, download: _load_cifar10(root, download),
            ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ),
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


def _synthetic_options(options: dict[str, Any]) -> dict[str, Any]:
    bound = bind_options(
        synthetic_regression, options, "data", skip=("seed",), label="synthetic_regression"
    )
    for key, minimum in _SYNTHETIC_MINIMUM.items():
        if bound[key] is not None and not bound[key] >= minimum:
            raise ConfigError(f"data.{key}", f"must be >= {minimum}, got {bound[key]}")
    return bound


DATASETS.register(
    "synthetic_regression",
    DatasetInfo(
        "synthetic_regression",
        "y = x·w + b + noise with x ~ N(0, I), generated from the seed (options: n_train, "
        "n_test, features, noise, data_seed)",
        lambda options: DataSpec((options["features"],), None, options["n_train"]),
        synthetic_regression,
        None,
    ),
)
_register_torchvision()


# --------------------------------------------------------------------------- entry points


def dataset_options(info: DatasetInfo, options: dict[str, Any]) -> dict[str, Any]:
    """Dataset-specific options (the data section's keys beyond the fixed ones), checked
    against the dataset's loader, every default filled in."""
    own = list(signature_defaults(synthetic_regression, skip=("seed",)))
    own = own if info.name == "synthetic_regression" else []
    for key in options:
        if key not in own:
            valid = [*DataConfig.model_fields, *own]
            raise ConfigError(
                f"data.{key}",
                f"unknown key{did_you_mean(key, valid)}; {info.name} takes: {', '.join(valid)}",
            )
    return _synthetic_options(options) if own else {}


def resolve_normalize(config: DataConfig, info: DatasetInfo, spec: DataSpec) -> Any:
    """The (mean, std) to apply, checked against the number of channels."""
    if config.normalize is None:
        return info.normalize
    if info.normalize is None:
        raise ConfigError("data.normalize", f"{info.name} inputs are not images to normalize")
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

    def resolved(self) -> dict[str, Any]:
        """The keys this binding decides, for the resolved config."""
        mean_std = {"mean": self.normalize[0], "std": self.normalize[1]} if self.normalize else None
        return {"dataset": self.info.name, "root": self.root, "normalize": mean_std, **self.options}


def bind_data(config: DataConfig, root: str) -> BoundData:
    """Look up the dataset and check the data section against it (`root` when it sets none)."""
    info = DATASETS.get(config.dataset, "data.dataset")
    options = dataset_options(info, config.options)
    spec = info.spec(options)
    if config.subset is not None:
        if config.subset > spec.train_size:
            raise ConfigError(
                "data.subset",
                f"{config.subset} is more than the {spec.train_size} training samples "
                f"of {info.name}",
            )
        spec = DataSpec(spec.input_shape, spec.num_classes, config.subset)
    normalize = resolve_normalize(config, info, spec)
    return BoundData(
        info, options, spec, normalize, config.subset, config.root or root, config.download
    )


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, root: str, download: bool, seed: int, options: tuple) -> tuple:
    info = DATASETS.get(name, "data.dataset")
    if name == "synthetic_regression":
        return info.load(seed, **dict(options))
    return info.load(root=root, download=download)


def load_data(data: BoundData, seed: int) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Train and test splits in memory (cached per process, so sweeps load each dataset once)."""
    data_seed = seed if data.info.name == "synthetic_regression" else 0  # images don't use it
    train, test = _load_cached(
        data.info.name, data.root, data.download, data_seed, tuple(sorted(data.options.items()))
    )
    if data.subset is not None:
        train = InMemoryDataset(train.inputs[: data.subset], train.targets[: data.subset])
    mean, std = data.normalize if data.normalize else (None, None)
    return (
        InMemoryDataset(train.inputs, train.targets, mean, std),
        InMemoryDataset(test.inputs, test.targets, mean, std),
    )
