"""scikit-learn's bundled datasets: the tensors are sklearn's own arrays after the documented
split, the split is stratified and fixed by `split_seed` alone, the hard-coded shapes are
sklearn's, the options are bound strictly, sklearn is needed only to load, and the problems
and shipped configs built on them train."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import optbench
from optbench.components.catalog import build_rows
from optbench.components.data import (
    DATASETS,
    SKLEARN_DATASETS,
    bind_data,
    get_dataset,
    load_data,
    sklearn_split,
)
from optbench.core.config import DataConfig, validate_config
from optbench.core.errors import ConfigError
from optbench.core.problems import PROBLEMS
from optbench.experiment.plan import make_plan
from tests.helpers import REPO, assert_one_error_line, invoke, write_config

NAMES = list(SKLEARN_DATASETS)
CLASSIFICATION = [n for n in NAMES if SKLEARN_DATASETS[n].classes is not None]
# What scikit-learn's documentation states (User Guide, "Toy datasets"): samples, features,
# classes (None: regression). Written out again here, so the table in data.py is checked twice:
# against the documentation and against the data.
DOCUMENTED = {
    "sklearn_digits": ("load_digits", 1797, 64, 10),
    "sklearn_breast_cancer": ("load_breast_cancer", 569, 30, 2),
    "sklearn_wine": ("load_wine", 178, 13, 3),
    "sklearn_iris": ("load_iris", 150, 4, 3),
    "sklearn_diabetes": ("load_diabetes", 442, 10, None),
}


def _bound(**data):
    return bind_data(DataConfig(**data), "unused")


def _sklearn_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    return getattr(datasets, SKLEARN_DATASETS[name].loader)(return_X_y=True)


def _reference_split(name: str, seed: int = 0, test_size: float = 0.25) -> list[np.ndarray]:
    """The documented split, made here with sklearn's own function."""
    x, y = _sklearn_arrays(name)
    classes = SKLEARN_DATASETS[name].classes is not None
    return train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y if classes else None
    )


def _block_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every `import sklearn...` fail, as on a machine without the extra (and forget the
    splits this process has read already)."""
    from optbench.components.data import sklearn_sets

    for module in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    sklearn_sets._split_tensors.cache_clear()


def test_every_documented_dataset_is_registered() -> None:
    assert set(DOCUMENTED) == set(SKLEARN_DATASETS)
    assert all(name in DATASETS for name in DOCUMENTED)


@pytest.mark.parametrize("name", NAMES)
def test_hard_coded_shapes_are_the_documented_ones_and_the_datas(name: str) -> None:
    _, samples, features, classes = DOCUMENTED[name]
    record = SKLEARN_DATASETS[name]
    assert (record.loader, record.samples, record.features, record.classes) == DOCUMENTED[name]
    x, y = _sklearn_arrays(name)
    assert x.shape == (samples, features)
    if classes is None:
        assert y.dtype.kind == "f"
    else:
        assert sorted(np.unique(y)) == list(range(classes))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 3])
def test_unstandardised_tensors_are_sklearns_arrays_after_the_split(name: str, seed: int) -> None:
    train, test = load_data(_bound(dataset=name, split_seed=seed, standardize=False), 0)
    x_train, x_test, y_train, y_test = _reference_split(name, seed)
    classes = SKLEARN_DATASETS[name].classes
    for held, inputs, targets in ((train, x_train, y_train), (test, x_test, y_test)):
        assert held.inputs.dtype == torch.float32
        assert torch.equal(held.inputs, torch.from_numpy(inputs.astype(np.float32)))
        if classes is None:
            assert held.targets.dtype == torch.float32 and held.targets.shape == (len(targets), 1)
            assert torch.equal(held.targets[:, 0], torch.from_numpy(targets.astype(np.float32)))
        else:
            assert held.targets.dtype == torch.long
            assert torch.equal(held.targets, torch.from_numpy(targets).long())


@pytest.mark.parametrize("name", NAMES)
def test_standardised_with_the_training_splits_statistics_only(name: str) -> None:
    train, test = load_data(_bound(dataset=name), 0)  # standardize: true is the default
    x_train, x_test, _, _ = _reference_split(name)
    scaler = StandardScaler().fit(x_train)
    assert torch.equal(train.inputs, torch.from_numpy(scaler.transform(x_train).astype(np.float32)))
    assert torch.equal(test.inputs, torch.from_numpy(scaler.transform(x_test).astype(np.float32)))
    varying = x_train.std(axis=0) > 0
    assert torch.allclose(train.inputs.mean(0), torch.zeros(()), atol=1e-5)
    assert torch.allclose(train.inputs.std(0, unbiased=False)[varying], torch.ones(()), atol=1e-4)
    # the test split's own statistics were not used: they differ from its standardisation
    assert not torch.allclose(test.inputs.mean(0), torch.zeros(()), atol=1e-3)


def test_digits_are_the_8x8_images_flattened_row_by_row() -> None:
    digits = datasets.load_digits()
    assert np.array_equal(digits.data, digits.images.reshape(len(digits.images), 64))
    train, _ = load_data(_bound(dataset="sklearn_digits", standardize=False), 0)
    assert train.inputs.shape[1:] == (64,) and float(train.inputs.max()) == 16.0


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_the_split_is_stratified(name: str) -> None:
    train, test = sklearn_split(name, test_size=0.3)
    labels = torch.cat([train.targets, test.targets])
    fraction = len(test) / len(labels)
    for label in labels.unique():
        total = int((labels == label).sum())
        in_test = int((test.targets == label).sum())
        assert abs(in_test - total * fraction) <= 1, (label, in_test, total)


def test_the_split_follows_split_seed_and_never_the_run_seed() -> None:
    data = _bound(dataset="sklearn_iris")
    first, second = load_data(data, 0), load_data(data, 7)  # two run seeds
    assert torch.equal(first[0].inputs, second[0].inputs)
    again = sklearn_split("sklearn_iris")
    assert torch.equal(again[0].inputs, first[0].inputs)
    assert torch.equal(again[1].targets, first[1].targets)
    other = sklearn_split("sklearn_iris", split_seed=1)
    assert not torch.equal(other[0].inputs, first[0].inputs)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("test_size", [0.25, 0.1, 0.5])
def test_the_spec_matches_the_loaded_tensors(name: str, test_size: float) -> None:
    data = _bound(dataset=name, test_size=test_size)
    train, test = load_data(data, 0)
    _, samples, features, classes = DOCUMENTED[name]
    assert data.spec.input_shape == tuple(train.inputs.shape[1:]) == (features,)
    assert data.spec.train_size == len(train) == samples - math.ceil(test_size * samples)
    assert len(train) + len(test) == samples
    assert data.spec.num_classes == classes
    if classes is not None:
        assert int(torch.cat([train.targets, test.targets]).max()) + 1 == classes


@pytest.mark.parametrize(
    ("options", "field", "fragment"),
    [
        ({"split_sed": 1}, "data.split_sed", "did you mean 'split_seed'"),
        ({"seed": 1}, "data.seed", "split_seed"),
        ({"test_size": "0.2"}, "data.test_size", "must be a number"),
        ({"split_seed": 1.5}, "data.split_seed", "must be an integer"),
        ({"split_seed": -1}, "data.split_seed", "must be in [0, 2**32)"),
        ({"standardize": 1}, "data.standardize", "true or false"),
        ({"test_size": 0}, "data.test_size", "fraction in (0, 1)"),
        ({"test_size": 1}, "data.test_size", "fraction in (0, 1)"),
        ({"test_size": 0.01}, "data.test_size", "at least 3 (one per class)"),
        ({"test_size": 0.99}, "data.test_size", "into 1 train and 149 test"),
    ],
)
def test_options_are_bound_strictly(options: dict, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as error:
        _bound(dataset="sklearn_iris", **options)
    assert error.value.field == field
    assert fragment in error.value.problem


def test_an_unknown_option_is_one_error_line(tmp_path: Path) -> None:
    config = {
        "name": "x",
        "problem": "digits_mlp",
        "data": {"test_sise": 0.2},
        "optimizer": {"name": "SGD", "lr": 0.1},
    }
    result = invoke("validate", str(write_config(tmp_path, config)))
    assert_one_error_line(result, "data.test_sise", "did you mean 'test_size'")


def test_options_are_canonical_and_in_the_resolved_config() -> None:
    data = _bound(dataset="sklearn_wine", test_size=1 / 2, split_seed=2.0)
    assert data.resolved() | {"root": None} == {
        "dataset": "sklearn_wine",
        "root": None,
        "normalize": None,
        "split_seed": 2,
        "test_size": 0.5,
        "standardize": True,
    }


def test_sklearns_loader_by_import_path_is_the_registered_dataset() -> None:
    assert get_dataset("sklearn.datasets.load_digits").name == "sklearn_digits"
    assert get_dataset("sklearn.datasets.load_diabetes").name == "sklearn_diabetes"


def test_without_sklearn_listing_and_planning_work_and_loading_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _block_sklearn(monkeypatch)
    rows = {row[0]: row for row in build_rows("datasets")}
    assert rows["sklearn_digits"][1] == "64, 10 classes"
    assert rows["sklearn_diabetes"][1] == "10, regression"
    data = _bound(dataset="sklearn_wine", split_seed=11)  # the spec needs no import
    assert data.spec.train_size == 133
    with pytest.raises(ConfigError) as error:
        load_data(data, 0)
    message = str(error.value)
    assert "pip install 'optbench[sklearn]'" in message and "\n" not in message


def test_optbench_list_datasets_shows_them_without_sklearn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path))  # built now, with sklearn blocked
    _block_sklearn(monkeypatch)
    result = invoke("list", "datasets")
    assert result.exit_code == 0, result.output
    for name in NAMES:
        assert name in result.output
    assert "64, 10 classes" in result.output and "4, 3 classes" in result.output


@pytest.mark.parametrize(
    ("name", "dataset", "parameters", "metric", "version"),
    [
        ("digits_mlp", "sklearn_digits", 7510, "test_accuracy", 1),  # 64·100+100 + 100·10+10
        ("diabetes_linear", "sklearn_diabetes", 11, "test_loss", 2),  # 10 weights + 1 bias
    ],
)
def test_problem_records(
    name: str, dataset: str, parameters: int, metric: str, version: int
) -> None:
    info = PROBLEMS.get(name, "problem")
    assert (info.version, info.parameters, info.metric, info.references) == (
        version,
        parameters,
        metric,
        (),
    )
    loader = SKLEARN_DATASETS[dataset].loader
    assert info.source == f"scikit-learn bundled dataset (sklearn.datasets.{loader})"
    assert info.config["data"]["dataset"] == dataset
    config = validate_config({"name": name, "problem": name, "optimizer": {"name": "SGD"}})
    plan = make_plan(config)
    assert sum(math.prod(shape) for _, shape in plan.parameters) == parameters
    assert config.problem is not None and config.problem.overrides == {}


@pytest.mark.parametrize("name", ["digits_mlp", "diabetes_linear"])
def test_the_shipped_configs_train(name: str, tmp_path: Path) -> None:
    path = REPO / "configs" / f"{name}.yaml"
    outcome = optbench.run(path, ["epochs=2"], results_dir=tmp_path)
    assert outcome.status == "completed", outcome.summary
    epochs = outcome.epochs
    assert len(epochs) == 2
    assert np.isfinite(epochs["train_loss"]).all() and np.isfinite(epochs["test_loss"]).all()
    if name == "digits_mlp":
        assert epochs["test_accuracy"].iloc[-1] > 0.8  # two epochs already learn the digits


def test_diabetes_targets_are_standardised_with_the_training_splits_statistics() -> None:
    """diabetes_linear's targets, against sklearn's split scaled by hand with numpy; the
    option exists for regression sets only (a classification run's identity is unchanged)."""
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    from optbench.components.data.sklearn_sets import sklearn_regression_split

    x, y = load_diabetes(return_X_y=True)
    _, _, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    train, test = sklearn_regression_split("sklearn_diabetes", standardize_target=True)
    mean, std = y_train.mean(), y_train.std()
    assert np.allclose(train.targets.numpy().ravel(), (y_train - mean) / std, atol=1e-5)
    assert np.allclose(test.targets.numpy().ravel(), (y_test - mean) / std, atol=1e-5)
    sgd = {"name": "SGD"}
    plan = make_plan(validate_config({"name": "d", "problem": "diabetes_linear", "optimizer": sgd}))
    assert plan.config.data.model_extra["standardize_target"] is True
    with pytest.raises(ConfigError, match="standardize_target"):
        make_plan(
            validate_config(
                {
                    "name": "d",
                    "problem": "digits_mlp",
                    "optimizer": sgd,
                    "data": {"standardize_target": True},
                }
            )
        )
