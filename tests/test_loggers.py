"""--tensorboard and --mlflow, checked with the tools' own readers: TensorBoard's
EventAccumulator and hparams plugin data, MLflow's client over a real store (and a real
`mlflow server` in the slow tests), always against the run's epochs.csv."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from optbench.core.config import validate_config
from optbench.core.identity import flatten
from optbench.experiment.loggers import EPOCH_METRICS, log_overrides
from optbench.experiment.loggers.base import run_label
from optbench.experiment.loggers.mlflow import MLFLOW_HTTP_DEFAULTS, MLFLOW_RUN_ID_TAG
from optbench.experiment.loggers.tensorboard import TensorBoardLogger
from optbench.experiment.plan import make_plan
from optbench.experiment.runner import run_plan
from optbench.experiment.train import SilentObserver
from optbench.storage.results import RunDir
from tests.helpers import (
    REGRESSION,
    REPO,
    StopAt,
    assert_one_error_line,
    cli_runner,
    free_port,
    regression_dict,
    write_config,
)

BATCHES = 8  # REGRESSION: 256 training samples in batches of 32


@pytest.fixture(autouse=True)
def _no_user_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key, value in MLFLOW_HTTP_DEFAULTS.items():  # what a run sets, undone after the test
        monkeypatch.setenv(key, value)


def _plan(**log: Any) -> Any:
    return make_plan(validate_config(regression_dict(epochs=3, log=log)))


def _run(results: Path, plan: Any, display: Any = None, resume: bool = False) -> Path:
    return run_plan(plan, results, resume=resume, display=display or SilentObserver()).run_dir


def _epochs(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / RunDir.EPOCHS)


def _events(run: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS,
        TENSORS,
        EventAccumulator,
    )

    (logdir,) = (run / RunDir.TENSORBOARD).iterdir()
    return EventAccumulator(str(logdir), size_guidance={SCALARS: 0, TENSORS: 0}).Reload()


def _scalars(events: Any, tag: str) -> dict[int, float]:
    steps = [(e.step, e.value) for e in events.Scalars(tag)]
    assert len({s for s, _ in steps}) == len(steps), f"{tag}: a step logged twice"
    return dict(steps)


def _column(frame: pd.DataFrame, column: str) -> dict[int, float]:
    """epoch -> the column's value, where epochs.csv has one."""
    if column not in frame:
        return {}
    return {int(r.epoch): r[column] for _, r in frame.iterrows() if pd.notna(r[column])}


def _assert_epochs_match(events: Any, frame: pd.DataFrame) -> None:
    for column in EPOCH_METRICS:  # a sparse column (valid_loss, step) only where it is logged
        expected = _column(frame, column)
        if not expected:
            assert f"epoch/{column}" not in events.Tags()["scalars"]
            continue
        logged = _scalars(events, f"epoch/{column}")
        assert logged.keys() == expected.keys(), column
        for epoch, value in expected.items():  # event files hold float32
            assert logged[epoch] == pytest.approx(value, rel=1e-6, abs=1e-12), (column, epoch)


# --------------------------------------------------------------------------- TensorBoard


def test_tensorboard_events_are_epochs_csv_per_step_losses_and_hparams(tmp_path: Path) -> None:
    from tensorboard.plugins.hparams import api_pb2, metadata

    config = write_config(tmp_path, regression_dict(epochs=3))
    result = cli_runner().invoke(
        __import__("optbench.ui.cli", fromlist=["app"]).app,
        ["run", str(config), "--results-dir", str(tmp_path / "r"), "--tensorboard"],
    )
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "r" / "tiny").iterdir()
    frame = _epochs(run)
    events = _events(run)
    _assert_epochs_match(events, frame)

    batches = _scalars(events, "batch/train_loss")
    assert sorted(batches) == list(range(1, 3 * BATCHES + 1))
    for epoch in (1, 2, 3):  # train_loss is the mean of the epoch's batch losses
        losses = [batches[(epoch - 1) * BATCHES + b] for b in range(1, BATCHES + 1)]
        assert sum(losses) / BATCHES == pytest.approx(frame.train_loss[epoch - 1], rel=1e-6)

    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["optimizer.lr"].number_value == 0.05
    assert start.hparams["optimizer.name"].string_value == "SGD"
    assert start.hparams["seed"].number_value == 0
    assert not [key for key in start.hparams if key == "name" or key.startswith("log")]
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS
    resolved = yaml.safe_load((run / RunDir.CONFIG).read_text())
    assert resolved["log"] == [{"name": "tensorboard"}]


def test_fast_mode_logs_epochs_but_no_batch_losses(tmp_path: Path) -> None:
    plan = make_plan(validate_config(regression_dict(fast=True, log={"tensorboard": True})))
    run = _run(tmp_path, plan)
    events = _events(run)
    assert "batch/train_loss" not in events.Tags()["scalars"]
    _assert_epochs_match(events, _epochs(run))


def _session_groups(logdir: Path) -> Any:
    """What TensorBoard's HParams tab lists for `tensorboard --logdir logdir`, asked of the
    plugin's own request handler."""
    from tensorboard import context
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    events = EventMultiplexer().AddRunsFromDirectory(str(logdir)).Reload()
    tb = base_plugin.TBContext(
        logdir=str(logdir),
        multiplexer=events,
        data_provider=MultiplexerDataProvider(events, str(logdir)),
    )
    statuses = [api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE]
    request = api_pb2.ListSessionGroupsRequest(slice_size=100, allowed_statuses=statuses)
    handler = list_session_groups.Handler(
        context.RequestContext(), backend_context.Context(tb), "", request
    )
    return events.Runs(), handler.run().session_groups


def test_tensorboard_names_every_run_and_lists_a_sweep_in_the_hparams_tab(tmp_path: Path) -> None:
    from tensorboard.plugins.hparams import api_pb2

    runs = {}
    for lr in (0.05, 0.01):
        plan = make_plan(
            validate_config(
                regression_dict(optimizer={"name": "SGD", "lr": lr}, log={"tensorboard": True})
            )
        )
        runs[plan.run_id] = _run(tmp_path, plan)
    names, groups = _session_groups(tmp_path)
    assert sorted(Path(name).name for name in names) == ["SGD lr=0.01", "SGD lr=0.05"]
    for name in names:  # tiny/<run-id>/tensorboard/<label>
        assert Path(name).parts[0] == "tiny" and Path(name).parts[2] == RunDir.TENSORBOARD
    assert sorted(g.name for g in groups) == sorted(runs)
    for group in groups:
        last = _epochs(runs[group.name]).iloc[-1]
        config = yaml.safe_load((runs[group.name] / RunDir.CONFIG).read_text())
        assert group.hparams["optimizer.lr"].number_value == config["optimizer"]["lr"]
        metrics = {m.name.tag: m.value for m in group.metric_values}
        assert metrics["epoch/test_loss"] == pytest.approx(last.test_loss, rel=1e-6)
        assert metrics["epoch/train_loss"] == pytest.approx(last.train_loss, rel=1e-6)
        assert [s.status for s in group.sessions] == [api_pb2.STATUS_SUCCESS]


def test_a_resumed_run_continues_its_event_files_without_duplicates(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    plan = _plan(tensorboard=True)
    with pytest.raises(KeyboardInterrupt):  # stopped in epoch 2: epoch 1 is in the checkpoint
        _run(tmp_path, plan, display=StopAt(epoch=2, batch=3))
    run = _run(tmp_path, plan, resume=True)
    events = _events(run)
    _assert_epochs_match(events, _epochs(run))
    assert sorted(_scalars(events, "batch/train_loss")) == list(range(1, 3 * BATCHES + 1))

    written = []  # in the files themselves, not only as TensorBoard shows them
    for path in sorted((run / RunDir.TENSORBOARD).rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            written += [(v.tag, event.step) for v in event.summary.value]
    epoch_events = [step for tag, step in written if tag == "epoch/train_loss"]
    assert sorted(epoch_events) == [1, 2, 3], "an epoch was written twice"
    assert len(list((run / RunDir.TENSORBOARD).rglob("events.out.tfevents.*"))) == 2


def test_a_failing_logger_is_reported_once_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(self: Any, row: dict[str, Any], step: int) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(TensorBoardLogger, "log_epoch", broken)
    run = _run(tmp_path, _plan(tensorboard=True))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("warning: tensorboard logging stopped (OSError: No space")
    summary = json.loads((run / RunDir.SUMMARY).read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3
    assert list(_epochs(run).epoch) == [1, 2, 3]


def test_a_logger_that_cannot_start_is_reported_once_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreachable(self: Any, run: Any) -> int:
        raise ConnectionError("server gone")

    monkeypatch.setattr(TensorBoardLogger, "start", unreachable)
    run = _run(tmp_path, _plan(tensorboard=True))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert warnings == [
        "warning: tensorboard logging is off for this run (ConnectionError: server gone); "
        "it trains on"
    ]
    assert list(_epochs(run).epoch) == [1, 2, 3] and not (run / RunDir.TENSORBOARD).exists()


def test_logging_does_not_change_the_run_id() -> None:
    plain = _plan().run_id
    assert _plan(tensorboard=True, mlflow="http://127.0.0.1:1").run_id == plain


@pytest.mark.parametrize(
    ("flags", "module", "extra"),
    [(["--tensorboard"], "tensorboard", "tensorboard"), (["--mlflow"], "mlflow", "mlflow")],
)
def test_a_missing_extra_is_one_line_exit_2_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], module: str, extra: str
) -> None:
    from optbench.ui.cli import app

    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` raises ImportError
    config = write_config(tmp_path, REGRESSION)
    for command in ("run", "sweep"):
        result = cli_runner().invoke(
            app, [command, str(config), "--results-dir", str(tmp_path / "r"), *flags]
        )
        assert result.exit_code == 2, result.output
        assert_one_error_line(result, f"pip install 'optbench[{extra}]'")
        assert not (tmp_path / "r" / "tiny").exists()


def test_the_flags_are_config_overrides() -> None:
    assert log_overrides(tensorboard=True) == ["log.tensorboard=true"]
    assert log_overrides(mlflow=True) == ["log.mlflow=true"]
    uri = "http://host:5000/#a: b"
    (override,) = log_overrides(mlflow=uri)
    config = validate_config(
        regression_dict(log={"mlflow": yaml.safe_load(override.partition("=")[2])})
    )
    assert config.log[0].name == "mlflow" and config.log[0].options == {"uri": uri}
    assert run_label({"optimizer": {"name": "torch.optim.SGD", "lr": 0.001}}) == "SGD lr=0.001"


@pytest.mark.slow
def test_a_plain_run_and_help_import_neither_backend(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict(epochs=1))
    script = (
        "import sys\n"
        "from optbench.ui.cli import app\n"
        "for argv in (['--help'], ['run', sys.argv[1], '--results-dir', sys.argv[2]]):\n"
        "    try:\n"
        "        app(argv, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    loaded = [m for m in ('tensorboard', 'mlflow', 'wandb') if m in sys.modules]\n"
        "    assert not loaded, f'{argv[0]} imported {loaded}'\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, str(config), str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "r" / "tiny").is_dir()


# --------------------------------------------------------------------------- MLflow


def _mlflow_run(uri: str, name: str, run_id: str) -> Any:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    found = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{MLFLOW_RUN_ID_TAG}` = '{run_id}'"
    )
    assert len(found) == 1, f"{len(found)} MLflow runs for {run_id}"
    return client, found[0]


def _assert_mlflow_matches(client: Any, logged: Any, run: Path) -> None:
    import torch

    import optbench

    resolved = yaml.safe_load((run / RunDir.CONFIG).read_text())
    assert logged.data.params == {k: str(v) for k, v in flatten(resolved).items()}
    frame = _epochs(run)
    for column in EPOCH_METRICS:  # a sparse column (valid_loss, step) only where it is logged
        expected = _column(frame, column)
        history = client.get_metric_history(logged.info.run_id, column)
        assert [m.step for m in history] == sorted(expected), column
        for metric in history:
            assert math.isclose(metric.value, expected[metric.step], rel_tol=1e-12), column
    summary = json.loads((run / RunDir.SUMMARY).read_text())
    tags = logged.data.tags
    assert tags[MLFLOW_RUN_ID_TAG] == summary["run_id"]
    assert tags["optbench.status"] == summary["status"]
    assert tags["optbench.version"] == optbench.__version__
    assert tags["torch.version"] == torch.__version__
    assert logged.info.run_name == summary["run_id"]
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert artifacts == set(RunDir.RESULT_FILES)
    local = Path(client.download_artifacts(logged.info.run_id, RunDir.SUMMARY))
    assert json.loads(local.read_text()) == summary


@pytest.mark.slow
def test_mlflow_local_store_holds_params_metrics_tags_and_files(tmp_path: Path) -> None:
    from optbench.ui.cli import app

    config = write_config(tmp_path, regression_dict(epochs=3))
    results = tmp_path / "r"
    result = cli_runner().invoke(
        app, ["run", str(config), "--results-dir", str(results), "--mlflow"]
    )
    assert result.exit_code == 0, result.output
    (run,) = (results / "tiny").iterdir()
    assert (results / "mlflow.db").is_file()
    client, logged = _mlflow_run(f"sqlite:///{results / 'mlflow.db'}", "tiny", run.name)
    assert logged.info.status == "FINISHED"
    assert logged.info.artifact_uri.startswith((results / "mlflow-artifacts").as_uri())
    _assert_mlflow_matches(client, logged, run)


@pytest.mark.slow
def test_a_resumed_run_continues_its_mlflow_run(tmp_path: Path) -> None:
    plan = _plan(mlflow=True, tensorboard=True)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, plan, display=StopAt(epoch=2, batch=3))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, interrupted = _mlflow_run(uri, "tiny", plan.run_id)
    assert interrupted.info.status == "KILLED"
    run = _run(tmp_path, plan, resume=True)
    client, logged = _mlflow_run(uri, "tiny", plan.run_id)  # one run: the same one
    assert logged.info.run_id == interrupted.info.run_id and logged.info.status == "FINISHED"
    _assert_mlflow_matches(client, logged, run)
    _assert_epochs_match(_events(run), _epochs(run))


class _StopServerAfter(SilentObserver):
    """Stops the tracking server once an epoch is finished: the server is gone mid-run."""

    def __init__(self, server: subprocess.Popen, epoch: int) -> None:
        self.server, self.epoch = server, epoch

    def epoch_finished(self, row: dict[str, Any]) -> None:
        if row["epoch"] == self.epoch:
            _stop(self.server)


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Any:
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"),
            *("--port", str(port), "--workers", "1"),
            *("--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"),
            *("--artifacts-destination", str(tmp_path / "server-artifacts")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its workers go with it
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.5)
        yield server, uri
    finally:
        _stop(server)


@pytest.mark.slow
def test_mlflow_server_gets_the_run_and_a_server_gone_mid_run_costs_nothing(
    tmp_path: Path,
    mlflow_server: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from optbench.ui.cli import app

    server, uri = mlflow_server
    config = write_config(tmp_path, regression_dict(epochs=3))
    result = cli_runner().invoke(
        app, ["run", str(config), "--results-dir", str(tmp_path / "r"), "--mlflow-uri", uri]
    )
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "r" / "tiny").iterdir()
    client, logged = _mlflow_run(uri, "tiny", run.name)
    _assert_mlflow_matches(client, logged, run)

    # The server gone after epoch 1 costs the run one failed call, with MLflow's retries
    # bounded (MLFLOW_HTTP_DEFAULTS, where the user set none), and no call after it: every
    # call the run makes to MLflow is recorded, with the server's state and the retry settings.
    import mlflow

    calls: list[tuple[str, bool, dict[str, str | None]]] = []

    def recorded(method: str) -> Any:
        original = getattr(mlflow.MlflowClient, method)

        def call(*args: Any, **kwargs: Any) -> Any:
            retries = {key: os.environ.get(key) for key in MLFLOW_HTTP_DEFAULTS}
            calls.append((method, server.poll() is None, retries))
            return original(*args, **kwargs)

        return call

    for method in ("create_run", "log_batch", "log_artifact", "set_tag", "set_terminated"):
        monkeypatch.setattr(mlflow.MlflowClient, method, recorded(method))
    for key in MLFLOW_HTTP_DEFAULTS:  # as a user's environment: the run sets them
        monkeypatch.delenv(key)
    capsys.readouterr()
    plan = make_plan(validate_config(regression_dict(epochs=3, seed=1, log={"mlflow": uri})))
    run = _run(tmp_path / "r", plan, display=_StopServerAfter(server, epoch=1))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "mlflow logging stopped" in warnings[0], warnings
    summary = json.loads((run / RunDir.SUMMARY).read_text())
    assert summary["status"] == "completed" and list(_epochs(run).epoch) == [1, 2, 3]
    after = [(method, retries) for method, alive, retries in calls if not alive]
    assert [method for method, _ in after] == ["log_batch"], calls  # epoch 2's, and no more
    assert after[0][1] == MLFLOW_HTTP_DEFAULTS
    assert [method for method, alive, _ in calls if alive][:2] == ["create_run", "log_batch"]


@pytest.mark.slow
def test_sweep_workers_log_every_run(tmp_path: Path) -> None:
    from optbench.ui.cli import app

    config = write_config(tmp_path, regression_dict())
    results = tmp_path / "r"
    result = cli_runner().invoke(
        app,
        [
            *("sweep", str(config), "--results-dir", str(results), "--workers", "2"),
            *("--grid", "optimizer.lr=0.05,0.01", "--tensorboard", "--mlflow"),
        ],
    )
    assert result.exit_code == 0, result.output
    runs = sorted((results / "tiny").iterdir())
    assert len(runs) == 2
    for run in runs:
        _assert_epochs_match(_events(run), _epochs(run))
        client, logged = _mlflow_run(f"sqlite:///{results / 'mlflow.db'}", "tiny", run.name)
        _assert_mlflow_matches(client, logged, run)
    names, groups = _session_groups(results)
    assert sorted(Path(name).name for name in names) == ["SGD lr=0.01", "SGD lr=0.05"]
    assert sorted(g.name for g in groups) == [run.name for run in runs]


# --------------------------------------------------------------------------- loggers as components

# A logger of one's own, in a module next to the config: every call as a line of JSON in the
# run's folder; it holds, as a tool would, the steps an earlier attempt logged.
_OWN_LOGGER = '''
import json


class JsonLines:
    """Each call appended to <run>/calls.jsonl."""

    def __init__(self, tag: str = "none") -> None:
        self.tag = tag

    def start(self, run):
        self.path = run.folder / "calls.jsonl"
        old = self.path.read_text().splitlines() if self.path.exists() else []
        steps = [json.loads(line)["step"] for line in old if '"epoch"' in line]
        self._write(call="start", resuming=run.resuming, first=run.first_epoch, tag=self.tag)
        return max(steps, default=0)

    def log_epoch(self, row, step):
        self._write(call="epoch", step=step, train_loss=row["train_loss"])

    def finish(self, status):
        self._write(call="finish", status=status)

    def _write(self, **values):
        with self.path.open("a") as out:
            out.write(json.dumps(values) + "\\n")
'''


def test_a_logger_of_ones_own_by_import_path_logs_each_epoch_once_across_a_resume(
    tmp_path: Path,
) -> None:
    from optbench.core.config import load_config

    (tmp_path / "ownlog.py").write_text(_OWN_LOGGER)
    config = write_config(
        tmp_path, regression_dict(epochs=3, log=[{"name": "ownlog.JsonLines", "tag": "t"}])
    )
    plan = make_plan(load_config(config))
    with pytest.raises(KeyboardInterrupt):  # stopped in epoch 2: epoch 1 is in the checkpoint
        _run(tmp_path / "r", plan, display=StopAt(epoch=2, batch=3))
    run = _run(tmp_path / "r", plan, resume=True)
    calls = [json.loads(line) for line in (run / "calls.jsonl").read_text().splitlines()]
    assert [(c["call"], c.get("step") or c.get("status")) for c in calls] == [
        ("start", None),
        ("epoch", 1),
        ("finish", "interrupted"),
        ("start", None),
        ("epoch", 2),  # epoch 1, replayed from the checkpoint, is not passed again
        ("epoch", 3),
        ("finish", "completed"),
    ]
    assert [(c["resuming"], c["first"], c["tag"]) for c in calls if c["call"] == "start"] == [
        (False, 1, "t"),
        (True, 2, "t"),
    ]
    frame = _epochs(run)
    logged = {c["step"]: c["train_loss"] for c in calls if c["call"] == "epoch"}
    assert logged == dict(zip(frame.epoch, frame.train_loss, strict=True))
    resolved = yaml.safe_load((run / RunDir.CONFIG).read_text())
    assert resolved["log"] == [{"name": "ownlog.JsonLines", "tag": "t"}]


def test_a_package_adds_a_logger_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optbench.core.errors import ConfigError

    site = tmp_path / "site"
    (site / "jsonlog").mkdir(parents=True)
    (site / "jsonlog" / "__init__.py").write_text(_OWN_LOGGER)
    info = site / "jsonlog-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: jsonlog\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[optbench.loggers]\njsonl = jsonlog:JsonLines\n")
    monkeypatch.syspath_prepend(str(site))
    (bound,) = _plan(jsonl={"tag": "p"}).loggers
    assert (bound.name, bound.cls.__module__, bound.options) == ("jsonl", "jsonlog", {"tag": "p"})
    with pytest.raises(ConfigError) as unknown:
        _plan(jsonll=True)
    assert "(did you mean 'jsonl'?)" in str(unknown.value) and "wandb" in str(unknown.value)


@pytest.mark.parametrize(
    ("log", "fragments"),
    [
        (
            [{"name": "tensorbord"}],
            ["log.tensorbord: unknown logger 'tensorbord' (did you mean 'tensorboard'?)"],
        ),
        (
            [{"name": "mlflow", "url": "sqlite:///x.db"}],
            ["log.mlflow.url: MlflowLogger does not accept 'url' (did you mean 'uri'?)"],
        ),
        ({"wandb": {"project": 5}}, ["log.wandb.project: must be"]),
        ([{"name": "json.JSONDecoder"}], ["'json.JSONDecoder' is not a logger: it has no start"]),
    ],
)
def test_a_bad_log_entry_is_one_line_exit_2_before_anything_is_written(
    tmp_path: Path, log: Any, fragments: list[str]
) -> None:
    from optbench.ui.cli import app

    config = write_config(tmp_path, regression_dict(log=log))
    result = cli_runner().invoke(app, ["run", str(config), "--results-dir", str(tmp_path / "r")])
    assert_one_error_line(result, *fragments)
    assert not (tmp_path / "r").exists()


def test_the_flags_and_set_reach_a_list_written_in_the_config(tmp_path: Path) -> None:
    from optbench.core.config import load_config

    config = write_config(tmp_path, regression_dict(log=[{"name": "wandb", "mode": "offline"}]))
    flags = log_overrides(tensorboard=True, mlflow="sqlite:///x.db")
    loaded = load_config(config, [*flags, "log.wandb.project=p"])
    assert [(e.name, e.options) for e in loaded.log] == [
        ("wandb", {"mode": "offline", "project": "p"}),
        ("tensorboard", {}),
        ("mlflow", {"uri": "sqlite:///x.db"}),
    ]


def test_a_logger_class_of_a_notebook_is_given_by_value(tmp_path: Path) -> None:
    from optbench.core.config import load_config

    namespace: dict[str, Any] = {"__name__": "__main__"}  # as a notebook's cell defines it
    exec(_OWN_LOGGER, namespace)
    logger = namespace["JsonLines"]
    plan = make_plan(load_config(regression_dict(log=[{"name": logger, "tag": "nb"}])))
    (bound,) = plan.loggers
    assert bound.cls is logger and bound.options == {"tag": "nb"}
    run = _run(tmp_path, plan)
    calls = [json.loads(line) for line in (run / "calls.jsonl").read_text().splitlines()]
    assert [c["step"] for c in calls if c["call"] == "epoch"] == list(_epochs(run).epoch)
