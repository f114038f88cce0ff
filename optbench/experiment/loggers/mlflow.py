"""`log: [{name: mlflow, uri: ...}]` (or --mlflow / --mlflow-uri): one MLflow run per run.

A resumed run continues the same MLflow run, found by its tag optbench.run_id.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar

from optbench.core.identity import flatten
from optbench.experiment.loggers.base import EPOCH_METRICS, LoggedRun
from optbench.storage.results import Status

# Tag that finds a run's MLflow run again on --resume.
MLFLOW_RUN_ID_TAG = "optbench.run_id"
MLFLOW_DB = "mlflow.db"  # the default store: sqlite next to the runs, <results>/mlflow.db
MLFLOW_ARTIFACTS = "mlflow-artifacts"  # and its artifacts, <results>/mlflow-artifacts/<name>/
# A tracking server that is gone fails a call after a few seconds, not MLflow's default ~4
# minutes of retries (set only where the user has not set them).
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
# summary.json status -> MLflow run status (else FAILED)
_MLFLOW_STATUS = {
    Status.COMPLETED: "FINISHED",
    Status.PRUNED: "KILLED",
    Status.INTERRUPTED: "KILLED",
}
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value


def mlflow_uri(uri: str | None, results_dir: Path) -> str:
    """The tracking URI a run logs to: `uri`, else $MLFLOW_TRACKING_URI, else an SQLite store
    next to the results (MLflow 3 refuses a new ./mlruns file store)."""
    if uri:
        return uri
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{results_dir.resolve() / MLFLOW_DB}"


class MlflowLogger:
    """An MLflow run in the experiment named after the config: the resolved config as params,
    each epoch's columns as metrics (step = epoch), tags, and the run's files as artifacts.
    `uri`: the tracking URI (default: $MLFLOW_TRACKING_URI, else <results>/mlflow.db)."""

    extra: ClassVar[str | None] = "mlflow"
    requires: ClassVar[str | None] = "mlflow"

    def __init__(self, uri: str | None = None) -> None:
        self.given_uri = uri

    def start(self, run: LoggedRun) -> int:
        import mlflow
        import torch
        from mlflow.entities import Param

        from optbench.core.version import VERSION

        self.uri = mlflow_uri(self.given_uri, run.results_dir)
        if self.uri.startswith(("http://", "https://")):
            for key, value in MLFLOW_HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
        self.run = run
        for attempt in range(3):  # sweep workers may create a new SQLite store at once
            try:
                self.client = client = mlflow.MlflowClient(tracking_uri=self.uri)
                experiment = self._experiment(run.name, run.results_dir)
                break
            except Exception:
                if attempt == 2 or not self.uri.startswith("sqlite:"):
                    raise
                time.sleep(1 + attempt)
        found = client.search_runs(
            [experiment],
            filter_string=f"tags.`{MLFLOW_RUN_ID_TAG}` = '{run.run_id}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if run.resuming and found:  # continue it (what mlflow.start_run(run_id=...) does)
            self.id = found[0].info.run_id
            client.update_run(self.id, status="RUNNING")
            history = client.get_metric_history(self.id, "train_loss")
            return max((m.step for m in history), default=0)
        tags = {
            MLFLOW_RUN_ID_TAG: run.run_id,
            "optbench.status": str(Status.RUNNING),
            "optbench.version": VERSION,
            "torch.version": torch.__version__,
            "optbench.optimizer": run.optimizer,
        }
        self.id = client.create_run(experiment, run_name=run.run_id, tags=tags).info.run_id
        params = [
            Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in flatten(run.config).items()
        ]
        for start in range(0, len(params), 100):  # MLflow takes 100 params a call
            client.log_batch(self.id, params=params[start : start + 100])
        return 0

    def _experiment(self, name: str, results_dir: Path) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        default_store = not self.given_uri and not os.environ.get("MLFLOW_TRACKING_URI")
        folder = results_dir.resolve() / MLFLOW_ARTIFACTS / name
        location = folder.as_uri() if default_store else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # another sweep worker made it first
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def log_epoch(self, row: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(column, float(row[column]), now, step)
            for column in EPOCH_METRICS
            if isinstance(row.get(column), (int, float)) and math.isfinite(row[column])
        ]
        self.client.log_batch(self.id, metrics=metrics)

    def finish(self, status: str) -> None:
        for path in self.run.files():
            self.client.log_artifact(self.id, str(path))
        self.client.set_tag(self.id, "optbench.status", str(status))
        self.client.set_terminated(self.id, _MLFLOW_STATUS.get(status, "FAILED"))


LOGGER = MlflowLogger
