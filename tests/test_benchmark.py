"""`optbench benchmark`: a tiny suite tuned end to end and scored, then a third optimizer added
without retraining the first two. Optuna trains the pairs; the scores are checked against
profiles.score_suite on the curves read back from the runs' epochs.csv files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
import yaml

import optbench
from optbench.analysis.profiles import EvalPoint, PairCurves, Target, score_suite
from optbench.core.errors import ConfigError
from optbench.core.metrics import higher_is_better
from optbench.core.problems import PROBLEMS
from optbench.core.suite import load_suite, problem_label
from optbench.sweeps.executors import QuietSweep

pytest.importorskip("optuna")

SUITE = {
    "name": "tiny",
    "problems": ["rosenbrock", "branin"],
    "set": {"epochs": 3, "device": "cpu"},
    "optimizers": {"SGD": {"name": "SGD"}, "Adam": {"name": "Adam"}},
    "tune": {
        "space": {"optimizer.lr": {"log_uniform": [1.0e-3, 1.0e-2]}},
        "trials": 2,
        "sampler": "random",
        "pruner": "none",
        "seeds": [0, 1],
    },
    # Generous: the runs reach them within 3 epochs, so times are finite and ratios differ.
    "targets": {"rosenbrock": {"distance_to_optimum": 1.5}},
}


def _write(folder: Path, suite: dict) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def _curves_read_back(results: Path, document: dict) -> list[PairCurves]:
    """Each pair's seed reruns from epochs.csv, by pandas, with steps per epoch from the
    run's own plan (optbench.plan on its config.yaml)."""
    pairs = []
    for optimizer, row in document["pairs"].items():
        for problem, pair in row.items():
            curves = []
            for run_id in pair["seed_run_ids"]:
                run = results / pair["folder"] / run_id
                steps = optbench.plan(run / "config.yaml").steps_per_epoch
                frame = pd.read_csv(run / "epochs.csv")
                metric = document["targets"][problem]["metric"]
                seconds = frame["seconds"].cumsum()
                curves.append(
                    tuple(
                        EvalPoint(int(e) * steps, float(s), float(v))
                        for e, s, v in zip(frame["epoch"], seconds, frame[metric], strict=True)
                    )
                )
            pairs.append(PairCurves(optimizer, problem, tuple(curves)))
    return pairs


class Recorded(QuietSweep):
    """A live view that keeps what it was told: the runs in all, those done, and notes."""

    views: ClassVar[list[Recorded]] = []

    def __init__(self, total: int, done: int, labels: dict | None, **kwargs: object) -> None:
        self.total, self.title, self.notes, self.results = total, kwargs.get("title"), [], 0
        Recorded.views.append(self)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def result(self, result: object, line: str | None = None) -> None:
        self.results += 1

    def answered(self, line: str) -> None:  # a trial answered from disk
        self.results += 1

    def skip(self, count: int) -> None:  # a seed rerun that is a trial already trained
        self.results += count


@pytest.mark.slow
def test_tiny_suite_scores_and_a_third_optimizer_trains_only_its_pairs(tmp_path: Path) -> None:
    suite = _write(tmp_path, SUITE)
    results = tmp_path / "results"
    Recorded.views.clear()
    first = optbench.benchmark(suite, workers=1, results_dir=results, view=Recorded)
    # One live view over the whole suite: every pair's trials and seeds, pairs counted as done.
    (view,) = Recorded.views
    assert view.title == "benchmark" and view.total == 4 * (2 + 2) == view.results
    assert view.notes[0] == "pairs 0/4" and view.notes[-1] == "pairs 4/4"
    assert first.failed == [] and first.reused == []
    assert sorted(first.trained) == sorted(
        f"tiny.{p}.{o}" for p in ("rosenbrock", "branin") for o in ("SGD", "Adam")
    )
    document = json.loads((results / "tiny" / "benchmark.json").read_text())
    assert document == first.document
    assert document["r_max"] == 4
    for key in ("time_to_target", "scores", "intervals", "cannot_tell_apart", "profiles"):
        assert key in document
    assert set(document["scores"]) == {"steps", "seconds"}
    assert document["targets"]["rosenbrock"]["value"] == 1.5
    assert document["targets"]["branin"]["value"] == PROBLEMS.get("branin", "p").benchmark_target[1]
    for row in document["pairs"].values():
        for pair in row.values():
            assert set(pair["hyperparameters"]) == {"optimizer.lr"}
            assert pair["final"]["n"] == 2 and pair["best"]["mean"] is not None

    targets = {p: Target(t["metric"], t["value"]) for p, t in document["targets"].items()}
    for target in targets.values():
        assert target.higher_is_better == higher_is_better(target.metric) is False
    expected = score_suite(_curves_read_back(results, document), targets)
    for measure in ("steps", "seconds"):
        assert document["scores"][measure] == pytest.approx(expected.measures[measure].scores)
    for optimizer, row in expected.times.items():
        for problem, time in row.items():
            assert document["time_to_target"][optimizer][problem]["steps"] == time.steps

    # A third optimizer (an import path): only its two pairs train; the others are read back.
    folders = {p: sorted(x.name for x in (results / p).iterdir()) for p in first.trained}
    stamps = {p: (results / p / "tune.json").stat().st_mtime_ns for p in first.trained}
    second = optbench.benchmark(
        suite, ["torch.optim.RMSprop"], workers=1, results_dir=results, view=Recorded
    )
    assert Recorded.views[-1].notes[-1] == "pairs 6/6"  # the 4 read back count as done
    assert sorted(second.trained) == [
        "tiny.branin.torch.optim.RMSprop",
        "tiny.rosenbrock.torch.optim.RMSprop",
    ]
    assert sorted(second.reused) == sorted(first.trained)
    assert {p: sorted(x.name for x in (results / p).iterdir()) for p in first.trained} == folders
    assert {p: (results / p / "tune.json").stat().st_mtime_ns for p in first.trained} == stamps
    assert set(second.scores["steps"]) == {"SGD", "Adam", "torch.optim.RMSprop"}


def test_a_suite_is_checked_strictly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="optimizers"):
        load_suite(_write(tmp_path, {**SUITE, "optimizers": {}}))
    with pytest.raises(ConfigError, match="bogus"):
        load_suite(_write(tmp_path, {**SUITE, "bogus": 1}))
    with pytest.raises(ConfigError, match=r"targets\.mnist_mlp"):
        load_suite(_write(tmp_path, {**SUITE, "targets": {"mnist_mlp": {"test_accuracy": 0.9}}}))


def test_a_config_path_in_a_suite_is_read_relative_to_the_suite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optbench.analysis.benchmark import suite_pairs

    (tmp_path / "problems").mkdir()
    (tmp_path / "problems" / "small_branin.yaml").write_text("problem: branin\nepochs: 2\n")
    path = _write(tmp_path, {**SUITE, "problems": ["problems/small_branin.yaml", "rosenbrock"]})
    monkeypatch.chdir(tmp_path / "problems")  # elsewhere: the path is not the working folder's
    pairs, targets = suite_pairs(load_suite(path))
    assert set(targets) == {"small_branin", "rosenbrock"}
    assert pairs[0].problem == "small_branin" and pairs[0].config["problem"] == "branin"
    assert pairs[0].config["epochs"] == SUITE["set"]["epochs"]  # the suite's set wins


def test_every_registry_problem_has_a_target_in_a_logged_direction() -> None:
    for info in PROBLEMS:
        metric, _ = info.benchmark_target
        assert metric in ("test_accuracy", "test_loss", "distance_to_optimum", "test_bits_per_byte")
        assert info.target is not None or info.own_target[2]  # published, or justified
        assert higher_is_better(metric) == (metric == "test_accuracy")


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "configs" / "suites").glob("*.yaml")), ids=str
)
def test_shipped_suites_validate_and_their_first_pair_plans(path: Path) -> None:
    from optbench.analysis.benchmark import suite_pairs
    from optbench.sweeps.tune_setup import load_tune

    suite = load_suite(path)
    pairs, targets = suite_pairs(suite)
    assert len(pairs) == len(suite.problems) * len(suite.optimizers)
    assert set(targets) == {problem_label(problem) for problem in suite.problems}
    (arm,) = load_tune(pairs[0].config).arms  # the schema and the components accept it
    assert arm.space and load_tune(pairs[0].config).metric == targets[pairs[0].problem].metric
