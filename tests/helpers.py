"""What the tests share, defined once: small configs, the CLI runner, the one-error-line check,
the metric columns, and a CIFAR-10 writer (the benchmarks use it too)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from optbench.core.config import SYSTEM_DATA_DIR, ExperimentConfig, validate_config
from optbench.core.metrics import EPOCH_COLUMNS, SPARSE_COLUMNS
from optbench.experiment.train import SilentObserver

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST_GZ = SYSTEM_DATA_DIR / "fashion-mnist" / "train-images-idx3-ubyte.gz"
# not wall times, nor the columns only runs with validation or eval_every write
METRICS = [c for c in EPOCH_COLUMNS if c not in ("seconds", "eval_seconds", *SPARSE_COLUMNS)]
# tests/test_ecosystem.py's outcome per third-party optimizer, printed at the end of the run.
ECOSYSTEM_OUTCOMES: dict[str, list[str]] = {}

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


def importable_module(folder: Path, module: str, source: str, monkeypatch: Any) -> None:
    """Write a module that this process and a sweep's or tune's worker processes can import."""
    (folder / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))  # validation in this process
    paths = [str(folder), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))  # spawned workers


def write_config(folder: Path, config: dict[str, Any], name: str = "exp.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Killed(Exception):
    """What ends a run after its first epoch in assert_resumes_exactly, as a SIGKILL would."""


class KillAfterEpoch1(SilentObserver):
    """Raises once epoch 1's checkpoint and epochs.csv are on disk (train saves the checkpoint
    before it reports the epoch): the state a process killed then leaves."""

    def epoch_finished(self, row: dict[str, Any]) -> None:
        if row["epoch"] == 1:
            raise Killed


def assert_resumes_exactly(config: dict[str, Any], folder: Path) -> Any:
    """`config` (at least 2 epochs) through optbench.run, the user's path with its checkpoints:
    completed unbroken, and killed after epoch 1 then resumed (`resume=True`, the global RNG
    scrambled as in a new process) to the same per-epoch table bit for bit. The unbroken run."""
    import random

    import numpy
    import pytest
    import torch

    import optbench

    config = {**config, "epochs": max(2, config.get("epochs", 2))}
    unbroken = optbench.run(config, results_dir=folder / "unbroken")
    assert unbroken.status == "completed", unbroken.summary.get("diverged_at")
    with pytest.raises(Killed):
        optbench.run(config, results_dir=folder / "killed", observers=[KillAfterEpoch1()])
    torch.manual_seed(12345)  # and NumPy's and Python's global generators, as a new process's
    numpy.random.seed(12345)
    random.seed(12345)
    resumed = optbench.run(config, results_dir=folder / "killed", resume=True)
    assert resumed.status == "completed" and resumed.run_id == unbroken.run_id
    assert resumed.epochs[METRICS].equals(unbroken.epochs[METRICS])  # bit-identical
    return unbroken


class StopAt(SilentObserver):
    """A training observer that interrupts at (epoch, batch), as Ctrl-C would."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch, self.current = epoch, batch, 0

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        self.current = epoch

    def batch_finished(self, batch: int, loss: float | None) -> None:
        if (self.current, batch) == (self.epoch, self.batch):
            raise KeyboardInterrupt


# --------------------------------------------------------------------------- the CLI


def cli_runner() -> Any:
    """A CliRunner that keeps stderr apart (click < 8.2 mixes it into stdout unless told)."""
    from typer.testing import CliRunner

    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    return CliRunner()


def invoke(*args: str) -> Any:
    """`optbench ARGS` in-process, on a terminal wide enough for whole tables."""
    from optbench.ui.cli import app

    return cli_runner().invoke(app, list(args), env={"COLUMNS": "250"})


def assert_one_error_line(result: Any, *fragments: str, exit_code: int = 2) -> str:
    """What every refusal looks like: the exit status, no exception, nothing on stdout, and one
    `error: ...` line on stderr holding every fragment. Returns that line."""
    import re
    import traceback

    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(
            "an exception escaped instead of a one-line error:\n"
            + "".join(traceback.format_exception(*result.exc_info))
        )
    ansi = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
    stderr, stdout = ansi.sub("", result.stderr), ansi.sub("", result.stdout)
    assert result.exit_code == exit_code, f"exit {result.exit_code}\n{stdout}\n{stderr}"
    assert "Traceback" not in result.output
    assert stdout == "", f"an error printed on stdout: {stdout!r}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"not one line: {stderr!r}"
    message = lines[0]
    assert message.startswith("error: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def fashion_mnist_files_as(root: Path, folder: str) -> Path:
    """Debian's Fashion-MNIST IDX files unpacked where torchvision's `folder` class (MNIST,
    KMNIST: the same format) reads them; returns `root`."""
    import gzip

    assert FASHION_MNIST_GZ.is_file(), "apt-get install dataset-fashion-mnist (.ci/run does)"
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for gz in FASHION_MNIST_GZ.parent.glob("*.gz"):
        with gzip.open(gz) as source:
            (raw / gz.stem).write_bytes(source.read())
    return root


# --------------------------------------------------------------------------- CIFAR-10 files


def write_cifar10(
    root: Path, train_per_batch: int = 20, test: int = 30
) -> tuple[np.ndarray, dict[str, str]]:
    """Write CIFAR-10's on-disk format (five pickled training batches of 3072-byte rows, a test
    batch, the meta file) with random images. Returns the training images as NHWC, and each
    file's md5, which torchvision checks (see `accept_cifar10_files`)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng, md5, images = np.random.default_rng(0), {}, []
    sizes = {f"data_batch_{i}": train_per_batch for i in range(1, 6)} | {"test_batch": test}
    for name, rows in sizes.items():
        data = rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8)
        content: dict[str, Any] = {"data": data, "labels": rng.integers(0, 10, size=rows).tolist()}
        if name != "test_batch":
            images.append(data)
        md5[name] = _write_pickle(folder / name, content)
    meta = {"label_names": [f"airplane{i}" for i in range(10)]}
    md5["batches.meta"] = _write_pickle(folder / "batches.meta", meta)
    return np.concatenate(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), md5


def _write_pickle(path: Path, content: Any) -> str:
    blob = pickle.dumps(content)
    path.write_bytes(blob)
    return hashlib.md5(blob).hexdigest()


def accept_cifar10_files(root: Path, monkeypatch: Any) -> None:
    """Make torchvision's integrity check accept the files write_cifar10 wrote."""
    import torchvision

    folder = root / "cifar-10-batches-py"

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[n, md5(n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5(n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5("batches.meta")})


# --------------------------------------------------------------------------- fabricated runs


def write_run_folder(
    root: Path, config: dict[str, Any], rows: list[dict[str, Any]], run_id: str
) -> Path:
    """A finished run folder as `optbench run` leaves it (config.yaml, epochs.csv, summary.json)
    with numbers the test chose, written without torch so hundreds take a moment. The run-id
    is the test's, not the config's, so no plan is built."""
    import json

    import pandas as pd

    run_dir = root / config["name"] / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    pd.DataFrame(rows, columns=EPOCH_COLUMNS).to_csv(run_dir / "epochs.csv", index=False)
    last = rows[-1]
    summary = {
        "name": config["name"],
        "run_id": run_id,
        "status": "completed",
        "seed": config["seed"],
        "device": "cpu",
        "epochs": config["epochs"],
        "epochs_completed": len(rows),
        "final": {k: last.get(k) for k in ("train_loss", "test_loss", "test_accuracy")},
        "diverged_at": None,
        "error": None,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return run_dir


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ray_env(home: Path) -> dict[str, str]:
    """The environment for a test's own Ray head and its driver: no RAY_ variable of ours, this
    checkout importable, and a private HOME: Ray keeps an auth token in ~/.ray/auth_token (a
    local `ray.init` may write one), and a head that finds one there refuses a driver that
    does not (InvalidAuthToken)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    return env


@contextlib.contextmanager
def ray_head(cwd: Path, env: dict[str, str], *options: str) -> Iterator[int]:
    """A real Ray head on 127.0.0.1 (`ray start --head --block` with `options`, e.g.
    --num-cpus=2), started in `cwd` with `env` for the test and killed afterwards with every
    process it started; yields its port (a driver connects to 127.0.0.1:PORT). Its own temp
    dir (short: Ray's sockets live there), so the address file `ray start` writes never points
    another test's ray.init at this cluster once it is gone. A test using it is marked
    `xdist_group("ray")`, as every test that starts Ray (conftest.py's ray_session): two
    clusters at once, one with token authentication, refuse each other's drivers."""
    port = free_port()
    ray_temp = tempfile.mkdtemp(prefix="obray")
    head = subprocess.Popen(
        [sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start",
         "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         f"--temp-dir={ray_temp}", "--include-dashboard=false", "--disable-usage-stats",
         *options],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield port
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head and the processes it started
        head.wait(timeout=30)
        shutil.rmtree(ray_temp, ignore_errors=True)
