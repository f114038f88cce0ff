"""Imported datasets in the formats users bring (issue 19): torchvision classes that take
split= read from files in each dataset's own format, Hugging Face `datasets.Dataset`s,
channels-last arrays, and regression targets with several values."""

from __future__ import annotations

import hashlib
import inspect
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision

import optbench
from optbench.components.data.bind import _load_cached
from optbench.core.errors import ConfigError
from tests.helpers import invoke


def _config(dataset: str, root: Path | None = None, **data: Any) -> dict[str, Any]:
    section = {"dataset": dataset, "batch_size": 4, **data}
    if root is not None:
        section["root"] = str(root)
    return {
        "name": "formats",
        "epochs": 1,
        "device": "cpu",
        "data": section,
        "model": {"name": "linear"},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "SGD", "lr": 0.1},
    }


@pytest.fixture(autouse=True)
def _fresh_cache():
    _load_cached.cache_clear()  # each test's files are read, as in a new process
    yield
    _load_cached.cache_clear()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- split=


def _write_svhn(root: Path, monkeypatch, sizes: dict[str, int]) -> None:
    """SVHN's train and test .mat files as torchvision reads them, their md5s listed."""
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for split, n in sizes.items():
        images = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        labels = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # SVHN writes digit 0 as 10
        path = root / f"{split}_32x32.mat"
        savemat(path, {"X": images, "y": labels})
        # torchvision checks each file against the md5 it lists: list ours (the check still runs)
        url, filename, _ = torchvision.datasets.SVHN.split_list[split]
        monkeypatch.setitem(
            torchvision.datasets.SVHN.split_list, split, [url, filename, _md5(path)]
        )


def test_svhn_reads_its_train_and_test_mat_files(tmp_path: Path, monkeypatch) -> None:
    sizes = {"train": 6, "test": 4}
    _write_svhn(tmp_path, monkeypatch, sizes)

    plan = optbench.plan(_config("torchvision.datasets.SVHN", tmp_path))
    assert plan.data_spec.input_shape == (3, 32, 32)
    assert plan.data_spec.train_size == sizes["train"]
    _, test = _load_cached(plan.data.info.load, plan.data.root, False, "{}", plan.data.reading)
    reference = torchvision.datasets.SVHN(str(tmp_path), split="test")
    assert len(test) == sizes["test"]
    assert torch.equal(test.inputs, torch.as_tensor(reference.data))
    assert torch.equal(test.targets, torch.as_tensor(reference.labels))
    assert "split" not in plan.resolved["data"]  # chosen by code, not a data option

    # A split name of its own, from its declared names; an unknown one is refused by name.
    extra = optbench.plan(_config("torchvision.datasets.SVHN", tmp_path, test_split="train"))
    assert extra.run_id != plan.run_id
    assert extra.resolved["data"]["test_split"] == "train"
    with pytest.raises(ConfigError, match="train, test, extra") as refused:
        optbench.plan(_config("torchvision.datasets.SVHN", tmp_path, test_split="valid"))
    assert refused.value.field == "data.test_split"


def _write_stl10(root: Path, monkeypatch) -> None:
    """STL10's binary files (5 training, 3 test images) as torchvision reads them, md5s listed."""
    folder = root / torchvision.datasets.STL10.base_folder
    folder.mkdir()
    rng = np.random.default_rng(1)
    for split, n in (("train", 5), ("test", 3)):
        rng.integers(0, 256, n * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        rng.integers(1, 11, n, dtype=np.uint8).tofile(folder / f"{split}_y.bin")  # 1-based
    (folder / "unlabeled_X.bin").write_bytes(b"")  # listed in the integrity check
    for attribute in ("train_list", "test_list"):
        listed = [
            [name, _md5(folder / name)]
            for name, _ in getattr(torchvision.datasets.STL10, attribute)
        ]
        monkeypatch.setattr(torchvision.datasets.STL10, attribute, listed)


def test_stl10_reads_its_binary_files(tmp_path: Path, monkeypatch) -> None:
    _write_stl10(tmp_path, monkeypatch)

    plan = optbench.plan(_config("torchvision.datasets.STL10", tmp_path))
    assert plan.data_spec.input_shape == (3, 96, 96)
    assert plan.data_spec.train_size == 5
    train, _ = _load_cached(plan.data.info.load, plan.data.root, False, "{}", plan.data.reading)
    reference = torchvision.datasets.STL10(str(tmp_path), split="train")
    assert torch.equal(train.inputs, torch.as_tensor(reference.data))
    assert torch.equal(train.targets, torch.as_tensor(reference.labels).long())


def _write_dtd(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> None:
    """DTD as torchvision reads it: dtd/dtd/images/<texture>/<file>.jpg of many sizes, listed
    by split in dtd/dtd/labels/<split>1.txt."""
    from PIL import Image

    data = root / "dtd" / "dtd"
    rng = np.random.default_rng(2)
    textures = ("banded", "dotted")
    for split, shapes in sizes.items():
        lines = []
        for index, (height, width) in enumerate(shapes):
            texture = textures[index % 2]
            (data / "images" / texture).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / "images" / texture / f"{split}_{index}.jpg")
            lines.append(f"{texture}/{split}_{index}.jpg")
        (data / "labels").mkdir(exist_ok=True)
        (data / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")


def test_images_of_many_sizes_are_resized_by_data_image_size(tmp_path: Path) -> None:
    from torchvision.transforms import v2

    from tests.helpers import assert_one_error_line, write_config

    _write_dtd(tmp_path, {"train": [(20, 30), (24, 18), (16, 16), (30, 20)], "test": [(18, 22)]})
    config = _config("torchvision.datasets.DTD", tmp_path)
    line = assert_one_error_line(invoke("validate", str(write_config(tmp_path, config))), "DTD")
    assert "data.image_size" in line and "different shapes" in line

    plan = optbench.plan(_config("torchvision.datasets.DTD", tmp_path, image_size=12))
    assert plan.data_spec.input_shape == (3, 12, 12) and plan.data_spec.train_size == 4
    train, _ = _load_cached(plan.data.info.load, plan.data.root, False, "{}", plan.data.reading)
    resize = v2.Compose([v2.PILToTensor(), v2.Resize((12, 12), antialias=True)])
    reference = torchvision.datasets.DTD(str(tmp_path), split="train", transform=resize)
    assert torch.equal(train.inputs, torch.stack([image for image, _ in reference]))
    assert train.targets.tolist() == [label for _, label in reference]
    assert plan.resolved["data"]["image_size"] == 12  # part of the run's identity
    unset = optbench.plan(Path(__file__).parents[1] / "configs" / "digits_mlp.yaml")
    assert "image_size" not in unset.resolved["data"]  # run-ids from before it stay


@pytest.mark.slow  # three datasets, each trained 3 times through optbench.run: ~10 s
@pytest.mark.parametrize("name", ["SVHN", "STL10", "DTD"])
def test_a_split_dataset_trains_is_killed_and_resumes_exactly_through_optbench_run(
    name: str, tmp_path: Path, monkeypatch
) -> None:
    from tests.helpers import assert_resumes_exactly

    root = tmp_path / "data"
    root.mkdir()
    data: dict[str, Any] = {"batch_size": 2}
    if name == "SVHN":
        _write_svhn(root, monkeypatch, {"train": 6, "test": 4})
    elif name == "STL10":
        _write_stl10(root, monkeypatch)
    else:
        _write_dtd(root, {"train": [(20, 30), (24, 18), (16, 16), (30, 20)], "test": [(18, 22)]})
        data["image_size"] = 12
    config = _config(f"torchvision.datasets.{name}", root, **data)
    assert_resumes_exactly({**config, "epochs": 2}, tmp_path / "runs")


def test_split_names_are_read_from_each_class() -> None:
    from optbench.components.data.imported import default_splits, split_names, takes_split

    datasets = torchvision.datasets
    assert takes_split(datasets.SVHN) and takes_split(datasets.STL10)
    assert takes_split(datasets.Flowers102) and takes_split(datasets.DTD)
    assert set(split_names(datasets.Flowers102)) == {"train", "val", "test"}
    # Not 'train'/'test': the class's own default training split and its held-out one.
    assert default_splits(datasets.OxfordIIITPet) == ("trainval", "test")
    assert default_splits(datasets.ImageNet) == ("train", "val")
    assert takes_split(datasets.Places365)
    assert default_splits(datasets.Places365) == ("train-standard", "test")
    # EMNIST's split names a subset ('balanced'); train= goes through its **kwargs.
    assert not takes_split(datasets.EMNIST) and not takes_split(datasets.CIFAR10)


def _classes_taking_split() -> list[str]:
    """torchvision.datasets' own classes whose constructor takes `split`, read by signature."""
    return [
        name
        for name in sorted(torchvision.datasets.__all__)
        if inspect.isclass(cls := getattr(torchvision.datasets, name))
        and "split" in inspect.signature(cls).parameters
    ]


@pytest.mark.parametrize("name", _classes_taking_split())  # 35 classes, ~5 s in all
def test_every_torchvision_dataset_taking_split_is_refused_in_one_true_line_without_files(
    name: str, tmp_path: Path, monkeypatch
) -> None:
    from optbench.components.data.imported import (
        default_splits,
        documented_split_names,
        split_names,
        takes_split,
    )
    from tests.helpers import assert_one_error_line, write_config

    cls = getattr(torchvision.datasets, name)
    names = split_names(cls) or documented_split_names(cls)
    if takes_split(cls) and names:  # defaults chosen among the names it declares or documents
        train, test = default_splits(cls)
        assert train in names and train.startswith("train") and test in names, (train, test)

    def unreachable(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError(f"{name} tried to download without data.download")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    root = tmp_path / "root"
    root.mkdir()
    config = write_config(tmp_path, _config(f"torchvision.datasets.{name}", root))
    line = assert_one_error_line(invoke("validate", str(config)), name)
    assert "has no split" not in line and "unexpected keyword" not in line, line
    downloads = "download" in inspect.signature(cls).parameters
    if "data.download: true" in line:  # offered only to classes that can fetch their files
        assert downloads, line
    assert {p.name for p in root.iterdir()} <= {"optbench-tensors"}  # nothing fetched


def test_split_names_are_refused_where_nothing_takes_them(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=np.zeros((4, 3)),
        y_train=np.arange(4),
        x_test=np.zeros((2, 3)),
        y_test=np.arange(2),
    )
    with pytest.raises(ConfigError) as refused:
        optbench.plan(_config(str(path), train_split="train"))
    assert refused.value.field == "data.train_split"


# --------------------------------------------------------------------------- Hugging Face


def _hf_images(n: int, seed: int) -> Any:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(n)]
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=3)}
    )
    return datasets.Dataset.from_dict(
        {"img": images, "label": [i % 3 for i in range(n)]}, features=features
    )


def test_a_hugging_face_dataset_is_held_as_tensors(tmp_path: Path, monkeypatch) -> None:
    train, test = _hf_images(6, 0), _hf_images(4, 1)
    module = tmp_path / "hf_data.py"
    module.write_text(
        "import datasets\n\n\ndef load(folder):\n"
        "    return datasets.load_from_disk(folder + '/train'), "
        "datasets.load_from_disk(folder + '/test')\n"
    )
    train.save_to_disk(str(tmp_path / "train"))
    test.save_to_disk(str(tmp_path / "test"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "hf_data", raising=False)

    plan = optbench.plan(_config("hf_data.load", folder=str(tmp_path)))
    assert plan.data_spec.input_shape == (3, 8, 8)
    assert plan.data_spec.num_classes == 3
    held, _ = _load_cached(
        plan.data.info.load, plan.data.root, False, f'{{"folder": "{tmp_path}"}}', plan.data.reading
    )
    first = np.asarray(train[0]["img"])  # PIL image, H x W x C
    assert held.inputs.dtype == torch.uint8
    assert torch.equal(held.inputs[0], torch.as_tensor(first).permute(2, 0, 1))
    assert held.targets.tolist() == train["label"][:]
    assert "tensors" in plan.resolved["code"]["dataset"]


def test_hugging_face_columns_are_named_or_refused(tmp_path: Path, monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")
    module = tmp_path / "hf_columns.py"
    module.write_text(
        "import datasets\n\n\ndef load():\n"
        "    split = datasets.Dataset.from_dict({'x': [[0.0, 1.0], [1.0, 0.0]], 'y': [0, 1]})\n"
        "    return split, split\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "hf_columns", raising=False)
    assert datasets  # the module imports it
    with pytest.raises(
        ConfigError, match="has none of the columns image, img, pixel_values"
    ) as refused:
        optbench.plan(_config("hf_columns.load"))
    assert refused.value.field == "data.input_column"
    plan = optbench.plan(_config("hf_columns.load", input_column="x", target_column="y"))
    assert plan.data_spec.input_shape == (2,)
    assert plan.resolved["data"]["input_column"] == "x"


def test_a_wrong_split_type_is_named_by_module(tmp_path: Path, monkeypatch) -> None:
    module = tmp_path / "bad_split.py"
    module.write_text("def load():\n    return {'x': 1}, {'x': 1}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bad_split", raising=False)
    with pytest.raises(
        ConfigError, match=r"is a builtins\.dict; it must be a torch\.utils\.data\.Dataset"
    ):
        optbench.plan(_config("bad_split.load"))


def test_a_split_without_labels_is_refused_saying_which_keys_choose_another(
    tmp_path: Path, monkeypatch
) -> None:
    """As Places365's `test` split: images whose targets are None."""
    module = tmp_path / "unlabeled_test.py"
    module.write_text(
        "import torch\n"
        "class Photos(torch.utils.data.Dataset):\n"
        "    def __init__(self, root, split='train'):\n"
        "        self.labelled = split != 'test'\n"
        "    def __len__(self):\n"
        "        return 4\n"
        "    def __getitem__(self, i):\n"
        "        return torch.zeros(3, 4, 4), (i % 2 if self.labelled else None)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "unlabeled_test", raising=False)
    with pytest.raises(ConfigError, match=r"test set has no labels .*data\.test_split"):
        optbench.plan(_config("unlabeled_test.Photos", tmp_path))
    labelled = optbench.plan(_config("unlabeled_test.Photos", tmp_path, test_split="val"))
    assert labelled.data_spec.input_shape == (3, 4, 4)


# --------------------------------------------------------------------------- layouts


def _npz(path: Path, x_train: np.ndarray, y_train: np.ndarray, x_test, y_test) -> Path:
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def test_channels_last_arrays_are_held_channels_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x_train = rng.integers(0, 256, (6, 28, 28, 3), dtype=np.uint8)  # Keras' layout
    path = _npz(tmp_path / "nhwc.npz", x_train, np.arange(6) % 2, x_train[:2], np.arange(2))
    config = {**_config(str(path)), "model": {"name": "cifar_cnn"}}
    plan = optbench.plan(config)
    assert plan.data_spec.input_shape == (3, 28, 28)
    train, _ = _load_cached(plan.data.info.load, plan.data.root, False, "{}", plan.data.reading)
    assert torch.equal(train.inputs, torch.as_tensor(x_train).permute(0, 3, 1, 2))

    written = tmp_path / "nhwc.yaml"
    import yaml

    written.write_text(yaml.safe_dump(config))
    result = invoke("validate", str(written))
    assert result.exit_code == 0, result.output
    assert "inputs read as nhwc (28, 28, 3): channels last, held as (3, 28, 28)" in result.stdout

    said = optbench.plan({**config, "data": {**config["data"], "layout": "nhwc"}})
    assert said.data_spec.input_shape == (3, 28, 28)
    assert said.run_id != plan.run_id  # a field the user wrote is part of the experiment


def test_grayscale_arrays_get_one_channel(tmp_path: Path) -> None:
    x_train = np.random.default_rng(3).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    path = _npz(tmp_path / "nhw.npz", x_train, np.arange(5) % 2, x_train[:2], np.arange(2))
    plan = optbench.plan({**_config(str(path)), "model": {"name": "cifar_cnn"}})
    assert plan.data_spec.input_shape == (1, 28, 28)
    assert "one channel" in plan.data_spec.layout


def test_an_ambiguous_layout_asks_for_data_layout(tmp_path: Path) -> None:
    x = np.zeros((4, 3, 8, 3), dtype=np.uint8)
    path = _npz(tmp_path / "odd.npz", x, np.arange(4) % 2, x[:2], np.arange(2))
    with pytest.raises(ConfigError) as refused:
        optbench.plan(_config(str(path)))
    assert refused.value.field == "data.layout"
    assert optbench.plan(_config(str(path), layout="nchw")).data_spec.input_shape == (3, 8, 3)


# --------------------------------------------------------------------------- several outputs


def test_regression_with_three_outputs_trains_with_mse(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    weights = rng.normal(size=(5, 3))
    x_train, x_test = rng.normal(size=(64, 5)), rng.normal(size=(16, 5))
    path = _npz(tmp_path / "multi.npz", x_train, x_train @ weights, x_test, x_test @ weights)
    module = tmp_path / "multi_model.py"
    module.write_text(
        "import torch\n\n\ndef build(in_features: int, num_outputs: int):\n"
        "    return torch.nn.Linear(in_features, num_outputs)\n"
    )
    import importlib

    sys.path.insert(0, str(tmp_path))
    try:
        importlib.invalidate_caches()
        config = {
            **_config(str(path)),
            "epochs": 20,
            "model": {"name": "multi_model.build"},
            "loss": {"name": "mse"},
            "optimizer": {"name": "SGD", "lr": 0.1},
        }
        plan = optbench.plan(config)
        assert plan.data_spec.num_outputs == 3
        assert plan.resolved["model"]["num_outputs"] == 3  # filled from the data
        run = optbench.run(config, results_dir=tmp_path / "results")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("multi_model", None)
    losses = run.epochs["test_loss"].tolist()
    assert losses[-1] < 0.05 * losses[0]  # learns all three outputs, not one
