"""`optbench tune`: Optuna studies per optimizer over ordinary runs, checked through Optuna itself.

Optuna (`optuna.load_study` on the storage tune wrote) is the judge of what the studies hold:
how many trials, in which state, with which values and parameters; the run folders are the
judge of what trained.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from optbench.storage.records import TuneFile
from tests.helpers import (
    REPO,
    assert_one_error_line,
    importable_module,
    invoke,
    regression_dict,
    write_config,
)

optuna = pytest.importorskip("optuna")

LR = {"log_uniform": [1.0e-2, 0.3]}
MOMENTUM = {"uniform": [0.0, 0.9]}


def _config(name: str, tune: dict[str, Any], **changes: Any) -> dict[str, Any]:
    config = regression_dict(name=name, tune=tune, **{"epochs": 3, **changes})
    config["data"] = {**config["data"], "n_train": 512, "n_test": 128, "batch_size": 64}
    return config


def _study(results: Path, name: str, optimizer: str) -> Any:
    report = json.loads((results / name / "tune.json").read_text())
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(report["storage"])
    )
    return optuna.load_study(study_name=report["optimizers"][optimizer]["study"], storage=storage)


def _summary(results: Path, name: str, run_id: str) -> dict[str, Any]:
    return json.loads((results / name / run_id / "summary.json").read_text())


def _states(study: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _tune(*args: str) -> Any:
    return invoke("tune", *args)


def _tune_process(config: Path, results: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optbench",
            "tune",
            str(config),
            "--results-dir",
            str(results),
            *args,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: killed with its workers
    )


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("tune", "fragments"),
    [
        ({"space": {"optimizer.lr": {"log_unifrm": [1e-3, 1.0]}}}, ["unknown distribution"]),
        ({"space": {"optimizer.lr": {"uniform": [1.0, 0.1]}}}, ["low 1.0 must be below high"]),
        ({"space": {"optimizer.lr": {"log_uniform": [0, 1.0]}}}, ["must be > 0"]),
        ({"space": {"optimizer.amsgrad": {"choice": [True]}}}, ["no optimizer", "takes"]),
        ({"space": {"optimizer.lr": LR}, "trials": 0}, ["tune.trials"]),
        ({"space": {"optimizer.lr": LR}, "sampler": "cmaes"}, ["tune.sampler"]),
        ({"space": {"optimizer.lr": LR}, "pruner": "asha"}, ["tune.pruner"]),
        ({"space": {"optimizer.lr": LR}, "sampler": "grid"}, ["grid sampler needs choice"]),
        ({"space": {}}, ["tune.space"]),
        ({"space": {"optimizer.lr": LR}, "metric": "test_accuracy"}, ["classification"]),
        ({"space": {"model.nonsense": {"choice": [1, 2]}}}, ["nonsense"]),
    ],
)
def test_bad_tune_sections_are_refused_before_anything_runs(
    tmp_path: Path, tune: dict[str, Any], fragments: list[str]
) -> None:
    config = write_config(tmp_path, _config("bad", tune))
    results = tmp_path / "results"
    assert_one_error_line(_tune(str(config), "--results-dir", str(results)), *fragments)
    assert not results.exists()
    assert_one_error_line(invoke("validate", str(config)), *fragments)  # checked there too


def test_no_tune_section_and_a_bad_trials_option_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict())
    assert_one_error_line(_tune(str(config)), "tune", "is required")
    config = write_config(tmp_path, _config("bad", {"space": {"optimizer.lr": LR}}))
    assert_one_error_line(_tune(str(config), "--trials", "0"), "--trials", "at least 1")


def test_validate_accepts_a_tune_section_and_it_is_not_part_of_the_run_id(tmp_path: Path) -> None:
    from optbench.core.config import validate_config
    from optbench.experiment.plan import make_plan

    space = {"optimizer.lr": LR, "optimizer.momentum": MOMENTUM}
    config = _config("ok", {"space": space, "trials": 4}, sweep={"optimizer": ["SGD", "Adam"]})
    result = invoke("validate", str(write_config(tmp_path, config)))
    assert result.exit_code == 0, result.output
    assert "tune: 4 trials per optimizer (tpe sampler, median pruner), minimize valid_loss" in (
        result.stdout
    )
    assert "searching SGD: optimizer.lr, optimizer.momentum; Adam: optimizer.lr" in result.stdout
    without = {k: v for k, v in config.items() if k != "tune"}
    assert make_plan(validate_config(config)).run_id == make_plan(validate_config(without)).run_id


def test_the_command_line_does_not_import_optuna() -> None:
    code = "import sys, optbench.ui.cli; assert 'optuna' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_executors_pull_points_only_when_a_worker_is_free(tmp_path: Path) -> None:
    """The lazy executor: with one worker, the next point is pulled after the last result."""
    from optbench.core.config import validate_config
    from optbench.experiment.plan import make_plan
    from optbench.sweeps.executors.local import run_local

    events: list[str] = []

    def points() -> Any:
        for lr in (0.01, 0.02, 0.03):
            config = validate_config(regression_dict(optimizer={"name": "SGD", "lr": lr}))
            events.append(f"pull {lr}")
            yield make_plan(config).run_id, config.to_dict()

    run_local(points(), str(tmp_path), 1, lambda m: None, lambda r: events.append("result"))
    assert events == ["pull 0.01", "result", "pull 0.02", "result", "pull 0.03", "result"]


# --------------------------------------------------------------------------- studies


@pytest.mark.slow
def test_each_optimizer_gets_its_own_study_with_the_keys_it_takes(tmp_path: Path) -> None:
    tune = {
        "space": {"optimizer.lr": LR, "optimizer.momentum": MOMENTUM},
        "trials": 3,
        "pruner": "none",
        "seeds": [0, 1],
    }
    config = write_config(tmp_path, _config("two", tune, sweep={"optimizer": ["SGD", "Adam"]}))
    results = tmp_path / "results"
    first = _tune(str(config), "--results-dir", str(results), "--workers", "2")
    assert first.exit_code == 0, first.output
    report = json.loads((results / "two" / "tune.json").read_text())
    assert TuneFile.from_dict(report).to_dict() == report  # storage's record reads it whole
    # no data.validation: the default fraction is held out and selected on, and the tune says so
    assert report["metric"] == "valid_loss" and report["direction"] == "minimize"
    assert report["notes"][0].startswith("note: the config sets no data.validation")
    assert set(report["optimizers"]) == {"SGD", "Adam"}
    for optimizer, keys in (
        ("SGD", {"optimizer.lr", "optimizer.momentum"}),
        ("Adam", {"optimizer.lr"}),
    ):
        study = _study(results, "two", optimizer)
        trials = study.get_trials(deepcopy=False)
        assert [t.state.name for t in trials] == ["COMPLETE"] * 3
        arm = report["optimizers"][optimizer]
        assert set(arm["space"]) == keys
        assert arm["trial_run_ids"] == [t.user_attrs["run_id"] for t in trials]
        for trial in trials:
            assert set(trial.params) == keys  # Adam never samples momentum
            summary = _summary(results, "two", trial.user_attrs["run_id"])
            assert trial.value == summary["final"]["valid_loss"]
            config_yaml = (results / "two" / trial.user_attrs["run_id"] / "config.yaml").read_text()
            assert f"name: {optimizer}" in config_yaml
        assert arm["best"]["value"] == study.best_value
        assert arm["best"]["params"] == study.best_params
        assert (arm["completed"], arm["pruned"], arm["failed"], arm["epochs"]) == (3, 0, 0, 9)
        seeds = [_summary(results, "two", r) for r in arm["seed_run_ids"]]
        assert [s["seed"] for s in seeds] == [0, 1]
        assert all(s["status"] == "completed" for s in seeds)
    assert "SGD: best valid_loss" in first.stdout and "Adam: best valid_loss" in first.stdout
    # One progress for the whole tune (plain lines off a terminal): 2 x 3 trials + 2 x 2 seeds,
    # of which seed 0 is the best trial's own run (the config's seed), found done on disk.
    progress = re.findall(r"^\[(\d+)/(\d+), ETA [^]]+\] (.*)$", first.stdout, re.MULTILINE)
    assert [(int(done), int(total)) for done, total, _ in progress] == [
        *((n, 10) for n in range(1, 7)),
        (9, 10),
        (10, 10),
    ]
    trial_lines = [line for _, _, line in progress if " trial " in line]
    assert len(trial_lines) == 6 and all("-> completed valid_loss" in x for x in trial_lines)
    seed_lines = [line for _, _, line in progress[6:]]
    assert sorted(line.split()[-5] for line in seed_lines) == ["Adam", "SGD"]
    assert all(
        line.startswith("completed") and "seed 1 (best trial)" in line for line in seed_lines
    )

    # The same tune again: nothing trains, no trial is added.
    before = {p: p.stat().st_mtime_ns for p in (results / "two").glob("*/summary.json")}
    again = _tune(str(config), "--results-dir", str(results), "--workers", "2")
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in (results / "two").glob("*/summary.json")} == before
    for optimizer in ("SGD", "Adam"):
        assert len(_study(results, "two", optimizer).trials) == 3


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Fixed parameter")  # the hopeless lr is outside the range
def test_a_pruned_trial_is_a_pruned_run_with_fewer_epochs(tmp_path: Path) -> None:
    tune = {"space": {"optimizer.lr": LR}, "trials": 5, "pruner": "median", "seeds": [0]}
    config = write_config(tmp_path, _config("prune", {**tune}, epochs=4))
    results = tmp_path / "results"
    assert _tune(str(config), "--results-dir", str(results), "--workers", "1").exit_code == 0
    study = _study(results, "prune", "SGD")
    assert _states(study) == {"COMPLETE": 5}  # Optuna's median pruner waits for 5 trials
    # A hopeless trial, queued through Optuna's own API; the budget grows by one for it.
    study.enqueue_trial({"optimizer.lr": 1.0e-6})
    result = _tune(str(config), "--results-dir", str(results), "--trials", "6")
    assert result.exit_code == 0, result.output
    study = _study(results, "prune", "SGD")
    assert _states(study) == {"COMPLETE": 5, "PRUNED": 1}
    pruned = study.trials[5]
    assert pruned.state == optuna.trial.TrialState.PRUNED
    assert pruned.params == {"optimizer.lr": 1.0e-6}
    run = results / "prune" / pruned.user_attrs["run_id"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "pruned"
    epochs = pd.read_csv(run / "epochs.csv")
    assert len(epochs) == summary["epochs_completed"] < 4
    assert list(pruned.intermediate_values) == epochs["epoch"].tolist()
    assert not (run / "checkpoint.pt").exists()  # finished: never resumed
    assert (
        json.loads((results / "prune" / "tune.json").read_text())["optimizers"]["SGD"]["pruned"]
        == 1
    )
    shown = invoke("compare", str(results / "prune"), "--format", "json")
    assert shown.exit_code == 0, shown.output
    assert "pruned" in shown.stdout


# --------------------------------------------------------------------------- processes


def _slow_config(tmp_path: Path, name: str, trials: int, n_train: int, epochs: int) -> Path:
    tune = {"space": {"optimizer.lr": LR}, "trials": trials, "pruner": "none", "seeds": [0]}
    config = _config(name, tune, epochs=epochs)
    config["data"] = {**config["data"], "n_train": n_train, "batch_size": 32}
    return write_config(tmp_path, config)


@pytest.mark.slow
def test_a_killed_tune_resumes_to_exactly_its_budget(tmp_path: Path) -> None:
    config, results = _slow_config(tmp_path, "killed", 2, 20_000, 6), tmp_path / "results"
    process = _tune_process(config, results, "--workers", "1")
    deadline, victim = time.monotonic() + 240, None
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.2)
        for epochs in (results / "killed").glob("*/epochs.csv"):
            summary = json.loads((epochs.parent / "summary.json").read_text())
            if summary["status"] == "running" and len(pd.read_csv(epochs)) >= 2:
                victim = epochs.parent
    assert victim is not None, "no run got 2 epochs in"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    kept = pd.read_csv(victim / "epochs.csv")

    again = _tune_process(config, results, "--workers", "1")
    output, _ = again.communicate(timeout=400)
    assert again.returncode == 0, output
    study = _study(results, "killed", "SGD")
    trials = study.get_trials(deepcopy=False)
    assert "RUNNING" not in _states(study)
    counted = [t for t in trials if not t.user_attrs.get("not_counted")]
    assert [t.state.name for t in counted] == ["COMPLETE"] * 2
    dead = [t for t in trials if t.user_attrs.get("not_counted")]
    assert [t.user_attrs["not_counted"] for t in dead] == ["its process died"]
    retry = next(t for t in counted if t.user_attrs.get("retry_of") == dead[0].number)
    assert retry.params == dead[0].params and retry.user_attrs["run_id"] == victim.name
    resumed = pd.read_csv(victim / "epochs.csv")
    assert len(resumed) == 6
    # the epochs done before the kill are the same rows, timings included: not trained again
    pd.testing.assert_frame_equal(resumed.iloc[: len(kept)], kept)


KILLER = '''
import multiprocessing
import os
import signal
import time
from pathlib import Path

import torch

KILLS = Path(__file__).with_name("kills.txt")  # how many times it has killed its worker


class KillsItsWorker(torch.optim.SGD):
    """SGD's numbers. In the driver it sleeps 50 ms a step, so the first run outlasts the
    driver's tiny runs and the others go to worker processes; in a worker it SIGKILLs that
    process at its AT-th step, until it has done so TIMES times (KILLS counts across them)."""

    AT, TIMES, steps = {at}, {times}, 0

    def step(self, closure=None):
        if multiprocessing.parent_process() is None:
            time.sleep(0.05)
        else:
            KillsItsWorker.steps += 1
            done = int(KILLS.read_text()) if KILLS.exists() else 0
            if KillsItsWorker.steps == self.AT and done < self.TIMES:
                KILLS.write_text(str(done + 1))
                os.kill(os.getpid(), signal.SIGKILL)
        return super().step(closure)
'''


def _killer_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trials: int, at: int, times: int
) -> Path:
    module = f"optbench_test_killer_{at}_{times}"
    importable_module(tmp_path, module, KILLER.format(at=at, times=times), monkeypatch)
    tune = {"space": {"optimizer.lr": LR}, "trials": trials, "pruner": "none", "seeds": [0]}
    config = _config("killer", tune, optimizer={"name": f"{module}.KillsItsWorker", "lr": 0.1})
    config["data"] = {**config["data"], "n_train": 256, "batch_size": 32}  # 8 steps an epoch
    return write_config(tmp_path, config)


def _comparable(tune_json: Path) -> dict[str, Any]:
    """tune.json without its wall-clock fields and the storage's path (another folder)."""
    report = json.loads(tune_json.read_text())
    del report["storage"]
    for arm in report["optimizers"].values():
        del arm["seconds"]
    return report


@pytest.mark.slow
def test_a_killed_worker_costs_no_budget_and_its_point_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed once at its 12th step, in epoch 2 of the first run a worker process trains.
    config = _killer_config(tmp_path, monkeypatch, trials=3, at=12, times=1)
    killed, undisturbed = tmp_path / "killed", tmp_path / "undisturbed"
    for results in (killed, undisturbed):  # the second finds the kill done: none
        outcome = _tune(str(config), "--results-dir", str(results), "--workers", "1")
        assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "kills.txt").read_text() == "1"
    trials = _study(killed, "killer", "optbench_test_killer_12_1.KillsItsWorker").get_trials(
        deepcopy=False
    )
    (dead,) = [t for t in trials if t.user_attrs.get("not_counted")]
    why = "the worker process running it died (killed by SIGKILL)"
    assert dead.user_attrs["not_counted"] == why
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == dead.number]
    assert retry.params == dead.params and retry.user_attrs["run_id"] == dead.user_attrs["run_id"]
    counted = [t for t in trials if t is not dead]
    assert [t.state.name for t in counted] == ["COMPLETE"] * 3  # the whole budget trained
    # The same points, in the same order, and the same numbers as the undisturbed tune: the
    # killed run resumed from its checkpoint bit for bit.
    assert _comparable(killed / "killer" / "tune.json") == _comparable(
        undisturbed / "killer" / "tune.json"
    )
    for run in (undisturbed / "killer").glob("*/epochs.csv"):
        again = killed / "killer" / run.parent.name / "epochs.csv"
        columns = [c for c in pd.read_csv(run).columns if c not in ("seconds", "eval_seconds")]
        pd.testing.assert_frame_equal(pd.read_csv(again)[columns], pd.read_csv(run)[columns])


@pytest.mark.slow
def test_a_run_that_kills_its_worker_every_time_fails_and_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The out-of-memory killer's pattern: dead at the first step, every time.
    config = _killer_config(tmp_path, monkeypatch, trials=2, at=1, times=99)
    outcome = _tune(str(config), "--results-dir", str(tmp_path / "r"), "--workers", "1")
    assert outcome.exit_code == 0, outcome.output  # the first trial completed in the driver
    trials = _study(
        tmp_path / "r", "killer", "optbench_test_killer_1_99.KillsItsWorker"
    ).get_trials(deepcopy=False)
    counted = [t for t in trials if not t.user_attrs.get("not_counted")]
    assert [t.state.name for t in counted] == ["COMPLETE", "FAIL"]
    assert counted[1].user_attrs["error"] == (
        "the worker process running it died (killed by SIGKILL), 3 times without finishing an epoch"
    )
    retried = [t for t in trials if t not in counted]  # the first two deaths: asked again
    assert len(retried) == 2 and {t.params["optimizer.lr"] for t in trials[1:]} == {
        counted[1].params["optimizer.lr"]
    }


@pytest.mark.slow
def test_two_processes_on_one_storage_share_the_budget(tmp_path: Path) -> None:
    config, results = _slow_config(tmp_path, "shared", 4, 10_000, 3), tmp_path / "results"
    first = _tune_process(config, results, "--workers", "1")  # one journal file, shared
    second = _tune_process(config, results, "--workers", "1")
    for process in (first, second):
        output, _ = process.communicate(timeout=400)
        assert process.returncode == 0, output
    study = _study(results, "shared", "SGD")
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if not t.user_attrs.get("not_counted")]
    assert [t.state.name for t in counted] == ["COMPLETE"] * 4  # the budget, not twice it
    # at most a trial asked by both at the same moment, failed and not counted
    assert all(t.user_attrs["not_counted"] == "over the budget" for t in trials if t not in counted)


def test_a_tune_opening_the_study_waits_for_a_trial_being_asked(tmp_path: Path) -> None:
    # What made two tunes on one storage flaky under load: the second, opening the study
    # between the first's ask and its owner's record, failed that live trial as abandoned.
    import threading

    from optbench.components.data.tensor_cache import exclusive
    from optbench.sweeps.study import trial_owner
    from optbench.sweeps.tune import Tuner
    from optbench.sweeps.tune_setup import load_tune

    tune = {"space": {"optimizer.lr": LR}, "trials": 2, "pruner": "none", "seeds": [0]}
    config = write_config(tmp_path, _config("asking", tune, epochs=1))
    results = tmp_path / "r"
    assert _tune(str(config), "--results-dir", str(results), "--trials", "1").exit_code == 0
    journal = results / "asking" / "optuna-journal.log"
    study = _study(results, "asking", "SGD")
    opener = Tuner(load_tune(str(config)), results, str(journal))
    with exclusive(Path(f"{journal}.asking")):  # as a live tune holds it while asking
        asked = study.ask(
            {"optimizer.lr": optuna.distributions.FloatDistribution(0.01, 0.3, log=True)}
        )
        opening = threading.Thread(target=opener.open_studies)
        opening.start()
        opening.join(timeout=2.0)  # it waits on the lock, however long this takes
        asked.set_user_attr("owner", trial_owner())
    opening.join()
    trial = _study(results, "asking", "SGD").trials[asked.number]
    assert trial.state.name == "RUNNING" and "not_counted" not in trial.user_attrs
    # A trial whose asker died before recording itself is still taken for abandoned.
    orphan = study.ask(
        {"optimizer.lr": optuna.distributions.FloatDistribution(0.01, 0.3, log=True)}
    )
    Tuner(load_tune(str(config)), results, str(journal)).open_studies()
    why = _study(results, "asking", "SGD").trials[orphan.number].user_attrs["not_counted"]
    assert why == "its asker stopped before recording itself (killed, or a write failed)"


def test_a_tune_samples_the_same_trials_again_and_a_resumed_one_new_ones(tmp_path: Path) -> None:
    tune = {"space": {"optimizer.lr": LR}, "trials": 3, "pruner": "none", "seeds": [0]}
    config = write_config(tmp_path, _config("again", tune, epochs=1))
    sampled = []
    for folder in ("first", "second"):
        outcome = _tune(str(config), "--results-dir", str(tmp_path / folder), "--workers", "1")
        assert outcome.exit_code == 0, outcome.output
        sampled.append([t.params for t in _study(tmp_path / folder, "again", "SGD").trials])
    assert sampled[0] == sampled[1] and len({p["optimizer.lr"] for p in sampled[0]}) == 3
    # A larger budget on the same study continues with trials not sampled before.
    more = _tune(str(config), "--results-dir", str(tmp_path / "first"), "--trials", "5")
    assert more.exit_code == 0, more.output
    lrs = [t.params["optimizer.lr"] for t in _study(tmp_path / "first", "again", "SGD").trials]
    assert len(lrs) == 5 and len(set(lrs)) == 5


def test_an_optuna_storage_url_holds_the_studies(tmp_path: Path) -> None:
    # SQLite through Optuna's RDB storage, as a postgresql:// URL would be used.
    tune = {"space": {"optimizer.lr": LR}, "trials": 2, "pruner": "none", "seeds": [0]}
    config = write_config(tmp_path, _config("rdb", tune, epochs=1))
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    outcome = _tune(str(config), "--results-dir", str(tmp_path / "r"), "--storage", url)
    assert outcome.exit_code == 0, outcome.output
    report = json.loads((tmp_path / "r" / "rdb" / "tune.json").read_text())
    assert report["storage"] == url and not (tmp_path / "r" / "rdb" / "optuna-journal.log").exists()
    study = optuna.load_study(study_name=report["optimizers"]["SGD"]["study"], storage=url)
    assert _states(study) == {"COMPLETE": 2}
    assert study.best_trial.user_attrs["run_id"] == report["optimizers"]["SGD"]["best"]["run_id"]


def test_a_config_with_a_tune_section_still_sweeps_and_runs(tmp_path: Path) -> None:
    # Each sweep point's config (tune: section included) is validated again where it trains.
    from optbench.core.config import load_config, validate_config

    tune = {"space": {"optimizer.lr": LR, "optimizer.momentum": MOMENTUM}, "seeds": [0, 1]}
    config = write_config(tmp_path, _config("both", tune, epochs=1))
    loaded = load_config(config)
    assert validate_config(loaded.to_dict()) == loaded
    swept = invoke("sweep", str(config), "--seeds", "0,1", "--results-dir", str(tmp_path / "r"))
    assert swept.exit_code == 0, swept.output
    assert "2 completed" in swept.stdout
    ran = invoke("run", str(config), "--results-dir", str(tmp_path / "r2"))
    assert ran.exit_code == 0, ran.output


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray at a time (conftest.py's ray_session)
@pytest.mark.filterwarnings("ignore:Fixed parameter")  # the hopeless lr is outside the range
def test_trials_run_as_ray_tasks_and_are_pruned_there(ray_session: Any, tmp_path: Path) -> None:
    tune = {"space": {"optimizer.lr": LR}, "trials": 5, "pruner": "median", "seeds": [0]}
    config = write_config(tmp_path, _config("onray", tune, epochs=4))
    results = tmp_path / "results"
    options = (str(config), "--results-dir", str(results), "--executor", "ray", "--workers", "2")
    first = _tune(*options)
    assert first.exit_code == 0, first.output
    assert ray_session.is_initialized()  # it really ran on Ray
    study = _study(results, "onray", "SGD")
    assert _states(study) == {"COMPLETE": 5}
    # A hopeless trial: only the task training it, reporting to the journal, can prune it.
    study.enqueue_trial({"optimizer.lr": 1.0e-6})
    again = _tune(*options, "--trials", "6")
    assert again.exit_code == 0, again.output
    pruned = _study(results, "onray", "SGD").trials[5]
    assert pruned.state == optuna.trial.TrialState.PRUNED
    run = results / "onray" / pruned.user_attrs["run_id"]  # written by the driver from the task
    assert _summary(results, "onray", run.name)["status"] == "pruned"
    epochs = pd.read_csv(run / "epochs.csv")
    assert list(pruned.intermediate_values) == epochs["epoch"].tolist() and len(epochs) < 4


def test_tune_logs_every_trial_to_tensorboard_when_asked(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tune = {"space": {"optimizer.lr": LR}, "trials": 2, "pruner": "none", "seeds": [0]}
    config = write_config(tmp_path, _config("logged", tune, epochs=2))
    results = tmp_path / "results"
    outcome = _tune(str(config), "--results-dir", str(results), "--tensorboard")
    assert outcome.exit_code == 0, outcome.output
    for trial in _study(results, "logged", "SGD").trials:
        run = results / "logged" / trial.user_attrs["run_id"]
        (logdir,) = (run / "tensorboard").iterdir()
        events = EventAccumulator(str(logdir)).Reload()
        losses = [e.value for e in events.Scalars("epoch/test_loss")]
        assert losses == pytest.approx(pd.read_csv(run / "epochs.csv")["test_loss"].tolist())


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test asks as the lost tune
def test_a_trial_whose_heartbeat_stopped_is_asked_again_whichever_host_ran_it(
    tmp_path: Path,
) -> None:
    import sqlite3

    from optbench.sweeps import study as study_module

    tune = {"space": {"optimizer.lr": LR}, "trials": 2, "pruner": "none", "seeds": [0]}
    config = write_config(tmp_path, _config("beat", tune, epochs=1))
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    options = (str(config), "--results-dir", str(tmp_path / "r"), "--storage", url)
    assert _tune(*options, "--trials", "1").exit_code == 0
    name = json.loads((tmp_path / "r" / "beat" / "tune.json").read_text())["optimizers"]["SGD"]
    # A tune on another machine asked a trial and died: its owner cannot be checked from here,
    # only its heartbeat, which Optuna's RDB storage keeps.
    storage = study_module.open_storage(url)
    study = optuna.load_study(study_name=name["study"], storage=storage)
    lost = study.ask({"optimizer.lr": optuna.distributions.FloatDistribution(0.01, 0.3, log=True)})
    lost.set_user_attr("owner", {"host": "elsewhere", "pid": 1, "start": "0"})
    storage.record_heartbeat(lost._trial_id)
    # Its last heartbeat an hour ago, past the grace period: no sleep, and the tune's own
    # trials keep the real grace period however loaded the machine is.
    with sqlite3.connect(tmp_path / "tune.db") as db:
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-1 hour')")
    again = _tune(*options, "--trials", "2")
    assert again.exit_code == 0, again.output
    trials = optuna.load_study(study_name=name["study"], storage=url).get_trials()
    dead = trials[lost.number]
    # Optuna's fail_stale_trials failed it; its retry says why and leaves it uncounted.
    assert dead.state.name == "FAIL"
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == lost.number]
    assert retry.user_attrs["retry_why"] == f"no heartbeat for {study_module.GRACE_SECONDS} s"
    assert retry.state.name == "COMPLETE" and retry.params == dead.params
    counted = study_module.counted_trials(trials)
    assert dead not in counted and [t.state.name for t in counted] == ["COMPLETE"] * 2


@pytest.mark.slow
def test_two_tunes_started_at_once_give_each_optimizer_its_budget_of_distinct_trials(
    tmp_path: Path,
) -> None:
    # Both processes seed their samplers alike; the second must not train (and fail on) the
    # point the first is training, nor count such a trial against an optimizer's budget.
    tune = {"space": {"optimizer.lr": LR}, "trials": 8, "pruner": "median", "seeds": [0]}
    config = write_config(
        tmp_path, _config("twice", tune, epochs=2, sweep={"optimizer.name": ["SGD", "Adam"]})
    )
    results = tmp_path / "results"
    tunes = [_tune_process(config, results, "--workers", "1") for _ in range(2)]
    for process in tunes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    for optimizer in ("SGD", "Adam"):
        trials = _study(results, "twice", optimizer).get_trials(deepcopy=False)
        counted = [t for t in trials if not t.user_attrs.get("not_counted")]
        assert sorted({t.state.name for t in counted}) <= ["COMPLETE", "PRUNED"], optimizer
        assert len(counted) == 8, (optimizer, [(t.state.name, t.user_attrs) for t in trials])
        assert len({t.params["optimizer.lr"] for t in counted}) == 8  # 8 distinct points
        assert not any("being trained by" in str(t.user_attrs.get("error")) for t in counted)


def test_a_torn_last_journal_record_is_dropped_and_every_complete_one_kept(tmp_path: Path) -> None:
    tune = {"space": {"optimizer.lr": LR}, "trials": 2, "pruner": "none", "seeds": [0]}
    config = write_config(tmp_path, _config("torn", tune, epochs=1))
    results = tmp_path / "results"
    assert _tune(str(config), "--results-dir", str(results), "--workers", "1").exit_code == 0
    journal = results / "torn" / "optuna-journal.log"
    complete = journal.read_bytes()
    before = [(t.number, t.state.name, t.params) for t in _study(results, "torn", "SGD").trials]
    # What a full disk left mid-append: the first bytes of a record, with no newline.
    journal.write_bytes(complete + b'{"op_code":5,"worker_id":"x","trial_id":1,"param')
    more = _tune(str(config), "--results-dir", str(results), "--trials", "3")
    assert more.exit_code == 0, more.output
    assert "dropped a torn last record" in more.output
    assert journal.read_bytes().startswith(complete)  # every complete record kept, in place
    after = _study(results, "torn", "SGD").trials  # Optuna reads the whole journal again
    assert [(t.number, t.state.name, t.params) for t in after[:2]] == before
    assert len(after) == 3 and after[2].state.name == "COMPLETE"


@pytest.mark.durable
def test_a_told_trials_journal_records_are_fsynced_once_at_the_end_of_its_telling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telling a trial appends some 24 records (each epoch reported, its attributes, its
    state); each append is whole and in the file at once, all under one hold of Optuna's
    journal lock, and the journal is fsynced once, after the last of them, before the lock is
    let go, not after each (an fsync costs milliseconds, a lock two file operations)."""
    from optuna.storages.journal import JournalFileSymlinkLock

    from optbench.sweeps import study as study_module
    from optbench.sweeps.tune_telling import TrialTeller

    events: list[str] = []
    real_fsync, real_append = os.fsync, study_module._append_whole

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("optuna-journal.log"):
            events.append("fsync")
        real_fsync(fd)

    def append(path: Path, record: bytes, sync: bool = True) -> None:
        events.append("append")
        real_append(path, record, sync)

    def telling(tell: Any) -> Any:
        def spied(*args: Any, **kwargs: Any) -> Any:
            events.append("tell")
            try:
                return tell(*args, **kwargs)
            finally:
                events.append("told")

        return spied

    def noted(event: str, method: Any) -> Any:
        def spied(self: Any) -> Any:
            events.append(event)
            return method(self)

        return spied

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(study_module, "_append_whole", append)
    monkeypatch.setattr(TrialTeller, "tell", telling(TrialTeller.tell))
    for event, name in (("lock", "acquire"), ("unlock", "release")):
        monkeypatch.setattr(
            JournalFileSymlinkLock, name, noted(event, getattr(JournalFileSymlinkLock, name))
        )
    tune = {"space": {"optimizer.lr": LR}, "trials": 2, "pruner": "none", "seeds": [0]}
    config = write_config(tmp_path, _config("once", tune, epochs=4))
    results = tmp_path / "results"
    assert _tune(str(config), "--results-dir", str(results), "--workers", "1").exit_code == 0
    tellings = re.findall(r"tell((?:,\w+)*?),told", ",".join(events))
    assert len(tellings) == 2
    for telling_events in tellings:
        inside = telling_events.strip(",").split(",")
        assert inside.count("append") >= 8  # 4 epochs reported, 3 attributes, the state
        assert inside[inside.index("append") - 1] == "lock"  # taken once, before the first
        assert inside.count("lock") == inside.count("unlock") == 1
        assert inside[-2:] == ["fsync", "unlock"] and inside.count("fsync") == 1
    trials = _study(results, "once", "SGD").get_trials(deepcopy=False)  # Optuna reads them all
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(sorted(t.intermediate_values) == [1, 2, 3, 4] for t in trials)
