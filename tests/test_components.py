"""Every component kind by registered name or by import path (and data from a tensor file).

A registered component spelled as its path is the registered one (one name, one run-id); any
other is bound to its own signature as strictly as the built-in ones, fills the arguments that
describe the data, and brings its code (a data file: its content) into the run-id.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from optbench.components.data import load_data
from optbench.core.config import load_config, validate_config
from optbench.experiment.plan import make_plan
from optbench.storage.results import Status
from tests.helpers import (
    assert_one_error_line,
    fashion_mnist_files_as,
    invoke,
    regression_dict,
    write_config,
)

MYMODELS = '''
import torch
from torch import nn


class SmallNet(nn.Module):
    """Flatten, one hidden layer, an output per class."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Wide(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
'''


def _images(n: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 256, (n, 1, 6, 6), generator=generator, dtype=torch.uint8)
    return inputs, torch.arange(n) % classes


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config folder for the user's modules; they and sys.path are forgotten afterwards, and
    the working directory is elsewhere (so only load_config can make the folder importable)."""
    folder = tmp_path / "project"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield folder
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def _plan(config: dict[str, Any]) -> Any:
    return make_plan(validate_config(config))


def _images_config(root: Path, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "images",
        "epochs": 1,
        "device": "cpu",
        "data": {"dataset": "cifar10", "root": str(root), "batch_size": 8},
        "model": {"name": "cifar_cnn"},
        "loss": "cross_entropy",
        "optimizer": {"name": "SGD", "lr": 0.01},
    }
    config.update(changes)
    return config


# --------------------------------------------------------------------------- one name, one id


@pytest.mark.parametrize(
    ("section", "registered", "by_path"),
    [
        ("model", {"name": "mlp"}, {"name": "optbench.components.models.mlp"}),
        ("model", {"name": "mlp"}, {"name": "optbench.components.models:mlp"}),
        ("loss", "mse", "torch.nn.MSELoss"),
        (
            "loss",
            {"name": "huber", "delta": 2},
            {"name": "torch.nn.modules.loss:HuberLoss", "delta": 2},
        ),
        (
            "scheduler",
            {"name": "StepLR", "step_size": 1},
            {"name": "torch.optim.lr_scheduler.StepLR", "step_size": 1},
        ),
        (
            "data",
            {"dataset": "synthetic_regression", "n_train": 64},
            {"dataset": "optbench.components.data.synthetic_regression", "n_train": 64},
        ),
    ],
)
def test_a_registered_component_by_its_path_is_the_registered_one(
    section: str, registered: Any, by_path: Any
) -> None:
    first = _plan(regression_dict(**{section: registered}))
    second = _plan(regression_dict(**{section: by_path}))
    assert first.run_id == second.run_id
    assert first.resolved == second.resolved
    assert "code" not in second.resolved


def test_torchvision_dataset_classes_by_path_are_the_registered_datasets(tmp_path: Path) -> None:
    for name, path in [
        ("cifar10", "torchvision.datasets.CIFAR10"),
        ("fashion_mnist", "torchvision.datasets.FashionMNIST"),
        ("mnist", "torchvision.datasets.mnist:MNIST"),
    ]:
        model = {"name": "linear"}  # no data is read: the registered ones know their shapes
        first = _plan(_images_config(tmp_path, data={"dataset": name}, model=model))
        second = _plan(_images_config(tmp_path, data={"dataset": path}, model=model))
        assert second.data.info.name == name
        assert first.run_id == second.run_id


# --------------------------------------------------------------------------- models


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_a_torchvision_builder_gets_num_classes_from_the_data_and_trains(cifar_root) -> None:
    import torchvision

    from optbench.experiment.train import train

    root, _ = cifar_root
    data = {"dataset": "cifar10", "root": str(root), "subset": 8, "batch_size": 8}
    plan = _plan(_images_config(root, data=data, model={"name": "torchvision.models.resnet18"}))
    assert plan.model_options["num_classes"] == 10
    assert plan.resolved["model"]["name"] == "torchvision.models.resnet.resnet18"
    assert plan.resolved["code"]["model"]["distribution"] == "torchvision"

    def count(model: torch.nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    assert count(plan.build_model()) == count(torchvision.models.resnet18(num_classes=10))
    result = train(plan)
    assert result.status == Status.COMPLETED
    assert math.isfinite(result.rows[0]["train_loss"])


def test_a_torchvision_builder_passes_other_keys_to_its_model(tmp_path: Path) -> None:
    model = {"name": "torchvision.models.resnet18", "zero_init_residual": True}
    plan = _plan(_images_config(tmp_path, model=model))
    assert plan.model_options["zero_init_residual"] is True
    assert plan.build_model().layer1[0].bn2.weight.abs().sum() == 0


def _run(config: Path, results: Path) -> Any:
    return invoke("run", str(config), "--results-dir", str(results))


def test_a_model_next_to_the_config_runs_through_the_cli(project: Path, tmp_path: Path) -> None:
    (project / "mymodels.py").write_text(MYMODELS)
    images = {"dataset": "mydata.images", "batch_size": 8}
    (project / "mydata.py").write_text(
        "import torch\n\n"
        "def images(n: int = 24):\n"
        "    x = torch.zeros(n, 1, 6, 6, dtype=torch.uint8)\n"
        "    y = torch.arange(n) % 3\n"
        "    return (x, y), (x[:6], y[:6])\n"
    )
    config = write_config(
        project,
        {
            "name": "mine",
            "epochs": 1,
            "device": "cpu",
            "data": images,
            "model": {"name": "mymodels.SmallNet", "hidden": 4},
            "loss": "cross_entropy",
            "optimizer": {"name": "SGD", "lr": 0.1},
        },
    )
    assert str(project) not in sys.path
    result = _run(config, tmp_path / "results")
    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "results" / "mine").glob("*/config.yaml")
    resolved = yaml.safe_load(written.read_text())
    assert resolved["model"] == {
        "name": "mymodels.SmallNet",
        "in_features": 36,
        "num_classes": 3,
        "hidden": 4,
    }
    assert resolved["code"]["model"]["module"] == "mymodels"


@pytest.mark.parametrize(
    ("model", "fragments"),
    [
        (
            {"name": "mymodels.SmallNet", "hiden": 4},
            ("model.hiden: mymodels.SmallNet does not accept 'hiden'", "did you mean 'hidden'"),
        ),
        ({"name": "mymodels.SmallNet", "hidden": "four"}, ("model.hidden: must be a number",)),
        ({"name": "mymodels.Wide"}, ("model.width: is required by mymodels.Wide",)),
        ({"name": "mymodels.Missing"}, ("model.name", "'mymodels' has no attribute 'Missing'")),
    ],
)
def test_an_imported_model_is_bound_as_strictly_as_a_built_in_one(
    project: Path, model: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    (project / "mymodels.py").write_text(MYMODELS)
    config = write_config(project, regression_dict(model=model))
    assert_one_error_line(invoke("validate", str(config)), *fragments)


def test_editing_a_model_file_next_to_the_config_changes_the_run_id(project: Path) -> None:
    config = write_config(project, regression_dict(model={"name": "mymodels.Wide", "width": 10}))
    source = project / "mymodels.py"

    def run_id(text: str) -> str:
        source.write_text(text)
        sys.modules.pop("mymodels", None)  # as a new process would import it
        return make_plan(load_config(config)).run_id

    first = run_id(MYMODELS)
    assert run_id(MYMODELS) == first
    assert run_id(MYMODELS + "\n# a comment changes the code's hash\n") != first


# --------------------------------------------------------------------------- datasets


def test_an_unregistered_torchvision_dataset_class_is_held_as_uint8_tensors(
    tmp_path: Path,
) -> None:
    """KMNIST, on Fashion-MNIST's files put where KMNIST reads them."""
    import torchvision

    fashion_mnist_files_as(tmp_path, "KMNIST")
    data = {"dataset": "torchvision.datasets.KMNIST", "root": str(tmp_path)}
    config = _images_config(tmp_path, data=data)
    plan = _plan(config)
    spec = plan.data_spec
    assert (spec.input_shape, spec.num_classes, spec.train_size) == ((1, 28, 28), 10, 60_000)
    assert plan.resolved["data"]["normalize"] is None  # none by default for imported datasets
    assert plan.resolved["code"]["dataset"]["distribution"] == "torchvision"
    train, test = load_data(plan.data, 0)
    reference = torchvision.datasets.KMNIST(str(tmp_path), train=False)
    assert torch.equal(test.inputs[:, 0], reference.data) and test.inputs.dtype == torch.uint8
    assert torch.equal(test.targets, reference.targets)
    inputs, _ = train.__getitems__([0])
    assert inputs.dtype == torch.float32 and inputs.min() >= 0 and inputs.max() <= 1


_DATASET_CLASSES = '''
import numpy as np
import torch
import torchvision
from PIL import Image


class MyCifar(torchvision.datasets.CIFAR10):
    """CIFAR-10 under another name: its .data is N x H x W x C."""


class Pictures(torch.utils.data.Dataset):
    """PIL images and no .data: read one by one."""

    def __init__(self, root, train=True, download=False, shade: int = 0):
        self.n, self.shade = (6 if train else 4), shade

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return Image.fromarray(np.full((5, 5, 3), i + self.shade, np.uint8)), i % 3
'''


def test_a_dataset_class_by_path_is_read_into_tensors_laid_out_as_its_samples(
    project: Path, cifar_root
) -> None:
    root, images = cifar_root
    (project / "mysets.py").write_text(_DATASET_CLASSES)
    sys.path.append(str(project))
    plan = _plan(_images_config(root, data={"dataset": "mysets.MyCifar", "root": str(root)}))
    train, _ = load_data(plan.data, 0)
    assert torch.equal(train.inputs, torch.from_numpy(images).permute(0, 3, 1, 2))

    data = {"dataset": "mysets.Pictures", "shade": 10, "batch_size": 2}
    plan = _plan(_images_config(root, data=data, model={"name": "linear"}))
    assert (plan.data_spec.input_shape, plan.data_spec.num_classes) == ((3, 5, 5), 3)
    train, test = load_data(plan.data, 0)
    assert train.inputs.dtype == torch.uint8 and train.inputs[4, :, 0, 0].tolist() == [14] * 3
    assert test.targets.tolist() == [0, 1, 2, 0]


_DATA_FUNCTIONS = '''
import torch


def blobs(n: int, seed: int, features: int = 3):
    """n points per split, drawn from the run's seed."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, features, generator=g)
    y = (x[:, 0] > 0).long() * 2
    train = torch.utils.data.TensorDataset(x[:n], y[:n])
    return train, (x[n:].numpy(), y[n:].numpy())


def values(n: int = 8):
    x = torch.randn(n, 2)
    return (x, x.sum(1)), (x, x.sum(1))


def broken():
    raise RuntimeError("no network")
'''


def test_a_data_function_gets_its_keys_from_the_data_section_and_the_runs_seed(
    project: Path,
) -> None:
    (project / "mydata.py").write_text(_DATA_FUNCTIONS)
    sys.path.append(str(project))
    data = {"dataset": "mydata.blobs", "n": 20, "features": 4, "batch_size": 4}
    plan = _plan(regression_dict(data=data, loss="cross_entropy"))
    assert (plan.data_spec.input_shape, plan.data_spec.num_classes) == ((4,), 3)
    assert plan.resolved["data"]["n"] == 20 and "seed" not in plan.resolved["data"]
    assert plan.resolved["code"]["dataset"]["module"] == "mydata"
    train, test = load_data(plan.data, 0)
    assert len(train) == len(test) == 20 and train.inputs.dtype == torch.float32
    other = make_plan(validate_config(regression_dict(data=data, loss="cross_entropy", seed=1)))
    assert not torch.equal(load_data(other.data, 1)[0].inputs, train.inputs)
    assert other.run_id != plan.run_id

    regression = _plan(regression_dict(data={"dataset": "mydata.values"}))
    assert regression.data_spec.num_classes is None
    assert load_data(regression.data, 0)[0].targets.shape == (8, 1)  # one value per sample


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"dataset": "mydata.blobs", "n": 4, "m": 1}, ("data.m: unknown key", "takes:", "n")),
        ({"dataset": "mydata.blobs"}, ("data.n: is required by mydata.blobs",)),
        ({"dataset": "mydata.blobs", "n": "x"}, ("data.n",)),
        ({"dataset": "mydata.blobs", "n": 4, "seed": 1}, ("data.seed: unknown key",)),
        ({"dataset": "mydata.broken"}, ("data.dataset: mydata.broken failed", "no network")),
    ],
)
def test_a_data_function_is_bound_strictly(
    project: Path, data: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    (project / "mydata.py").write_text(_DATA_FUNCTIONS)
    config = write_config(project, regression_dict(data=data, loss="cross_entropy"))
    assert_one_error_line(invoke("validate", str(config)), *fragments)


def _save_npz(path: Path, seed: int = 0) -> None:
    x, y = _images(12, 4, seed)
    np.savez(path, x_train=x.numpy(), y_train=y.numpy(), x_test=x[:4].numpy(), y_test=y[:4].numpy())


def _file_config(dataset: str) -> dict[str, Any]:
    return regression_dict(
        data={"dataset": dataset, "batch_size": 4}, model={"name": "linear"}, loss="cross_entropy"
    )


def test_a_data_file_next_to_the_config_is_identified_by_its_content(
    project: Path, tmp_path: Path
) -> None:
    _save_npz(project / "points.npz")
    config = write_config(project, _file_config("points.npz"))
    result = _run(config, tmp_path / "results")
    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "results" / "tiny").glob("*/config.yaml")
    resolved = yaml.safe_load(written.read_text())
    digest = hashlib.sha256((project / "points.npz").read_bytes()).hexdigest()[:16]
    assert resolved["code"]["dataset"] == {"sha256": digest}
    assert resolved["data"]["dataset"] == "points.npz"
    assert resolved["data"]["root"] == str(project)  # where it lives: not in the run-id
    assert resolved["data"]["normalize"] is None

    first = make_plan(load_config(config))
    assert (first.data_spec.input_shape, first.data_spec.num_classes) == ((1, 6, 6), 4)
    moved = tmp_path / "moved"
    shutil.copytree(project, moved)
    assert make_plan(load_config(moved / "exp.yaml")).run_id == first.run_id
    _save_npz(moved / "points.npz", seed=1)
    assert make_plan(load_config(moved / "exp.yaml")).run_id != first.run_id


def test_a_pt_file_in_the_working_directory(project: Path) -> None:
    x, y = _images(8, 2, 0)
    torch.save({"x_train": x, "y_train": y, "x_test": x, "y_test": y}, "images.pt")  # cwd
    plan = make_plan(load_config(write_config(project, _file_config("images.pt"))))
    assert plan.data_spec.num_classes == 2 and plan.data.root == str(Path.cwd().resolve())
    normalized = _file_config("images.pt")
    normalized["data"]["normalize"] = {"mean": [0.5], "std": [0.25]}
    plan = make_plan(load_config(write_config(project, normalized)))
    inputs, _ = load_data(plan.data, 0)[0].__getitems__([0])
    assert torch.allclose(inputs, (x[:1].float() / 255 - 0.5) / 0.25)


def test_float_images_normalized_are_evaluated_the_same_every_epoch(
    project: Path, tmp_path: Path
) -> None:
    """An .npz of float images in [0, 1] with data.normalize: evaluation normalises each test
    batch, never the stored test set in place (which each epoch's evaluation would normalise
    again). With lr 0 the model never changes, so every epoch's test loss is the first's, and
    the first is the hand-normalised batch's."""
    x, y = _images(12, 4, 0)
    floats = x.float() / 255
    np.savez(
        project / "floats.npz",
        x_train=floats.numpy(),
        y_train=y.numpy(),
        x_test=floats[:4].numpy(),
        y_test=y[:4].numpy(),
    )
    config = _file_config("floats.npz")
    config["data"]["normalize"] = {"mean": [0.5], "std": [0.25]}
    config["optimizer"] = {"name": "SGD", "lr": 0.0}
    config["epochs"] = 3
    result = _run(write_config(project, config), tmp_path / "results")
    assert result.exit_code == 0, result.output
    (epochs,) = (tmp_path / "results" / "tiny").glob("*/epochs.csv")
    losses = pd.read_csv(epochs)["test_loss"].tolist()
    assert losses == [losses[0]] * 3
    plan = make_plan(load_config(write_config(project, config)))
    torch.manual_seed(plan.config.seed)
    model = plan.build_model()
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model((floats[:4] - 0.5) / 0.25), y[:4])
    assert losses[0] == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize(
    ("write", "fragments"),
    [
        (None, ("data.dataset: data file 'gone.npz' not found", "next to the config")),
        (
            lambda path: np.savez(path, x_train=np.zeros((2, 3)), y_train=np.zeros(2)),
            ("data.dataset: gone.npz has no x_test, y_test", "x_train, y_train, x_test, y_test"),
        ),
        (lambda path: path.write_text("not a zip"), ("data.dataset: cannot read gone.npz",)),
        (
            lambda path: np.savez(
                path, x_train=np.zeros((2, 3)), y_train=np.zeros(3), x_test=1, y_test=1
            ),
            ("data.dataset", "needs N >= 1 samples of each"),
        ),
    ],
)
def test_a_bad_data_file_is_one_line(project: Path, write: Any, fragments: tuple[str, ...]) -> None:
    if write is not None:
        write(project / "gone.npz")
    config = write_config(project, _file_config("gone.npz"))
    assert_one_error_line(invoke("validate", str(config)), *fragments)


# --------------------------------------------------------------------------- losses, schedulers

_LOSSES_AND_SCHEDULERS = """
import torch


def scaled_mse(outputs, targets, scale: float = 1.0):
    return scale * torch.nn.functional.mse_loss(outputs, targets)


def per_sample(outputs, targets):
    return (outputs - targets) ** 2


class Plateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    pass
"""


def test_imported_losses_and_schedulers(project: Path) -> None:
    (project / "mine.py").write_text(_LOSSES_AND_SCHEDULERS)
    sys.path.append(str(project))
    plan = _plan(regression_dict(loss={"name": "mine.scaled_mse", "scale": 2}))
    assert plan.loss_options == {"scale": 2.0}
    outputs, targets = torch.ones(3, 1), torch.zeros(3, 1)
    assert plan.build_loss()(outputs, targets).item() == 2.0
    assert plan.resolved["code"]["loss"]["module"] == "mine"

    plan = _plan(regression_dict(loss={"name": "torch.nn.SoftMarginLoss"}))  # not registered
    assert plan.loss_options == {}  # torch's deprecated arguments are not offered

    plan = _plan(regression_dict(scheduler={"name": "mine.Plateau", "patience": 2}))
    assert plan.scheduler.info.steps_on_metric
    assert plan.resolved["scheduler"]["patience"] == 2
    assert plan.resolved["code"]["scheduler"]["module"] == "mine"


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        (
            {"loss": "mine.per_sample"},
            ("loss: mine.per_sample returns (2, 1), not a single number",),
        ),
        (
            {"loss": {"name": "mine.scaled_mse", "scal": 2}},
            ("loss.scal: mine.scaled_mse does not accept 'scal'",),
        ),
        (
            {"loss": "torch.nn.CrossEntropyLoss", "model": {"name": "linear"}},
            ("loss: cross_entropy expects classes",),  # registered: the targets check applies
        ),
        (
            {"loss": "torch.nn.BCEWithLogitsLoss", "data": {"dataset": "mydata.classes"}},
            ("loss: torch.nn.modules.loss.BCEWithLogitsLoss fails on outputs of shape (2, 3)",),
        ),
        (
            {"loss": "collections.OrderedDict"},
            ("loss: 'collections.OrderedDict' is not an nn.Module",),
        ),
        ({"scheduler": {"name": "mine.Plateau", "patiense": 1}}, ("scheduler.patiense",)),
        (
            {"scheduler": {"name": "torch.optim.lr_scheduler.LambdaLR"}},
            ("scheduler.name", "takes Python callables"),
        ),
    ],
)
def test_imported_losses_and_schedulers_are_refused_in_one_line(
    project: Path, changes: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    (project / "mine.py").write_text(_LOSSES_AND_SCHEDULERS)
    (project / "mydata.py").write_text(
        "import torch\n\ndef classes():\n"
        "    x = torch.randn(6, 2)\n    y = torch.tensor([0, 1, 2, 0, 1, 2])\n"
        "    return (x, y), (x, y)\n"
    )
    config = write_config(project, regression_dict(**changes))
    assert_one_error_line(invoke("validate", str(config)), *fragments)


# --------------------------------------------------------------------------- sweeps


@pytest.mark.slow
def test_spawned_sweep_workers_import_the_configs_modules(project: Path, tmp_path: Path) -> None:
    (project / "mymodels.py").write_text(MYMODELS)
    _save_npz(project / "points.npz")
    config = regression_dict(
        data={"dataset": "points.npz", "batch_size": 4},
        model={"name": "mymodels.SmallNet"},
        loss="cross_entropy",
        sweep={"optimizer.lr": [0.1, 0.01]},
    )
    path = write_config(project, config)
    result = invoke("sweep", str(path), "--workers", "2", "--results-dir", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "r" / "tiny").glob("*/summary.json"))) == 2
