"""Executors as components: the registry (names, import paths, entry points), options bound
to the class's signature while planning, the `executor:` section kept out of runs, and the
submitit executor against submitit itself (its LocalExecutor's real processes, its own sbatch
rendering under its mocked Slurm). The Ray executor's cluster tests are in test_sweep.py."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import optbench
from optbench.core.errors import ConfigError
from optbench.sweeps.executors import (
    LocalExecutor,
    RayExecutor,
    SubmititExecutor,
    plan_executor,
)
from optbench.sweeps.grid import load_sweep
from tests.helpers import (
    METRICS,
    assert_one_error_line,
    importable_module,
    invoke,
    regression_dict,
    write_config,
)

# --------------------------------------------------------------------------- planning


def test_the_config_section_is_bound_with_the_command_lines_options_on_top(
    tmp_path: Path,
) -> None:
    section = {"name": "ray", "address": "auto", "gpus_per_run": 0.25}
    ray = plan_executor(tmp_path, section, None, ["cpus_per_run=2"], workers=3)
    assert ray == RayExecutor(tmp_path, "auto", 3, cpus_per_run=2.0, gpus_per_run=0.25)
    # a float option given as an integer is stored as the float it is (one value, one way)
    assert isinstance(ray.cpus_per_run, float)
    # another executor on the command line: the section's options were the other one's
    assert plan_executor(tmp_path, section, "local", workers=2) == LocalExecutor(tmp_path, 2)
    assert plan_executor(tmp_path, "local") == LocalExecutor(tmp_path, None)  # a bare name
    with pytest.raises(ConfigError, match=r"executor\.workers: must be a number, got 'four'"):
        plan_executor(tmp_path, {"name": "local", "workers": "four"})
    with pytest.raises(ConfigError, match=r"--executor-opt: 'workers' is not KEY=VALUE"):
        plan_executor(tmp_path, None, "local", ["workers"])


def test_the_ray_executor_holds_as_many_runs_as_the_cluster_has_room_for(tmp_path: Path) -> None:
    packed = RayExecutor(tmp_path, "auto", 1, cpus_per_run=1, gpus_per_run=0.25)
    assert packed.slots({"CPU": 16.0, "GPU": 2.0}) == 8  # 4 runs per GPU, 2 GPUs
    assert packed.slots({"CPU": 6.0, "GPU": 2.0}) == 6  # CPUs run out first
    with pytest.raises(ConfigError, match=r"executor\.gpus_per_run: .* has no GPU"):
        packed.slots({"CPU": 16.0})
    with pytest.raises(ConfigError, match=r"executor\.cpus_per_run: a run needs"):
        RayExecutor(tmp_path, cpus_per_run=0)


_USER_EXECUTOR = '''
from dataclasses import dataclass
from pathlib import Path

from optbench.sweeps.executors import train_point

NOTES = []  # what each run() was told: proof of which executor trained


@dataclass(frozen=True)
class InOrder:
    """A user's executor, one file: every point trained here, in turn, in the driver."""

    results_dir: Path
    note: str = ""

    def run(self, points, on_message, on_result):
        NOTES.append(self.note)
        for run_id, config, *watch in points:
            on_result(train_point(run_id, config, str(self.results_dir), None, *watch))
'''


def test_an_executor_is_a_class_named_by_import_path_or_by_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's class by import path trains a sweep; an installed package's entry point in the
    `optbench.executors` group (found by importlib.metadata on sys.path) names it too."""
    monkeypatch.delitem(sys.modules, "optbench_test_in_order", raising=False)  # NOTES afresh
    importable_module(tmp_path, "optbench_test_in_order", _USER_EXECUTOR, monkeypatch)
    dist = tmp_path / "optbench_test_in_order-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: optbench-test-in-order\n")
    (dist / "entry_points.txt").write_text(
        "[optbench.executors]\nin_order = optbench_test_in_order:InOrder\n"
    )
    by_path = plan_executor(tmp_path, {"name": "optbench_test_in_order.InOrder", "note": "x"})
    by_entry_point = plan_executor(tmp_path, {"name": "In_Order", "note": "x"})
    assert type(by_path) is type(by_entry_point) and by_path == by_entry_point
    with pytest.raises(ConfigError, match=r"executor\.nte: .* does not accept 'nte' \(did you"):
        plan_executor(tmp_path, {"name": "in_order", "nte": "x"})

    config = {**regression_dict(), "sweep": {"optimizer.lr": [0.01, 0.02]}}
    config["executor"] = {"name": "optbench_test_in_order.InOrder", "note": "sweep"}
    result = optbench.sweep(config, results_dir=tmp_path / "r")
    assert [run.status for run in result.runs] == ["completed", "completed"]
    assert sys.modules["optbench_test_in_order"].NOTES == ["sweep"]


def test_a_suites_executor_section_trains_its_benchmark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("optuna")
    monkeypatch.delitem(sys.modules, "optbench_test_in_order", raising=False)  # NOTES afresh
    importable_module(tmp_path, "optbench_test_in_order", _USER_EXECUTOR, monkeypatch)
    suite = {
        "name": "one",
        "problems": ["rosenbrock"],
        "set": {"epochs": 2, "device": "cpu"},
        "optimizers": {"SGD": {"name": "SGD"}},
        "tune": {"space": {"optimizer.lr": {"choice": [0.001]}}, "trials": 1, "seeds": [0]},
        "studies": 1,
        "executor": {"name": "optbench_test_in_order.InOrder", "note": "suite"},
    }
    path = write_config(tmp_path, {**suite, "executor": {"name": "local", "workers": 0}})
    refused = invoke("benchmark", str(path), "--results-dir", str(tmp_path / "refused"))
    assert_one_error_line(refused, "executor.workers: must be at least 1, got 0")
    assert not (tmp_path / "refused").exists()
    result = optbench.benchmark(write_config(tmp_path, suite), results_dir=tmp_path / "r")
    assert len(result.trained) == 1 and not result.failed
    assert sys.modules["optbench_test_in_order"].NOTES == ["suite", "suite"]  # trials, seeds


def test_the_executor_section_is_no_part_of_a_run(tmp_path: Path) -> None:
    """Same run-ids with and without it, never in config.yaml, and `run` ignores it."""
    config = {**regression_dict(), "sweep": {"optimizer.lr": [0.01, 0.02]}}
    placed = {**config, "executor": {"name": "local", "workers": 1}}
    _, plain_points = load_sweep(config)
    _, placed_points = load_sweep(placed)
    assert [p.run_id for p in placed_points] == [p.run_id for p in plain_points]
    result = optbench.sweep(placed, results_dir=tmp_path)
    written = yaml.safe_load((result.runs[0].dir / "config.yaml").read_text())
    assert "executor" not in written
    run = optbench.run({**regression_dict(), "executor": "ray"}, results_dir=tmp_path / "run")
    assert run.status == "completed" and run.run_id == optbench.plan(regression_dict()).run_id


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--executor", "sbumitit"], ["executor.name", "unknown executor 'sbumitit'", "submitit"]),
        (["--executor", "local", "--executor-opt", "adress=auto"], ["executor.adress", "local"]),
        (["--workers", "0"], ["executor.workers: must be at least 1, got 0"]),
        (["--executor", "os.path"], ["executor.name", "'os.path' is not an executor"]),
        (
            ["--executor", "submitit", "--executor-opt", "slurm={acount: lab}"],
            ["executor.slurm.acount", "did you mean 'account'?"],
        ),
        (
            ["--executor", "submitit", "--executor-opt", "folder=NOT_A_FOLDER/sub"],
            ["executor.folder", "is not a folder"],
        ),
        (
            ["--executor", "submitit", "--executor-opt", "cluster=slurm"],
            ["executor.folder", "each machine's own disk"],
        ),
    ],
)
def test_a_bad_executor_is_refused_in_one_line_before_anything_is_written(
    tmp_path: Path, options: list[str], fragments: list[str]
) -> None:
    config = write_config(tmp_path, {**regression_dict(), "sweep": {"optimizer.lr": [0.1]}})
    (tmp_path / "file").write_text("")
    options = [o.replace("NOT_A_FOLDER", str(tmp_path / "file")) for o in options]
    results = tmp_path / "results"
    result = invoke("sweep", str(config), *options, "--results-dir", str(results))
    assert_one_error_line(result, *fragments)
    assert not results.exists()


def test_a_bad_executor_section_in_a_config_names_its_field(tmp_path: Path) -> None:
    config = {**regression_dict(), "tune": {"space": {"optimizer.lr": [0.1, 0.2]}, "trials": 1}}
    config["executor"] = {"name": "local", "workers": 0}
    path = write_config(tmp_path, config)
    result = invoke("tune", str(path), "--results-dir", str(tmp_path / "results"))
    assert_one_error_line(result, "executor.workers: must be at least 1, got 0")
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- submitit: Slurm


def test_a_sweep_goes_to_slurm_as_one_job_array_as_submitit_renders_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under submitit's own mocked Slurm (sbatch, sacct, srun faked by submitit's tests), three
    points with workers 2 are one sbatch script: the text submitit renders for the same
    parameters, --array=0-2%2."""
    pytest.importorskip("submitit")
    from submitit.slurm.slurm import _make_sbatch_string
    from submitit.slurm.test_slurm import mocked_slurm

    # This machine's temp dir elsewhere: tmp_path stands for a shared filesystem here.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-local"))
    _, points = load_sweep({**regression_dict(), "sweep": {"optimizer.lr": [0.1, 0.2, 0.3]}})
    section = {"name": "submitit", "cluster": "slurm", "partition": "gpu", "timeout_min": 30}
    section.update(gpus_per_node=1, workers=2, slurm={"account": "lab"})
    with mocked_slurm():
        executor = plan_executor(tmp_path / "results", section)
        assert isinstance(executor, SubmititExecutor)
        slurm = executor.submitit_executor()
        jobs = executor.submit(slurm, [(p.run_id, p.config) for p in points])
    assert [job.job_id for job in jobs] == ["12_0", "12_1", "12_2"]
    assert list(jobs.values()) == [p.run_id for p in points]
    script = next(iter(jobs)).paths.submission_file.read_text()
    expected = _make_sbatch_string(
        command=slurm._executor._submitit_command_str,
        folder=str(tmp_path / "results" / ".submitit"),
        job_name="optbench",
        partition="gpu",
        time=30,
        gpus_per_node=1,
        account="lab",
        array_parallelism=2,
        map_count=3,
    )
    assert script == expected
    assert "#SBATCH --array=0-2%2" in script.splitlines()


# --------------------------------------------------------------------------- submitit: jobs

SLEEPY_OPTIMIZER = '''
import time

import torch


class SleepySGD(torch.optim.SGD):
    """SGD's numbers, 0.15 s a step: an epoch lasts long enough to signal its job mid-run."""

    def step(self, closure=None):
        time.sleep(0.15)
        return super().step(closure)
'''


def _lock_owner(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "lock").read_text())
    except (OSError, ValueError):
        return None


def _epochs_written(run_dir: Path) -> int:
    try:
        return len(pd.read_csv(run_dir / "epochs.csv"))
    except (OSError, pd.errors.EmptyDataError):
        return 0


@pytest.mark.slow
def test_submitit_jobs_resume_after_preemption_and_after_a_kill_bit_for_bit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two points as submitit jobs (its LocalExecutor: real processes). Mid-run, one job gets
    the preemption signal: submitit's checkpoint hook requeues it and it finishes from its
    checkpoint. The other is SIGKILLed: the sweep trains its run again in a new job, from its
    checkpoint. Both end with the numbers of a plain run, bit for bit."""
    pytest.importorskip("submitit")
    importable_module(tmp_path, "optbench_test_sleepy_jobs", SLEEPY_OPTIMIZER, monkeypatch)
    config = regression_dict(optimizer={"name": "optbench_test_sleepy_jobs.SleepySGD", "lr": 0.05})
    config["sweep"] = {"optimizer.lr": [0.05, 0.1]}
    results = tmp_path / "results"
    _, points = load_sweep(config)
    preempted, killed = (results / "tiny" / p.run_id for p in points)
    outcome: list[optbench.SweepResult] = []

    def sweep() -> None:  # the driver: in a thread of this process, which has torch imported
        executor = {"name": "submitit", "cluster": "local", "workers": 2}
        outcome.append(optbench.sweep(config, executor=executor, results_dir=results))

    driver = threading.Thread(target=sweep)
    driver.start()
    signalled: dict[Path, int] = {}
    deadline = time.monotonic() + 240
    while len(signalled) < 2 and driver.is_alive():
        assert time.monotonic() < deadline, "no run reached its first epoch"
        for run, how in ((preempted, signal.SIGUSR2), (killed, signal.SIGKILL)):
            pid = _lock_owner(run)
            if run not in signalled and pid and _epochs_written(run) == 1:
                os.kill(pid, how)  # SIGUSR2: Slurm's notice of preemption, as submitit asks
                signalled[run] = pid
        time.sleep(0.02)
    driver.join(240)
    (result,) = outcome
    assert len(signalled) == 2 and [run.status for run in result.runs] == ["completed"] * 2
    for run in (preempted, killed):  # a new process finished each: the requeued job, a new one
        assert _lock_owner(run) != signalled[run]
    for point, run in zip(points, (preempted, killed), strict=True):
        plain = {**point.config, "optimizer": {**point.config["optimizer"], "name": "SGD"}}
        unbroken = optbench.run(plain, results_dir=tmp_path / "plain")
        written = pd.read_csv(run / "epochs.csv")
        pd.testing.assert_frame_equal(
            written[METRICS].astype(float), unbroken.epochs[METRICS].astype(float)
        )
