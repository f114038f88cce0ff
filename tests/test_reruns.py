"""A point whose worker died is trained again, not failed (sweeps/reruns.py): a sweep's points
and a tune's seed reruns. Here against an executor that reports deaths as the local and Ray
executors do; tests/test_sweep.py kills a real worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optbench.storage.results import Status
from optbench.sweeps.executors import PointResult
from optbench.sweeps.reruns import MAX_DEATHS, Rerunning


class DyingWorkers:
    """Trains nothing: each point's worker dies `deaths[run_id]` times, then it completes.
    Pulls lazy points one at a time, as the executors do."""

    def __init__(self, deaths: dict[str, int]) -> None:
        self.deaths, self.handed = dict(deaths), []

    def run(self, points: Any, on_message: Any, on_result: Any) -> None:
        for run_id, _config in points:
            self.handed.append(run_id)
            if self.deaths.get(run_id, 0) > 0:
                self.deaths[run_id] -= 1
                error = "the worker process running it died (killed by SIGKILL)"
                on_result(PointResult(run_id, Status.FAILED, error, died=True))
            else:
                on_result(PointResult(run_id, Status.COMPLETED))


def _run(tmp_path: Path, deaths: dict[str, int], lazy: bool) -> tuple[list[Any], Any, list[str]]:
    runner, results, reruns = DyingWorkers(deaths), [], []
    points = [(run_id, {"name": "s"}) for run_id in ("a", "b", "c")]
    rerunning = Rerunning(runner, tmp_path, "s", lambda died: reruns.append(died.run_id))
    rerunning.run(iter(points) if lazy else points, lambda message: None, results.append)
    return results, runner, reruns


def test_a_point_whose_worker_died_is_trained_again_after_the_others(tmp_path: Path) -> None:
    for lazy in (False, True):
        results, runner, reruns = _run(tmp_path, {"b": 2}, lazy)
        assert runner.handed == ["a", "b", "c", "b", "b"] and reruns == ["b", "b"]
        assert [(r.run_id, r.status) for r in results] == [
            ("a", Status.COMPLETED),
            ("c", Status.COMPLETED),
            ("b", Status.COMPLETED),
        ]


def test_a_point_that_dies_every_time_fails_saying_so(tmp_path: Path) -> None:
    results, runner, reruns = _run(tmp_path, {"a": 99}, lazy=False)
    assert runner.handed.count("a") == MAX_DEATHS and len(reruns) == MAX_DEATHS - 1
    (failed,) = [r for r in results if r.status == Status.FAILED]
    assert failed.run_id == "a" and failed.error.endswith(
        f"{MAX_DEATHS} times without finishing an epoch"
    )


def test_an_epoch_finished_between_deaths_starts_the_count_anew(tmp_path: Path) -> None:
    epochs = tmp_path / "s" / "a" / "epochs.csv"
    epochs.parent.mkdir(parents=True)

    class Progressing(DyingWorkers):
        def run(self, points: Any, on_message: Any, on_result: Any) -> None:
            rows = len(self.handed) + 1  # the run saved one more epoch each time it trained
            epochs.write_text("epoch,train_loss\n" + "".join(f"{i},1.0\n" for i in range(rows)))
            super().run(points, on_message, on_result)

    runner, results = Progressing({"a": MAX_DEATHS + 1}), []
    Rerunning(runner, tmp_path, "s").run([("a", {})], lambda m: None, results.append)
    assert runner.handed == ["a"] * (MAX_DEATHS + 2)
    assert [r.status for r in results] == [Status.COMPLETED]
