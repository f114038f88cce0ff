"""Datasets named by import path or file, beyond the registered ones: a torchvision-style
Dataset class, a function returning (train, test), or a .pt/.npz file of tensors. They are read
into tensors while planning, their shape and classes read off them, and identified by what they
return (a hash of the tensors, or of the file's bytes)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optbench.components.data.memory import InMemoryDataset
from optbench.components.data.spec import DATASETS, DatasetInfo, DataSpec
from optbench.components.data.tensor_cache import exclusive, lock_path, through_content_file
from optbench.components.registry import parameters_of, resolve_component, summary
from optbench.core.errors import ConfigError
from optbench.core.registry import qualified_name

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


def spec_of(train: InMemoryDataset, test: InMemoryDataset, name: str) -> DataSpec:
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
    Frozen, so equal loaders share `bind._load_cached`'s entry."""

    cls: type

    def __call__(
        self, root: str, download: bool, **options: Any
    ) -> tuple[InMemoryDataset, InMemoryDataset]:
        name = qualified_name(self.cls)
        splits = []
        # A download takes the lock the built-in datasets take: one worker fetches at a time.
        with exclusive(lock_path(root, name)) if download else contextlib.nullcontext():
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


@dataclass(frozen=True)
class _SharedLoader:
    """An imported dataset's loader, read through the shared tensor file of its content
    (tensor_cache.through_content_file): a sweep's workers map one copy, and only the first
    load with this code and these options calls the user's code. Frozen, like the loaders."""

    load: Callable[..., tuple[InMemoryDataset, InMemoryDataset]]
    name: str
    code: str  # the code's identity (code_identity, or a data file's hash) as JSON

    def __call__(
        self, root: str, download: bool, **options: Any
    ) -> tuple[InMemoryDataset, InMemoryDataset]:
        called = json.dumps([self.code, options], sort_keys=True, default=str)
        key = hashlib.sha256(called.encode()).hexdigest()[:16]
        return through_content_file(
            self.name, root, key, functools.partial(self.load, root, download, **options)
        )


def _shared(load: Callable[..., Any], name: str, code: dict[str, Any]) -> _SharedLoader:
    return _SharedLoader(load, name, json.dumps(code, sort_keys=True, default=str))


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def data_file(name: str, root: str | None) -> Path:
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


def file_dataset(path: Path) -> DatasetInfo:
    """A data file is named by its file name and identified by its content, not its path."""
    stat = path.stat()
    digest = _file_digest(str(path), stat.st_size, stat.st_mtime_ns)
    code = {"sha256": digest}
    return DatasetInfo(
        path.name,
        f"tensors from {path}",
        None,
        _shared(_FileLoader(str(path), digest), path.name, code),
        None,
        code=code,
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
        _shared(loader, name, code),
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
