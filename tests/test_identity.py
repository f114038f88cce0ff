"""One experiment, one run-id; one run-id, one experiment.

The resolved config is canonical (numbers as their parameter's type, one name per registered
component), covers every field of the schema, and brings the code of an imported component
into the run-id.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel

from optbench.components.data.imported import Reading
from optbench.components.registry import code_identity
from optbench.core.config import ExperimentConfig, apply_override, validate_config
from optbench.core.errors import ConfigError
from optbench.core.identity import in_run_id
from optbench.experiment.plan import make_plan
from tests.helpers import REPO, regression_dict, write_config


def _run_id(**changes: Any) -> str:
    return make_plan(validate_config(regression_dict(**changes))).run_id


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"name": "SGD", "lr": 1}, {"name": "SGD", "lr": 1.0}),
        ({"name": "SGD", "lr": 0.1}, {"name": "sgd", "lr": 0.1}),
        ({"name": "SGD", "lr": 0.1}, {"name": "torch.optim.SGD", "lr": 0.1}),
        ({"name": "SGD", "lr": 0.1}, {"name": "torch.optim:SGD", "lr": 0.1}),
        ({"name": "SGD", "lr": 0.1}, {"name": "SGD", "lr": 0.1, "momentum": 0}),
        ({"name": "Adam", "betas": [0, 0.5]}, {"name": "Adam", "betas": [0.0, 0.5]}),
        ({"name": "Adam"}, {"name": "Adam", "betas": [0.9, 0.999], "weight_decay": 0}),
    ],
)
def test_one_experiment_written_differently_has_one_run_id(first: dict, second: dict) -> None:
    assert _run_id(optimizer=first) == _run_id(optimizer=second)


def test_numbers_are_stored_as_the_type_their_parameter_takes() -> None:
    plan = make_plan(
        validate_config(
            regression_dict(
                optimizer={"name": "SGD", "lr": 1, "momentum": 0},
                scheduler={"name": "StepLR", "step_size": 2.0},
            )
        )
    )
    optimizer, scheduler = plan.resolved["optimizer"], plan.resolved["scheduler"]
    assert type(optimizer["lr"]) is float and type(optimizer["momentum"]) is float
    assert type(optimizer["dampening"]) is float  # defaults too: SGD's signature says 0
    assert type(scheduler["step_size"]) is int and scheduler["step_size"] == 2
    assert plan.run_id == _run_id(
        optimizer={"name": "SGD", "lr": 1.0}, scheduler={"name": "StepLR", "step_size": 2}
    )


def test_different_experiments_have_different_run_ids() -> None:
    base = _run_id()
    assert _run_id(optimizer={"name": "SGD", "lr": 0.051}) != base
    assert _run_id(optimizer={"name": "SGD", "lr": 0.05, "momentum": 0.5}) != base


def test_the_lr_sweep_everyone_runs_and_one_experiment_spelled_four_ways(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from optbench.ui.cli import app

    config = write_config(tmp_path, regression_dict())
    runner = CliRunner()
    same = runner.invoke(
        app,
        [
            *("sweep", str(config), "--dry-run", "--results-dir", str(tmp_path)),
            *("--grid", "optimizer.lr=1,1.0", "--grid", "optimizer.name=SGD,torch.optim.SGD"),
        ],
    )
    assert same.exit_code == 0, same.output
    assert "1 runs" in same.output
    grid = runner.invoke(
        app, ["sweep", str(config), "--dry-run", *("--grid", "optimizer.lr=1e-3,1e-4")]
    )
    assert grid.exit_code == 0, grid.output  # nothing on disk to look at: no --results-dir
    assert "2 runs" in grid.output and "optimizer.lr=0.001" in grid.output


# --------------------------------------------------------------------------- every schema field

# A config that sets every section, and for each field of the schema another valid value.
_BASE: dict[str, Any] = {
    "name": "walk",
    "problem": {"name": "fmnist_2c2d", "version": 1, "overrides": {}},  # as a resolved config
    "seed": 0,
    "epochs": 2,
    "device": "auto",
    "data": {
        "dataset": "fashion_mnist",
        "root": "data",
        "download": False,
        "batch_size": 64,
        "test_batch_size": 1000,
        "normalize": {"mean": [0.5], "std": [0.5]},
        "subset": 1000,
    },
    "model": {"name": "linear"},
    "loss": {"name": "cross_entropy"},
    "optimizer": {"name": "SGD", "lr": 0.1, "param_groups": [{"params": "*bias", "lr": 0.2}]},
    "scheduler": {"name": "CosineAnnealingLR", "interval": "epoch"},
    "fast": False,
    "sweep": None,
    "tune": {"space": {"optimizer.lr": {"log_uniform": [1.0e-4, 1.0]}}},
    "log": [{"name": "tensorboard"}],
}
_OTHER_VALUE: dict[str, Any] = {
    "name": "renamed",
    "problem.name": "mnist_2c2d",
    "problem.version": 2,
    "problem.overrides": {"epochs": 3},
    "seed": 1,
    "epochs": 3,
    "device": "cpu",
    "data.dataset": "mnist",
    "data.root": "/somewhere/else",
    "data.download": True,
    "data.batch_size": 32,
    "data.test_batch_size": 500,
    "data.normalize.mean": [0.4],
    "data.normalize.std": [0.3],
    "data.subset": 2000,
    "data.channels": 3,
    "data.train_split": "extra",
    "data.test_split": "extra",
    "data.input_column": "pixels",
    "data.target_column": "y",
    "data.layout": "nhwc",
    "data.image_size": 64,
    "data.augment": "deepobs_cifar10",
    "data.validation": 0.1,
    "data.shuffle": "once",
    "data.drop_last": True,
    "eval_every": 7,
    "model.name": "mlp",
    "loss.name": "nll",
    "optimizer.name": "Adam",
    "optimizer.param_groups.0.params": "*weight",
    "optimizer.protocol": "closure",
    "scheduler.name": "ConstantLR",
    "scheduler.interval": "step",
    "regularization.l2": 0.002,
    "regularization.params": "*bias",
    "fast": True,
    "threads": 1,
    "clip_grad_norm": 1.0,
    "precision": "bf16",
    "accumulate": 2,
    "compile": True,
    "sweep": {"seed": [0, 1]},
    "tune.space": {"optimizer.momentum": {"uniform": [0.0, 0.9]}},
    "tune.trials": 5,
    "tune.sampler": "random",
    "tune.pruner": "none",
    "tune.metric": "test_loss",
    "tune.seeds": [3],
    "log.0.name": "mlflow",
    "executor": {"name": "local", "workers": 2},
    "tune.batch_trials": 4,
}


# Fields that say how a dataset named by import path or file is read (tests/test_data_formats.py
# shows they change its run-id when set).
# How an imported dataset is read (components/data/imported.py Reading): refused for a
# registered one.
_IMPORTED_ONLY = {f"data.{key}" for key in Reading.__dataclass_fields__}


def _schema_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf field of a config schema, dotted; a list of sections is walked at item 0."""
    fields = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if typing.get_origin(annotation) is list:
            (item,) = typing.get_args(annotation)
            if isinstance(item, type) and issubclass(item, BaseModel):
                fields += _schema_fields(item, f"{prefix}{name}.0.")
                continue
        if typing.get_origin(annotation) is dict:  # user keys (tune.space), one field
            fields.append(f"{prefix}{name}")
            continue
        options = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
        section = next(
            (a for a in options if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        if section is not None:
            fields += _schema_fields(section, f"{prefix}{name}.")
        else:
            fields.append(f"{prefix}{name}")
    return fields


def test_the_walk_covers_every_field_of_the_schema() -> None:
    # A new field must be given another value here, so the next test shows where it stands.
    assert sorted(_schema_fields(ExperimentConfig)) == sorted(_OTHER_VALUE)


@pytest.mark.parametrize("field", sorted(_OTHER_VALUE))
def test_every_field_changes_the_run_id_except_the_documented_ones(field: str) -> None:
    import copy

    base = make_plan(validate_config(copy.deepcopy(_BASE)))
    changed = copy.deepcopy(_BASE)
    apply_override(changed, field.split("."), _OTHER_VALUE[field])
    if field in _IMPORTED_ONLY:  # how an imported dataset is read: refused for a registered one
        with pytest.raises(ConfigError) as refused:
            make_plan(validate_config(changed))
        assert refused.value.field == field
        return
    plan = make_plan(validate_config(changed))
    if not in_run_id(field):
        assert plan.run_id == base.run_id
    else:
        assert plan.run_id != base.run_id


# --------------------------------------------------------------------------- code identity


def test_a_class_from_an_installed_package_is_identified_by_its_distribution() -> None:
    identity = code_identity(pd.DataFrame)
    assert identity["distribution"] == "pandas"
    assert identity["version"] == importlib.metadata.version("pandas")


_MY_OPTIMIZER = '''
import torch


class MyOpt(torch.optim.SGD):
    """SGD under another name: {note}"""
'''


def _validate(config: Path, package: Path) -> str:
    """`optbench validate` in a fresh process (a new import of the user's module); the run-id."""
    completed = subprocess.run(
        [sys.executable, "-m", "optbench", "validate", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(package), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.split("run-id ")[1].split(")")[0]


@pytest.mark.slow
def test_editing_an_imported_optimizer_gives_a_new_run_id(tmp_path: Path) -> None:
    package = tmp_path / "code"
    (package / "mypkg").mkdir(parents=True)
    (package / "mypkg" / "__init__.py").write_text("")
    source = package / "mypkg" / "optim.py"
    source.write_text(_MY_OPTIMIZER.format(note="first version"))
    config = write_config(tmp_path, regression_dict(optimizer={"name": "mypkg.optim.MyOpt"}))

    first = _validate(config, package)
    assert first == _validate(config, package)  # the same code: the same experiment
    assert first.startswith("myopt-seed0-")
    source.write_text(_MY_OPTIMIZER.format(note="second version"))
    assert _validate(config, package) != first


def test_what_was_hashed_is_recorded_in_the_resolved_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    (tmp_path / "recorded_opt.py").write_text(_MY_OPTIMIZER.format(note="recorded"))
    monkeypatch.syspath_prepend(str(tmp_path))
    plan = make_plan(validate_config(regression_dict(optimizer={"name": "recorded_opt:MyOpt"})))
    code = plan.resolved["code"]["optimizer"]
    assert plan.resolved["optimizer"]["name"] == "recorded_opt.MyOpt"
    assert code["module"] == "recorded_opt"
    expected = hashlib.sha256((tmp_path / "recorded_opt.py").read_bytes()).hexdigest()[:16]
    assert code["sha256"] == expected


def test_device_auto_is_one_experiment_wherever_it_runs_and_resolves_once() -> None:
    plan = make_plan(validate_config(regression_dict(device="auto")))
    assert plan.resolved["device"] == "auto"  # the run-id does not depend on this machine
    assert plan.device.type in ("cpu", "cuda", "mps")  # resolved once, here, for training


def test_a_worker_that_plans_another_run_id_fails_the_point_instead_of_mislabeling_it(
    tmp_path: Path,
) -> None:
    from optbench.sweeps.executors import train_point

    config = regression_dict()
    planned = make_plan(validate_config(config)).run_id
    driver_saw = planned[:-1] + ("0" if planned[-1] != "0" else "1")  # other code on the driver
    result = train_point(driver_saw, config, str(tmp_path))
    assert result.status == "failed" and result.run_id == driver_saw
    assert f"plans it as {planned}" in result.error and "differ from the driver's" in result.error
    assert not any(tmp_path.iterdir())  # nothing trained under either id
    agreed = train_point(planned, config, str(tmp_path))
    assert agreed.status == "completed"


# --------------------------------------------------------------------------- all of the user's code


def _write_module(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(text)
    return path


def test_editing_a_helper_module_the_model_imports_gives_a_new_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    scale = _write_module(tmp_path, "idhelp_scale", "FACTOR = 1.0\n")
    layers = _write_module(
        tmp_path,
        "idhelp_layers",
        "from torch import nn\n\n\ndef layer(n: int) -> nn.Module:\n    return nn.Linear(n, 1)\n",
    )
    _write_module(
        tmp_path,
        "idhelp_model",
        "import idhelp_scale\nfrom idhelp_layers import layer\nfrom torch import nn\n\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, in_features: int) -> None:\n"
        "        super().__init__()\n"
        "        self.layer = layer(in_features)\n\n"
        "    def forward(self, x):\n"
        "        return self.layer(x) * idhelp_scale.FACTOR\n",
    )

    def plan() -> Any:
        return make_plan(validate_config(regression_dict(model={"name": "idhelp_model.Net"})))

    first = plan()
    imports = first.resolved["code"]["model"]["imports"]
    assert sorted(imports) == ["idhelp_layers", "idhelp_scale"]  # torch and the stdlib are not
    assert plan().run_id == first.run_id
    scale.write_text("FACTOR = 2.0  # the model now doubles its outputs\n")
    second = plan()
    assert second.run_id != first.run_id
    layers.write_text(layers.read_text().replace("nn.Linear(n, 1)", "nn.Linear(n, 1, bias=False)"))
    assert plan().run_id not in (first.run_id, second.run_id)


_DATA_READER = '''
import numpy as np
import torch


def from_file(path: str = "", seed: int = 0):
    """Rows of x1 x2 y from a text file, with noise from the seed."""
    rows = torch.tensor(np.loadtxt(path), dtype=torch.float32)
    noise = torch.randn(len(rows), generator=torch.Generator().manual_seed(seed))
    pair = (rows[:, :2], rows[:, 2] + noise)
    return pair, pair


class FromFile(torch.utils.data.Dataset):
    """The same as a torchvision-style class."""

    def __init__(self, root, train=True, download=False, path=""):
        self.rows = torch.tensor(np.loadtxt(path), dtype=torch.float32)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index, :2], self.rows[index, 2]
'''


@pytest.mark.parametrize("reader", ["idread_data.from_file", "idread_data.FromFile"])
def test_editing_the_file_an_imported_dataset_reads_gives_a_new_run_id(
    reader: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optbench.components.data import bind as data

    monkeypatch.syspath_prepend(str(tmp_path))
    _write_module(tmp_path, "idread_data", _DATA_READER)
    table = tmp_path / "table.txt"
    table.write_text("0 1 2\n1 0 3\n2 2 1\n3 1 0\n")

    def plan(seed: int = 0) -> Any:
        data._load_cached.cache_clear()  # as in a new process: the file is read again
        section = {"dataset": reader, "path": str(table), "batch_size": 2}
        return make_plan(validate_config(regression_dict(data=section, seed=seed)))

    first = plan()
    assert first.resolved["code"]["dataset"]["tensors"]
    assert plan().run_id == first.run_id
    table.write_text("0 1 2\n1 0 3\n2 2 1\n3 1 5\n")  # one target edited
    assert plan().run_id != first.run_id
    # The data of every seed is identified by one seed's: the seeds stay one configuration.
    assert plan(seed=1).resolved["code"] == plan(seed=0).resolved["code"]


def test_minus_zero_is_zero() -> None:
    zero = _run_id(optimizer={"name": "SGD", "lr": 0.1, "weight_decay": 0.0})
    assert _run_id(optimizer={"name": "SGD", "lr": 0.1, "weight_decay": -0.0}) == zero
    l2 = {"l2": 0.0, "params": "*"}
    assert _run_id(regularization={**l2, "l2": -0.0}) == _run_id(regularization=l2)


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_keys_passed_on_through_kwargs_are_canonical(cifar_root: tuple[Path, Any]) -> None:
    from optbench.components.registry import bind_passed

    root, _ = cifar_root
    data = {"dataset": "cifar10", "root": str(root), "subset": 8, "batch_size": 8}

    def plan(**model: Any) -> Any:
        config = {
            **regression_dict(data=data, loss="cross_entropy"),
            "model": {"name": "torchvision.models.resnet18", **model},
        }
        return make_plan(validate_config(config))

    # resnet18(**kwargs) passes width_per_group on to ResNet, which declares it an int
    whole = plan(width_per_group=64.0)
    assert whole.run_id == plan(width_per_group=64).run_id
    assert type(whole.resolved["model"]["width_per_group"]) is int
    # a receiver that declares nothing: one rule, a whole number is an int
    assert bind_passed(None, {"a": 1.0, "b": [2.0, 0.5], "c": -0.0}, "model") == {
        "a": 1,
        "b": [2, 0.5],
        "c": 0,
    }


def test_a_default_that_is_code_is_left_out_of_the_resolved_config(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from optbench.ui.cli import app

    optimizer = {"name": "tests.custom_optimizers.SentinelSGD"}
    plan = make_plan(validate_config(regression_dict(optimizer=optimizer)))
    assert "momentum" not in plan.resolved["optimizer"]
    assert plan.resolved["code"]["optimizer"]["code_defaults"] == ["momentum"]
    assert "object at 0x" not in yaml.safe_dump(plan.resolved)  # writable, with no address
    assert plan.build_optimizer(plan.build_model()).defaults["momentum"] == 0.0
    set_plan = make_plan(validate_config(regression_dict(optimizer={**optimizer, "momentum": 0.5})))
    assert set_plan.resolved["optimizer"]["momentum"] == 0.5  # a value the config sets stays

    config = write_config(tmp_path, regression_dict(optimizer=optimizer))
    result = CliRunner().invoke(app, ["run", str(config), "--results-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "r").rglob("config.yaml")
    assert yaml.safe_load(written.read_text())["code"]["optimizer"]["code_defaults"] == ["momentum"]


@pytest.mark.slow
def test_a_default_that_is_code_gives_one_run_id_in_every_process(tmp_path: Path) -> None:
    optimizer = {"name": "tests.custom_optimizers.SentinelSGD"}
    config = write_config(tmp_path, regression_dict(optimizer=optimizer))
    assert _validate(config, REPO) == _validate(config, REPO)
