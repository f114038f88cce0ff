"""Exact resume and crash safety: killed or interrupted runs continue to identical numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from optbench.components.optimizers import OPTIMIZERS
from optbench.core.config import validate_config
from optbench.core.metrics import written_columns
from optbench.experiment.checkpoint import CheckpointFile
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train
from optbench.storage.results import RunDir, RunLock
from tests.helpers import (
    METRICS,
    REPO,
    StopAt,
    assert_resumes_exactly,
    importable_module,
    regression_dict,
    write_config,
)


def _metrics(rows: list[dict]) -> list[list]:
    return [[row[c] for c in METRICS] for row in rows]


def _interrupted_then_resumed(plan, tmp_path: Path, epoch: int, batch: int) -> list[dict]:
    checkpoints = CheckpointFile(tmp_path / "checkpoint.pt", plan.run_id)
    with pytest.raises(KeyboardInterrupt):
        train(plan, StopAt(epoch, batch), checkpoints)
    torch.manual_seed(12345)  # a resumed process starts with unrelated random state
    return train(plan, checkpoints=checkpoints).rows


CASES = {
    **{name: {"optimizer": {"name": name, "lr": 0.02}} for name in OPTIMIZERS.names()},
    "LBFGS": {"optimizer": {"name": "LBFGS", "lr": 0.5, "history_size": 5}},
    "SGD_groups_dropout_steplr": {
        "model": {"name": "mlp", "hidden_sizes": [16], "dropout": 0.2},
        "optimizer": {
            "name": "SGD",
            "lr": 0.05,
            "momentum": 0.9,
            "param_groups": [{"params": "4.*", "lr": 0.01}, {"params": "*.bias", "momentum": 0.5}],
        },
        "scheduler": {"name": "StepLR", "step_size": 1, "gamma": 0.7},
    },
    "Adam_onecycle_per_step": {
        "optimizer": {"name": "Adam", "lr": 0.01},
        "scheduler": {"name": "OneCycleLR", "max_lr": 0.05, "interval": "step"},
    },
    "RMSprop_plateau": {
        "optimizer": {"name": "RMSprop", "lr": 0.01, "momentum": 0.5},
        "scheduler": {"name": "ReduceLROnPlateau", "patience": 0, "factor": 0.5},
    },
}
# One optimizer of each step protocol (optbench/components/stepping.py).
PROTOCOL_CASES = {
    "closure_LBFGS_subclass_by_path": {
        "optimizer": {
            "name": "tests.custom_optimizers.HistoryLBFGS",
            "lr": 0.5,
            "history_size": 5,
            "max_iter": 4,
        }
    },
    "sharpness_SAM_SGD": {
        "optimizer": {
            "name": "pytorch_optimizer.SAM",
            "rho": 0.05,
            "base_optimizer": {"name": "SGD", "lr": 0.005, "momentum": 0.9},
        }
    },
    "second_order_AdaHessian": {"optimizer": {"name": "pytorch_optimizer.AdaHessian", "lr": 0.05}},
    "train_eval_ScheduleFreeAdamW": {
        "optimizer": {"name": "pytorch_optimizer.ScheduleFreeAdamW", "lr": 0.02}
    },
}
CASES.update(PROTOCOL_CASES)


@pytest.mark.parametrize("case", CASES)
def test_resumed_run_is_bit_identical(case: str, tmp_path: Path) -> None:
    sections = {"model": {"name": "linear", "bias": False}, "epochs": 4, **CASES[case]}
    plan = make_plan(validate_config(regression_dict(**sections)))
    reference = train(plan).rows
    resumed = _interrupted_then_resumed(plan, tmp_path, epoch=3, batch=5)
    assert _metrics(resumed) == _metrics(reference)  # exact equality, not approx


def test_corrupt_and_foreign_checkpoints_are_errors(tmp_path: Path) -> None:
    from optbench.core.errors import ConfigError

    plan = make_plan(validate_config(regression_dict()))
    path = tmp_path / "checkpoint.pt"
    checkpoints = CheckpointFile(path, plan.run_id)

    path.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(ConfigError, match=r"checkpoint .* cannot be read"):
        checkpoints.load(torch.device("cpu"))

    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ConfigError, match="is not an optbench checkpoint"):
        checkpoints.load(torch.device("cpu"))

    torch.save({"evil": pd.Timestamp("2020-01-01")}, path)  # needs unpickling arbitrary classes
    with pytest.raises(ConfigError, match="cannot be read"):
        checkpoints.load(torch.device("cpu"))

    path.unlink()
    train(plan, checkpoints=CheckpointFile(path, "another-run"))  # writes a checkpoint
    with pytest.raises(ConfigError, match="belongs to run another-run"):
        checkpoints.load(torch.device("cpu"))


# --------------------------------------------------------------------------- real processes

SLOW_ENOUGH = {  # about a tenth of a second per epoch, so a kill can land inside one
    "epochs": 5,
    "data": {"dataset": "synthetic_regression", "n_train": 4096, "features": 64, "batch_size": 16},
    "model": {"name": "mlp", "hidden_sizes": [64], "dropout": 0.1},
    "optimizer": {"name": "Adam", "lr": 0.001},
    "scheduler": {"name": "StepLR", "step_size": 2, "gamma": 0.5},
}


def _start(config: Path, results: Path, *extra: str, kill_during_write: str | None = None):
    """`optbench run` in a process of its own; `kill_during_write` ('epochs.csv:3') SIGKILLs it
    during that write (tests/kill_during_write.py)."""
    launcher = ["-m", "optbench"]
    if kill_during_write:
        launcher = [str(REPO / "tests" / "kill_during_write.py"), kill_during_write]
    return subprocess.Popen(
        [sys.executable, *launcher, "run", str(config), "--results-dir", str(results), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(config: Path, results: Path, *extra: str) -> subprocess.CompletedProcess:
    process = _start(config, results, *extra)
    out, err = process.communicate(timeout=180)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _table(results: Path) -> pd.DataFrame:
    (run_dir,) = (results / "crash").iterdir()
    return pd.read_csv(run_dir / "epochs.csv")[METRICS]


@pytest.fixture(scope="module")
def crash_setup(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("crash")
    config = write_config(folder, regression_dict(name="crash", **SLOW_ENOUGH))
    reference = folder / "reference"
    completed = _finish(config, reference)
    assert completed.returncode == 0, completed.stderr
    return folder, config, _table(reference)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "kill_during_write"),
    [
        ("during an epoch", None),
        ("during a checkpoint write", "checkpoint.pt:2"),
        ("during the epochs.csv write", "epochs.csv:3"),
        ("during the summary write", "summary.json:2"),
    ],
)
def test_sigkill_then_resume_gives_the_uninterrupted_table(
    crash_setup, point, kill_during_write
) -> None:
    folder, config, reference = crash_setup
    results = folder / point.replace(" ", "_")
    process = _start(config, results, kill_during_write=kill_during_write)
    if not kill_during_write:  # kill it a moment after the first checkpoint: inside epoch 2 or 3
        _wait_for(next_checkpoint(results, process), process)
        time.sleep(0.15)
        process.kill()
    process.communicate(timeout=180)
    assert process.returncode == -signal.SIGKILL

    (run_dir,) = (results / "crash").iterdir()
    if kill_during_write:  # the writer died holding a complete temporary file it never renamed
        assert list(run_dir.glob(".*.tmp"))
    # whatever is in place is a whole file, readable as what it claims to be
    json.loads((run_dir / "summary.json").read_text())
    if (run_dir / "epochs.csv").exists():
        assert list(pd.read_csv(run_dir / "epochs.csv").columns) == written_columns([])
    resumed = _finish(config, results, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    pd.testing.assert_frame_equal(_table(results), reference, check_exact=True)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert not list(run_dir.glob(".*.tmp"))  # the resumed run swept the dead writer's leftovers


def next_checkpoint(results: Path, process: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 120
    while not (results / "crash").exists() or not any((results / "crash").iterdir()):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    (run_dir,) = (results / "crash").iterdir()
    return run_dir / "checkpoint.pt"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_stop_cleanly_and_resume(crash_setup, signum) -> None:
    folder, config, reference = crash_setup
    results = folder / f"signal{int(signum)}"
    process = _start(config, results)
    _wait_for(next_checkpoint(results, process), process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err  # stopped by the signal, not finished
    assert "Traceback" not in err
    (run_dir,) = (results / "crash").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"

    again = _finish(config, results)  # without --resume it refuses to start over silently
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = _finish(config, results, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    pd.testing.assert_frame_equal(_table(results), reference, check_exact=True)
    done = _finish(config, results, "--resume")
    assert done.returncode == 0 and "already finished" in done.stdout


@pytest.mark.slow
def test_second_process_on_the_same_run_is_refused_and_stale_locks_are_taken_over(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, regression_dict(name="crash"))
    plan = make_plan(validate_config(regression_dict(name="crash")))
    run_dir = tmp_path / "results" / "crash" / plan.run_id
    run_dir.mkdir(parents=True)
    with RunLock(RunDir(run_dir)):
        held = _finish(config, tmp_path / "results")
    assert held.returncode == 2
    assert f"being trained by process {os.getpid()}" in held.stderr
    assert not (run_dir / "summary.json").exists()

    (run_dir / "lock").write_text("999999\n")  # left behind by a killed process
    free = _finish(config, tmp_path / "results")
    assert free.returncode == 0, free.stderr


# Every write a 2-epoch run makes, in order: (file, which write of that file).
RUN_WRITES = [
    ("config.yaml", 1),
    ("summary.json", 1),  # status running
    ("checkpoint.pt", 1),
    ("epochs.csv", 1),
    ("checkpoint.pt", 2),
    ("epochs.csv", 2),
    ("summary.json", 2),  # the final summary
]


@pytest.mark.parametrize(("file", "nth"), RUN_WRITES, ids=[f"{f}-{n}" for f, n in RUN_WRITES])
def test_a_full_disk_at_any_write_exits_3_keeps_the_work_and_resume_completes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, nth: int
) -> None:
    import errno

    from typer.testing import CliRunner

    from optbench.storage import results as results_module
    from optbench.ui.cli import app

    config = write_config(tmp_path, regression_dict(name="crash", epochs=2))
    plan = make_plan(validate_config(regression_dict(name="crash", epochs=2)))
    reference = train(plan).rows
    run_dir = tmp_path / "results" / "crash" / plan.run_id
    real_fsync, writes = os.fsync, []

    def fsync_until_the_disk_fills(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if f"/.{file}." in name:
            writes.append(name)
            if len(writes) == nth:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(results_module.os, "fsync", fsync_until_the_disk_fills)
    args = ["run", str(config), "--results-dir", str(tmp_path / "results")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output  # a failed write: never 0, and not bad input
    message = result.stderr.strip()
    assert message.count("\n") == 0 and "No space left on device" in message
    assert file in message and "previous version is kept" in message
    assert not list(run_dir.glob(".*.tmp"))  # no partial file left behind
    summary = RunDir(run_dir).read_summary()
    if (file, nth) in (("config.yaml", 1), ("summary.json", 1)):  # before training started
        assert summary is None and not (run_dir / "epochs.csv").exists()
    if (file, nth) in (("checkpoint.pt", 1), ("epochs.csv", 1), ("checkpoint.pt", 2)):
        assert summary.status == "failed"  # the summary says what failed
        assert file in summary.error and "--resume" in summary.error
    if (file, nth) == ("summary.json", 2):  # trained to the end, summary not written
        assert summary.status == "running"
        assert (run_dir / "checkpoint.pt").exists()  # the training is not lost
        trained = pd.read_csv(run_dir / "epochs.csv")

    monkeypatch.setattr(results_module.os, "fsync", real_fsync)  # space again: resume
    resumed = CliRunner().invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert not (run_dir / "checkpoint.pt").exists()
    table = pd.read_csv(run_dir / "epochs.csv")
    pd.testing.assert_frame_equal(  # bit for bit after the csv round trip
        table[METRICS],
        pd.DataFrame(reference)[METRICS].astype(float),
        check_exact=True,
        check_dtype=False,
    )
    if (file, nth) == ("summary.json", 2):  # finished from the checkpoint, not trained again
        pd.testing.assert_frame_equal(table, trained)


def test_a_finished_file_is_fsynced_and_so_is_its_folder_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optbench.storage import results as results_module

    real_fsync, real_replace, events = os.fsync, os.replace, []

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(results_module.os, "fsync", fsync)
    monkeypatch.setattr(results_module.os, "replace", replace)
    results_module.write_atomic(tmp_path / "summary.json", "{}")
    (kind, temp), rename, folder = events
    assert kind == "fsync" and "/.summary.json." in temp  # the content, before the rename
    assert rename == ("rename", str(tmp_path / "summary.json"))
    assert folder == ("fsync", str(tmp_path))  # then the folder, so the rename is durable


@pytest.mark.slow
@pytest.mark.parametrize("case", PROTOCOL_CASES)
def test_sigkill_then_resume_is_exact_for_every_step_protocol(tmp_path: Path, case: str) -> None:
    sections = {**SLOW_ENOUGH, "scheduler": None, **PROTOCOL_CASES[case]}
    sections["model"] = {"name": "mlp", "hidden_sizes": [64]}
    config = write_config(tmp_path, regression_dict(name="crash", **sections))
    reference = pd.DataFrame(train(make_plan(validate_config(regression_dict(**sections)))).rows)
    results = tmp_path / "results"
    process = _start(config, results)
    _wait_for(next_checkpoint(results, process), process)  # killed inside epoch 2 or later
    process.kill()
    process.communicate(timeout=180)
    assert process.returncode == -signal.SIGKILL  # killed mid-run, not finished
    resumed = _finish(config, results, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    pd.testing.assert_frame_equal(
        _table(results), reference[METRICS].astype(float), check_exact=True, check_dtype=False
    )


NOISY_SGD = """
import random

import numpy as np
import torch


class NoisySGD(torch.optim.SGD):
    \"\"\"SGD whose step is scaled by draws from NumPy's and Python's global generators, as
    pytorch_optimizer's Kron decides with np.random.random() when to balance.\"\"\"

    @torch.no_grad()
    def step(self, closure=None):
        scale = 1.0 + 0.1 * np.random.random() + 0.1 * random.random()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.mul_(scale)
        return super().step(closure)
"""


def test_an_optimizer_drawing_from_numpy_and_pythons_generators_resumes_bit_identically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seeded with the run's seed and kept in the checkpoint, as torch's generator is: the
    # helper scrambles all three before the resume, as a new process would have them.
    importable_module(tmp_path, "noisy_opt", NOISY_SGD, monkeypatch)
    config = regression_dict(epochs=2, optimizer={"name": "noisy_opt.NoisySGD", "lr": 0.05})
    unbroken = assert_resumes_exactly(config, tmp_path)
    again = assert_resumes_exactly(config, tmp_path / "again")  # and a second run repeats it
    assert again.epochs[METRICS].equals(unbroken.epochs[METRICS])
