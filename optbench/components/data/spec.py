"""What a dataset is to the rest of optbench: its shape (DataSpec), its record (DatasetInfo)
and the registry of named datasets (DATASETS), filled by builtin.py and by anyone registering."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from optbench.components.data.memory import InMemoryDataset
from optbench.core.registry import Registry


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data, without loading it."""

    input_shape: tuple[int, ...]
    num_classes: int | None  # None: regression
    train_size: int
    regression_outputs: int = 1  # values per target (a target of shape (N, k): k)
    layout: str | None = None  # how imported image arrays were laid out, for `validate`
    # Sequences (data/text.py): a class target per position, e.g. (context,); () one per sample
    target_shape: tuple[int, ...] = ()
    integer_inputs: bool = False  # token ids, served as int64 (not scaled images or floats)
    # Text: UTF-8 bytes per token of the evaluated targets (1.0 for bytes, more for characters):
    # bits per byte = nats per token / ln 2 / this. None: not text.
    bytes_per_token: float | None = None

    @property
    def num_outputs(self) -> int:
        return self.num_classes or self.regression_outputs


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
    # The dataset's own validation split (`data.validation: own`), loaded like `load`; None:
    # it has none, a validation set is held out of the training set.
    validation: Callable[..., InMemoryDataset] | None = None
    listed: str = ""  # its shape in `optbench list` where only its data tells it (spec None)


DATASETS: Registry[DatasetInfo] = Registry("dataset")
