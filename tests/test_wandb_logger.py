"""`log: [{name: wandb}]`, checked in W&B's offline mode against what wandb itself wrote: the
offline run files (`run-<id>.wandb`, a LevelDB-style log of wandb's own protobuf `Record`s,
checksums verified) read back with wandb's protobuf classes, against the run's epochs.csv,
config.yaml and summary.json. And the refusals: online mode with no credentials or no route."""

from __future__ import annotations

import json
import socket
import struct
import zlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from optbench.experiment.loggers import EPOCH_METRICS
from optbench.experiment.loggers.wandb import STATE_FILE
from optbench.storage.results import RunDir
from tests.helpers import StopAt, assert_one_error_line, cli_runner, regression_dict, write_config

pytest.importorskip("wandb")

BLOCK = 32768  # the log's block size; each record chunk has a 7-byte header
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B offline, every file it writes under tmp_path/wandb-home; returns WANDB_DIR."""
    home = tmp_path / "wandb-home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(home))
    for variable in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(variable, str(home / variable.lower()))
    home.mkdir()
    return home


def records(wandb_dir: Path) -> list[list[Any]]:
    """Every offline run's records, one list per `.wandb` file in the order they were made."""
    from wandb.proto import wandb_internal_pb2

    files = sorted(wandb_dir.glob("wandb/offline-run-*/run-*.wandb"))
    runs = []
    for path in files:
        data = path.read_bytes()
        assert data[:4] == b":W&B", path
        found, pending, position = [], b"", 7
        while position + 7 <= len(data):
            if BLOCK - position % BLOCK < 7:  # a block's tail too short for a header: padding
                position += BLOCK - position % BLOCK
                continue
            checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
            chunk = data[position + 7 : position + 7 + length]
            position += 7 + length
            assert checksum == zlib.crc32(chunk, zlib.crc32(bytes([kind]))), path
            pending = chunk if kind in (FULL, FIRST) else pending + chunk
            if kind in (FULL, LAST):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(pending)
                found.append(record)
        runs.append(found)
    return runs


def _of(run: list[Any], kind: str) -> list[Any]:
    return [getattr(r, kind) for r in run if r.WhichOneof("record_type") == kind]


def history(run: list[Any]) -> dict[int, dict[str, Any]]:
    """step -> the metrics logged at it; a step logged twice fails."""
    steps: dict[int, dict[str, Any]] = {}
    for record in _of(run, "history"):
        items = {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in record.item}
        assert record.step.num not in steps, f"step {record.step.num} logged twice"
        steps[record.step.num] = items
    return steps


def summary(run: list[Any]) -> dict[str, Any]:
    """The run's summary as its updates leave it."""
    values: dict[str, Any] = {}
    for record in _of(run, "summary"):
        for item in record.update:
            values[item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
    return values


def _run_cli(config: Path, results: Path, *args: str) -> Any:
    from optbench.ui.cli import app

    return cli_runner().invoke(app, ["run", str(config), "--results-dir", str(results), *args])


@pytest.mark.slow
def test_an_offline_run_resumed_is_one_wandb_run_with_each_epoch_once(
    tmp_path: Path, offline: Path
) -> None:
    from optbench.core.config import validate_config
    from optbench.experiment.plan import make_plan
    from optbench.experiment.runner import run_plan

    log = [{"name": "wandb", "project": "bench", "tags": ["t1"]}]
    plan = make_plan(validate_config(regression_dict(epochs=3, log=log)))
    results = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):  # stopped in epoch 2: epoch 1 is in the checkpoint
        run_plan(plan, results, display=StopAt(epoch=2, batch=3))
    folder = run_plan(plan, results, resume=True).run_dir

    first, second = records(offline)
    (started,), (resumed,) = _of(first, "run"), _of(second, "run")
    state = json.loads((folder / STATE_FILE).read_text())
    assert started.run_id == resumed.run_id == state["id"]  # one W&B run, continued
    assert state["step"] == 3
    for run in (started, resumed):
        assert run.project == "bench" and list(run.tags) == ["t1"]
        assert run.run_group == "tiny"  # the experiment's name: a sweep's runs share it
        assert run.display_name == folder.name
    config = {i.key: json.loads(i.value_json) for i in started.config.update}
    assert config["optimizer"] == yaml.safe_load((folder / RunDir.CONFIG).read_text())["optimizer"]

    logged = {**history(first), **history(second)}
    assert sorted(history(first)) == [1] and sorted(history(second)) == [2, 3]  # none twice
    frame = pd.read_csv(folder / RunDir.EPOCHS)
    assert sorted(logged) == list(frame.epoch)
    for row in frame.to_dict("records"):
        for column in EPOCH_METRICS:
            if pd.notna(row.get(column)):
                assert logged[row["epoch"]][column] == pytest.approx(row[column], rel=1e-12)

    assert [e.exit_code for e in _of(first, "exit")] == [1]  # interrupted
    assert [e.exit_code for e in _of(second, "exit")] == [0]
    written = json.loads((folder / RunDir.SUMMARY).read_text())
    final = summary(second)
    assert final["status"] == "completed" and final["final"] == written["final"]
    assert final["best"] == written["best"]
    (artifact,) = _of(second, "artifact")
    assert artifact.name == f"{folder.name}-files"
    assert sorted(e.path for e in artifact.manifest.contents) == sorted(RunDir.RESULT_FILES)


@pytest.mark.slow
def test_two_lines_of_yaml_log_a_sweep_to_wandb_one_group(tmp_path: Path, offline: Path) -> None:
    from optbench.ui.cli import app

    config = write_config(tmp_path, regression_dict(log=[{"name": "wandb", "mode": "offline"}]))
    results = tmp_path / "r"
    result = cli_runner().invoke(
        app,
        [
            *("sweep", str(config), "--results-dir", str(results), "--workers", "1"),
            *("--grid", "optimizer.lr=0.05,0.01"),
        ],
    )
    assert result.exit_code == 0, result.output
    by_name = {_of(run, "run")[0].display_name: run for run in records(offline)}
    folders = sorted((results / "tiny").iterdir())
    assert sorted(by_name) == [folder.name for folder in folders]  # one W&B run per run
    for folder in folders:
        run = by_name[folder.name]
        (started,) = _of(run, "run")
        assert started.run_group == "tiny" and started.project == "optbench"
        frame = pd.read_csv(folder / RunDir.EPOCHS)
        logged = history(run)
        assert {step: values["test_loss"] for step, values in logged.items()} == dict(
            zip(frame.epoch, frame.test_loss, strict=True)
        )
        assert json.loads((folder / STATE_FILE).read_text())["id"] == started.run_id


def test_online_without_credentials_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "NETRC"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    config = write_config(tmp_path, regression_dict(log=[{"name": "wandb", "project": "p"}]))
    result = _run_cli(config, tmp_path / "r")
    assert_one_error_line(result, "log.wandb.mode: online needs W&B credentials", "wandb login")
    assert not (tmp_path / "r").exists()


def test_online_with_no_route_to_the_server_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    config = write_config(tmp_path, regression_dict(log={"wandb": {"project": "p"}}))
    result = _run_cli(config, tmp_path / "r")
    assert_one_error_line(result, "log.wandb.mode: online cannot reach", "mode: offline")
    assert not (tmp_path / "r").exists()


def test_a_mode_wandb_has_not_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict(log=[{"name": "wandb", "mode": "offlin"}]))
    result = _run_cli(config, tmp_path / "r")
    assert_one_error_line(result, "log.wandb.mode: must be one of online, offline, disabled")
    assert not (tmp_path / "r").exists()
