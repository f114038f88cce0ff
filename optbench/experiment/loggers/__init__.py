"""Logging a run to the tools users already have, one logger per module of this package.

`log:` in a config lists loggers (`[{name: tensorboard}, {name: wandb, mode: offline}]`);
planning binds them (registry.py), the plan carries them, and the runner puts them in front of
the display (run.py). base.py documents the `Logger` protocol a user's own class implements.
"""

from optbench.experiment.loggers.base import EPOCH_METRICS, LoggedRun, Logger
from optbench.experiment.loggers.registry import (
    ENTRY_POINT_GROUP,
    BoundLogger,
    bind_loggers,
    get_logger,
    log_overrides,
    logger_names,
)
from optbench.experiment.loggers.run import RunLoggers, open_loggers

__all__ = [
    "ENTRY_POINT_GROUP",
    "EPOCH_METRICS",
    "BoundLogger",
    "LoggedRun",
    "Logger",
    "RunLoggers",
    "bind_loggers",
    "get_logger",
    "log_overrides",
    "logger_names",
    "open_loggers",
]
