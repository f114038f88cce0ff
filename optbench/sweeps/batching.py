"""The batched executor: a sweep's, tune's or benchmark's points trained K at a time in this
process, as one optimizer's K parameter groups (experiment/batched.py), when they are exactly
the same problem; each point still gets its own run folder and PointResult.

`batch_trials: K` (the tune section, or --batch-trials): the executor pulls K points from the
stream before training any, so a tune asks Optuna K trials at once (`study.ask()` K times, each
counted against the budget; TPE's constant liar sees the ones in flight), then tells each one
as its run ends. Points that cannot share a batch (another problem, another optimizer class)
train in smaller batches or alone, as `optbench run` would train them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from optbench.core.config import validate_config
from optbench.core.errors import ConfigError
from optbench.storage.results import Status
from optbench.sweeps.executors.base import OnMessage, OnResult, Point, PointResult, train_point
from optbench.sweeps.executors.local import TINY_SYNC_SECONDS


def check_batch_trials(batch_trials: int | None, field: str = "--batch-trials") -> int:
    """K as given (None: 1, no batching); ConfigError naming `field` for 0 or less."""
    if batch_trials is None:
        return 1
    if batch_trials < 1:
        raise ConfigError(field, f"must be at least 1, got {batch_trials}")
    return batch_trials


def _two_trials(config: dict[str, Any]) -> list[Any]:
    """Plans of two trials of `config` (seeds 0 and 1, as a tune's trials differ)."""
    from optbench.experiment.plan import make_plan

    return [make_plan(validate_config({**config, "seed": seed})) for seed in (0, 1)]


def batching_note(configs: Sequence[dict[str, Any]]) -> str | None:
    """Why trials of these configs (each trained with two seeds, as a tune's do) cannot train as
    one batch; None when they can. What `optbench validate --batching` prints."""
    from optbench.experiment.batched import batching_refusal

    for config in configs:
        refusal = batching_refusal(_two_trials(config))
        if refusal is not None:
            return refusal
    return None


def gradients_note(config: dict[str, Any]) -> str:
    """How batched trials of `config` get their gradients: vmapped, or one copy at a time and
    why (experiment/copy_gradients.py). What `optbench validate --batching` prints next."""
    from optbench.experiment.copy_gradients import copy_gradients

    return copy_gradients(_two_trials(config)).describe()


def refuse_unbatchable(
    configs: Sequence[dict[str, Any]], k: int, field: str = "--batch-trials"
) -> None:
    """ConfigError naming `field` when batching was asked for configs that cannot batch, or
    when K copies of a config's trial do not fit its device's free memory (measured:
    experiment/batch_memory.py; the message says the largest K that does). Each config's
    trials are planned once for both."""
    from optbench.experiment.batch_memory import oversized_batch
    from optbench.experiment.batched import batching_refusal

    for config in configs:
        trials = _two_trials(config)
        refusal = batching_refusal(trials)
        if refusal is not None:
            raise ConfigError(field, f"cannot batch: {refusal}")
        reason = oversized_batch(trials[0], k)
        if reason is not None:
            raise ConfigError(field, reason)


def _planned(point: Point) -> tuple[Any, str]:
    """The point's plan and the key of the batch it may join (None, its own key: it trains
    alone, where train_point reports why it cannot plan)."""
    from optbench.experiment.batched import shared_problem
    from optbench.experiment.plan import make_plan

    try:
        plan = make_plan(validate_config(point[1]))
    except ConfigError:
        return None, f"alone {point[0]}"
    if plan.run_id != point[0]:
        return None, f"alone {point[0]}"
    return plan, repr((plan.optimizer.info.cls, sorted(shared_problem(plan).items())))


def train_points(points: Sequence[Point], plans: Sequence[Any], results_dir: str) -> list[Any]:
    """Points of one problem (their plans) trained as one batch, their PointResults in order; a
    single point, or a group that cannot batch, trains alone (train_point)."""
    from optbench.experiment.batched import batching_refusal, run_batch
    from optbench.experiment.train import SilentObserver

    if len(points) < 2 or None in plans or batching_refusal(plans) is not None:
        return [train_point(p[0], p[1], results_dir, None, *p[2:]) for p in points]
    displays = [point[2]() if len(point) > 2 else SilentObserver() for point in points]
    try:
        outcomes = run_batch(
            plans, results_dir, resume=True, displays=displays, sync_every=TINY_SYNC_SECONDS
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # recorded in each summary.json; the sweep goes on
        error = f"{type(exc).__name__}: {exc}"
        return [PointResult(point[0], Status.FAILED, error) for point in points]
    return [
        PointResult(
            point[0], Status(outcome.summary.status or Status.FAILED), outcome.summary.error
        )
        for point, outcome in zip(points, outcomes, strict=True)
    ]


class BatchingExecutor:
    """Trains a stream of points K at a time in this process (see the module's docstring)."""

    def __init__(self, results_dir: Path, batch_trials: int) -> None:
        self.results_dir, self.batch_trials = results_dir, batch_trials

    def run(self, points: Iterable[Point], on_message: OnMessage, on_result: OnResult) -> None:
        stream = iter(points)
        while chunk := list(itertools.islice(stream, self.batch_trials)):
            groups: dict[str, list[tuple[Point, Any]]] = {}
            for point in chunk:
                plan, key = _planned(point)
                groups.setdefault(key, []).append((point, plan))
            for group in groups.values():
                points_, plans = [p for p, _ in group], [plan for _, plan in group]
                for result in train_points(points_, plans, str(self.results_dir)):
                    on_result(result)


def batching_for(
    executor: Any,
    results_dir: Path,
    batch_trials: int | None,
    configs: Sequence[dict[str, Any]],
) -> Any:
    """`executor`, or the batched one where `batch_trials` asks for K > 1 and `configs` (the
    sweep's or tune's base configs) can batch; ConfigError naming --batch-trials otherwise,
    before anything is written."""
    k = check_batch_trials(batch_trials)
    if k == 1:
        return executor
    refuse_unbatchable(configs, k)
    return BatchingExecutor(Path(results_dir), k)
