"""The datasets bundled with scikit-learn (an optional extra): their sizes, known without
sklearn, and one seeded, optionally standardised train/test split of each."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from optbench.components.data.memory import InMemoryDataset
from optbench.components.data.spec import DataSpec
from optbench.core.errors import ConfigError

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
    """A classification set's split: the options a config can give it (see _split)."""
    return _split(name, split_seed, test_size, standardize, False)


def sklearn_regression_split(
    name: str,
    split_seed: int = 0,
    test_size: float = 0.25,
    standardize: bool = True,
    standardize_target: bool = False,
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """A regression set's split: a classification set's options and `standardize_target`
    (see _split); an option of its own, so no classification run's identity changes."""
    return _split(name, split_seed, test_size, standardize, standardize_target)


def split_options(name: str) -> Any:
    """The function whose signature lists the dataset's options (and that loads it)."""
    return sklearn_split if SKLEARN_DATASETS[name].classes is not None else sklearn_regression_split


def _split(
    name: str, split_seed: int, test_size: float, standardize: bool, standardize_target: bool
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """A scikit-learn bundled dataset, split once into train and test sets.

    The split is sklearn's train_test_split(X, y, test_size=test_size, random_state=split_seed,
    stratify=y for classes, None for regression): seeded by `split_seed`, not the run's seed,
    so every seed of a comparison trains and tests on the same samples. `standardize` scales
    each feature with a StandardScaler fit on the training split only (no test statistics leak
    in; a constant feature is only centred). `standardize_target` (regression only) does the
    same to the target, so that losses are in units of the target's training std and one
    learning rate range fits every optimizer (diabetes' raw targets, 25-346, need an lr >= 1
    from any optimizer whose step is bounded, such as Adam). Features float32; classes long,
    regression targets float32 (N, 1). sklearn is imported here only: it is an optional extra.
    """
    x_train, y_train, x_test, y_test = _split_tensors(
        name, split_seed, test_size, standardize, standardize_target
    )
    return InMemoryDataset(x_train, y_train), InMemoryDataset(x_test, y_test)


@functools.lru_cache(maxsize=8)
def _split_tensors(
    name: str, split_seed: int, test_size: float, standardize: bool, standardize_target: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """_split's tensors, read and split once a process (a sweep's runs, a batch's trials and
    their checks each load the same split; reading the file is tens of milliseconds). Nothing
    writes into a dataset's tensors."""
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
    if standardize_target:
        scaler = StandardScaler().fit(y_train.reshape(-1, 1))
        y_train = scaler.transform(y_train.reshape(-1, 1)).ravel()
        y_test = scaler.transform(y_test.reshape(-1, 1)).ravel()

    def held(inputs: np.ndarray, targets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.as_tensor(inputs, dtype=torch.float32)
        if dataset.classes is None:
            return features, torch.as_tensor(targets, dtype=torch.float32).view(-1, 1)
        return features, torch.as_tensor(targets, dtype=torch.long)

    return *held(x_train, y_train), *held(x_test, y_test)


def _sklearn_sizes(name: str, test_size: float) -> tuple[int, int]:
    """(train, test) sizes of the split, computed as train_test_split does for a fraction."""
    samples = SKLEARN_DATASETS[name].samples
    test = math.ceil(test_size * samples)
    return samples - test, test


def check_sklearn(name: str, bound: dict[str, Any]) -> None:
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


def sklearn_spec(name: str, options: dict[str, Any]) -> DataSpec:
    dataset = SKLEARN_DATASETS[name]
    train, _ = _sklearn_sizes(name, options["test_size"])
    return DataSpec((dataset.features,), dataset.classes, train)


def load_sklearn(
    name: str, root: str, download: bool, **options: Any
) -> tuple[InMemoryDataset, InMemoryDataset]:
    return split_options(name)(name, **options)
