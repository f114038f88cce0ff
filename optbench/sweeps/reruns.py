"""Points whose worker process died, trained again: a death is not the run's own failure.

A stray SIGKILL, a worker the driver lost, a Ray node gone: the run resumes from its last
checkpoint under its run-id when trained again, so a sweep's point or a tune's seed rerun is
run again (after the points already handed out) instead of counting as failed. Only a run
whose worker dies MAX_DEATHS times in a row without finishing an epoch between fails, saying
so: the out-of-memory killer ends it every time, and trying forever would never end. A tune's
trials follow the same count (sweeps/tune.py asks a trial again instead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optbench.storage.results import RunDir

# A run whose worker process died this many times in a row, without an epoch finished between,
# fails (and counts): the out-of-memory killer, not a stray kill. Fewer: trained again.
MAX_DEATHS = 3


def epochs_done(run: RunDir) -> int:
    """How many epochs a run's epochs.csv holds (0 when there is none yet)."""
    try:
        return len(run.read_epochs())
    except Exception:  # not written yet, gone meanwhile, or cut short mid-write
        return 0


@dataclass
class DeathCount:
    """Deaths in a row per run-id; an epoch finished since the last one starts the count anew."""

    _deaths: dict[str, tuple[int, int]] = field(default_factory=dict)  # run-id -> (deaths, at)

    def died(self, run_id: str, epochs: int) -> int:
        """Count one more death of `run_id`, which had `epochs` epochs; its deaths in a row."""
        deaths, at = self._deaths.get(run_id, (0, -1))
        deaths = deaths + 1 if epochs == at else 1
        self._deaths[run_id] = (deaths, epochs)
        return deaths

    def again(self, result: Any, run: RunDir) -> bool:
        """Whether `result`, whose worker died, is trained again; when not, its error says why."""
        deaths = self.died(result.run_id, epochs_done(run))
        if deaths < MAX_DEATHS:
            return True
        result.error = f"{result.error}, {deaths} times without finishing an epoch"
        return False


def show_rerun(display: Any, result: Any) -> None:
    """Print that a run's worker died and it is trained again; not one of the total done."""
    display.result(result, f"{result.run_id}: {result.error}: trained again, not counted")
    display.skip(-1)


@dataclass
class Rerunning:
    """An executor (sweeps/executors/) whose points are trained again when their worker dies
    (see the module's docstring); `on_rerun` hears of each such death. `name`: the folder of a
    point whose config names none."""

    runner: Any
    results_dir: Path
    name: str
    on_rerun: Callable[[Any], None] = lambda result: None

    def run(
        self,
        points: Iterable[tuple[Any, ...]],
        on_message: Callable[[Any], None],
        on_result: Callable[[Any], None],
    ) -> None:
        deaths = DeathCount()
        todo = points
        while todo:
            todo = self._round(todo, deaths, on_message, on_result)

    def _round(
        self,
        points: Iterable[tuple[Any, ...]],
        deaths: DeathCount,
        on_message: Callable[[Any], None],
        on_result: Callable[[Any], None],
    ) -> list[tuple[Any, ...]]:
        """Train `points` once; the points whose worker died, to train again."""
        held: dict[str, tuple[Any, ...]] = {}
        again: list[tuple[Any, ...]] = []

        def told(result: Any) -> None:
            point = held.pop(result.run_id, None)
            if result.died and point is not None:
                folder = point[1].get("name") or self.name
                if deaths.again(result, RunDir(self.results_dir / folder / result.run_id)):
                    again.append(point)
                    self.on_rerun(result)
                    return
            on_result(result)

        if isinstance(points, list):  # a list stays one: an executor sizes its pool by it
            held.update((point[0], point) for point in points)
            self.runner.run(points, on_message, told)
        else:
            self.runner.run(_holding(points, held), on_message, told)
        return again


def _holding(points: Iterable[tuple[Any, ...]], held: dict[str, Any]) -> Iterator[Any]:
    """`points` as they are pulled, each kept in `held` until its result comes."""
    for point in points:
        held[point[0]] = point
        yield point
