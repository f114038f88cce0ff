"""Datasets named by import path or file, beyond the registered ones: a torchvision-style
Dataset class (taking train= or split=), a function returning (train, test) as torch Datasets,
Hugging Face `datasets.Dataset`s or pairs of arrays, or a .pt/.npz file of tensors. They are read
into tensors while planning (image arrays channels first), their shape and classes read off
them, and identified by what they return (a hash of the tensors, or of the file's bytes)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optbench.components.data.memory import ColumnsDataset, InMemoryDataset
from optbench.components.data.spec import DATASETS, DatasetInfo, DataSpec
from optbench.components.data.tensor_cache import exclusive, lock_path, through_content_file
from optbench.components.data.text import TokenWindows
from optbench.components.registry import parameters_of, resolve_component, summary
from optbench.core.errors import ConfigError
from optbench.core.registry import qualified_name

DATA_FILE_KEYS = ("x_train", "y_train", "x_test", "y_test")  # the tensors a .pt/.npz file holds
# Arguments of a torchvision-style dataset class that code passes (or leaves at their default).
_CLASS_CODE_ARGS = ("root", "train", "download", "transform", "target_transform", "transforms")
# A Hugging Face Dataset's conventional input and target columns, tried in this order.
INPUT_COLUMNS = ("image", "img", "pixel_values")
TARGET_COLUMNS = ("label", "labels")
_IMAGE_CHANNELS = (1, 3, 4)  # a last axis of this size marks channels-last image arrays


@dataclass(frozen=True)
class Reading:
    """How an imported dataset's splits are read: the data section's train_split/test_split,
    input_column/target_column, layout and image_size (None: found from the dataset). Frozen,
    so it keys `bind._load_cached`."""

    train_split: str | None = None
    test_split: str | None = None
    input_column: str | tuple[str, ...] | None = None  # several: a dict batch
    target_column: str | None = None
    layout: str | None = None
    image_size: int | None = None

    def split(self, which: str) -> str | None:
        return self.train_split if which == "train" else self.test_split


def _type_name(obj: Any) -> str:
    """A class by module and name, so datasets.Dataset and torch's Dataset read apart."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def _input_tensor(sample: Any) -> torch.Tensor:
    """One input as a tensor: a PIL image as PILToTensor makes it (uint8, channels first)."""
    if type(sample).__module__.startswith("PIL."):
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(sample)
    return _tensor(sample)


def _resized(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Images (..., H, W) at size x size, as torchvision's Resize((size, size)) makes them
    (antialiased; uint8 stays uint8); unchanged without a size or at it already."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    from torchvision.transforms.v2.functional import resize

    return resize(images, [size, size], antialias=True)


def _stacked(samples: list[torch.Tensor], size: int | None, where: str) -> torch.Tensor:
    """Samples read one by one as one tensor, each image resized first when data.image_size
    is given; images of different sizes without it are refused naming the key that helps."""
    if size is not None:
        if samples[0].dim() < 2:
            raise ConfigError("data.image_size", f"{where} holds no images to resize")
        samples = [_resized(sample, size) for sample in samples]
    shapes = sorted({tuple(sample.shape) for sample in samples})
    if len(shapes) > 1:
        raise ConfigError(
            "data.image_size",
            f"{where} holds samples of different shapes ({shapes[0]}, {shapes[-1]}...); set "
            "data.image_size: N to resize each image to N x N as it is read",
        )
    return torch.stack(samples)


def _from_attributes(dataset: Any, first: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """A torchvision dataset's `.data` and `.targets` (or `.labels`) as (N, *first.shape)
    tensors, or None when they are absent or are not laid out like its samples (checked
    against the first one)."""
    data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
    if targets is None:
        targets = getattr(dataset, "labels", None)  # SVHN, STL10
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


def _from_dataset(dataset: Any, size: int | None, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A Dataset's samples as two tensors: from `.data`/`.targets` when they hold them, else
    read one by one (PIL images through PILToTensor)."""
    sample, target = dataset[0]
    if target is None:  # Places365's test split, unlabeled competition sets
        raise ConfigError(
            "data.dataset",
            f"{where} has no labels (its targets are None); for a class taking split=, "
            "data.train_split / data.test_split choose a labelled split",
        )
    first = _input_tensor(sample)
    held = _from_attributes(dataset, first)
    if held is not None:
        return held[0], held[1]
    inputs, targets = [first], [_tensor(target)]
    for index in range(1, len(dataset)):
        sample, target = dataset[index]
        inputs.append(_input_tensor(sample))
        targets.append(_tensor(target))
    return _stacked(inputs, size, where), torch.stack(targets)


def channels_first(
    inputs: torch.Tensor, layout: str | None, where: str
) -> tuple[torch.Tensor, str | None]:
    """Image arrays as (N, C, H, W), and a note of the layout they came in (None: not images).
    `layout` (data.layout) says how 4-D arrays are laid out; unset, channels-last is recognised
    by a last axis of 1, 3 or 4 where the second is not (Keras' load_data, most .npz files).
    (N, H, W) arrays are one-channel images when uint8 or when data.layout is set; float
    (N, A, B) arrays stay as they are (sequences, tables)."""
    shape = tuple(inputs.shape[1:])
    if inputs.dim() == 3 and (layout is not None or inputs.dtype == torch.uint8):
        return inputs.unsqueeze(1), f"(N, H, W) {shape}: one channel, held as {(1, *shape)}"
    if inputs.dim() != 4:
        return inputs, None
    if layout is None:
        last, second = shape[-1] in _IMAGE_CHANNELS, shape[0] in _IMAGE_CHANNELS
        if last and second:
            raise ConfigError(
                "data.layout",
                f"{where}: inputs of shape {shape} per sample could be channels first or last; "
                "set data.layout: nchw or nhwc",
            )
        layout = "nhwc" if last else "nchw"
    if layout == "nhwc":
        held = inputs.permute(0, 3, 1, 2)
        return held, f"nhwc {shape}: channels last, held as {tuple(held.shape[1:])}"
    return inputs, f"nchw {shape}: channels first"


def _is_hugging_face(split: Any) -> bool:
    """A `datasets.Dataset` (told by its module, so `datasets` is never imported here)."""
    return type(split).__module__.startswith("datasets.") and hasattr(split, "column_names")


def _column(
    split: Any, wanted: str | None, conventional: tuple[str, ...], key: str, where: str
) -> str:
    columns = list(split.column_names)
    if wanted is not None:
        if wanted not in columns:
            raise ConfigError(
                f"data.{key}", f"{where} has no column '{wanted}'; it has {', '.join(columns)}"
            )
        return wanted
    for name in conventional:
        if name in columns:
            return name
    raise ConfigError(
        f"data.{key}",
        f"{where} has none of the columns {', '.join(conventional)}; it has {', '.join(columns)}: "
        f"set data.{key}",
    )


def _from_hugging_face(split: Any, reading: Reading, where: str) -> tuple[Any, torch.Tensor]:
    """A Hugging Face Dataset's input and target columns as two tensors (PIL images through
    PILToTensor, arrays as they are); several input columns as a dict of tensors."""
    if len(split) == 0:
        raise ConfigError("data.dataset", f"{where} is empty")
    if isinstance(reading.input_column, tuple):
        columns = [_column(split, c, (), "input_column", where) for c in reading.input_column]
        targets = _column(split, reading.target_column, TARGET_COLUMNS, "target_column", where)
        held = {column: _tensor(list(split[column])) for column in columns}
        return held, _tensor(list(split[targets]))
    inputs = _column(split, reading.input_column, INPUT_COLUMNS, "input_column", where)
    targets = _column(split, reading.target_column, TARGET_COLUMNS, "target_column", where)
    values = list(split[inputs])
    if type(values[0]).__module__.startswith("PIL."):
        held = _stacked([_input_tensor(value) for value in values], reading.image_size, where)
    else:
        held = _tensor(values)
    return held, _tensor(list(split[targets]))


def _held(split: Any, name: str, which: str, reading: Reading) -> InMemoryDataset:
    """A train or test split in memory, served by index like the built-in datasets: a pair
    (inputs, targets) of tensors or arrays, a torch Dataset read once, or a Hugging Face
    Dataset's columns (several input columns: a ColumnsDataset). Image arrays become channels
    first; inputs follow the dtype rule (_input_dtype: uint8 images, int64 ids, float32);
    integer targets are classes (one per sample, or per position of a sequence), float
    targets regression values of any shape (flattened to k values per sample)."""
    where = f"{name}'s {which} set"
    layout = None
    hugging_face = _is_hugging_face(split)
    if hugging_face and isinstance(reading.input_column, tuple):
        return _held_columns(split, where, reading)
    if not hugging_face and (reading.input_column or reading.target_column):
        key = "input_column" if reading.input_column else "target_column"
        raise ConfigError(f"data.{key}", f"{where} is not a Hugging Face Dataset with columns")
    try:
        if hugging_face:
            inputs, targets = _from_hugging_face(split, reading, where)
            inputs, layout = channels_first(inputs, reading.layout, where)
        elif isinstance(split, torch.utils.data.Dataset):
            if len(split) == 0:  # type: ignore[arg-type]
                raise ConfigError("data.dataset", f"{where} is empty")
            inputs, targets = _from_dataset(split, reading.image_size, where)
        elif isinstance(split, (tuple, list)) and len(split) == 2:
            inputs, targets = _tensor(split[0]), _tensor(split[1])
            inputs, layout = channels_first(inputs, reading.layout, where)
        else:
            raise ConfigError(
                "data.dataset",
                f"{where} is a {_type_name(split)}; it must be a torch.utils.data.Dataset, a "
                "datasets.Dataset (Hugging Face) or a pair (inputs, targets)",
            )
    except ConfigError:
        raise
    except (TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise ConfigError("data.dataset", f"cannot hold {where} as tensors: {exc}") from None
    if inputs.dim() < 2 or len(inputs) != len(targets) or len(inputs) == 0:
        raise ConfigError(
            "data.dataset",
            f"{where} has inputs of shape {tuple(inputs.shape)} and targets of shape "
            f"{tuple(targets.shape)}; it needs N >= 1 samples of each",
        )
    if reading.image_size is not None:  # arrays held whole: resized as one batch
        if inputs.dim() != 4:
            raise ConfigError("data.image_size", f"{where} holds no (N, C, H, W) images to resize")
        inputs = _resized(inputs, reading.image_size)
    inputs = _input_dtype(inputs)
    targets = _held_targets(targets, len(inputs), where)
    return InMemoryDataset(inputs.contiguous(), targets, layout=layout)


def _input_dtype(inputs: torch.Tensor) -> torch.Tensor:
    """The dtype rule: uint8 stays uint8 (images, scaled to [0, 1] per batch), other integers
    are ids and become int64 (token ids, for an embedding), anything else float32."""
    if inputs.dtype == torch.uint8:
        return inputs
    if not inputs.is_floating_point() and not inputs.is_complex() and inputs.dtype != torch.bool:
        return inputs.long()
    return inputs.to(torch.float32)


def _held_columns(split: Any, where: str, reading: Reading) -> ColumnsDataset:
    """Several columns of a Hugging Face Dataset, each held whole (integers as int64, the rest
    float32), served as a dict batch."""
    try:
        columns, targets = _from_hugging_face(split, reading, where)
    except (TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise ConfigError("data.input_column", f"cannot hold {where} as tensors: {exc}") from None
    held = {key: _input_dtype(value).contiguous() for key, value in columns.items()}
    for key, value in held.items():
        if value.dim() < 1 or len(value) != len(targets):
            raise ConfigError(
                "data.input_column",
                f"{where}'s column {key} holds {tuple(value.shape)}, not one row per target "
                f"({len(targets)})",
            )
    return ColumnsDataset(held, _held_targets(targets, len(targets), where))


def _held_targets(targets: torch.Tensor, count: int, where: str) -> torch.Tensor:
    """Float targets: regression values, k per sample; integer targets: classes, one per
    sample, or one per position of a sequence (N, T)."""
    if targets.is_floating_point():
        targets = targets.reshape(len(targets), -1).to(torch.float32)
        if targets.shape[1] == 0:
            raise ConfigError("data.dataset", f"{where}: regression targets hold no values")
    elif targets.dtype != torch.bool and not targets.is_complex():
        if targets.dim() != 2 or targets.shape[1] == 1:  # (N,) or (N, 1): a class per sample
            targets = targets.reshape(-1)
        targets = targets.long()
        if len(targets) != count or targets.min() < 0:
            raise ConfigError(
                "data.dataset", f"{where}: class targets must be one integer >= 0 per sample"
            )
    else:
        raise ConfigError(
            "data.dataset",
            f"{where}: targets must be integers (classes) or floats (regression), "
            f"not {targets.dtype}",
        )
    return targets


def spec_of(train: InMemoryDataset, test: InMemoryDataset, name: str) -> DataSpec:
    """Input shape, classes (integer targets: max + 1) or regression, read off the tensors."""
    if isinstance(train, TokenWindows):
        return train.spec(test)
    if train.inputs.shape[1:] != test.inputs.shape[1:]:
        raise ConfigError(
            "data.dataset",
            f"{name}'s train inputs are {tuple(train.inputs.shape[1:])} per sample, its test "
            f"inputs {tuple(test.inputs.shape[1:])}",
        )
    if train.targets.is_floating_point() != test.targets.is_floating_point():
        raise ConfigError("data.dataset", f"{name}: train and test targets differ in kind")
    classes, outputs = None, 1
    if train.targets.is_floating_point():
        outputs = train.targets.shape[1]
        if test.targets.shape[1] != outputs:
            raise ConfigError(
                "data.dataset",
                f"{name}'s train targets hold {outputs} values each, its test targets "
                f"{test.targets.shape[1]}",
            )
    else:
        classes = int(max(train.targets.max(), test.targets.max())) + 1
    layout = getattr(train, "layout", None)
    return DataSpec(
        tuple(train.inputs.shape[1:]),
        classes,
        len(train),
        outputs,
        layout,
        target_shape=tuple(train.targets.shape[1:]) if classes else (),
        integer_inputs=train.inputs.dtype == torch.int64,
    )


def split_names(cls: type) -> tuple[str, ...] | None:
    """The split names a dataset class declares in an attribute named for them (SVHN's
    split_list, STL10's and EMNIST's splits, Flowers102's _splits_map), or None."""
    for attribute in sorted(dir(cls), key=lambda a: (not a.lower().endswith("splits"), a)):
        if "split" not in attribute.lower():
            continue
        value = getattr(cls, attribute, None)
        names = isinstance(value, (dict, tuple, list, set, frozenset)) and value
        if names and all(isinstance(name, str) for name in value):
            return tuple(value)
    return None


# A docstring's `split (...)` entry, up to the next documented argument, and the names quoted in
# it: ``"trainval"`` (default), ``val``, {'train', 'test'}.
_SPLIT_DOC = re.compile(r"^\s*split \(.*?(?=^\s*\w+ \(|\Z)", re.M | re.S)
_QUOTED = re.compile(r"[`\"']+([A-Za-z0-9_+-]+)[`\"']+")
TEST_SPLITS = ("test", "val", "valid", "validation")  # the held-out split, in order of preference


def documented_split_names(cls: type) -> tuple[str, ...]:
    """The split names a class's docstring quotes in its `split` entry (OxfordIIITPet's
    "trainval" and "test"), or (); for choosing defaults only, never to refuse a name."""
    entry = _SPLIT_DOC.search(inspect.getdoc(cls) or "")
    return tuple(dict.fromkeys(_QUOTED.findall(entry.group()))) if entry else ()


def default_splits(cls: type) -> tuple[str, str]:
    """The train and test split names of a class taking split=: 'train' and 'test' where it has
    them, else its own default training split (OxfordIIITPet's 'trainval', Places365's
    'train-standard') and its held-out one ('val' for ImageNet)."""
    names = split_names(cls) or documented_split_names(cls)
    if not names:
        return "train", "test"
    default = inspect.signature(cls).parameters["split"].default
    if "train" in names:
        train = "train"
    elif isinstance(default, str) and default.startswith("train"):
        train = default
    else:
        train = next((name for name in names if name.startswith("train")), "train")
    test = next((n for n in TEST_SPLITS if n in names), "test")
    return train, test


def takes_split(cls: type) -> bool:
    """Whether a class chooses train or test by `split=` (SVHN, STL10, Flowers102, DTD) rather
    than `train=`: it takes `split` and not `train`, and the names it declares, if any, include
    a training split ('train', Places365's 'train-standard'). EMNIST's `split` names a subset
    ('balanced') and its train= goes through **kwargs: there `split` is the data section's
    option."""
    parameters = inspect.signature(cls).parameters
    if "split" not in parameters or "train" in parameters:
        return False
    names = split_names(cls)
    return names is None or any(name.startswith("train") for name in names)


@dataclass(frozen=True)
class _ClassLoader:
    """A torchvision-style dataset class, made as cls(root, train=..., download=..., **options),
    or with split=<name> when it takes one (`splits`: its declared names, () when undeclared).
    Frozen, so equal loaders share `bind._load_cached`'s entry."""

    cls: type
    splits: tuple[str, ...] | None = None  # None: it takes train=
    defaults: tuple[str, str] = ("train", "test")  # split= when the data section names none

    def _split_argument(self, which: str, reading: Reading) -> dict[str, Any]:
        """train=True/False, or split=<the data section's name, else the dataset's own>."""
        name = qualified_name(self.cls)
        chosen = reading.split(which)
        if self.splits is None:
            if chosen is not None:
                raise ConfigError(
                    f"data.{which}_split", f"{name} takes train=, not split=; leave it unset"
                )
            return {"train": which == "train"}
        if chosen is None:
            chosen = self.defaults[which != "train"]
        if self.splits and chosen not in self.splits:
            raise ConfigError(
                f"data.{which}_split",
                f"{name} has no split '{chosen}'; it has {', '.join(self.splits)}",
            )
        return {"split": chosen}

    def __call__(
        self, root: str, download: bool, reading: Reading = Reading(), **options: Any
    ) -> tuple[InMemoryDataset, InMemoryDataset]:
        name = qualified_name(self.cls)
        splits = []
        # Classes that cannot fetch their files (ImageNet, Cityscapes, FER2013) take no download=.
        downloads = "download" in inspect.signature(self.cls).parameters
        fetch = {"download": download} if downloads else {}
        # A download takes the lock the built-in datasets take: one worker fetches at a time.
        with exclusive(lock_path(root, name)) if download else contextlib.nullcontext():
            for which in ("train", "test"):
                chosen = self._split_argument(which, reading)
                try:
                    dataset = self.cls(root, **fetch, **chosen, **options)
                except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError...
                    # torchvision's own "use download=True" advice, said in optbench's words
                    missing = downloads and not download and "download=True" in str(exc)
                    hint = "; data.download: true fetches it (needs internet)" if missing else ""
                    raise ConfigError(f"could not load {name} from {root}: {exc}{hint}") from None
                splits.append(_held(dataset, name, which, reading))
        return splits[0], splits[1]


def _no_split_names(name: str, reading: Reading) -> None:
    for which in ("train", "test"):
        if reading.split(which) is not None:
            raise ConfigError(
                f"data.{which}_split", f"{name} is not a dataset class that takes split="
            )


@dataclass(frozen=True)
class _FunctionLoader:
    """A function returning (train, test), called with its bound options (and `seed`)."""

    fn: Callable[..., Any]

    def __call__(
        self, root: str, download: bool, reading: Reading = Reading(), **options: Any
    ) -> tuple[InMemoryDataset, InMemoryDataset]:
        name = qualified_name(self.fn)
        _no_split_names(name, reading)
        try:
            splits = self.fn(**options)
        except Exception as exc:  # the user's code
            raise ConfigError(
                "data.dataset", f"{name} failed: {type(exc).__name__}: {exc}"
            ) from None
        if not (isinstance(splits, (tuple, list)) and len(splits) == 2):
            raise ConfigError(
                "data.dataset",
                f"{name} returned a {_type_name(splits)}; it must return (train, test), each a "
                "torch.utils.data.Dataset, a datasets.Dataset or a pair (inputs, targets)",
            )
        return _held(splits[0], name, "train", reading), _held(splits[1], name, "test", reading)


@dataclass(frozen=True)
class _FileLoader:
    """A .pt (torch.save of a dict) or .npz file holding DATA_FILE_KEYS."""

    path: str
    sha256: str  # in the cache key: an edited file is read again

    def __call__(
        self, root: str, download: bool, reading: Reading = Reading()
    ) -> tuple[InMemoryDataset, InMemoryDataset]:
        name = Path(self.path).name
        _no_split_names(name, reading)
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
            _held((tensors["x_train"], tensors["y_train"]), name, "train", reading),
            _held((tensors["x_test"], tensors["y_test"]), name, "test", reading),
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
    if path.is_dir():
        raise ConfigError("data.dataset", f"data file '{name}' is a folder, not a .pt or .npz file")
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
        if takes_split(obj):
            loader: Callable[..., Any] = _ClassLoader(
                obj, split_names(obj) or (), default_splits(obj)
            )
            code_args = (*_CLASS_CODE_ARGS, "split")
        else:
            loader, code_args = _ClassLoader(obj), _CLASS_CODE_ARGS
        takes_seed = False
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
