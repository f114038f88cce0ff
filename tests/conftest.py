"""Shared fixtures: small valid configs and the real Fashion-MNIST from Debian's package."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torchvision
import yaml

from optbench.config import ExperimentConfig, validate_config
from optbench.data import SYSTEM_DATA_DIR

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST_GZ = SYSTEM_DATA_DIR / "fashion-mnist" / "train-images-idx3-ubyte.gz"

REGRESSION: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "epochs": 2,
    "device": "cpu",
    "data": {"dataset": "synthetic_regression", "n_train": 256, "n_test": 64, "batch_size": 32},
    "model": {"name": "linear"},
    "loss": "mse",
    "optimizer": {"name": "SGD", "lr": 0.05},
}


def regression_dict(**changes: Any) -> dict[str, Any]:
    """A copy of the small regression config with top-level sections replaced."""
    config = copy.deepcopy(REGRESSION)
    config.update(copy.deepcopy(changes))
    return config


def regression_config(**changes: Any) -> ExperimentConfig:
    return validate_config(regression_dict(**changes))


def write_config(folder: Path, config: dict[str, Any], name: str = "exp.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding real Fashion-MNIST, unpacked from Debian's dataset-fashion-mnist."""
    if not FASHION_MNIST_GZ.is_file():
        pytest.fail(
            f"{FASHION_MNIST_GZ} is missing: apt-get install dataset-fashion-mnist "
            "(.ci/run does this)"
        )
    return tmp_path_factory.mktemp("data")


@pytest.fixture(autouse=True, scope="session")
def _private_catalog_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep `optbench list`'s catalogue cache out of the user's home during tests."""
    os.environ["OPTBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def write_cifar10(root: Path, train_per_batch: int = 20, test: int = 30) -> np.ndarray:
    """Write CIFAR-10's on-disk format (pickled batches of 3072-byte rows) and return the train
    images as NHWC; torchvision's md5 list is what the caller patches to accept these files."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = []
    for index in range(1, 6):
        data = rng.integers(0, 256, size=(train_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=train_per_batch).tolist()
        with open(folder / f"data_batch_{index}", "wb") as handle:
            pickle.dump({"data": data, "labels": labels}, handle)
        images.append(data)
    test_data = rng.integers(0, 256, size=(test, 3072), dtype=np.uint8)
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({"data": test_data, "labels": rng.integers(0, 10, size=test).tolist()}, handle)
    names = [f"airplane{i}" for i in range(10)]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": names}, handle)
    return np.concatenate(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


@pytest.fixture
def cifar_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, np.ndarray]:
    images = write_cifar10(tmp_path)
    accept_cifar10_files(tmp_path, monkeypatch)
    return tmp_path, images


def accept_cifar10_files(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torchvision's integrity check accept the files write_cifar10 wrote."""
    folder = root / "cifar-10-batches-py"

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[n, md5(n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5(n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5("batches.meta")})
