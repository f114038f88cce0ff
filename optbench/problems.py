"""Named, versioned test problems: a dataset, model, loss and budget defined once, after a source.

`problem: fmnist_2c2d` in a config supplies the problem's sections (data, model, loss, epochs,
batch size, any fixed regularisation); keys the config sets itself override them, and
`validate` shows and config.yaml records which ones did. Each record says where its definition
comes from, what differs from that source, the exact parameter count the source gives (tested),
the metric it is judged by, and the published figures one can stand next to.

Torch-free: `optbench list problems` and the config loader read it without importing torch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from optbench.errors import ConfigError
from optbench.registry import Registry

# What a problem is judged by; compare ranks by it by default.
ProblemMetric = Literal["test_accuracy", "test_loss", "distance_to_optimum"]


@dataclass(frozen=True)
class Reference:
    """A published figure for a problem: not a run, a number someone reported."""

    optimizer: str  # as the source names it, e.g. "SGD", "Momentum", "Adam"
    metric: str  # a column of epochs.csv, e.g. "test_accuracy"
    value: float
    epoch: int  # the epoch the figure is at
    settings: str  # the conditions, e.g. "lr 0.0316 (tuned), batch 128, 100 epochs"
    source: str  # where it is published


@dataclass(frozen=True)
class ProblemInfo:
    name: str
    version: int  # bumped whenever the definition changes, so runs of two versions never mix
    description: str
    config: dict[str, Any]  # the config sections the problem supplies
    parameters: int  # the trainable parameter count, as the source gives it
    metric: ProblemMetric
    source: str  # where the definition is read from
    differs: str = ""  # what differs from the source, and why (empty: nothing)
    references: tuple[Reference, ...] = field(default_factory=tuple)


PROBLEMS: Registry[ProblemInfo] = Registry("problem")


def _merged(base: Any, override: Any) -> Any:
    """`override` on top of `base`, mapping by mapping; anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = _merged(merged.get(key), value) if key in merged else value
        return merged
    return copy.deepcopy(override)


def _overrides(problem: Any, given: Any, prefix: str = "") -> dict[str, Any]:
    """The dotted keys `given` sets differently from `problem` (what the user changed)."""
    if isinstance(problem, dict) and isinstance(given, dict):
        changed: dict[str, Any] = {}
        for key, value in given.items():
            changed |= _overrides(problem.get(key), value, f"{prefix}{key}.")
        return changed
    return {} if problem == given else {prefix.rstrip("."): given}


def apply_problem(data: dict[str, Any]) -> dict[str, Any]:
    """A config mapping with its `problem:` expanded: the problem's sections, then the config's
    own keys on top. `problem` becomes {name, version, overrides} for the record."""
    name = data.get("problem")
    if name is None or isinstance(name, dict):  # none, or expanded already (a resolved config)
        return data
    if not isinstance(name, str):
        raise ConfigError("problem", f"must be a problem's name, got {name!r}")
    info = PROBLEMS.get(name, "problem")
    own = {k: v for k, v in data.items() if k != "problem"}
    merged = _merged(info.config, own)
    overrides = {
        k: v for k, v in _overrides(info.config, own).items() if k.split(".")[0] in info.config
    }
    merged["problem"] = {"name": info.name, "version": info.version, "overrides": overrides}
    return merged


# --------------------------------------------------------------------------- the problems
# Each family registers below; tests/test_problems.py is parametrized over PROBLEMS.

# ---- DeepOBS image classification problems

# ---- DeepOBS quadratic and 2-D problems

# ---- scikit-learn's bundled datasets
