"""`log: [{name: wandb, project: ..., mode: offline}]`: one Weights & Biases run per run.

The W&B run gets the resolved config, each epoch's columns at step = epoch, summary.json's
outcome as its summary and the run's files as an artifact; runs of one sweep, tune or
benchmark share a group, the experiment's name. Its id is kept in <run>/wandb.json with the
last step logged, so a resumed run continues the same W&B run (online or offline, where W&B
itself cannot tell) without logging a step twice. Online mode with no credentials or no route
to the server is refused while planning, before any run starts.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import string
from functools import cache
from typing import Any, ClassVar
from urllib.parse import urlsplit

from optbench.core.errors import ConfigError
from optbench.experiment.loggers.base import EPOCH_METRICS, LoggedRun
from optbench.storage.results import Status, write_atomic

STATE_FILE = "wandb.json"  # in the run's folder: {"id": W&B run id, "step": last step logged}
MODES = ("online", "offline", "disabled")
ARTIFACT_TYPE = "optbench-run"
CONNECT_TIMEOUT = 5.0  # seconds to reach the W&B server while planning
# summary.json's keys that become the W&B run's summary
SUMMARY_KEYS = ("status", "final", "best", "epochs_completed", "diverged_at", "wall_seconds")


def effective_mode(mode: str | None) -> str:
    """The mode a run logs in: `mode`, else $WANDB_MODE, else online (as wandb.init)."""
    return mode or os.environ.get("WANDB_MODE") or "online"


def _base_url() -> str:
    import wandb

    return os.environ.get("WANDB_BASE_URL") or str(wandb.Settings().base_url)


def _has_credentials(base_url: str) -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth

        return bool(read_netrc_auth(host=base_url))
    except Exception:  # wandb's internals moved: let wandb.init decide
        return True


@cache
def _unreachable(base_url: str) -> str | None:
    """Why the server at `base_url` cannot be reached (once per process), or None."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=CONNECT_TIMEOUT):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def _new_id() -> str:
    """A new W&B run id: 8 base-36 characters, as wandb makes them."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class WandbLogger:
    """A W&B run per run: config, per-epoch metrics (step = epoch), summary and files.
    `project` (default $WANDB_PROJECT, else optbench), `entity`, `mode` (online, offline or
    disabled; default $WANDB_MODE, else online), `tags`, `dir` (where wandb keeps its files;
    default $WANDB_DIR, else the results folder), `artifacts` (the run's files at the end)."""

    extra: ClassVar[str | None] = "wandb"
    requires: ClassVar[str | None] = "wandb"

    def __init__(
        self,
        project: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        tags: list[str] | None = None,
        dir: str | None = None,
        artifacts: bool = True,
    ) -> None:
        self.project, self.entity, self.mode = project, entity, mode
        self.tags, self.dir, self.artifacts = tags, dir, artifacts
        self.wb: Any = None

    @classmethod
    def check(cls, options: dict[str, Any]) -> None:
        """Refuse a mode W&B has not, and online mode with no credentials or no network."""
        mode = effective_mode(options.get("mode"))
        if mode not in MODES:
            raise ConfigError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
        if mode != "online":
            return
        url = _base_url()
        if not _has_credentials(url):
            raise ConfigError(
                "mode",
                f"online needs W&B credentials for {url} (`wandb login` or WANDB_API_KEY); "
                "or mode: offline, and `wandb sync` later",
            )
        problem = _unreachable(url)
        if problem:
            raise ConfigError(
                "mode",
                f"online cannot reach {url} ({problem}); use mode: offline, and `wandb sync` later",
            )

    def start(self, run: LoggedRun) -> int:
        import wandb

        self.run, self.state_path = run, run.folder / STATE_FILE
        state = {}
        if run.resuming and self.state_path.is_file():
            state = json.loads(self.state_path.read_text())
        self.state = {"id": state.get("id") or _new_id(), "step": 0, **state}
        settings = wandb.Settings(console="off", silent=True, disable_git=True)
        self.wb = wandb.init(
            project=self.project or os.environ.get("WANDB_PROJECT") or "optbench",
            entity=self.entity,
            mode=effective_mode(self.mode),  # type: ignore[arg-type]
            dir=self.dir or os.environ.get("WANDB_DIR") or str(run.results_dir),
            id=self.state["id"],
            resume="allow",
            name=run.run_id,
            group=run.name,
            tags=self.tags,
            config=run.config,
            reinit="create_new",
            settings=settings,
        )
        self._save()
        return int(self.state["step"])

    def _save(self) -> None:
        write_atomic(self.state_path, json.dumps(self.state) + "\n", sync=False)

    def log_epoch(self, row: dict[str, Any], step: int) -> None:
        metrics = {
            column: float(row[column])
            for column in EPOCH_METRICS
            if isinstance(row.get(column), (int, float)) and math.isfinite(row[column])
        }
        self.wb.log(metrics, step=step)
        self.state["step"] = step
        self._save()

    def finish(self, status: str) -> None:
        import wandb

        summary = self.run.summary()
        self.wb.summary.update({k: summary[k] for k in SUMMARY_KEYS if k in summary})
        self.wb.summary["status"] = status
        files = self.run.files()
        if self.artifacts and files:
            artifact = wandb.Artifact(f"{self.run.run_id}-files", type=ARTIFACT_TYPE)
            for path in files:
                artifact.add_file(str(path))
            self.wb.log_artifact(artifact)
        self.wb.finish(exit_code=0 if status in (Status.COMPLETED, Status.PRUNED) else 1)

    def abandon(self) -> None:
        if self.wb is not None:
            self.wb.finish(exit_code=1)


LOGGER = WandbLogger
