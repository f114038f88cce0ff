"""optbench: run, sweep, tune and compare PyTorch optimizer experiments, from Python or YAML.

    import optbench
    run = optbench.run("configs/sgd_fashion_mnist.yaml", {"epochs": 2}, progress=True)
    run.epochs  # a pandas DataFrame, the same table as epochs.csv

Importing optbench is cheap: torch loads only when something is planned or trained. The
functions are documented in `optbench.api`; the `optbench` command calls exactly them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from optbench.core.errors import (
    ConfigError,
    FailedRunsWarning,
    ResultsWriteError,
    RunExistsError,
    UnreadableRunWarning,
)
from optbench.core.version import VERSION as __version__

__all__ = [
    "BenchmarkResult",
    "ConfigError",
    "FailedRunsWarning",
    "LrFind",
    "ResultsWriteError",
    "Run",
    "RunExistsError",
    "SweepResult",
    "TuneResult",
    "UnreadableRunWarning",
    "Validation",
    "__version__",
    "batched_gradients",
    "batching_refusal",
    "benchmark",
    "benchmark_tables",
    "catalog",
    "compare",
    "comparison",
    "load",
    "lr_find",
    "params",
    "plan",
    "report",
    "run",
    "sample",
    "sweep",
    "sweep_points",
    "tune",
    "validate",
]

if TYPE_CHECKING:
    from optbench.api import (
        BenchmarkResult,
        LrFind,
        Run,
        SweepResult,
        TuneResult,
        Validation,
        batched_gradients,
        batching_refusal,
        benchmark,
        benchmark_tables,
        catalog,
        compare,
        comparison,
        load,
        lr_find,
        params,
        plan,
        report,
        run,
        sample,
        sweep,
        sweep_points,
        tune,
        validate,
    )


def __getattr__(name: str) -> Any:
    """The API's names, imported on first use (optbench.api imports pandas and pydantic)."""
    if name in __all__:  # every public name not defined above lives in optbench.api
        return getattr(importlib.import_module("optbench.api"), name)
    raise AttributeError(f"module 'optbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
