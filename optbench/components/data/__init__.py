"""Datasets, loaded once (through torchvision, a function or a tensor file) and kept in memory.

Besides the registered datasets, `data.dataset` may be an import path to a torchvision-style
dataset class or to a function returning the train and test sets, or a .pt/.npz file of
tensors; these are read into tensors while planning, and their shape and classes read off them.

One job per module, each importing only those above it in this list:
- memory: InMemoryDataset (uint8 kept, normalised per batch, served by index), ColumnsDataset
  (named input columns, a dict batch for model(**batch)), ShuffledBatches
  (DataLoader(shuffle=True)'s batches and random draws, served by index) and keep_batch;
- spec: DataSpec, DatasetInfo (what a dataset kind provides) and the DATASETS registry;
- tensor_cache: the memory-mapped tensor file shared by processes, and its lock;
- torchvision_files, sklearn_sets, synthetic, text: the loaders of the built-in kinds (text:
  byte-level token windows, TokenWindows, served by their own loader);
- builtin: registers the built-in datasets (name, description, shape, loader, normalisation);
- imported: import paths (classes, functions) and .pt/.npz files, and their identity hashes;
- bind: bind_data (planning) and load_data (training), the entry points.

A new kind of dataset is a loader module returning (train, test) InMemoryDatasets plus either
a DatasetInfo registered in builtin (a named dataset) or a branch of imported.get_dataset /
bind.bind_data (a kind named by path); nothing else here needs to change.
"""

from optbench.components.data import builtin as _builtin  # noqa: F401  (fills DATASETS)
from optbench.components.data.bind import (
    BoundData,
    bind_data,
    dataset_options,
    first_train_batch,
    hold_out,
    load_data,
    load_splits,
    resolve_normalize,
)
from optbench.components.data.imported import DATA_FILE_KEYS, get_dataset
from optbench.components.data.memory import InMemoryDataset, ShuffledBatches, keep_batch
from optbench.components.data.sklearn_sets import (
    SKLEARN_DATASETS,
    SKLEARN_EXTRA,
    SklearnDataset,
    sklearn_split,
)
from optbench.components.data.spec import DATASETS, DatasetInfo, DataSpec
from optbench.components.data.synthetic import (
    deepobs_quadratic,
    deepobs_two_d,
    synthetic_regression,
)
from optbench.components.data.tensor_cache import TENSOR_FOLDER, TENSOR_FORMAT
from optbench.components.data.torchvision_files import CIFAR10_FOLDER

__all__ = [
    "CIFAR10_FOLDER",
    "DATASETS",
    "DATA_FILE_KEYS",
    "SKLEARN_DATASETS",
    "SKLEARN_EXTRA",
    "TENSOR_FOLDER",
    "TENSOR_FORMAT",
    "BoundData",
    "DataSpec",
    "DatasetInfo",
    "InMemoryDataset",
    "ShuffledBatches",
    "SklearnDataset",
    "bind_data",
    "dataset_options",
    "deepobs_quadratic",
    "deepobs_two_d",
    "first_train_batch",
    "get_dataset",
    "hold_out",
    "keep_batch",
    "load_data",
    "load_splits",
    "resolve_normalize",
    "sklearn_split",
    "synthetic_regression",
]
