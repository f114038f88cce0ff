"""The data section bound once while planning (BoundData), and loaded per seed for training:
the entry points the experiment uses."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from optbench.components.augment import make_augment
from optbench.components.data.imported import (
    Reading,
    data_file,
    file_dataset,
    get_dataset,
    spec_of,
)
from optbench.components.data.memory import ColumnsDataset, InMemoryDataset
from optbench.components.data.spec import DatasetInfo, DataSpec
from optbench.components.data.tensor_cache import tensor_digest
from optbench.components.data.text import TokenWindows
from optbench.components.registry import bind_options, parameters_of, signature_defaults
from optbench.core.config import VALIDATION_SEED, DataConfig, is_data_file
from optbench.core.errors import ConfigError, did_you_mean


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
    reading: Reading | None = None  # how an imported dataset or file is read (None: registered)
    # Training samples held out as the validation set (drawn by hold_out), or OWN_SPLIT: the
    # dataset's own validation split; None: no validation set.
    validation: int | str | None = None

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
        path = data_file(config.dataset, config.root)
        info, root = file_dataset(path), str(path.parent)
    else:
        info, root = get_dataset(config.dataset), config.root or root
    options = dataset_options(info, config.options)
    reading = _reading(config, info)
    tensors = None
    if info.spec is not None:
        spec = info.spec(options)
    else:
        key = _options_key(info, options, seed)
        loaded = _load_cached(info.load, root, config.download, key, reading)
        spec = spec_of(*loaded, info.name)
        if info.by_tensors:  # for one seed, so every seed of an experiment has one identity
            if info.takes_seed and seed != 0:
                key = _options_key(info, options, 0)
                loaded = _load_cached(info.load, root, config.download, key, reading)
            tensors = tensor_digest(*loaded)
    if config.subset is not None:
        if spec.integer_inputs:
            raise ConfigError(
                "data.subset",
                f"{info.name} is token windows; data.windows_per_epoch sets an epoch's length",
            )
        if config.subset > spec.train_size:
            raise ConfigError(
                "data.subset",
                f"{config.subset} is more than the {spec.train_size} training samples "
                f"of {info.name}",
            )
        spec = dataclasses.replace(spec, train_size=config.subset)
    validation = _held_out(config.validation, info, spec)
    if isinstance(validation, int):
        spec = dataclasses.replace(spec, train_size=spec.train_size - validation)
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
        reading,
        validation,
    )


OWN_SPLIT = "own"


def _held_out(validation: float | int | str | None, info: DatasetInfo, spec: DataSpec) -> Any:
    """`data.validation` as a count of the training samples (a fraction rounded, at least 1),
    or OWN_SPLIT where the dataset has its own (text: its contiguous validation block); refused
    when nothing would be left to train on."""
    if validation is None:
        return None
    text = spec.bytes_per_token is not None  # token windows carry their validation block
    if validation == OWN_SPLIT:
        if info.validation is None and not text:
            raise ConfigError(
                "data.validation",
                f"{info.name} has no validation split of its own; hold one out of the "
                "training set with a fraction (0.1) or a count of samples",
            )
        return OWN_SPLIT
    if text:
        raise ConfigError(
            "data.validation",
            f"{info.name} is text cut into contiguous blocks: its validation block is "
            "data.validation: own (windows drawn from the training block would overlap it)",
        )
    size = spec.train_size
    count = validation if isinstance(validation, int) else max(1, round(validation * size))
    if count >= size:
        raise ConfigError(
            "data.validation",
            f"{validation} holds out {count} of the {size} training samples of {info.name}, "
            "leaving none to train on",
        )
    return count


def hold_out(size: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (training, validation) indices of a training set of `size` with `count` held out:
    the first `count` of torch.randperm(size) drawn from a generator seeded VALIDATION_SEED
    (not the run's seed: every run of a problem shares one split), each part in its original
    order. Disjoint, and together every index once."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    return order[count:].sort().values, order[:count].sort().values


def _check_classes(name: str, train: torch.Tensor, full: torch.Tensor) -> None:
    """A held-out validation set that takes every sample of a class is refused."""
    if full.is_floating_point() or full.dim() != 1:
        return
    missing = sorted(set(full.unique().tolist()) - set(train.unique().tolist()))
    if missing:
        raise ConfigError(
            "data.validation",
            f"holds out every training sample of class {missing[0]} of {name}; hold out fewer",
        )


def _reading(config: DataConfig, info: DatasetInfo) -> Reading | None:
    """The data section's reading fields for a dataset read from its tensors (imported, a
    file); a registered dataset has its own reading and refuses them."""
    given = {key: getattr(config, key) for key in Reading.__dataclass_fields__}
    if isinstance(given["input_column"], list):  # several columns: hashable, for the cache
        given["input_column"] = tuple(given["input_column"])
    if info.spec is None:
        return Reading(**given)
    for key, value in given.items():
        if value is not None:
            raise ConfigError(
                f"data.{key}",
                f"{info.name} is a registered dataset; {key} applies to datasets named by "
                "import path or file",
            )
    return None


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
    reading: Reading | None = None,
) -> tuple[InMemoryDataset, InMemoryDataset]:
    given = json.loads(options)
    if reading is not None:  # only the loaders of imported datasets and files take it
        given["reading"] = reading
    return load(root=root, download=download, **given)


def load_data(data: BoundData, seed: int) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Train and test splits in memory (cached per process, so sweeps load each dataset once);
    the training split without its held-out validation samples."""
    train, _, test = load_splits(data, seed)
    return train, test


def load_splits(
    data: BoundData, seed: int
) -> tuple[InMemoryDataset, InMemoryDataset | None, InMemoryDataset]:
    """Train, validation (None without `data.validation`) and test splits in memory."""
    train, test = _load_cached(
        data.info.load,
        data.root,
        data.download,
        _options_key(data.info, data.options, seed),
        data.reading,
    )
    if isinstance(train, TokenWindows):  # token ids: nothing to normalise, subset or augment
        return train, (train.validation if data.validation == OWN_SPLIT else None), test
    if isinstance(train, ColumnsDataset):  # named columns: passed to the model as they are
        if data.subset is not None:
            train = train.select(torch.arange(data.subset))
        if data.validation is None:
            return train, None, test
        kept, held = hold_out(len(train), int(data.validation))
        _check_classes(data.info.name, train.targets[kept], train.targets)
        return train.select(kept), train.select(held), test
    if data.subset is not None:
        train = InMemoryDataset(train.inputs[: data.subset], train.targets[: data.subset])
    valid = None
    if data.validation == OWN_SPLIT:
        assert data.info.validation is not None
        valid = data.info.validation(root=data.root, download=data.download)
    elif data.validation is not None:
        kept, held = hold_out(len(train), int(data.validation))
        _check_classes(data.info.name, train.targets[kept], train.targets)
        valid = InMemoryDataset(train.inputs[held], train.targets[held])
        train = InMemoryDataset(train.inputs[kept], train.targets[kept])
    mean, std = data.normalize if data.normalize else (None, None)
    augment = make_augment(data.augment, seed) if data.augment is not None else None
    return (
        InMemoryDataset(train.inputs, train.targets, mean, std, augment),
        None if valid is None else InMemoryDataset(valid.inputs, valid.targets, mean, std),
        InMemoryDataset(test.inputs, test.targets, mean, std),
    )


def first_train_batch(
    data: BoundData, seed: int, size: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The first `size` training samples as training sees them (normalised), when planning
    has loaded the dataset already (its shape is read off its tensors); None for a dataset
    whose shape is known without loading it, so planning never loads one just for this."""
    if data.info.spec is not None:
        return None
    train, _ = load_data(data, seed)
    return train.first(size)
