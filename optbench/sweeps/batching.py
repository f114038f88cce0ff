"""The batched executor: a sweep's, tune's or benchmark's points trained K at a time, as one
optimizer's K parameter groups (experiment/batched.py), when they are exactly the same problem;
each point still gets its own run folder and PointResult.

`batch_trials: K` (the tune section, or --batch-trials): points are pulled from the stream and
grouped by problem and optimizer class; a group goes to the executor (local worker processes,
Ray, Slurm: wherever points train) as one batch point once it holds K points, and what is left
when the stream ends goes in smaller batches or alone. So a tune asks Optuna K trials at once
(`study.ask()` K times, each counted against the budget; TPE's constant liar sees the ones in
flight) and tells each one as its run ends, and a benchmark, whose stream takes its studies in
turn, batches the trials of every study of one problem and optimizer class together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from optbench.core.config import validate_config
from optbench.core.errors import ConfigError
from optbench.sweeps.executors.base import (
    BATCH,
    Message,
    OnMessage,
    OnResult,
    Point,
    PointResult,
)


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
    """How batched trials of `config` get their gradients, vmapped or one copy at a time and
    why (experiment/copy_gradients.py), and how their optimizers step, as stacks or group by
    group and why (experiment/stacked_update.py). What `optbench validate --batching` prints
    next."""
    from optbench.experiment.batched import stacked_refusal
    from optbench.experiment.copy_gradients import copy_gradients

    trials = _two_trials(config)
    refusal = stacked_refusal(trials)
    update = (
        "stacked, one op for all parameters of every trial (proven equal to torch.optim's step)"
        if refusal is None
        else f"torch.optim's, group by group: {refusal}"
    )
    return f"{copy_gradients(trials).describe()}; update: {update}"


def refuse_unbatchable(
    configs: Sequence[dict[str, Any]], k: int, field: str = "--batch-trials"
) -> None:
    """ConfigError naming `field` when batching was asked for configs that cannot batch, or
    when K copies of a config's trial do not fit its device's free memory (measured:
    experiment/batch_memory.py; the message says the largest K that does). Each config's
    trials are planned once for both, and configs that differ only in their names and tune
    sections (a benchmark's studies of one pair) are checked once."""
    from optbench.experiment.batch_memory import oversized_batch
    from optbench.experiment.batched import batching_refusal

    unchecked = {_trial_key(config): config for config in configs}
    for config in unchecked.values():
        trials = _two_trials(config)
        refusal = batching_refusal(trials)
        if refusal is not None:
            raise ConfigError(field, f"cannot batch: {refusal}")
        reason = oversized_batch(trials[0], k)
        if reason is not None:
            raise ConfigError(field, reason)


def _trial_key(config: dict[str, Any]) -> str:
    """What a config's two checked trials are built from: all of it but its name and its
    sweep and tune sections (the trials' seeds are the check's own)."""
    kept = {k: v for k, v in config.items() if k not in ("name", "seed", "sweep", "tune")}
    return repr(sorted(kept.items()))


def _batch_key(point: Point) -> str:
    """The batch the point may join: its optimizer and the config its trials share (a point
    that does not validate is a batch of its own, where train_point reports why)."""
    from optbench.experiment.batched import shared_config

    try:
        config = validate_config(point[1])
    except ConfigError:
        return f"alone {point[0]}"
    return repr((config.optimizer.name, sorted(shared_config(config).items())))


def batch_point(points: Sequence[Point]) -> Point:
    """One point for the executor that trains `points` (trials of one problem) as one batch:
    their shared config with each trial's own fields under BATCH (train_point splits it
    where it trains), and each trial's watch when one has any."""
    from optbench.experiment.batched import PER_TRIAL

    first = points[0][1]
    shared = {key: value for key, value in first.items() if key not in PER_TRIAL}
    own = [
        {"run_id": run_id}
        | {k: v for k, v in config.items() if k in PER_TRIAL or shared.get(k) != v}
        for run_id, config, *_ in points
    ]
    watches = [point[2] if len(point) > 2 else None for point in points]
    batch_id = f"{points[0][0]}+{len(points) - 1}"
    return (batch_id, {**shared, BATCH: own}, *(watches if any(watches) else []))


class BatchingExecutor:
    """`executor` handed batches of up to K points (see the module's docstring) instead of
    points: each batch a point of its own, trained where the executor trains points (a local
    worker process, a Ray task, a Slurm job) and its trials' results handed on one by one."""

    def __init__(self, executor: Any, batch_trials: int) -> None:
        self.executor, self.batch_trials = executor, batch_trials

    @property
    def reruns_main_script(self) -> bool:
        return bool(getattr(self.executor, "reruns_main_script", False))

    def run(self, points: Iterable[Point], on_message: OnMessage, on_result: OnResult) -> None:
        members: dict[str, list[str]] = {}  # batch-id -> its trials' run-ids, while in flight

        def batches() -> Iterator[Point]:
            for group in self._groups(points):
                if len(group) == 1:
                    yield group[0]
                    continue
                batch = batch_point(group)
                members[batch[0]] = [point[0] for point in group]
                yield batch

        def message(message: Message) -> None:  # a worker's "start" names the batch
            for run_id in members.get(message[1], [message[1]]):
                on_message((message[0], run_id, *message[2:]))

        def result(result: PointResult) -> None:
            run_ids = members.pop(result.run_id, None)
            if run_ids is None:
                on_result(result)
                return
            # a batch whose worker died (or whose task failed) reports for all its trials
            for part in result.parts or [
                dataclasses.replace(result, run_id=run_id) for run_id in run_ids
            ]:
                on_result(part)

        self.executor.run(batches(), message, result)

    def _groups(self, points: Iterable[Point]) -> Iterator[list[Point]]:
        """The points in groups of one problem and optimizer class, each handed on when it
        holds K points (pulled ahead of the others: a benchmark's stream takes its studies in
        turn) or when the stream ends."""
        waiting: dict[str, list[Point]] = {}
        for point in points:
            key = _batch_key(point)
            group = waiting.setdefault(key, [])
            group.append(point)
            if len(group) == self.batch_trials:
                yield waiting.pop(key)
        yield from waiting.values()


def batching_for(
    executor: Any,
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
    return BatchingExecutor(executor, k)
