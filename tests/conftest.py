"""Shared fixtures: small valid configs and the real Fashion-MNIST from Debian's package."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
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
