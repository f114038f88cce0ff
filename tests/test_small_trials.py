"""Many small trials are cheap: tiny runs train in a thread of the sweep's driver (no worker
process, no second `import torch`), with the numbers of a hand-written training loop; stopping
the driver stops its run resumably; a run that is not tiny sends the rest to worker processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from optbench.storage.results import Status
from optbench.sweeps.executors import local as executors
from optbench.sweeps.grid import load_sweep
from tests.helpers import regression_dict, write_config

DATA = {"dataset": "synthetic_regression", "n_train": 96, "n_test": 40, "features": 10}
DATA.update(noise=0.1, batch_size=32, test_batch_size=40)


def _hand_written_test_losses(seed: int, lr: float, epochs: int) -> list[float]:
    """nn.Linear fit by SGD as a tutorial writes it, on y = x.w + b + noise drawn from one
    generator seeded with the run's seed (the data synthetic_regression documents)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(136, 10, generator=generator)
    w = torch.randn(10, 1, generator=generator)
    b = torch.randn(1, generator=generator)
    y = x @ w + b + 0.1 * torch.randn(136, 1, generator=generator)
    torch.manual_seed(seed)
    model = nn.Linear(10, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    criterion = nn.MSELoss()
    loader = DataLoader(
        TensorDataset(x[:96], y[:96]),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    losses = []
    for _ in range(epochs):
        model.train()
        for inputs, targets in loader:
            optimizer.zero_grad()
            criterion(model(inputs), targets).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            losses.append(criterion(model(x[96:]), y[96:]).item())
    return losses


def _points(tmp_path: Path, epochs: int, lrs: str, **sections: Any) -> list[Any]:
    config = write_config(tmp_path, regression_dict(epochs=epochs, data=DATA, **sections))
    _, points = load_sweep(config, [f"optimizer.lr={lrs}"], "0,1")
    return points


def _run(points: list[Any], results: Path, workers: int = 2, **callbacks: Any) -> list[Any]:
    done: list[Any] = []
    executors.run_local(
        [(p.run_id, p.config) for p in points],
        str(results),
        workers,
        callbacks.get("on_message", lambda message: None),
        done.append,
    )
    return done


def _lock_owner(results: Path, run_id: str) -> int:
    return int((results / "tiny" / run_id / "lock").read_text())


def test_tiny_runs_train_in_the_driver_with_a_hand_written_loops_numbers(tmp_path: Path) -> None:
    points = _points(tmp_path, epochs=3, lrs="0.1")
    results = tmp_path / "results"
    threads = torch.get_num_threads()
    starts: list[tuple] = []

    def on_message(message: tuple) -> None:
        if message[0] == "start":
            starts.append(message)

    done = _run(points, results, on_message=on_message)
    assert sorted(r.run_id for r in done) == sorted(p.run_id for p in points)
    assert {r.status for r in done} == {Status.COMPLETED}
    assert [m[1] for m in starts] == [p.run_id for p in points]  # one at a time, in order
    assert {m[2] for m in starts} == {os.getpid()}  # in this process: no worker started
    assert {_lock_owner(results, p.run_id) for p in points} == {os.getpid()}
    assert torch.get_num_threads() == threads  # the driver's torch is left as it was
    for point in points:
        epochs = pd.read_csv(results / "tiny" / point.run_id / "epochs.csv")
        expected = _hand_written_test_losses(
            point.config["seed"], point.config["optimizer"]["lr"], 3
        )
        assert epochs["test_loss"].tolist() == pytest.approx(expected, rel=1e-6, abs=0)


SLOW_STEP = '''
import time

import torch


class SlowSGD(torch.optim.SGD):
    """SGD's numbers, 40 ms a step: time for the driver to stop the run mid-way."""

    def step(self, closure=None):
        time.sleep(0.04)
        return super().step(closure)
'''


def test_stopping_the_driver_stops_its_run_resumably(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "optbench_test_slow_step.py").write_text(SLOW_STEP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(executors, "TINY_SAVE_SECONDS", 0.05)  # epoch 1 (3 steps, 0.12 s) saves
    slow = {"name": "optbench_test_slow_step.SlowSGD", "lr": 0.05}
    config = write_config(tmp_path, regression_dict(epochs=6, data=DATA, optimizer=slow))
    (point,) = load_sweep(config, seeds="0")[1]
    results = tmp_path / "results"
    run_dir = results / "tiny" / point.run_id

    def ctrl_c_after_epoch_one(message: tuple) -> None:
        if message[0] == "row":
            raise KeyboardInterrupt  # as Ctrl-C reaches the driver's main thread

    with pytest.raises(KeyboardInterrupt):
        _run([point], results, on_message=ctrl_c_after_epoch_one)
    summary = pd.read_json(run_dir / "summary.json", typ="series")
    assert summary["status"] == "interrupted"
    before = pd.read_csv(run_dir / "epochs.csv")
    assert 1 <= len(before) < 6
    assert (run_dir / "checkpoint.pt").exists()

    (result,) = _run([point], results)  # the same sweep again: the run resumes
    assert result.status == Status.COMPLETED
    after = pd.read_csv(run_dir / "epochs.csv")
    pd.testing.assert_frame_equal(after.head(len(before)), before, check_exact=True)
    expected = _hand_written_test_losses(0, 0.05, 6)
    assert after["test_loss"].tolist() == pytest.approx(expected, rel=1e-6, abs=0)


@pytest.mark.slow
def test_once_a_run_is_not_tiny_worker_processes_take_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executors, "TINY_RUN_SECONDS", 0.0)  # every run counts as long
    points = _points(tmp_path, epochs=2, lrs="0.05,0.1")
    results = tmp_path / "results"
    done = _run(points, results)
    assert {r.status for r in done} == {Status.COMPLETED} and len(done) == 4
    owners = [_lock_owner(results, p.run_id) for p in points]
    assert owners[0] == os.getpid()  # started in the driver, finished there
    assert os.getpid() not in owners[1:]  # the others went to worker processes
    for point in points:
        epochs = pd.read_csv(results / "tiny" / point.run_id / "epochs.csv")
        expected = _hand_written_test_losses(
            point.config["seed"], point.config["optimizer"]["lr"], 2
        )
        assert epochs["test_loss"].tolist() == pytest.approx(expected, rel=1e-6, abs=0)


@pytest.mark.durable
def test_a_tiny_runs_epochs_are_written_after_its_last_one_before_its_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epochs of milliseconds do not each write a checkpoint and a table (writing costs more):
    with no second gone by, the run writes them once, after its last epoch, fsynced, before
    the summary that says how it ended."""
    from optbench.storage import results as results_module

    real_fsync, synced = os.fsync, []

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(results_module.os, "fsync", fsync)
    monkeypatch.setattr(executors, "TINY_SAVE_SECONDS", 3600.0)  # however slow the machine
    (point,) = load_sweep(write_config(tmp_path, regression_dict(epochs=5, data=DATA)))[1]
    results = tmp_path / "results"
    (result,) = _run([point], results)
    assert result.status == Status.COMPLETED
    run_dir = str(results / "tiny" / point.run_id)
    written = [p.split("/")[-1].split(".")[1] for p in synced if p.startswith(f"{run_dir}/.")]
    assert written == ["config", "summary", "checkpoint", "epochs", "summary"]
    assert len(pd.read_csv(f"{run_dir}/epochs.csv")) == 5
    assert not Path(run_dir, "checkpoint.pt").exists()  # deleted once the run completed
