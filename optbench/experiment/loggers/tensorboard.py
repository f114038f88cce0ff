"""`log: [{name: tensorboard}]` (or --tensorboard): TensorBoard event files in the run's folder.

A resumed run continues the same event files: epochs already there are not written again, and
the batch losses of the interrupted epoch are purged (SummaryWriter's purge_step).
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar

from optbench.experiment.loggers.base import EPOCH_METRICS, LoggedRun, hyperparameters, run_label
from optbench.storage.results import FINISHED, RunDir, Status


def _session_status(status: str) -> int:
    """summary.json's status as the HParams plugin's session status."""
    from tensorboard.plugins.hparams import api_pb2

    if status == Status.COMPLETED:
        return api_pb2.STATUS_SUCCESS
    if status in (Status.DIVERGED, Status.FAILED):
        return api_pb2.STATUS_FAILURE
    return api_pb2.STATUS_ABORTED  # pruned: stopped early on purpose


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
    tag = "epoch/train_loss"
    steps = [e.step for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []
    hparams = metadata.SESSION_START_INFO_TAG in events.PluginTagToContent(metadata.PLUGIN_NAME)
    return max(steps, default=0), hparams


class TensorBoardLogger:
    """Event files in <run>/tensorboard/<Optimizer lr=...>/: each epoch's columns of epochs.csv
    (step = epoch) under epoch/, each optimizer step's loss (step = global step) under batch/,
    and the hyperparameters and outcome for the HParams tab. Batch losses are written after
    their epoch (an event costs ~0.1 ms; a list append ~1 us), so the loop's `seconds` hold."""

    extra: ClassVar[str | None] = "tensorboard"
    requires: ClassVar[str | None] = "tensorboard"

    def __init__(self) -> None:
        self.writer: Any = None
        self.losses: list[tuple[int, float, float]] = []  # this epoch's (step, loss, time)

    def start(self, run: LoggedRun) -> int:
        from tensorboard.plugins.hparams import summary_v2
        from torch.utils.tensorboard import SummaryWriter

        root = run.folder / RunDir.TENSORBOARD
        if not run.resuming:  # a fresh start: events of an earlier attempt are not this run's
            shutil.rmtree(root, ignore_errors=True)
        logdir = root / run_label(run.config)
        logged, has_hparams = logged_epochs(logdir)
        # a resumed run: the interrupted epoch's batch losses are dropped and written again
        purge = None
        if run.resuming and run.batches_per_epoch:
            purge = (run.first_epoch - 1) * run.batches_per_epoch + 1
        self.writer = SummaryWriter(str(logdir), purge_step=purge)
        if not has_hparams:
            start = summary_v2.hparams_pb(hyperparameters(run.config), trial_id=run.run_id)
            self.writer.file_writer.add_summary(start, 0)
        return logged

    def log_batch(self, step: int, loss: float) -> None:
        self.losses.append((step, loss, time.time()))  # kept: nothing in the training loop

    def _write_losses(self) -> None:
        for step, loss, wall_time in self.losses:
            self.writer.add_scalar("batch/train_loss", loss, step, walltime=wall_time)
        self.losses = []

    def log_epoch(self, row: dict[str, Any], step: int) -> None:
        self._write_losses()
        for column in EPOCH_METRICS:
            value = row.get(column)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"epoch/{column}", value, step)

    def finish(self, status: str) -> None:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import metadata, plugin_data_pb2

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


LOGGER = TensorBoardLogger
