"""Logging a run to the tools users already have: TensorBoard event files and MLflow runs.

Both are TrainingObservers (experiment/train.py) that runner.py puts in front of the display;
the run's own files (epochs.csv, summary.json) stay the record. A backend that fails (a server
gone, a full disk, a bug) is reported once on stderr and dropped: logging never stops a run.
Both are optional extras, imported only when a run asks for them (`log:` in the config, or
--tensorboard / --mlflow, which are the same as `--set log...`).

A resumed run continues the same TensorBoard run (epochs already in its event files are not
written again; a partial epoch's per-step losses are purged) and the same MLflow run (found by
its tag optbench.run_id).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optbench.core.errors import ConfigError
from optbench.core.identity import NOT_IN_RUN_ID, flatten
from optbench.core.metrics import BETWEEN, EPOCH_COLUMNS
from optbench.storage.results import FINISHED, RunDir, Status

EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # backend -> optbench[extra]
# Tag that finds a run's MLflow run again on --resume.
MLFLOW_RUN_ID_TAG = "optbench.run_id"
MLFLOW_DB = "mlflow.db"  # the default store: sqlite next to the runs, <results>/mlflow.db
MLFLOW_ARTIFACTS = "mlflow-artifacts"  # and its artifacts, <results>/mlflow-artifacts/<name>/
# A tracking server that is gone fails a call after a few seconds, not MLflow's default ~4
# minutes of retries (set only where the user has not set them).
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
# Scalars of each epoch, named as epochs.csv's columns.
EPOCH_METRICS = [c for c in EPOCH_COLUMNS if c != "epoch"]


def log_overrides(tensorboard: bool = False, mlflow: bool | str = False) -> list[str]:
    """The logging flags of `run`, `sweep` (and `tune`) as config overrides, so every run, in
    whichever worker, logs itself: `--set log.tensorboard=true`."""
    overrides = []
    if tensorboard:
        overrides.append("log.tensorboard=true")
    if isinstance(mlflow, str) and mlflow:
        overrides.append(f"log.mlflow={json.dumps(mlflow)}")  # a JSON string is a YAML string
    elif mlflow is True:
        overrides.append("log.mlflow=true")
    return overrides


def _wanted(log: Any) -> list[str]:
    """The backends a `log` section (LogConfig, or its dict in a raw config) asks for."""
    if log is None:
        return []
    get = log.get if isinstance(log, dict) else lambda key: getattr(log, key, None)
    return [name for name in EXTRAS if get(name) not in (None, False)]


def require_backends(log: Any) -> None:
    """Refuse, before anything is trained or written, a backend whose extra is not installed."""
    for name in _wanted(log):
        try:
            __import__(name)
        except ImportError:
            raise ConfigError(
                f"logging to {name} needs {name}: pip install 'optbench[{EXTRAS[name]}]'"
            ) from None


def mlflow_uri(setting: bool | str, results_dir: Path) -> str:
    """The tracking URI `log.mlflow` means: the string itself, else $MLFLOW_TRACKING_URI, else
    an SQLite store next to the results (MLflow 3 refuses a new ./mlruns file store)."""
    if isinstance(setting, str):
        return setting
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{results_dir.resolve() / MLFLOW_DB}"


def run_label(resolved: dict[str, Any]) -> str:
    """What a run is called in TensorBoard, after its folder: '<Optimizer> lr=<lr>'."""
    optimizer = resolved.get("optimizer", {})
    name = str(optimizer.get("name", "?")).rsplit(".", 1)[-1].rsplit(":", 1)[-1]
    lr = optimizer.get("lr")
    label = f"{name} lr={lr:g}" if isinstance(lr, (int, float)) else name
    return re.sub(r"[^A-Za-z0-9_.+=, -]", "_", label)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- TensorBoard


# summary.json status -> the HParams plugin's session status
def _session_status(status: str) -> int:
    from tensorboard.plugins.hparams import api_pb2

    if status == Status.COMPLETED:
        return api_pb2.STATUS_SUCCESS
    if status in (Status.DIVERGED, Status.FAILED):
        return api_pb2.STATUS_FAILURE
    return api_pb2.STATUS_ABORTED  # pruned: stopped early on purpose


def hparams_of(resolved: dict[str, Any]) -> dict[str, bool | float | int | str]:
    """The resolved config as HParams values: what is trained (the run-id's keys), each a bool,
    number or string (lists as text; None left out)."""
    values: dict[str, bool | float | int | str] = {}
    for key, value in flatten(resolved).items():
        if key in NOT_IN_RUN_ID or value is None:
            continue
        values[key] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return values


def logged_epochs(logdir: Path) -> tuple[int, bool]:
    """The last epoch in `logdir`'s event files (0 when none) and whether its hyperparameters
    are there, read as TensorBoard reads them (purged steps left out)."""
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS,
        TENSORS,
        EventAccumulator,
    )
    from tensorboard.plugins.hparams import metadata

    if not logdir.is_dir():
        return 0, False
    events = EventAccumulator(str(logdir), size_guidance={SCALARS: 0, TENSORS: 0}).Reload()
    steps = [e.step for e in events.Scalars("epoch/train_loss")] if _has(events) else []
    hparams = metadata.SESSION_START_INFO_TAG in events.PluginTagToContent(metadata.PLUGIN_NAME)
    return max(steps, default=0), hparams


def _has(events: Any) -> bool:
    return "epoch/train_loss" in events.Tags().get("scalars", [])


class TensorBoardLogger:
    """Event files in <run>/tensorboard/<label>/: each epoch's columns of epochs.csv (step =
    epoch) under epoch/, each batch's loss (step = global step; not in fast mode, where the loop
    reads no batch loss) under batch/, and the hyperparameters for the HParams tab. Batch losses
    are written after their epoch (an event costs ~0.1 ms; a list append ~1 us)."""

    def __init__(self, plan: Any, run: RunDir, resuming: bool) -> None:
        root = run.path / RunDir.TENSORBOARD
        if not resuming:  # a fresh start: events of an earlier attempt are not this run's
            shutil.rmtree(root, ignore_errors=True)
        self.logdir = root / run_label(plan.resolved)
        self.resolved, self.run_id, self.resuming = plan.resolved, plan.run_id, resuming
        self.logged, self.has_hparams = logged_epochs(self.logdir)
        self.writer: Any = None
        self.replayed: list[dict[str, Any]] = []  # rows a resumed run reports before training
        self.num_batches = 0
        self.epoch = 0
        self.losses: list[tuple[int, float, float]] = []  # this epoch's (step, loss, time)

    def _open(self, purge_step: int | None) -> None:
        from tensorboard.plugins.hparams import summary_v2
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.logdir), purge_step=purge_step)
        if not self.has_hparams:
            start = summary_v2.hparams_pb(hparams_of(self.resolved), trial_id=self.run_id)
            self.writer.file_writer.add_summary(start, 0)
            self.has_hparams = True
        for row in self.replayed:
            self._write_row(row)
        self.replayed = []

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        self.epoch, self.num_batches = epoch, num_batches
        if self.writer is None:  # a resumed run: drop a partial epoch's batch losses
            self._open((epoch - 1) * num_batches + 1 if self.resuming else None)

    def batch_finished(self, batch: int, loss: float | None) -> None:
        if loss is not None:  # kept, and written after the epoch: nothing in the training loop
            self.losses.append(((self.epoch - 1) * self.num_batches + batch, loss, time.time()))

    def _write_losses(self) -> None:
        for step, loss, wall_time in self.losses:
            self.writer.add_scalar("batch/train_loss", loss, step, walltime=wall_time)
        self.losses = []

    def epoch_finished(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            self.replayed.append(row)  # a resumed run's earlier epochs, from its checkpoint
        else:
            self._write_losses()
            self._write_row(row)

    def _write_row(self, row: dict[str, Any]) -> None:
        if row["epoch"] <= self.logged or row.get(BETWEEN):  # epoch ends, as epochs are logged
            return
        for column in EPOCH_METRICS:
            value = row.get(column)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"epoch/{column}", value, row["epoch"])
        self.logged = row["epoch"]

    def close(self, status: str) -> None:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import metadata, plugin_data_pb2

        if self.writer is None:
            self._open(None)
        self._write_losses()  # an interrupted epoch's, which a resume purges
        if status in FINISHED or status == Status.FAILED:  # not resumed: the session ended
            data = plugin_data_pb2.HParamsPluginData(
                session_end_info=plugin_data_pb2.SessionEndInfo(
                    status=_session_status(status), end_time_secs=time.time()
                )
            )
            end = summary_pb2.Summary()
            end.value.add(
                tag=metadata.SESSION_END_INFO_TAG,
                metadata=metadata.create_summary_metadata(data),
                tensor=metadata.NULL_TENSOR,
            )
            self.writer.file_writer.add_summary(end, 0)
        self.writer.close()

    def abandon(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --------------------------------------------------------------------------- MLflow


# summary.json status -> MLflow run status (else FAILED)
_MLFLOW_STATUS = {
    Status.COMPLETED: "FINISHED",
    Status.PRUNED: "KILLED",
    Status.INTERRUPTED: "KILLED",
}
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value


class MlflowLogger:
    """An MLflow run in the experiment named after the config: the resolved config as params,
    each epoch's columns as metrics (step = epoch), tags, and the run's files as artifacts."""

    def __init__(self, plan: Any, run: RunDir, setting: bool | str, resuming: bool) -> None:
        import mlflow
        import torch
        from mlflow.entities import Param

        from optbench.core.version import VERSION

        self.uri = mlflow_uri(setting, run.path.parents[1])
        if self.uri.startswith(("http://", "https://")):
            for key, value in MLFLOW_HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
        self.run = run
        for attempt in range(3):  # sweep workers may create a new SQLite store at once
            try:
                self.client = client = mlflow.MlflowClient(tracking_uri=self.uri)
                experiment = self._experiment(plan.name, run.path.parents[1], setting)
                break
            except Exception:
                if attempt == 2 or not self.uri.startswith("sqlite:"):
                    raise
                time.sleep(1 + attempt)
        found = client.search_runs(
            [experiment],
            filter_string=f"tags.`{MLFLOW_RUN_ID_TAG}` = '{plan.run_id}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if resuming and found:  # continue it (what mlflow.start_run(run_id=...) does)
            self.id = found[0].info.run_id
            client.update_run(self.id, status="RUNNING")
            history = client.get_metric_history(self.id, "train_loss")
            self.logged = max((m.step for m in history), default=0)
        else:
            tags = {
                MLFLOW_RUN_ID_TAG: plan.run_id,
                "optbench.status": str(Status.RUNNING),
                "optbench.version": VERSION,
                "torch.version": torch.__version__,
                "optbench.optimizer": plan.optimizer.info.name,
            }
            self.id = client.create_run(experiment, run_name=plan.run_id, tags=tags).info.run_id
            params = [
                Param(key, str(value)[:MAX_PARAM_LENGTH])
                for key, value in flatten(plan.resolved).items()
            ]
            for start in range(0, len(params), 100):  # MLflow takes 100 params a call
                client.log_batch(self.id, params=params[start : start + 100])
            self.logged = 0

    def _experiment(self, name: str, results_dir: Path, setting: bool | str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        default_store = setting is True and not os.environ.get("MLFLOW_TRACKING_URI")
        folder = results_dir.resolve() / MLFLOW_ARTIFACTS / name
        location = folder.as_uri() if default_store else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # another sweep worker made it first
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        pass

    def batch_finished(self, batch: int, loss: float | None) -> None:
        pass

    def epoch_finished(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        # a resumed run's earlier epochs, logged before; evaluations between steps: its end
        if row["epoch"] <= self.logged or row.get(BETWEEN):
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(column, float(row[column]), now, row["epoch"])
            for column in EPOCH_METRICS
            if isinstance(row.get(column), (int, float)) and math.isfinite(row[column])
        ]
        self.client.log_batch(self.id, metrics=metrics)
        self.logged = row["epoch"]

    def close(self, status: str) -> None:
        for name in (*RunDir.RESULT_FILES, RunDir.PATH):
            if (self.run.path / name).is_file():
                self.client.log_artifact(self.id, str(self.run.path / name))
        self.client.set_tag(self.id, "optbench.status", str(status))
        self.client.set_terminated(self.id, _MLFLOW_STATUS.get(status, "FAILED"))

    def abandon(self) -> None:
        pass


# --------------------------------------------------------------------------- the observer


class RunLoggers:
    """The run's logging backends in front of its display. `observer` is what the loop reports
    to: the display itself when the run logs nowhere, so a plain run pays nothing."""

    def __init__(self, run: RunDir, display: Any, backends: list[tuple[str, Any]]) -> None:
        self.run, self.display, self.backends = run, display, backends
        self.observer = self if backends else display

    @classmethod
    def open(cls, plan: Any, run: RunDir, display: Any, resuming: bool) -> RunLoggers:
        """The backends `plan.config.log` asks for; one that cannot start is reported and left
        out. `resuming`: the run continues from a checkpoint (the same logged run goes on)."""
        log = plan.config.log
        makers: list[tuple[str, Callable[[], Any]]] = []
        if log.tensorboard:
            makers.append(("TensorBoard", lambda: TensorBoardLogger(plan, run, resuming)))
        if log.mlflow is not False:
            makers.append(("MLflow", lambda: MlflowLogger(plan, run, log.mlflow, resuming)))
        backends = []
        for name, make in makers:
            try:
                backends.append((name, make()))
            except Exception as exc:
                _warn(f"{name} logging is off for this run ({_one_line(exc)}); it trains on")
        return cls(run, display, backends)

    def _each(self, method: str, *args: Any) -> None:
        for entry in list(self.backends):
            name, backend = entry
            try:
                getattr(backend, method)(*args)
            except Exception as exc:
                self.backends.remove(entry)
                _warn(
                    f"{name} logging stopped ({_one_line(exc)}); the run goes on and its "
                    f"results are complete in {self.run.path}"
                )
                with contextlib.suppress(Exception):  # already reported once
                    backend.abandon()

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        self._each("epoch_started", epoch, num_batches)
        self.display.epoch_started(epoch, num_batches)

    def batch_finished(self, batch: int, loss: float | None) -> None:
        self._each("batch_finished", batch, loss)
        self.display.batch_finished(batch, loss)

    def epoch_finished(self, row: dict[str, Any]) -> None:
        self._each("epoch_finished", row)
        self.display.epoch_finished(row)

    def close(self, status: str) -> None:
        """Finish every backend with the run's status (after summary.json is written)."""
        self._each("close", str(status))
        self.backends = []
