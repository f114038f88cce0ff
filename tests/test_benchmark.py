"""`optbench benchmark`: a tiny suite tuned end to end and scored, then a third optimizer added
without retraining the first two. Optuna trains the pairs; the scores are checked against
profiles.score_suite on the curves read back from the runs' epochs.csv files."""

from __future__ import annotations

import json
import math
import shutil
from math import inf
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
    "studies": 2,
    # Generous: some runs reach them within 3 epochs, so times are finite and ratios differ.
    "targets": {"rosenbrock": {"distance_to_optimum": 1.9}, "branin": {"distance_to_optimum": 2}},
}
RERUNS = {**SUITE, "protocol": "best_final_reruns"}


def _write(folder: Path, suite: dict) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def _curve(run: Path, metric: str) -> tuple[EvalPoint, ...]:
    """A run's epochs.csv by pandas, steps per epoch from the run's own plan (optbench.plan
    on its config.yaml), seconds summed."""
    steps = optbench.plan(run / "config.yaml").steps_per_epoch
    frame = pd.read_csv(run / "epochs.csv")
    seconds = frame["seconds"].cumsum()
    return tuple(
        EvalPoint(int(e) * steps, float(s), float(v))
        for e, s, v in zip(frame["epoch"], seconds, frame[metric], strict=True)
    )


def _step_cost(results: Path, folders: list[str]) -> float:
    """The calibrated clock by hand: every run in the pair's folders, each epoch's seconds
    over its steps (one evaluation an epoch), the lowest of them all."""
    rates = []
    for folder in folders:
        for run in (results / folder).iterdir():
            if (run / "epochs.csv").is_file():
                steps = optbench.plan(run / "config.yaml").steps_per_epoch
                rates += (pd.read_csv(run / "epochs.csv")["seconds"] / steps).tolist()
    return min(rates)


def _curves_read_back(results: Path, document: dict) -> list[PairCurves]:
    """Each pair's seed reruns (the rerun protocol) from their folders, read by hand, on the
    calibrated seconds clock: steps x the pair's step cost."""
    pairs = []
    for optimizer, row in document["pairs"].items():
        for problem, pair in row.items():
            metric = document["targets"][problem]["metric"]
            (folder,) = pair["folders"]
            cost = _step_cost(results, [folder])
            curves = [
                tuple(EvalPoint(p.steps, p.steps * cost, p.value) for p in curve)
                for curve in (_curve(results / folder / r, metric) for r in pair["seed_run_ids"])
            ]
            pairs.append(PairCurves(optimizer, problem, tuple(curves)))
    return pairs


def _study_times(
    results: Path, document: dict, told: bool = False
) -> dict[tuple[str, str], list[float]]:
    """External tuning by hand: every run in each study's folder (its trials: nothing else is
    trained there; `told`: only the trials its tune.json counts), each study's time = the
    fewest steps at which any of them first reaches the target, inf when none does."""
    times = {}
    for optimizer, row in document["pairs"].items():
        for problem, pair in row.items():
            target = document["targets"][problem]
            value, higher = target["value"], target["higher_is_better"]

            def reach(v: float, value: float = value, higher: bool = higher) -> bool:
                return v >= value if higher else v <= value

            per_study = []
            for folder in pair["folders"]:
                runs = [r for r in (results / folder).iterdir() if (r / "epochs.csv").is_file()]
                if told:
                    tune = json.loads((results / folder / "tune.json").read_text())
                    (arm,) = tune["optimizers"].values()
                    runs = [results / folder / run_id for run_id in arm["trial_run_ids"]]
                    runs = [r for r in runs if (r / "epochs.csv").is_file()]  # else: diverged
                hits = [
                    next((p.steps for p in _curve(run, target["metric"]) if reach(p.value)), inf)
                    for run in runs
                ]
                per_study.append(min(hits, default=inf))
            times[(optimizer, problem)] = per_study
    return times


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
def test_external_tuning_scores_each_study_by_its_fastest_trial(tmp_path: Path) -> None:
    suite = _write(tmp_path, SUITE)
    results = tmp_path / "results"
    Recorded.views.clear()
    first = optbench.benchmark(suite, workers=1, results_dir=results, view=Recorded)
    (view,) = Recorded.views
    assert view.title == "benchmark" and view.notes[-1] == "studies 8/8"
    document = json.loads((results / "tiny" / "benchmark.json").read_text())
    assert document == first.document
    assert document["protocol"] == "external_tuning" and document["unit"] == "studies"
    setup = document["setup"]  # the suite names its sampler and pruner: they are kept
    assert setup["budget"] == {"trials": 2, "sampler": "random", "pruner": "none", "studies": 2}
    assert setup["spaces"] == {"SGD": SUITE["tune"]["space"], "Adam": SUITE["tune"]["space"]}
    assert setup["device"] == "cpu" and "torch" in setup["versions"]
    for row in document["pairs"].values():
        for pair in row.values():
            assert len(pair["folders"]) == 2
            for k, folder in enumerate(pair["folders"]):
                runs = [r for r in (results / folder).iterdir() if r.is_dir()]
                assert len(runs) == 2  # its 2 trials, no seed rerun trained besides
                seeds = {yaml.safe_load((r / "config.yaml").read_text())["seed"] for r in runs}
                assert seeds == {k}  # each study its own trial seed (and so its own sampler)
                tune = json.loads((results / folder / "tune.json").read_text())
                assert next(iter(tune["optimizers"].values()))["space"] == SUITE["tune"]["space"]
    by_hand = _study_times(results, document)
    assert any(math.isfinite(t) for times in by_hand.values() for t in times)
    for (optimizer, problem), per_study in by_hand.items():
        time = document["time_to_target"][optimizer][problem]
        assert time["studies"] == 2
        assert time["studies_reached"] == sum(math.isfinite(t) for t in per_study)
        # the median over 2 studies: the lower one (the faster), reached when 1 of 2 reach
        expected = min(per_study)
        assert time["steps"] == (None if expected == inf else expected)
        assert document["pairs"][optimizer][problem]["study_steps"] == [
            None if t == inf else t for t in per_study
        ]
        # the seconds clock: those steps x the pair's step cost over all its trials' epochs
        pair = document["pairs"][optimizer][problem]
        cost = _step_cost(results, pair["folders"])
        assert pair["step_seconds"] == pytest.approx(cost)
        if time["steps"] is not None:
            assert time["seconds"] == pytest.approx(time["steps"] * cost)
        # every trial with its searched lr, as its config.yaml has it, and its steps to target
        assert len(pair["trials"]) == 4
        for trial in pair["trials"]:
            run = results / pair["folders"][trial["study"]] / trial["run_id"]
            config = yaml.safe_load((run / "config.yaml").read_text())
            assert trial["params"] == {"optimizer.lr": config["optimizer"]["lr"]}
        assert min(t["steps_to_target"] or inf for t in pair["trials"]) == min(per_study)
    assert document["clock"]["seconds_clock"] == "calibrated"


@pytest.mark.slow
def test_reruns_protocol_scores_and_a_third_optimizer_trains_only_its_pairs(
    tmp_path: Path,
) -> None:
    suite = _write(tmp_path, RERUNS)
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
    assert document["r_max"] == 4 and document["protocol"] == "best_final_reruns"
    for key in ("time_to_target", "scores", "intervals", "cannot_tell_apart", "profiles"):
        assert key in document
    assert set(document["scores"]) == {"steps", "seconds"}
    assert document["targets"]["rosenbrock"]["value"] == 1.9
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

    # Killed after its trials were told, before its seed reruns (tune.json says
    # seed_run_ids: [], one rerun's folder gone): not finished; resumed, not an IndexError.
    pair = "tiny.branin.SGD"
    tune_path = results / pair / "tune.json"
    tune = json.loads(tune_path.read_text())
    (arm,) = tune["optimizers"].values()
    best = arm["best"]["run_id"]
    lost = next(r for r in arm["seed_run_ids"] if r != best)
    shutil.rmtree(results / pair / lost)
    arm["seed_run_ids"], arm["seed_values"] = [], []
    tune_path.write_text(json.dumps(tune))
    third = optbench.benchmark(
        suite, ["torch.optim.RMSprop"], workers=1, results_dir=results, view=Recorded
    )
    assert third.trained == [pair]
    assert (results / pair / lost / "summary.json").is_file()
    assert third.document["scores"] == second.document["scores"]  # bit-identical rerun


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
    from optbench.core.suite import suite_pairs

    (tmp_path / "problems").mkdir()
    (tmp_path / "problems" / "small_branin.yaml").write_text("problem: branin\nepochs: 2\n")
    path = _write(
        tmp_path,
        {**SUITE, "problems": ["problems/small_branin.yaml", "rosenbrock"], "targets": {}},
    )
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
    "path",
    [
        # planning lm_gpu's first pair builds its GPU-sized GPT on the CPU: minutes under load
        pytest.param(path, marks=pytest.mark.slow) if path.stem == "lm_gpu" else path
        for path in sorted((Path(__file__).parents[1] / "configs" / "suites").glob("*.yaml"))
    ],
    ids=str,
)
def test_shipped_suites_validate_and_their_first_pair_plans(path: Path) -> None:
    from optbench.core.suite import suite_pairs
    from optbench.sweeps.tune_setup import load_tune

    suite = load_suite(path)
    pairs, targets = suite_pairs(suite)
    assert len(pairs) == len(suite.problems) * len(suite.optimizers)
    assert set(targets) == {problem_label(problem) for problem in suite.problems}
    tune = load_tune(pairs[0].config)  # the schema and the components accept it
    (arm,) = tune.arms
    assert arm.space and tune.metric == targets[pairs[0].problem][0]


SIGN_SGD = '''"""A user's optimizer, in a module beside the suite; each import is logged."""
import os
import pathlib

import torch

with (pathlib.Path(__file__).parent.parent / "imports.log").open("a") as log:
    log.write(f"{os.getpid()}\\n")


class SignSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=0.01):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])
'''


@pytest.mark.slow
def test_a_users_optimizer_beside_the_suite_through_the_cli(tmp_path: Path) -> None:
    """The headline path: `optbench benchmark SUITE --optimizer mypkg.SignSGD` with mypkg/
    beside the suite (run from another folder) trains only the new pairs and scores them; its
    runs' configs carry the module's `code:` block, which reading them back must not choke on
    nor import; the API then reads everything back."""
    import subprocess
    import sys

    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text(SIGN_SGD)
    suite = _write(tmp_path, {**SUITE, "optimizers": {"SGD": {"name": "SGD"}}})
    results, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    elsewhere.mkdir()

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "optbench", "benchmark", str(suite), *args]
        command += ["--results-dir", str(results), "--workers", "1"]
        return subprocess.run(command, cwd=elsewhere, capture_output=True, text=True, timeout=600)

    first = cli()
    assert first.returncode == 0, first.stderr
    assert "4 pair(s) tuned" not in first.stdout and "2 pair(s) tuned, 0 read back" in first.stdout
    second = cli("--optimizer", "mypkg.SignSGD", "--table", "csv")
    assert second.returncode == 0, second.stderr
    assert "2 pair(s) tuned, 2 read back" in second.stderr  # stdout: the tables alone
    assert second.stdout.startswith("# Protocol: external tuning: 2 studies x 2 trials")
    assert "\n# AlgoPerf score" in second.stdout and "mypkg.SignSGD" in second.stdout
    document = json.loads((results / "tiny" / "benchmark.json").read_text())
    assert set(document["scores"]["steps"]) == {"SGD", "mypkg.SignSGD"}
    folder = document["pairs"]["mypkg.SignSGD"]["branin"]["folders"][0]
    run = next(r for r in (results / folder).iterdir() if r.is_dir())
    assert "code" in yaml.safe_load((run / "config.yaml").read_text())  # what broke read-back

    # Reading the finished pairs back imports no module a stored config names.
    log = tmp_path / "imports.log"
    imported = log.read_text()
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from optbench.analysis.benchmark import score_benchmark\n"
        "from optbench.core.suite import load_suite, suite_pairs\n"
        f"suite = load_suite({str(suite)!r})\n"
        "pairs, targets = suite_pairs(suite, ['mypkg.SignSGD'])\n"
        f"run = score_benchmark(suite, pairs, targets, Path({str(results)!r}), [], [])\n"
        "assert 'mypkg' not in sys.modules\n"
        "print(sorted(run.document['scores']['steps']))\n"
    )
    reread = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert reread.returncode == 0, reread.stderr
    assert log.read_text() == imported

    # The API: everything finished, read back, the same document.
    again = optbench.benchmark(suite, ["mypkg.SignSGD"], workers=1, results_dir=results)
    assert again.trained == [] and len(again.reused) == 4
    assert again.document["scores"] == document["scores"]


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray at a time (conftest.py's ray_session)
def test_a_users_optimizer_module_beside_the_suite_trains_on_ray(tmp_path: Path) -> None:
    """Issue 24's headline path on Ray: `optbench benchmark SUITE --optimizer mypkg.SignSGD
    --executor ray --address 127.0.0.1:PORT` (a real Ray head started by the test, mypkg/ on
    no path of the head's nor the driver's, the command run from another folder), with an
    installed package's optimizer beside it (`--optimizer pytorch_optimizer.Lion`), their
    trials batched (`--batch-trials 4`: each batch both studies' trials of one pair, one Ray
    task): the suite's folder reaches the Ray workers, which import mypkg and train only the new
    pairs, every trial's run written back into its own study's folder; the scores are written
    with the stored baselines read back."""
    import itertools
    import subprocess
    import sys

    from tests.helpers import ray_env, ray_head

    pytest.importorskip("ray")
    (tmp_path / "mypkg").mkdir()
    # its import log by absolute path: a Ray worker imports the copy of the folder Ray sent
    log = tmp_path / "imports.log"
    module = SIGN_SGD.replace(
        'pathlib.Path(__file__).parent.parent / "imports.log"', f"pathlib.Path({str(log)!r})"
    )
    assert module != SIGN_SGD
    (tmp_path / "mypkg" / "__init__.py").write_text(module)
    suite = _write(tmp_path, {**SUITE, "optimizers": {"SGD": {"name": "SGD"}}})
    results, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = ray_env(tmp_path / "home")

    def benchmark(*args: str) -> tuple[subprocess.CompletedProcess, int]:
        command = [sys.executable, "-m", "optbench", "benchmark", str(suite), *args]
        driver = subprocess.Popen(
            [*command, "--results-dir", str(results)], cwd=elsewhere, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = driver.communicate(timeout=600)
        return subprocess.CompletedProcess(command, driver.returncode, out, err), driver.pid

    baselines, _ = benchmark("--workers", "1")  # the stored baselines, trained locally
    assert baselines.returncode == 0, baselines.stderr
    with ray_head(elsewhere, env, "--num-cpus=2") as port:
        added, driver = benchmark(
            *("--optimizer", "mypkg.SignSGD", "--optimizer", "pytorch_optimizer.Lion"),
            *("--executor", "ray", "--address", f"127.0.0.1:{port}", "--batch-trials", "4"),
        )
    assert added.returncode == 0, added.stdout + added.stderr
    assert "4 pair(s) tuned, 2 read back" in added.stdout + added.stderr
    document = json.loads((results / "tiny" / "benchmark.json").read_text())
    assert set(document["scores"]["steps"]) == {"SGD", "mypkg.SignSGD", "pytorch_optimizer.Lion"}
    importers = {int(pid) for pid in log.read_text().split()}
    assert importers - {driver}, "no Ray worker imported mypkg"
    for optimizer, problem in itertools.product(
        ("mypkg.SignSGD", "pytorch_optimizer.Lion"), ("rosenbrock", "branin")
    ):
        for folder in document["pairs"][optimizer][problem]["folders"]:  # every study trained
            runs = [r for r in (results / folder).iterdir() if (r / "summary.json").is_file()]
            assert len(runs) >= SUITE["tune"]["trials"], folder
            assert {json.loads((r / "summary.json").read_text())["status"] for r in runs} <= {
                "completed",
                "diverged",
            }


def _logged_sgd(log: Path) -> type:
    """A user's optimizer as a notebook cell defines it, no import path reaching it (defined in
    a function): torch's SGD, noting which process built it in `log` (a value it closes over)."""
    import os

    import torch

    class LoggedSGD(torch.optim.SGD):
        def __init__(self, params, lr=0.01):
            with open(log, "a") as built:
                built.write(f"{os.getpid()}\n")
            super().__init__(params, lr=lr)

    return LoggedSGD


def test_an_added_optimizer_that_is_no_optimizer_or_takes_a_label_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    """Bad items of `benchmark(suite, optimizers=...)`: each a one-line ConfigError naming the
    item, before anything is written."""
    import torch

    class SGD(torch.optim.SGD):  # by value, labelled SGD: the suite's own label
        pass

    suite = _write(tmp_path, SUITE)
    results = tmp_path / "results"
    refusals = {
        r"optimizers\[0\]: must be an optimizer's name .* not int '42'": [42],
        r"optimizers\[1\]: label 'my opt' must be letters": ["Lion", ("my opt", SGD)],
        r"optimizers\[0\]: SGD: the suite has an optimizer labelled SGD": [SGD],
        r"--optimizer: Adam: the suite has an optimizer labelled Adam": ["Adam"],
        r"optimizers\[1\]: Mine is added twice": [("Mine", "RMSprop"), ("Mine", SGD)],
    }
    for message, optimizers in refusals.items():
        with pytest.raises(ConfigError, match=message) as refused:
            optbench.benchmark(suite, optimizers, workers=1, results_dir=results)
        assert "\n" not in str(refused.value)
    assert not results.exists()


@pytest.mark.slow
def test_a_users_optimizer_class_by_value_trains_only_its_pairs_through_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`optbench.benchmark(suite, [MyOptimizer], workers=2)` with a class no import path reaches:
    identified by its code and the values it uses, sent to the worker processes by value,
    labelled by its class name; it trains only its own pairs, with torch's SGD's numbers, and
    the same class made again (the same code and values) trains nothing."""
    import os
    import re

    import optbench.sweeps.executors.local

    # worker processes from the first run on (not the driver's thread for tiny runs)
    monkeypatch.setattr(optbench.sweeps.executors.local, "TINY_RUN_SECONDS", 0.0)
    suite = _write(tmp_path, {**SUITE, "optimizers": {"SGD": {"name": "SGD"}}})
    results, log = tmp_path / "results", tmp_path / "built.log"
    first = optbench.benchmark(suite, workers=2, results_dir=results)
    added = optbench.benchmark(suite, [_logged_sgd(log)], workers=2, results_dir=results)
    assert sorted(added.trained) == ["tiny.branin.LoggedSGD", "tiny.rosenbrock.LoggedSGD"]
    assert sorted(added.reused) == sorted(first.trained) and len(first.trained) == 2
    assert set(added.scores["steps"]) == {"SGD", "LoggedSGD"}
    assert (results / "tiny" / "benchmark.json").is_file()
    builders = {int(pid) for pid in log.read_text().split()}
    assert builders - {os.getpid()}, "no worker process built the class sent by value"

    # a trial: its config names the class by its token (no pickle in the folder), and its
    # numbers are those torch's SGD gives at its lr
    folder = added.document["pairs"]["LoggedSGD"]["branin"]["folders"][0]
    run = next(r for r in sorted((results / folder).iterdir()) if (r / "epochs.csv").is_file())
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert re.fullmatch(r"LoggedSGD@object:[0-9a-f]{16}", stored["optimizer"]["name"])
    assert run.name.startswith("loggedsgd-") and "objects" not in stored
    reference = {k: v for k, v in stored.items() if k not in ("code", "tune")}
    reference["optimizer"] = {"name": "SGD", "lr": stored["optimizer"]["lr"]}
    by_torch = optbench.run(reference, results_dir=tmp_path / "reference").epochs
    ours = pd.read_csv(run / "epochs.csv")
    columns = [c for c in by_torch.columns if c not in ("seconds", "eval_seconds")]
    pd.testing.assert_frame_equal(ours[columns], by_torch[columns], check_dtype=False)

    # made afresh (another class object, the same code and values), labelled explicitly
    again = optbench.benchmark(
        suite, [("LoggedSGD", _logged_sgd(log))], workers=2, results_dir=results
    )
    assert again.trained == [] and len(again.reused) == 4
    assert again.document["scores"] == added.document["scores"]
    # another value it closes over is another optimizer: refused beside the one of that label
    with pytest.raises(ConfigError, match=r"optimizers\[1\]: LoggedSGD is added twice"):
        optbench.benchmark(suite, [_logged_sgd(log), _logged_sgd(tmp_path / "other.log")])


@pytest.mark.slow
def test_a_benchmark_killed_at_random_moments_resumes_and_counts_only_finished_pairs(
    tmp_path: Path,
) -> None:
    """SIGKILLs of the whole command (driver and workers) at seeded random moments, then the
    same command to the end: no crash, every study's budget told, the times those of its
    trials' curves read by hand, and a further run trains nothing. (The rerun protocol's own
    kill state, trials told and seed reruns not run, is made by hand in the test above. That a
    resumed study asks the same points as an undisturbed one is the tune's promise, tested
    with the tune.)"""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    suite = _write(tmp_path, SUITE)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "optbench", "benchmark", str(suite), "--workers", "2",
               "--results-dir", str(results)]  # fmt: skip
    rng = random.Random(0)
    for _ in range(3):
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        time.sleep(rng.uniform(1.0, 6.0))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    last = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert last.returncode == 0, last.stderr
    document = json.loads((results / "tiny" / "benchmark.json").read_text())
    for row in document["pairs"].values():
        for pair in row.values():
            for folder in pair["folders"]:
                (arm,) = json.loads((results / folder / "tune.json").read_text())[
                    "optimizers"
                ].values()
                assert arm["completed"] + arm["pruned"] + arm["failed"] == arm["trials"] == 2
                assert len(arm["trial_run_ids"]) == 2
    for (optimizer, problem), per_study in _study_times(results, document, told=True).items():
        expected = min(per_study)  # the lower median of 2 studies
        got = document["time_to_target"][optimizer][problem]["steps"]
        assert got == (None if expected == inf else expected)
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 pair(s) tuned, 4 read back" in again.stdout
