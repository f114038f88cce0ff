"""What a tune reads back from a trial's or a seed rerun's run folder, and how it names a trial.

Shared by the parts of a tune that tell trials (tune_telling.py), count seed reruns
(tune_seeds.py), write tune.json (tune_file.py) and print its summary (tune.py).
"""

from __future__ import annotations

import math
from typing import Any

from optbench.storage.results import RunDir


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def epoch_rows(run: RunDir) -> list[dict[str, Any]]:
    """epochs.csv's rows with NaN as None; none while it is not written (or gone meanwhile)."""
    return run.epoch_rows()


def final_value(run: RunDir, rows: list[dict[str, Any]], metric: str) -> float | None:
    """The metric at the run's last epoch: summary.json's final value, else epochs.csv's."""
    summary = run.read_summary()
    value = summary.final_value(metric) if summary else None
    if value is None and rows:
        value = rows[-1].get(metric)
    return float(value) if finite(value) else None


def fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe(
    key: str,
    trial: Any,
    metric: str,
    status: str | None = None,
    value: Any = None,
    error: str | None = None,
) -> str:
    """`SGD trial 3: lr=0.01, momentum=0.9`, and how it ended where it has."""
    params = ", ".join(f"{k}={fmt(v)}" for k, v in trial.params.items())
    line = f"{key} trial {trial.number}: {params}"
    if status is None:
        return line
    shown = f"{metric} {fmt(value)}" if finite(value) else (error or "")
    return f"{line} -> {status} {shown}".rstrip()
