"""Typed records for the results files a run and a tune write: summary.json (`Summary`) and
tune.json (`TuneFile`), and the one reading of a run's learning rate (`learning_rate`).

Writers build a record and write its `to_dict()`; readers take `from_dict()` of what they
read. `from_dict` is tolerant (files written by older versions, or copied by hand, may lack
keys or hold other types): a missing or ill-typed field reads as None (or empty), keys this
version does not know are kept and written back, so the JSON on disk stays as it was.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from optbench.core.errors import ConfigError

# --------------------------------------------------------------------------- readers' helpers


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    """A JSON number (NaN included, as a diverged run writes it), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _extra(data: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The keys of `data` that `cls` has no field for (kept as they are, written back)."""
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k not in known}


# --------------------------------------------------------------------------- the learning rate


def _nested(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with dotted keys (tune.json's params: `optimizer.lr`) nested like config.yaml."""
    nested: dict[str, Any] = {}
    for key, value in config.items():
        *parents, leaf = str(key).split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                break
        else:
            node[leaf] = value
    return nested


def _positive(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and math.isfinite(number) and number > 0 else None


def learning_rate(config: Mapping[str, Any]) -> float | None:
    """The learning rate a run trains with, from its config (config.yaml's mapping, or dotted
    keys such as tune.json's best params): `optimizer.lr`, or for a sharpness-aware optimizer
    (SAM...), whose lr belongs to its base optimizer, `optimizer.base_optimizer.lr`. None when
    the config names no positive finite lr. The one place compare, the tuneability plot, the
    tuned table and the HTML report read it from."""
    optimizer = _nested(config).get("optimizer")
    if not isinstance(optimizer, Mapping):
        return None
    own = _positive(optimizer.get("lr"))
    if own is not None:
        return own
    base = optimizer.get("base_optimizer")
    return _positive(base.get("lr")) if isinstance(base, Mapping) else None


# --------------------------------------------------------------------------- summary.json


@dataclass(frozen=True)
class Summary:
    """summary.json: a run's status, final and best metrics, what ran where and how long.

    Written by experiment/runner.py's `summarize`; `status` is kept as the plain string on
    disk (storage/results.py's Status values), so a file with a status this version does not
    know still reads."""

    name: str | None = None
    run_id: str | None = None
    status: str | None = None
    seed: int | None = None
    device: str | None = None
    threads: int | None = None  # torch's intra-op threads it trained with (plan.run_threads)
    epochs: int | None = None
    epochs_completed: int | None = None
    # optimizer steps per epoch (data size / batch size): a benchmark's steps clock, read
    # without planning the run's config again (planning imports the code a config names)
    steps_per_epoch: int | None = None
    final: dict[str, Any] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    diverged_at: dict[str, Any] | None = None
    # {epoch, reason} when an observer ended the run on purpose (StopTraining: early stopping)
    stopped_early: dict[str, Any] | None = None
    error: str | None = None
    wall_seconds: float | None = None
    started_at: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    # what it ran on: {"cpu": model, "cpus": usable cores, "gpu": name where it used one}
    hardware: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Summary:
        data = data if isinstance(data, Mapping) else {}
        diverged, stopped = data.get("diverged_at"), data.get("stopped_early")
        return cls(
            name=_str(data.get("name")),
            run_id=_str(data.get("run_id")) or None,
            status=None if data.get("status") is None else str(data.get("status")),
            seed=_int(data.get("seed")),
            device=_str(data.get("device")),
            threads=_int(data.get("threads")),
            epochs=_int(data.get("epochs")),
            epochs_completed=_int(data.get("epochs_completed")),
            steps_per_epoch=_int(data.get("steps_per_epoch")),
            final=_mapping(data.get("final")),
            best=_mapping(data.get("best")),
            diverged_at=dict(diverged) if isinstance(diverged, Mapping) else None,
            stopped_early=dict(stopped) if isinstance(stopped, Mapping) else None,
            error=_str(data.get("error")),
            wall_seconds=_number(data.get("wall_seconds")),
            started_at=_str(data.get("started_at")),
            versions=_mapping(data.get("versions")),
            hardware=_mapping(data.get("hardware")),
            extra=_extra(data, cls),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to disk, keys in the order summary.json has always had."""
        out = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "extra" and (f.name != "stopped_early" or self.stopped_early is not None)
        }  # stopped_early only where a run was stopped: other summaries keep their bytes
        if out["steps_per_epoch"] is None:  # a file written before it was recorded: as it was
            del out["steps_per_epoch"]
        if self.threads is None:  # a run from before the key: its file written back as it was
            del out["threads"]
        if not self.hardware:  # nor before the hardware was
            del out["hardware"]
        return {**out, **self.extra}

    @property
    def diverged_epoch(self) -> int | None:
        """The epoch the run diverged in, None when it did not."""
        return _int((self.diverged_at or {}).get("epoch"))

    @property
    def stopped_epoch(self) -> int | None:
        """The last epoch of a run an observer ended on purpose, None for any other run."""
        return _int((self.stopped_early or {}).get("epoch"))

    def final_value(self, metric: str) -> float | None:
        """The metric (an epoch column) at the run's last epoch, None when not recorded."""
        return _number(self.final.get(metric))


# --------------------------------------------------------------------------- tune.json


@dataclass(frozen=True)
class BestTrial:
    """A tuned optimizer's best trial: its run, its hyperparameters (dotted keys), its value."""

    run_id: str | None
    params: dict[str, Any]
    value: float | None

    @classmethod
    def from_dict(cls, data: Any) -> BestTrial | None:
        if not isinstance(data, Mapping):
            return None
        return cls(
            _str(data.get("run_id")), _mapping(data.get("params")), _number(data.get("value"))
        )

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "params": self.params, "value": self.value}


@dataclass(frozen=True)
class TunedOptimizer:
    """One optimizer of tune.json: its study, space, the budget spent, its best trial and the
    run-ids of its trials and of the best configuration's seed reruns."""

    study: str | None = None
    space: dict[str, Any] = field(default_factory=dict)
    trials: int | None = None
    completed: int | None = None
    pruned: int | None = None
    failed: int | None = None
    epochs: int | None = None
    seconds: float | None = None
    best: BestTrial | None = None
    trial_run_ids: list[str] = field(default_factory=list)
    seed_run_ids: list[str] = field(default_factory=list)
    seed_values: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> TunedOptimizer:
        data = data if isinstance(data, Mapping) else {}
        values = data.get("seed_values")
        return cls(
            study=_str(data.get("study")),
            space=_mapping(data.get("space")),
            trials=_int(data.get("trials")),
            completed=_int(data.get("completed")),
            pruned=_int(data.get("pruned")),
            failed=_int(data.get("failed")),
            epochs=_int(data.get("epochs")),
            seconds=_number(data.get("seconds")),
            best=BestTrial.from_dict(data.get("best")),
            trial_run_ids=_strings(data.get("trial_run_ids")),
            seed_run_ids=_strings(data.get("seed_run_ids")),
            seed_values=[
                float(v)
                for v in (values if isinstance(values, list) else [])
                if _number(v) is not None
            ],
            extra=_extra(data, cls),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["best"] = None if self.best is None else self.best.to_dict()
        return {**out, **self.extra}


@dataclass(frozen=True)
class TuneFile:
    """tune.json: what `optbench tune` (sweeps/tune.py) reports per optimizer, read by compare
    --tuned, the reports and `optbench.tune`'s result."""

    FORMAT = 1

    name: str | None = None
    metric: str | None = None
    direction: str | None = None
    seeds: list[int] = field(default_factory=list)
    storage: str | None = None
    optimizers: dict[str, TunedOptimizer] = field(default_factory=dict)
    format: int = FORMAT
    # The tune's notes: the default validation split it held out, a warning that it selected
    # on the test split (sweeps/tune_setup.py); written only when there are some.
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> TuneFile:
        data = data if isinstance(data, Mapping) else {}
        optimizers = _mapping(data.get("optimizers"))
        seeds = data.get("seeds")
        return cls(
            name=_str(data.get("name")),
            metric=_str(data.get("metric")),
            direction=_str(data.get("direction")),
            seeds=[s for s in (seeds if isinstance(seeds, list) else []) if _int(s) is not None],
            storage=_str(data.get("storage")),
            optimizers={str(k): TunedOptimizer.from_dict(v) for k, v in optimizers.items()},
            format=_int(data.get("format")) or cls.FORMAT,
            notes=_strings(data.get("notes")),
            extra=_extra(data, cls),
        )

    @classmethod
    def read(cls, path: Path) -> TuneFile:
        """The tune.json at `path`; ConfigError naming it when it cannot be read or is not one."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("optimizers"), dict):
            raise ConfigError(f"cannot read {path}: it has no 'optimizers' mapping")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to disk, keys in the order tune.json has always had."""
        return {
            "format": self.format,
            "name": self.name,
            "metric": self.metric,
            "direction": self.direction,
            "seeds": list(self.seeds),
            "storage": self.storage,
            "optimizers": {key: arm.to_dict() for key, arm in self.optimizers.items()},
            **({"notes": list(self.notes)} if self.notes else {}),
            **self.extra,
        }
