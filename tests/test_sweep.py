"""Sweeps: grid expansion, worker processes, trials that diverge or raise without stopping the
sweep, skipping finished runs, resuming after the sweep is killed, and the Ray executor."""

from __future__ import annotations

import fcntl
import io
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from optbench.core.config import validate_config
from optbench.core.errors import ConfigError
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train
from optbench.storage.results import epochs_frame
from optbench.sweeps.executors import plan_executor
from optbench.sweeps.grid import (
    SweepPoint,
    expand_grid,
    load_sweep,
    parse_grid_option,
    parse_seeds,
)
from tests.helpers import (
    METRICS,
    REPO,
    assert_one_error_line,
    importable_module,
    invoke,
    ray_head,
    regression_dict,
    write_config,
)


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _epochs(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "epochs.csv")


def _as_written(rows: list[dict]) -> pd.DataFrame:
    """train()'s rows through the same CSV text and parser as a run's epochs.csv."""
    return pd.read_csv(io.StringIO(epochs_frame(rows).to_csv(index=False)))


def _metrics(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[METRICS].astype(float).reset_index(drop=True)


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `folder` with its modification time and content."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- grid expansion


def test_grid_is_the_product_of_its_axes_with_distinct_run_ids(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict())
    name, points = load_sweep(
        config, ["optimizer.name=SGD,Adam,RMSprop", "optimizer.lr=0.1,0.01"], seeds="0,1"
    )
    assert name == "tiny"
    assert len(points) == 3 * 2 * 2
    assert len({p.run_id for p in points}) == 12
    triples = {
        (p.config["optimizer"]["name"], p.config["optimizer"]["lr"], p.config["seed"])
        for p in points
    }
    assert triples == set(itertools.product(["SGD", "Adam", "RMSprop"], [0.1, 0.01], [0, 1]))
    for point in points:
        optimizer, seed = point.config["optimizer"], point.config["seed"]
        assert point.assignments == {
            "optimizer.name": optimizer["name"],
            "optimizer.lr": optimizer["lr"],
            "seed": seed,
        }
        assert point.config["data"]["n_train"] == 256  # the rest of the base is kept
        # the id a plain `optbench run` of the same config gets, so a sweep skips such runs
        assert point.run_id == make_plan(validate_config(point.config)).run_id
        assert point.run_id.startswith(f"{optimizer['name'].lower()}-seed{seed}-")

    (base,) = load_sweep(config, ["optimizer.lr=0.05"])[1]  # the base config's own lr
    assert base.run_id == make_plan(validate_config(regression_dict())).run_id


def test_config_sweep_section_merges_with_the_shell_grid_and_the_shell_wins(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        regression_dict(
            sweep={"optimizer.lr": [0.1, 0.2, 0.3], "optimizer.momentum": [0.0, 0.9], "seed": [7]}
        ),
    )
    _, from_file = load_sweep(config)
    assert len(from_file) == 3 * 2
    assert {p.config["seed"] for p in from_file} == {7}

    _, points = load_sweep(config, ["optimizer.lr=0.5,0.6"], seeds="1,2", overrides=["epochs=3"])
    combos = {
        (p.config["optimizer"]["lr"], p.config["optimizer"]["momentum"], p.config["seed"])
        for p in points
    }
    assert combos == set(itertools.product([0.5, 0.6], [0.0, 0.9], [1, 2]))
    assert len(points) == 8
    for point in points:
        assert point.config["epochs"] == 3  # --set applies to every point
        assert point.config["sweep"] is None  # the grid is not part of any run's config


def test_per_optimizer_blocks_get_the_lr_applied_on_top(tmp_path: Path) -> None:
    # The base has SGD's momentum: a block replaces the whole section, so Adam never sees it.
    base = regression_dict(optimizer={"name": "SGD", "lr": 0.05, "momentum": 0.5})
    blocks = [{"name": "SGD", "momentum": 0.9}, {"name": "Adam", "betas": [0.9, 0.999]}]
    # optimizer.lr is listed first on purpose: the section must still be applied before it
    config = write_config(
        tmp_path, {**base, "sweep": {"optimizer.lr": [0.1, 0.01], "optimizer": blocks}}
    )
    _, points = load_sweep(config)
    assert len(points) == 4
    optimizers = sorted((p.config["optimizer"] for p in points), key=lambda o: (o["name"], o["lr"]))
    assert optimizers == [
        {"name": "Adam", "lr": 0.01, "betas": [0.9, 0.999], "param_groups": [], "protocol": None},
        {"name": "Adam", "lr": 0.1, "betas": [0.9, 0.999], "param_groups": [], "protocol": None},
        {"name": "SGD", "lr": 0.01, "momentum": 0.9, "param_groups": [], "protocol": None},
        {"name": "SGD", "lr": 0.1, "momentum": 0.9, "param_groups": [], "protocol": None},
    ]
    resolved = {p.run_id: make_plan(validate_config(p.config)).resolved for p in points}
    assert sorted(r["optimizer"]["lr"] for r in resolved.values()) == [0.01, 0.01, 0.1, 0.1]

    # the same blocks given in the shell as YAML mappings make the same runs
    shell = write_config(tmp_path, base, "shell.yaml")
    _, from_shell = load_sweep(
        shell,
        [
            "optimizer={name: SGD, momentum: 0.9},{name: Adam, betas: [0.9, 0.999]}",
            "optimizer.lr=0.1,0.01",
        ],
    )
    assert {p.run_id for p in from_shell} == {p.run_id for p in points}


def test_a_key_the_chosen_optimizer_does_not_accept_fails_at_expansion(tmp_path: Path) -> None:
    base = regression_dict(optimizer={"name": "SGD", "lr": 0.05, "momentum": 0.9})
    with pytest.raises(ConfigError) as info:
        expand_grid(base, {"optimizer.name": ["SGD", "Adam"]})
    message = str(info.value)
    assert "sweep point [optimizer.name=Adam]" in message
    assert "optimizer.momentum" in message
    assert "Adam does not accept 'momentum'" in message

    config = write_config(tmp_path, base)
    results = tmp_path / "results"
    result = invoke(
        "sweep", str(config), "--grid", "optimizer.name=SGD,Adam", "--results-dir", str(results)
    )
    line = assert_one_error_line(result)
    assert "[optimizer.name=Adam]" in line and "optimizer.momentum" in line
    assert not results.exists()  # checked before anything trains


@pytest.mark.parametrize(
    "sweep",
    [
        {"optimizer.lr": []},
        {"optimizer.lr": 0.1},
        {"optimizer.lr": "0.1,0.01"},
        {"optimizer.lr": {"a": 1}},
        [0.1, 0.01],
    ],
    ids=["empty list", "number", "string", "mapping", "sweep is a list"],
)
def test_grid_values_must_be_non_empty_lists(tmp_path: Path, sweep) -> None:
    config = write_config(tmp_path, regression_dict(sweep=sweep))
    with pytest.raises(ConfigError, match=r"^sweep.*(non-empty list|must map dotted keys)"):
        load_sweep(config)


def test_shell_grid_with_no_values_is_an_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict())
    with pytest.raises(ConfigError, match=r"optimizer\.lr: must be a non-empty list"):
        load_sweep(config, ["optimizer.lr="])


def test_duplicate_points_are_kept_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict())
    assert len(load_sweep(config, ["optimizer.lr=0.1,0.1"])[1]) == 1
    assert len(load_sweep(config, ["optimizer.lr=0.1,0.10,0.2"])[1]) == 2
    _, points = load_sweep(config, ["optimizer.lr=0.1,0.2"], seeds="0,0,1")
    assert len(points) == 4
    assert len({p.run_id for p in points}) == 4


def test_parse_grid_option_reads_yaml_values() -> None:
    assert parse_grid_option("optimizer.betas=[0.9,0.99],[0.8,0.9]") == (
        "optimizer.betas",
        [[0.9, 0.99], [0.8, 0.9]],
    )
    assert parse_grid_option(" optimizer.lr = 0.1, 0.01") == ("optimizer.lr", [0.1, 0.01])
    assert parse_grid_option("optimizer.name=SGD,Adam") == ("optimizer.name", ["SGD", "Adam"])
    assert parse_grid_option("optimizer.nesterov=true,false") == (
        "optimizer.nesterov",
        [True, False],
    )
    assert parse_seeds("0, 1,2") == [0, 1, 2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("optimizer.lr", "is not KEY=V1,V2"),
        ("=0.1", "is not KEY=V1,V2"),
        ("optimizer..lr=0.1", "is not a dotted key"),
        ("optimizer.l r=0.1", "is not a dotted key"),
        ("optimizer.lr=[0.1", "is not a list of YAML values"),
    ],
)
def test_bad_grid_text_is_a_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grid_option(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b", "is not a list of integers"),
        ("0.5", "is not a list"),
        ("", "at least one"),
        (",", "at least one"),
    ],
)
def test_bad_seeds_text_is_a_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_seeds(text)


def test_a_section_the_grid_supplies_need_not_be_in_the_base(tmp_path: Path) -> None:
    base = regression_dict()
    del base["optimizer"]
    blocks = [{"name": "SGD", "lr": 0.1}, {"name": "Adam", "lr": 0.01}]
    config = write_config(tmp_path, {**base, "sweep": {"optimizer": blocks}})
    assert expand_grid(base, {"optimizer": blocks})  # every point on its own is valid
    name, points = load_sweep(config)
    assert name == "tiny"
    assert sorted(p.config["optimizer"]["name"] for p in points) == ["Adam", "SGD"]


@pytest.mark.parametrize(
    "workers",
    [-1, 0],
)
def test_workers_below_one_is_an_error(tmp_path: Path, workers: int) -> None:
    with pytest.raises(ConfigError, match=r"executor\.workers: must be at least 1"):
        plan_executor(tmp_path / "results", workers=workers)


def test_dry_run_lists_the_runs_and_writes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict())
    results = tmp_path / "results"
    grid = ["--grid", "optimizer.name=SGD,Adam,RMSprop", "--grid", "optimizer.lr=0.1,0.01"]
    result = invoke(
        "sweep", str(config), *grid, "--seeds", "0,1", "--results-dir", str(results), "--dry-run"
    )
    assert result.exit_code == 0, result.output
    assert "sweep tiny: 12 runs" in result.output
    _, points = load_sweep(
        config, ["optimizer.name=SGD,Adam,RMSprop", "optimizer.lr=0.1,0.01"], "0,1"
    )
    rows = [line for line in result.output.splitlines() if "-seed" in line]
    assert len(rows) == 12
    for point in points:
        (row,) = [line for line in rows if point.run_id in line]
        assert point.label in row and row.rstrip(" │").endswith("new")
    assert not results.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["exp.yaml"]


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("optimizer.lr", "error: --grid: 'optimizer.lr' is not KEY=V1,V2"),
        ("optimizer.lr=", "optimizer.lr: must be a non-empty list of values"),
        ("optimizer.lr=[0.1", "error: --grid optimizer.lr: '[0.1' is not a list of YAML values"),
        ("optimizer.lr=fast", "error: sweep point [optimizer.lr=fast]: optimizer.lr: "),
    ],
)
def test_bad_grid_exits_2_with_one_error_line(tmp_path: Path, grid: str, message: str) -> None:
    config = write_config(tmp_path, regression_dict())
    results = tmp_path / "results"
    result = invoke("sweep", str(config), "--grid", grid, "--results-dir", str(results))
    assert message in assert_one_error_line(result)
    assert not results.exists()


# --------------------------------------------------------------------------- real sweeps


@dataclass
class TinySweep:
    config: Path
    results: Path
    args: list[str]
    output: str
    exit_code: int
    run_ids: list[str]


GRID = ["--grid", "optimizer.lr=0.05,0.02", "--seeds", "0,1"]


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> TinySweep:
    """4 tiny synthetic runs swept on 2 local worker processes (shared: spawning is slow)."""
    folder = tmp_path_factory.mktemp("tiny_sweep")
    config = write_config(folder, regression_dict())
    results = folder / "results"
    args = [str(config), *GRID, "--workers", "2", "--results-dir", str(results)]
    result = invoke("sweep", *args)
    _, points = load_sweep(config, ["optimizer.lr=0.05,0.02"], "0,1")
    return TinySweep(
        config, results, args, result.output, result.exit_code, [p.run_id for p in points]
    )


@pytest.mark.slow
def test_sweep_runs_every_point_then_a_rerun_skips_them_all(tiny_sweep: TinySweep) -> None:
    assert tiny_sweep.exit_code == 0, tiny_sweep.output
    results, run_ids = tiny_sweep.results, tiny_sweep.run_ids
    assert len(run_ids) == 4
    assert sorted(p.name for p in (results / "tiny").iterdir()) == sorted(run_ids)
    for run_id in run_ids:
        run_dir = results / "tiny" / run_id
        summary = _summary(run_dir)
        assert summary["status"] == "completed" and summary["run_id"] == run_id
        assert summary["epochs_completed"] == 2 and summary["error"] is None
        assert _epochs(run_dir)["epoch"].tolist() == [1, 2]
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert make_plan(validate_config(config)).run_id == run_id
    finished = [line for line in tiny_sweep.output.splitlines() if line.startswith("[")]
    assert len(finished) == 4 and all(" completed " in line for line in finished)
    assert "sweep tiny: 4 completed, 0 diverged, 0 failed, 0 interrupted, 0 skipped" in (
        tiny_sweep.output
    )

    before = _snapshot(results)
    again = invoke("sweep", *tiny_sweep.args)
    assert again.exit_code == 0, again.output
    assert "sweep tiny: 0 completed, 0 diverged, 0 failed, 0 interrupted, 4 skipped" in (
        again.output
    )
    assert not any(line.startswith("[") for line in again.output.splitlines())
    assert _snapshot(results) == before  # not a byte, not a timestamp changed

    dry = invoke("sweep", *tiny_sweep.args, "--dry-run")
    assert dry.exit_code == 0
    rows = [line for line in dry.output.splitlines() if "-seed" in line]
    assert len(rows) == 4 and all(row.rstrip(" │").endswith("completed") for row in rows)


FAILING_OPTIMIZER = '''
import torch


class FailsOnThirdStep(torch.optim.SGD):
    """SGD that constructs (and so validates) fine, then raises on its third step."""

    def step(self, closure=None):
        self.steps_taken = getattr(self, "steps_taken", 0) + 1
        if self.steps_taken == 3:
            raise RuntimeError("step 3 exploded")
        return super().step(closure)
'''


@pytest.mark.slow
def test_diverging_and_raising_trials_do_not_stop_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "optbench_test_failing_optimizer"
    importable_module(tmp_path, module, FAILING_OPTIMIZER, monkeypatch)
    failing = f"{module}.FailsOnThirdStep"
    # 2 batches an epoch: the third step is the first of epoch 2, after epoch 1 is saved
    data = {"dataset": "synthetic_regression", "n_train": 256, "n_test": 64, "batch_size": 128}
    config = write_config(tmp_path, regression_dict(epochs=3, data=data))
    results = tmp_path / "results"
    grid = [f"optimizer.name=SGD,{failing}", "optimizer.lr=0.05,1000000.0"]
    options = ["--grid", grid[0], "--grid", grid[1], "--workers", "2"]
    result = invoke("sweep", str(config), *options, "--results-dir", str(results))
    assert result.exit_code == 1, result.output  # because of the failures
    assert "sweep tiny: 1 completed, 1 diverged, 2 failed, 0 interrupted, 0 skipped" in (
        result.output
    )

    _, points = load_sweep(config, grid)
    assert len(points) == 4
    tables = {}
    for point in points:
        run_dir = results / "tiny" / point.run_id
        summary = _summary(run_dir)
        epochs = _epochs(run_dir) if (run_dir / "epochs.csv").exists() else pd.DataFrame()
        tables[point.label] = epochs
        name, lr = point.config["optimizer"]["name"], point.config["optimizer"]["lr"]
        (line,) = [x for x in result.output.splitlines() if point.run_id in x]
        if name == failing:  # raises in the 3rd step, whatever the lr
            assert summary["status"] == "failed", summary
            assert summary["error"] == "RuntimeError: step 3 exploded"
            assert summary["epochs_completed"] == 1
            assert epochs["epoch"].tolist() == [1]
            assert summary["final"]["train_loss"] == pytest.approx(epochs["train_loss"].iloc[0])
            assert " failed " in line and "RuntimeError: step 3 exploded" in line
        elif lr == 0.05:
            assert summary["status"] == "completed" and summary["epochs_completed"] == 3
            assert epochs["epoch"].tolist() == [1, 2, 3]
        else:
            assert summary["status"] == "diverged", summary
            assert summary["error"] is None
            assert summary["diverged_at"]["epoch"] - 1 == summary["epochs_completed"] == len(epochs)
            assert len(epochs) < 3
            assert " diverged " in line
    # the failing trial really trained its first epoch: SGD's numbers, same seed and lr
    sgd = tables["optimizer.name=SGD, optimizer.lr=0.05"]
    mine = tables[f"optimizer.name={failing}, optimizer.lr=0.05"]
    pd.testing.assert_frame_equal(_metrics(mine), _metrics(sgd.head(1)), check_exact=True)


# --------------------------------------------------------------------------- kill and resume

SLOW_ENOUGH = {  # about a tenth of a second per epoch, so the kill can land inside a run
    "name": "killed",
    "epochs": 4,
    "data": {"dataset": "synthetic_regression", "n_train": 1024, "features": 64, "batch_size": 16},
    "model": {"name": "mlp", "hidden_sizes": [64]},
    "optimizer": {"name": "SGD", "lr": 0.01},
}


def _statuses(folder: Path) -> dict[str, str]:
    statuses = {}
    for run_dir in folder.iterdir() if folder.exists() else []:
        try:
            statuses[run_dir.name] = _summary(run_dir)["status"]
        except (FileNotFoundError, ValueError):
            statuses[run_dir.name] = "new"
    return statuses


def _in_flight_with_an_epoch(folder: Path, statuses: dict[str, str]) -> str | None:
    """A running run with some but not all of its 4 epochs written."""
    for run_id, status in statuses.items():
        epochs = folder / run_id / "epochs.csv"
        written = len(epochs.read_text().splitlines()) - 1 if epochs.exists() else 0
        if status == "running" and 1 <= written < 4:
            return run_id
    return None


def _wait_until_unlocked(lock: Path, timeout: float = 30) -> None:
    """The killed worker's flock goes when the kernel has finished it off."""
    deadline = time.monotonic() + timeout
    with lock.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                assert time.monotonic() < deadline, f"{lock} is still held"
                time.sleep(0.05)
            else:
                fcntl.flock(handle, fcntl.LOCK_UN)
                return


@pytest.mark.slow
def test_sweep_killed_mid_way_resumes_and_runs_every_point_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict(**SLOW_ENOUGH))
    results = tmp_path / "results"
    folder = results / "killed"
    grid = ["--grid", "optimizer.lr=0.01,0.02,0.03", "--seeds", "0,1"]
    args = [str(config), *grid, "--workers", "1", "--results-dir", str(results)]
    _, points = load_sweep(config, ["optimizer.lr=0.01,0.02,0.03"], "0,1")
    assert len(points) == 6
    process = subprocess.Popen(
        [sys.executable, "-m", "optbench", "sweep", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the driver and its workers
    )
    try:
        deadline = time.monotonic() + 240
        while True:  # one run completed, and another one in flight
            statuses = _statuses(folder)
            if "completed" in statuses.values() and "running" in statuses.values():
                break
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, statuses
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL

    statuses = _statuses(folder)
    done = sorted(r for r, s in statuses.items() if s == "completed")
    (killed,) = [r for r, s in statuses.items() if s == "running"]  # one worker: one in flight
    assert 1 <= len(done) < 6
    # These runs are tiny: they train in the driver and write their checkpoint and epochs.csv
    # once a second and after their last epoch (EpochSaves), so the kill may find none of its
    # epochs on disk yet, some, or all 4 (written, but not yet called completed): the resume
    # must finish it from whatever its last checkpoint holds.
    saved = (folder / killed / "epochs.csv").exists()
    rows_before = _epochs(folder / killed) if saved else pd.DataFrame()
    assert 0 <= len(rows_before) <= 4
    untouched = {r: _snapshot(folder / r) for r in done}
    _wait_until_unlocked(folder / killed / "lock")

    result = invoke("sweep", *args)
    assert result.exit_code == 0, result.output
    assert (
        f"sweep killed: {6 - len(done)} completed, 0 diverged, 0 failed, 0 interrupted, "
        f"{len(done)} skipped"
    ) in result.output

    assert sorted(p.name for p in folder.iterdir()) == sorted(p.run_id for p in points)
    for point in points:
        run_dir = folder / point.run_id
        summary = _summary(run_dir)
        assert summary["status"] == "completed" and summary["epochs_completed"] == 4
        assert _epochs(run_dir)["epoch"].tolist() == [1, 2, 3, 4]
    for run_id in done:
        assert _snapshot(folder / run_id) == untouched[run_id]  # skipped, not run again

    # The killed run continued from its checkpoint: the epochs it had saved keep even their
    # wall times, which a run started over could not reproduce.
    resumed = _epochs(folder / killed)
    if saved:
        pd.testing.assert_frame_equal(resumed.head(len(rows_before)), rows_before, check_exact=True)

    # Its numbers equal a plain, uninterrupted training of the same point.
    (point,) = [p for p in points if p.run_id == killed]
    reference = _as_written(train(make_plan(validate_config(point.config))).rows)
    pd.testing.assert_frame_equal(_metrics(resumed), _metrics(reference), check_exact=True)


SLEEPY_OPTIMIZER = '''
import time

import torch


class SleepySGD(torch.optim.SGD):
    """SGD's numbers, 5 ms a step: a run lasts long enough to kill its worker on any machine,
    and over a second, so no run counts as tiny (those run in the driver, executors.py)."""

    def step(self, closure=None):
        time.sleep(0.005)
        return super().step(closure)
'''


def _lock_owner(run_dir: Path) -> int:
    """The pid RunLock wrote: the worker that trained (or trains) the run."""
    return int((run_dir / "lock").read_text())


@pytest.mark.slow
def test_a_killed_workers_point_is_trained_again_and_a_fresh_worker_takes_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    importable_module(tmp_path, "optbench_test_sleepy", SLEEPY_OPTIMIZER, monkeypatch)
    sleepy = {"name": "optbench_test_sleepy.SleepySGD", "lr": 0.01}
    config = write_config(tmp_path, regression_dict(**{**SLOW_ENOUGH, "optimizer": sleepy}))

    def plain_training(point: SweepPoint) -> pd.DataFrame:
        """The point trained in this process with torch's SGD: the numbers it must have."""
        sgd = {**point.config, "optimizer": {**point.config["optimizer"], "name": "SGD"}}
        return _as_written(train(make_plan(validate_config(sgd))).rows)

    results = tmp_path / "results"
    folder = results / "killed"
    grid = ["--grid", "optimizer.lr=0.01,0.02,0.03", "--seeds", "0,1"]
    args = [str(config), *grid, "--workers", "2", "--results-dir", str(results)]
    _, points = load_sweep(config, ["optimizer.lr=0.01,0.02,0.03"], "0,1")
    process = subprocess.Popen(
        [sys.executable, "-m", "optbench", "sweep", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "250"},  # one line per finished run
    )
    try:
        deadline = time.monotonic() + 240
        while True:  # both workers busy, one with a saved epoch, and points still waiting
            statuses = _statuses(folder)
            victim = _in_flight_with_an_epoch(folder, statuses)
            running = [r for r, s in statuses.items() if s == "running"]
            if victim and len(running) == 2 and len(statuses) <= 4:
                break
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, statuses
            time.sleep(0.02)
        (bystander,) = [r for r in running if r != victim]
        dead_pid = _lock_owner(folder / victim)
        assert dead_pid != process.pid  # a worker, not the driver
        os.kill(dead_pid, signal.SIGKILL)
        output, errors = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # A death is not the run's failure: the point is trained again (after the points handed
    # out), resuming from its checkpoint under its run-id, and nothing counts as failed.
    assert process.returncode == 0, output + errors
    assert "sweep killed: 6 completed, 0 diverged, 0 failed, 0 interrupted, 0 skipped" in output
    (again,) = [line for line in output.splitlines() if "trained again" in line]
    assert victim in again and "died (killed by SIGKILL): trained again, not counted" in again

    # Every point completed with the numbers of a plain training, the victim's too: the run in
    # flight on the other worker went on in the same process, a fresh worker took the dead
    # one's place, and the killed run resumed bit for bit.
    survivor = _lock_owner(folder / bystander)
    owners = {_lock_owner(folder / p.run_id) for p in points if p.run_id != victim}
    assert survivor in owners and owners - {survivor, dead_pid}  # that fresh worker's runs
    for point in points:
        run_dir = folder / point.run_id
        summary = _summary(run_dir)
        assert summary["status"] == "completed" and summary["epochs_completed"] == 4, summary
        pd.testing.assert_frame_equal(
            _metrics(_epochs(run_dir)), _metrics(plain_training(point)), check_exact=True
        )


# ---------------------------------------------------------------- Ray (ray_session: conftest.py)


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray at a time (conftest.py's ray_session)
def test_ray_executor_gives_the_local_executors_numbers(
    tiny_sweep: TinySweep, ray_session, tmp_path: Path
) -> None:
    assert tiny_sweep.exit_code == 0, tiny_sweep.output
    results = tmp_path / "ray"
    ray_options = ["--executor", "ray", "--workers", "2"]
    result = invoke(
        "sweep", str(tiny_sweep.config), *GRID, *ray_options, "--results-dir", str(results)
    )
    assert result.exit_code == 0, result.output
    assert ray_session.is_initialized()  # it really ran on Ray
    assert "sweep tiny: 4 completed, 0 diverged, 0 failed, 0 interrupted, 0 skipped" in (
        result.output
    )
    assert sorted(p.name for p in (results / "tiny").iterdir()) == sorted(tiny_sweep.run_ids)
    for run_id in tiny_sweep.run_ids:
        on_ray = results / "tiny" / run_id
        local = tiny_sweep.results / "tiny" / run_id
        # the driver wrote what the task sent back: the results, no checkpoint, no lock
        assert {p.name for p in on_ray.iterdir()} == {"config.yaml", "epochs.csv", "summary.json"}
        assert _summary(on_ray)["status"] == "completed"
        assert yaml.safe_load((on_ray / "config.yaml").read_text()) == yaml.safe_load(
            (local / "config.yaml").read_text()
        )
        pd.testing.assert_frame_equal(
            _metrics(_epochs(on_ray)), _metrics(_epochs(local)), check_exact=True
        )


_USER_MODEL = '''
import os
from pathlib import Path

import torch.nn as nn


class Net(nn.Module):
    """The user's own model, in the config's folder only. In a Ray task it notes the GPUs Ray
    gave the task (CUDA_VISIBLE_DEVICES) in the folder the head was told of."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        seen = os.environ.get("OPTBENCH_TEST_GPUS_SEEN")
        if seen and "CUDA_VISIBLE_DEVICES" in os.environ:
            Path(seen, str(os.getpid())).write_text(os.environ["CUDA_VISIBLE_DEVICES"])
        self.layer = nn.Linear(in_features, 1)

    def forward(self, x):
        return self.layer(x)
'''


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray at a time (conftest.py's ray_session)
def test_ray_nodes_get_the_configs_folder_and_data_file(tmp_path: Path) -> None:
    """A token-enabled Ray head on 127.0.0.1 (one CPU, one GPU declared) whose worker starts
    elsewhere, with the user's folder on no path, reached by its IP:port as from another
    machine with the cluster's token in a file (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH): the
    sweep ships the folder (its model module) and the .npz it names through Ray's runtime_env,
    each run asks Ray for half a CPU and half a GPU (Ray gives its task GPU 0), and every
    point completes with the numbers a local run gives."""
    import numpy as np

    project, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "my_model.py").write_text(_USER_MODEL)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0], dtype=np.float32)).astype(np.float32)
    np.savez(project / "table.npz", x_train=x, y_train=y, x_test=x[:16], y_test=y[:16])
    config = regression_dict(data={"dataset": "table.npz", "batch_size": 16}, epochs=1)
    config["model"] = {"name": "my_model.Net"}
    config["sweep"] = {"optimizer.lr": [0.01, 0.05]}
    config_path = write_config(project, config, "shipped.yaml")
    # Neither the head's worker nor the driver can import the user's module by path: the
    # folder is not on PYTHONPATH, and neither process starts in it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *paths])
    env.pop("CUDA_VISIBLE_DEVICES", None)
    # A private home (Ray keeps its auth token there): a cluster of our own, with a token of
    # our own. The driver has the token in a file only, as a user copies it from the head.
    token = secrets.token_hex(16)
    (tmp_path / "cluster_token").write_text(token)
    env.update(HOME=str(tmp_path / "home"), RAY_AUTH_MODE="token")
    seen = tmp_path / "gpus_seen"
    seen.mkdir()
    head_env = {**env, "RAY_AUTH_TOKEN": token, "OPTBENCH_TEST_GPUS_SEEN": str(seen)}
    driver_env = {**env, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "cluster_token")}
    results = tmp_path / "results"
    with ray_head(elsewhere, head_env, "--num-cpus=1", "--num-gpus=1") as port:
        done = subprocess.run(
            [sys.executable, "-m", "optbench", "sweep", str(config_path), "--executor", "ray",
             "--address", f"127.0.0.1:{port}", "--executor-opt", "gpus_per_run=0.5",
             "--executor-opt", "cpus_per_run=0.5", "--results-dir", str(results)],
            cwd=elsewhere, env=driver_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 completed, 0 diverged, 0 failed" in done.stdout + done.stderr
    assert {p.read_text() for p in seen.iterdir()} == {"0"}  # gpus_per_run reached Ray
    (sweep,) = results.iterdir()
    runs = list(sweep.iterdir())
    assert len(runs) == 2
    for run in runs:
        assert _summary(run)["status"] == "completed"
    local = invoke(
        "sweep", str(config_path), "--workers", "1", "--results-dir", str(tmp_path / "local")
    )
    assert local.exit_code == 0, local.output
    for run in runs:  # the same run-ids, the same numbers
        pd.testing.assert_frame_equal(
            _metrics(_epochs(run)),
            _metrics(_epochs(tmp_path / "local" / sweep.name / run.name)),
            check_exact=True,
        )


# --------------------------------------------------------------------------- threads


@pytest.mark.slow
def test_a_runs_numbers_do_not_depend_on_the_runs_sharing_the_machine(tmp_path: Path) -> None:
    # digits' MLP: its sums change with torch's thread count (a regression's are too small).
    # Three points on two workers: the last ends alone, the others beside another run.
    pytest.importorskip("sklearn")
    config = {
        "name": "shared",
        "problem": "digits_mlp",
        "epochs": 2,
        "device": "cpu",
        "optimizer": {"name": "SGD", "lr": 0.05, "momentum": 0.9},
    }
    path = write_config(tmp_path, config)
    pool = tmp_path / "pool"
    grid = ("--grid", "optimizer.lr=0.05,0.1,0.2", "--workers", "2")
    swept = invoke("sweep", str(path), *grid, "--results-dir", str(pool))
    assert swept.exit_code == 0, swept.output
    for lr in (0.05, 0.1, 0.2):  # each point alone, as `optbench run` trains it
        point = write_config(tmp_path, {**config, "optimizer": {**config["optimizer"], "lr": lr}})
        alone = tmp_path / f"alone-{lr}"
        ran = invoke("run", str(point), "--results-dir", str(alone))
        assert ran.exit_code == 0, ran.output
        (run_dir,) = (alone / "shared").iterdir()
        in_pool = pool / "shared" / run_dir.name
        pd.testing.assert_frame_equal(
            _metrics(_epochs(in_pool)), _metrics(_epochs(run_dir)), check_exact=True
        )
        assert _summary(in_pool)["threads"] == _summary(run_dir)["threads"] == torch_threads()


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def test_threads_is_the_runs_own_and_in_its_id_only_when_set(tmp_path: Path) -> None:
    from optbench.experiment.runner import run_plan

    unset = make_plan(validate_config(regression_dict()))
    one = make_plan(validate_config(regression_dict(threads=1)))
    assert "threads" not in unset.resolved and one.resolved["threads"] == 1
    assert unset.run_id != one.run_id and one.threads == 1
    seen = []

    class Watch:
        def __getattr__(self, name: str) -> Any:
            return lambda *a: seen.append(torch_threads()) if name == "epoch_started" else None

    before = torch_threads()
    run_plan(one, tmp_path, display=Watch())
    assert seen == [1, 1] and torch_threads() == before  # set while it trains, then put back
    (run_dir,) = (tmp_path / "tiny").iterdir()
    assert _summary(run_dir)["threads"] == 1
