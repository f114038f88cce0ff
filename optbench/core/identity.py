"""What makes two runs the same experiment: the run-id, and the configuration compare groups by.

A run's identity is its resolved config (config.yaml) minus the keys below, which say where
data lives, what the experiment is called or how to sweep it, not what is trained. Compare
groups runs into one configuration by the same identity without the seed. Torch-free, so
`optbench compare` and `show` can use it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

# Dotted keys of the resolved config that never change the run-id, each with every key under it
# (documented in the README): `log` is where a run is also logged (experiment/loggers/),
# `executor` where it trains (sweeps/executors/; never dumped into the resolved config).
NOT_IN_RUN_ID = frozenset(
    {"name", "data.root", "data.download", "sweep", "log", "executor"}
    # `tune:` (sweep/tune.py): how to search, not what one run trains
    | {f"tune.{key}" for key in ("space", "trials", "sampler", "pruner", "metric", "seeds")}
)
# A configuration is every seed of one experiment.
NOT_IN_CONFIGURATION = NOT_IN_RUN_ID | {"seed"}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'optimizer': {'lr': 0.1}} -> {'optimizer.lr': 0.1}; lists stay values."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def left_out(key: str, leave_out: frozenset[str]) -> bool:
    """Whether a dotted key, or a section above it, is in `leave_out`: 'log' leaves out
    'log.0.name' and 'log.tensorboard' alike, whatever form the section takes."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in leave_out for i in range(1, len(parts) + 1))


def in_run_id(key: str) -> bool:
    """Whether a dotted key of the resolved config is part of the run-id."""
    return not left_out(key, NOT_IN_RUN_ID)


def identity(resolved: dict[str, Any], leave_out: frozenset[str] = NOT_IN_RUN_ID) -> dict[str, Any]:
    """The flattened resolved config without the keys `leave_out` covers (see `left_out`)."""
    return {k: v for k, v in flatten(resolved).items() if not left_out(k, leave_out)}


def digest(resolved: dict[str, Any], leave_out: frozenset[str] = NOT_IN_RUN_ID) -> str:
    """A short hash of `resolved`'s identity."""
    text = json.dumps(identity(resolved, leave_out), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_id(resolved: dict[str, Any]) -> str:
    """'<optimizer>-seed<seed>-<hash>': the same resolved experiment always gets the same id."""
    # a class given by value (core/byvalue.py) is named by its token's readable part
    class_name = str(resolved["optimizer"]["name"]).partition("@")[0].rsplit(".", 1)[-1]
    optimizer = re.sub(r"[^a-z0-9]+", "_", class_name.lower())
    return f"{optimizer}-seed{resolved['seed']}-{digest(resolved)}"


def configuration_key(resolved: dict[str, Any]) -> str:
    """The same for every seed of one experiment."""
    return digest(resolved, NOT_IN_CONFIGURATION)
