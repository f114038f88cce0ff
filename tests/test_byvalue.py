"""Python objects without an import path, identified and shipped by value (core/byvalue.py):
the numbers of the same code named by its import path, one run-id in every process, shipped
to worker processes (a sweep's and a tune's), and refused in one line when they cannot be
identified."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import optbench
from optbench.core import byvalue
from tests.helpers import (
    METRICS,
    REPO,
    importable_module,
    invoke,
    ray_env,
    ray_head,
    regression_dict,
)

# A model as a notebook cell defines it: its width a global its methods name.
NET_SOURCE = """
from torch import nn

HIDDEN = 6


class Net(nn.Module):
    def __init__(self, in_features: int, num_outputs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_features, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, num_outputs)
        )

    def forward(self, x):
        return self.body(x)
"""
TOKEN = re.compile(r"Net@object:[0-9a-f]{16}")


def _cell(source: str = NET_SOURCE, **values: Any) -> dict[str, Any]:
    """The names a notebook cell running `source` defines (its module is __main__, and
    inspect finds no source file for it), with `values` set after it ran."""
    names: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "<notebook cell>", "exec"), names)
    names.update(values)
    return names


def test_an_object_trains_the_numbers_its_import_path_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    importable_module(tmp_path, "byvalue_net", NET_SOURCE, monkeypatch)
    by_path = optbench.run(
        regression_dict(model={"name": "byvalue_net.Net"}), results_dir=tmp_path / "r"
    )
    by_value = optbench.run(
        regression_dict(model={"name": _cell()["Net"]}), results_dir=tmp_path / "r"
    )
    assert TOKEN.fullmatch(by_value.config["model"]["name"])
    assert by_value.run_id != by_path.run_id  # other code identity, the same numbers
    pd.testing.assert_frame_equal(by_value.epochs[METRICS], by_path.epochs[METRICS])
    written = (by_value.dir / "config.yaml").read_text() + (
        by_value.dir / "summary.json"
    ).read_text()
    assert byvalue.OBJECTS not in written  # no pickle lands in a results folder

    # its code and the values it uses are its identity, not the object: the cell run again
    # is the same run-id; the global its methods name, changed, is another
    again = optbench.validate(regression_dict(model={"name": _cell()["Net"]}))
    assert again.run_id == by_value.run_id
    wider = optbench.validate(regression_dict(model={"name": _cell(HIDDEN=7)["Net"]}))
    assert wider.run_id != by_value.run_id


# A dataset function and a loss callable as a notebook cell defines them.
DATA_SOURCE = """
import numpy as np
import torch

SLOPE = 1.5


def points():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, SLOPE], dtype=np.float32))[:, None]
    return (x[:48], y[:48]), (x[48:], y[48:])


def half_mse(output, target):
    return 0.5 * torch.nn.functional.mse_loss(output, target)
"""


def test_a_dataset_function_and_a_loss_by_value_train_their_import_paths_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    importable_module(tmp_path, "byvalue_data", DATA_SOURCE, monkeypatch)

    def config(dataset: Any, loss: Any) -> dict[str, Any]:
        return regression_dict(data={"dataset": dataset, "batch_size": 16}, loss=loss)

    by_path = optbench.run(
        config("byvalue_data.points", "byvalue_data.half_mse"), results_dir=tmp_path / "r"
    )
    cell = _cell(DATA_SOURCE)
    by_value = optbench.run(config(cell["points"], cell["half_mse"]), results_dir=tmp_path / "r")
    assert re.fullmatch(r"points@object:[0-9a-f]{16}", by_value.config["data"]["dataset"])
    assert re.fullmatch(r"half_mse@object:[0-9a-f]{16}", by_value.config["loss"]["name"])
    pd.testing.assert_frame_equal(by_value.epochs[METRICS], by_path.epochs[METRICS])
    # a global the function reads is part of its identity: another slope, another run
    steeper = _cell(DATA_SOURCE, SLOPE=2.5)
    other = optbench.validate(config(steeper["points"], cell["half_mse"]))
    assert other.run_id != by_value.run_id
    again = optbench.validate(config(_cell(DATA_SOURCE)["points"], cell["half_mse"]))
    assert again.run_id == by_value.run_id


def test_a_dataset_object_is_refused_in_one_line_and_a_function_returning_it_trains(
    tmp_path: Path,
) -> None:
    import torch

    x, y = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(64, 1)
    train = torch.utils.data.TensorDataset(x[:48], y[:48])
    test_set = torch.utils.data.TensorDataset(x[48:], y[48:])
    with pytest.raises(optbench.ConfigError, match=r"lambda: \(train_set, test_set\)") as refused:
        optbench.validate(regression_dict(data={"dataset": train}))
    assert refused.value.field == "data.dataset" and "\n" not in str(refused.value)
    assert "TensorDataset object" in str(refused.value)
    data = {"dataset": lambda: (train, test_set), "batch_size": 16}
    run = optbench.run(regression_dict(data=data), results_dir=tmp_path)
    assert run.status == "completed" and len(run.epochs) == 2
    assert run.config["data"]["dataset"].startswith("lambda@object:")


def test_closures_and_defaults_are_part_of_an_objects_identity() -> None:
    def linear(width: int) -> Any:
        def make(in_features: int, num_outputs: int) -> Any:
            from torch import nn

            return nn.Linear(in_features, width * num_outputs)

        return make

    tokens = [byvalue.token_for(linear(width), "model.name") for width in (1, 1, 2)]
    assert tokens[0] == tokens[1] != tokens[2]
    assert tokens[0].startswith("make@object:")
    defaults = [byvalue.token_for(lambda x=i: x, "loss") for i in (1, 1, 2)]
    assert defaults[0] == defaults[1] != defaults[2]


def test_an_object_that_cannot_be_identified_is_refused_in_one_line() -> None:
    lock = threading.Lock()
    config = regression_dict(model={"name": lambda in_features, num_outputs: (lock, None)})
    with pytest.raises(optbench.ConfigError, match="cannot be pickled") as refused:
        optbench.validate(config)
    assert refused.value.field == "model.name"
    assert "lock" in str(refused.value) and "\n" not in str(refused.value)


def test_a_config_file_naming_an_object_of_another_session_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = optbench.run(regression_dict(model={"name": _cell()["Net"]}), results_dir=tmp_path)
    monkeypatch.setattr(byvalue, "_known", {})  # a new session: the object is not here
    named = regression_dict(model={"name": run.config["model"]["name"]})  # its token, copied
    (tmp_path / "token.yaml").write_text(json.dumps(named))
    result = invoke("validate", str(tmp_path / "token.yaml"))
    assert result.exit_code == 2, result.output
    assert "model.name" in result.output and "pass the object again" in result.output
    assert len(result.output.strip().splitlines()) == 1
    # nor does a file carry objects in: `objects:` is no key a config may hold
    (tmp_path / "objects.yaml").write_text(
        json.dumps({**regression_dict(), "objects": {"x": "gASVAAAAAAAAAACFlC4="}})
    )
    assert invoke("validate", str(tmp_path / "objects.yaml")).exit_code == 2


_SCRIPT = """
import os
import sys

import optbench
import optbench.sweeps.executors.local
from torch import nn

PIDS = {pids!r}


class Net(nn.Module):
    def __init__(self, in_features: int, num_outputs: int) -> None:
        super().__init__()
        with open(PIDS, "a") as built:  # which process built it: the worker's, by value
            built.write(f"{{os.getpid()}}\\n")
        self.body = nn.Linear(in_features, num_outputs)

    def forward(self, x):
        return self.body(x)


config = {config!r}
config["model"] = {{"name": Net}}

if __name__ == "__main__":
    print("run-id", optbench.validate(config).run_id, flush=True)
    print("driver", os.getpid(), flush=True)
    if sys.argv[1:] == ["train"]:
        optbench.sweeps.executors.local.TINY_RUN_SECONDS = 0.0  # worker processes from the start
        sweep = optbench.sweep(config, {{"optimizer.lr": [0.05, 0.1]}}, workers=2)
        tuned = optbench.tune(config, workers=2)
        print("sweep", sweep.counts(), sweep.failed, flush=True)
        print("tune", tuned.frame()[["completed", "failed"]].to_dict("records"), tuned.failed)
"""


@pytest.mark.slow
def test_a_scripts_objects_train_on_worker_processes_with_one_run_id(tmp_path: Path) -> None:
    pids = tmp_path / "pids.txt"
    config = regression_dict(
        epochs=1,
        tune={"space": {"optimizer.lr": {"choice": [0.01, 0.1]}}, "trials": 2, "seeds": [0]},
    )
    script = tmp_path / "script.py"
    script.write_text(_SCRIPT.format(pids=str(pids), config=config))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPTBENCH_RESULTS": str(tmp_path / "r")}

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)

    trained, planned = python("train"), python()
    assert trained.returncode == 0, trained.stderr[-3000:]
    ids = [
        line for out in (trained, planned) for line in out.stdout.splitlines() if "run-id" in line
    ]
    assert len(ids) == 2 and ids[0] == ids[1]  # one run-id in two processes
    assert "sweep {'completed': 2, 'diverged': 0, 'failed': 0" in trained.stdout
    assert "tune [{'completed': 2, 'failed': 0}] []" in trained.stdout
    builders = {int(pid) for pid in pids.read_text().split()}
    drivers = {
        int(line.split()[1])
        for out in (trained, planned)
        for line in out.stdout.splitlines()
        if line.startswith("driver")
    }
    assert len(drivers) == 2 and builders - drivers  # worker processes built it too


def test_an_optimizer_class_by_value_names_its_run_by_its_class() -> None:
    import torch

    class MySGD(torch.optim.SGD):  # defined in a function: no import path reaches it
        pass

    checked = optbench.validate(regression_dict(optimizer={"name": MySGD, "lr": 0.05}))
    assert re.fullmatch(r"mysgd-seed0-[0-9a-f]{10}", checked.run_id), checked.run_id
    assert checked.plan.config.optimizer.name.startswith("MySGD@object:")


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray at a time (conftest.py's ray_session)
def test_a_model_class_by_value_trains_on_a_ray_cluster_with_the_local_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model class defined in the test (no import path reaches it) swept as Ray tasks on a
    real Ray head on 127.0.0.1: the class reaches the Ray workers pickled by value (they build
    it), and every point has the run-id and the numbers the same sweep gives on one local
    process."""
    ray = pytest.importorskip("ray")
    from torch import nn

    built = tmp_path / "built"
    built.mkdir()

    class Net(nn.Module):  # defined in a function: only its value can reach a Ray worker
        def __init__(self, in_features: int, num_outputs: int) -> None:
            super().__init__()
            (built / str(os.getpid())).touch()  # which process built it
            self.body = nn.Sequential(nn.Linear(in_features, 4), nn.Tanh(), nn.Linear(4, 1))

        def forward(self, x):
            return self.body(x)

    config = regression_dict(model={"name": Net}, epochs=1)
    grid = {"optimizer.lr": [0.01, 0.05]}
    monkeypatch.chdir(tmp_path)  # the folder a mapping's config is read in: what Ray is sent
    env = ray_env(tmp_path / "home")
    monkeypatch.setenv("HOME", env["HOME"])  # this process is the driver
    with ray_head(tmp_path, env, "--num-cpus=2") as port:
        try:
            on_ray = optbench.sweep(
                config,
                grid,
                executor="ray",
                address=f"127.0.0.1:{port}",
                results_dir=tmp_path / "ray",
            )
        finally:
            ray.shutdown()
    assert on_ray.counts()["completed"] == 2 and on_ray.failed == []
    assert {int(p.name) for p in built.iterdir()} - {os.getpid()}, "no Ray worker built Net"
    local = optbench.sweep(config, grid, workers=1, results_dir=tmp_path / "local")
    assert [r.run_id for r in on_ray] == [r.run_id for r in local]
    assert all(TOKEN.search(r.run_id) is None for r in on_ray)  # the token stays in config
    for ours, theirs in zip(on_ray, local, strict=True):
        assert TOKEN.fullmatch(ours.config["model"]["name"])
        pd.testing.assert_frame_equal(ours.epochs[METRICS], theirs.epochs[METRICS])
