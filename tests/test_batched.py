"""Batched trials (experiment/batched.py, sweeps/batching.py) against lone runs.

The reference is the lone run (`train`, `run_plan`), itself proven against a hand-written loop
(test_fidelity.py): K trials trained as one optimizer's K parameter groups must give its
per-epoch tables to the bit (tolerance 0), its epochs.csv read back with pandas, its resume
after SIGKILL, and a pruned trial must leave the others' numbers alone.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from optbench.api import plan as make_plan
from optbench.experiment.batched import batching_refusal, run_batch, train_batched
from optbench.experiment.runner import run_plan, torch_threads
from optbench.experiment.train import SilentObserver, StopTraining, train
from optbench.storage.results import Status
from optbench.ui.cli import app
from tests.helpers import assert_one_error_line, cli_runner, importable_module

TIMING = {"seconds", "eval_seconds", "first_step_seconds"}

# torch.optim's optimizers that batch, each with hyperparameters that differ between trials
OPTIMIZERS: dict[str, list[dict[str, Any]]] = {
    "SGD": [{"lr": 0.01 * (k + 1), "momentum": 0.1 * k, "nesterov": k % 2 == 1} for k in range(8)],
    "Adam": [{"lr": 0.001 * (k + 1), "betas": [0.9 - 0.05 * k, 0.999]} for k in range(8)],
    "AdamW": [{"lr": 0.001 * (k + 1), "weight_decay": 0.01 * k} for k in range(8)],
    "NAdam": [{"lr": 0.002 * (k + 1)} for k in range(8)],
    "RAdam": [{"lr": 0.002 * (k + 1)} for k in range(8)],
    "Adamax": [{"lr": 0.002 * (k + 1)} for k in range(8)],
    "Adagrad": [{"lr": 0.01 * (k + 1), "lr_decay": 0.001 * k} for k in range(8)],
    "Adadelta": [{"lr": 0.5 * (k + 1), "rho": 0.9 - 0.01 * k} for k in range(8)],
    "RMSprop": [
        {"lr": 0.001 * (k + 1), "momentum": 0.1 * k, "centered": k % 2 == 0} for k in range(8)
    ],
    "Rprop": [{"lr": 0.001 * (k + 1)} for k in range(8)],
    "ASGD": [{"lr": 0.01 * (k + 1), "t0": 10.0 * (k + 1)} for k in range(8)],
}


def _plans(
    problem: str,
    name: str,
    options: list[dict[str, Any]],
    epochs: int,
    data: dict[str, Any] | None = None,
) -> list[Any]:
    """One plan per trial: the problem's, its optimizer's options, seeds 0..3 in turn."""
    return [
        make_plan(
            {
                "name": problem,
                "problem": problem,
                "device": "cpu",
                "threads": 1,
                "epochs": epochs,
                "seed": k % 4,
                "optimizer": {"name": name, **option},
                **({"data": data} if data else {}),
            }
        )
        for k, option in enumerate(options)
    ]


def _table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def _assert_batched_equals_lone(plans: list[Any]) -> None:
    assert batching_refusal(plans) is None
    batched = train_batched(plans)
    for plan, result in zip(plans, batched, strict=True):
        lone = train(plan)
        assert result.status == lone.status
        assert _table(result.rows) == _table(lone.rows)  # tolerance 0: == on floats


@pytest.mark.parametrize(
    "name",
    [n if n in ("SGD", "Adam") else pytest.param(n, marks=pytest.mark.slow) for n in OPTIMIZERS],
)
def test_eight_batched_trials_are_eight_lone_runs_on_digits_mlp(name: str) -> None:
    # 512 of digits' training samples: 16 steps an epoch, two epochs (the stacks handed back
    # and built again between them)
    plans = _plans("digits_mlp", name, OPTIMIZERS[name], epochs=2, data={"subset": 512})
    _assert_batched_equals_lone(plans)


STACKED = {"SGD", "Adam", "AdamW", "RMSprop"}  # torch.optim classes with a stacked update


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_the_stacked_update_is_used_exactly_where_written_and_proven(name: str) -> None:
    """SGD (momentum 0 and not, Nesterov, in one batch), Adam and AdamW (betas and weight decay
    differing per trial) and RMSprop (momentum and centered or not) step as stacks, proven
    against torch.optim's own optimizers while planning; every other torch.optim class steps
    group by group and says why."""
    from optbench.experiment.batched import stacked_refusal

    refusal = stacked_refusal(_plans("digits_mlp", name, OPTIMIZERS[name], epochs=1))
    if name in STACKED:
        assert refusal is None
    else:
        assert refusal == f"no stacked update is written for {name}"


@pytest.mark.parametrize("name", sorted(STACKED))
def test_each_copys_parameters_lie_as_a_lone_runs_do_so_diabetes_linear_steps_as_stacks(
    name: str,
) -> None:
    """diabetes_linear's Linear(10, 1) as copies in one flat stack: each copy's weight and bias
    start on 64 bytes, as torch's allocator starts a lone run's; MKL's product of a
    Linear(10, 1) sums otherwise at other offsets, and then the stacked update, proven
    against torch.optim's, was refused."""
    from optbench.experiment.batched import stacked_refusal
    from optbench.experiment.stacked_update import StackedStep

    plans = _plans("diabetes_linear", name, OPTIMIZERS[name], epochs=1)
    with torch_threads(plans[0].threads):
        assert stacked_refusal(plans) is None
    models = [plan.build_model() for plan in plans]
    optimizers = [plan.optimizer.build(model) for plan, model in zip(plans, models, strict=True)]
    StackedStep(optimizers)
    assert {p.data_ptr() % 64 for model in models for p in model.parameters()} == {0}


def test_a_stacked_update_a_bit_off_is_refused_and_the_batch_steps_group_by_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exact or refused: an Adam stack whose update is off by one ulp in one row is found while
    planning; the batch then steps with torch.optim, group by group, and its tables are still
    the lone runs'."""
    from optbench.experiment import batched, stacked_update

    step = stacked_update.AdamRule._step_one

    def off(param: Any, *args: Any) -> None:
        step(param, *args)
        param[0].copy_(torch.nextafter(param[0], torch.full_like(param[0], float("inf"))))

    monkeypatch.setattr(stacked_update.AdamRule, "_step_one", staticmethod(off))
    plans = _plans("digits_mlp", "Adam", OPTIMIZERS["Adam"][:3], epochs=2)
    refusal = batched.stacked_refusal(plans)
    assert refusal == "its stacked update differs from torch.optim's by a bit"
    chosen = []
    grouped = batched._GroupedUpdate

    def spy(optimizers: Any) -> Any:
        chosen.append(grouped(optimizers))
        return chosen[-1]

    monkeypatch.setattr(batched, "_GroupedUpdate", spy)
    _assert_batched_equals_lone(plans)
    assert len(chosen) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("problem", "name", "data"),
    [
        ("quadratic_deep", "Adam", {}),
        ("rosenbrock", "SGD", {}),
        # 2048 of its 60,000 images (time): 16 full batches of 128, so the loader draws after
        # its last batch (see the next test)
        ("fmnist_logreg", "RMSprop", {"subset": 2048}),
    ],
)
def test_eight_batched_trials_are_eight_lone_runs_on_other_problems(
    problem: str, name: str, data: dict[str, Any]
) -> None:
    options = [{**o, "lr": o["lr"] / 10} for o in OPTIMIZERS[name]]  # Rosenbrock's scale
    _assert_batched_equals_lone(_plans(problem, name, options, epochs=2, data=data))


@pytest.mark.parametrize("data", [{"drop_last": True}, {"subset": 1024}])
def test_epoch_two_keeps_the_lone_data_order_when_the_loader_draws_after_its_last_batch(
    data: dict[str, Any],
) -> None:
    """With the last batch dropped, or full (1024 = 32 x 32), DataLoader's sampler draws once
    more after the last batch (ShuffledBatches does too); a lone run's `for` loop runs into that
    draw, so epoch 2's order follows from it. A batch that only takes as many batches as it
    steps (fixed here) trained epoch 2 on another order."""
    plans = _plans("digits_mlp", "SGD", OPTIMIZERS["SGD"][:2], epochs=2, data=data)
    _assert_batched_equals_lone(plans)


def test_a_batch_writes_the_run_folders_of_lone_runs(tmp_path: Path) -> None:
    """epochs.csv (read by pandas), summary status and run-id of each batched trial are those
    of its lone run; the checkpoint is gone once each finished, as a lone run's is."""
    plans = _plans("digits_mlp", "SGD", OPTIMIZERS["SGD"][:3], epochs=2)
    outcomes = run_batch(plans, tmp_path / "batched")
    for plan, outcome in zip(plans, outcomes, strict=True):
        lone = run_plan(plan, tmp_path / "lone")
        assert outcome.run_dir.name == lone.run_dir.name == plan.run_id
        assert outcome.summary.status == lone.summary.status == "completed"
        batched_table = pd.read_csv(outcome.run_dir / "epochs.csv").drop(columns=list(TIMING))
        lone_table = pd.read_csv(lone.run_dir / "epochs.csv").drop(columns=list(TIMING))
        pd.testing.assert_frame_equal(batched_table, lone_table, check_exact=True)
        assert not (outcome.run_dir / "checkpoint.pt").exists()


class _PruneAfter(SilentObserver):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_finished(self, row: dict[str, Any]) -> None:
        if row["epoch"] == self.epoch:
            raise StopTraining(Status.PRUNED, f"pruned at epoch {self.epoch}")


def test_pruning_one_trial_leaves_the_others_as_lone_runs() -> None:
    plans = _plans("digits_mlp", "Adam", OPTIMIZERS["Adam"][:3], epochs=3)
    observers = [SilentObserver(), _PruneAfter(1), SilentObserver()]
    results = train_batched(plans, observers)
    assert isinstance(results[1], StopTraining) and results[1].status == Status.PRUNED
    for k in (0, 2):
        assert _table(results[k].rows) == _table(train(plans[k]).rows)  # type: ignore[union-attr]


KILL_SCRIPT = """
import os, signal, sys
from optbench.api import plan
from optbench.experiment.batched import run_batch
from optbench.experiment.train import SilentObserver

configs = {configs!r}
class KillAt(SilentObserver):
    def epoch_finished(self, row):
        if row["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # trial 1 saved epoch 2, trial 2 only epoch 1
displays = [SilentObserver(), KillAt(), SilentObserver()]
run_batch([plan(c) for c in configs], sys.argv[1], displays=displays)
"""


@pytest.mark.slow
def test_a_batch_killed_between_trials_resumes_to_the_lone_runs(tmp_path: Path) -> None:
    configs = [
        {
            "name": "digits_mlp",
            "problem": "digits_mlp",
            "device": "cpu",
            "threads": 1,
            "epochs": 3,
            "seed": k,
            "optimizer": {"name": "SGD", "lr": 0.02 * (k + 1), "momentum": 0.9},
        }
        for k in range(3)
    ]
    script = tmp_path / "kill.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT.format(configs=configs)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    killed = subprocess.run([sys.executable, str(script), str(tmp_path / "b")], env=env)
    assert killed.returncode == -signal.SIGKILL
    plans = [make_plan(c) for c in configs]
    done = [len(pd.read_csv(tmp_path / "b" / p.name / p.run_id / "epochs.csv")) for p in plans]
    assert done == [2, 2, 1]  # the batch died with its trials at different epochs
    resumed = run_batch(plans, tmp_path / "b", resume=True)
    for plan, outcome in zip(plans, resumed, strict=True):
        lone = run_plan(plan, tmp_path / "lone")
        batched_table = pd.read_csv(outcome.run_dir / "epochs.csv").drop(columns=list(TIMING))
        lone_table = pd.read_csv(lone.run_dir / "epochs.csv").drop(columns=list(TIMING))
        pd.testing.assert_frame_equal(batched_table, lone_table, check_exact=True)


def test_refusals_name_the_reason() -> None:
    lbfgs = _plans("digits_mlp", "LBFGS", [{"lr": 0.1}, {"lr": 0.2}], epochs=1)
    assert "closure protocol" in (batching_refusal(lbfgs) or "")
    sgd = _plans("digits_mlp", "SGD", OPTIMIZERS["SGD"][:2], epochs=1)
    fast = [make_plan(p.config.to_dict(), ["fast=true", "clip_grad_norm=1"]) for p in sgd]
    assert "clip_grad_norm, fast act on the whole step" in (batching_refusal(fast) or "")
    other = [sgd[0], make_plan(sgd[1].config.to_dict(), ["epochs=2"])]
    assert "differ in epochs" in (batching_refusal(other) or "")


TUNE = {
    "name": "dt",
    "problem": "digits_mlp",
    "device": "cpu",
    "threads": 1,
    "epochs": 2,
    "optimizer": {"name": "Adam", "lr": 0.01},
    "tune": {
        "space": {"optimizer.lr": {"log_uniform": [0.0001, 0.1]}},
        "trials": 4,
        "sampler": "random",
        "pruner": "none",
        "seeds": [0],
    },
}


def test_a_batched_tune_asks_k_trials_at_once_and_gives_the_lone_tunes_numbers(
    tmp_path: Path,
) -> None:
    import optuna

    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(TUNE))
    tables = _tune_tables(
        config, tmp_path, "dt", {"batched": ["--batch-trials", "4"], "lone": ["--workers", "1"]}
    )
    assert len(tables["batched"]) == len(tables["lone"]) >= 4
    for batched, lone in zip(tables["batched"], tables["lone"], strict=True):
        pd.testing.assert_frame_equal(batched, lone, check_exact=True)
    journal = optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "batched" / "dt" / "optuna-journal.log")
    )
    study = optuna.load_study(
        study_name=optuna.get_all_study_names(optuna.storages.JournalStorage(journal))[0],
        storage=optuna.storages.JournalStorage(journal),
    )
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 4
    first_told = min(t.datetime_complete for t in trials)
    assert all(t.datetime_start < first_told for t in trials)  # all 4 asked before any told


def _tune_tables(
    config: Path, tmp_path: Path, name: str, folders: dict[str, list[str]]
) -> dict[str, list[pd.DataFrame]]:
    """`optbench tune CONFIG` into each folder with its arguments, and each folder's trials'
    epochs.csv (timing columns dropped) in run-id order."""
    runner, tables = cli_runner(), {}
    for folder, extra in folders.items():
        results = tmp_path / folder
        result = runner.invoke(app, ["tune", str(config), "--results-dir", str(results), *extra])
        assert result.exit_code == 0, result.output
        runs = sorted((results / name).glob("*/epochs.csv"))
        tables[folder] = [pd.read_csv(r).drop(columns=list(TIMING)) for r in runs]
    return tables


def _users_lion_tune_tables(
    tmp_path: Path, name: str, section: dict[str, Any], lrs: list[float], batching: str
) -> dict[str, list[pd.DataFrame]]:
    """TUNE with the user's data, model and loss (`section`), stepped by pytorch_optimizer's
    Lion over lr in `lrs`: `validate --batching` must name `batching` as the copies' way, then
    each trial's table of `optbench tune --workers 2`, batched 3 at a time and alone."""
    config = {
        **{key: value for key, value in TUNE.items() if key != "problem"},
        **section,
        "name": name,
        "epochs": 3,
        "optimizer": {"name": "pytorch_optimizer.Lion", "lr": lrs[0]},
        "tune": {**TUNE["tune"], "space": {"optimizer.lr": {"log_uniform": lrs}}},
    }
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config))
    validated = cli_runner().invoke(app, ["validate", str(path), "--batching"])
    assert f"batched gradients: {batching}" in validated.output, validated.output
    two_workers = ["--workers", "2"]
    tables = _tune_tables(
        path,
        tmp_path,
        name,
        {"batched": [*two_workers, "--batch-trials", "3"], "lone": two_workers},
    )
    assert len(tables["batched"]) == len(tables["lone"]) >= 4
    return tables


USER_MLP = """
from torch import nn


def my_mlp(in_features, num_classes):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, 48), nn.Tanh(), nn.Linear(48, num_classes)
    )
"""


@pytest.mark.slow
def test_a_users_mlp_with_a_third_party_optimizer_batches_its_layers_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model from the user's own module, stepped by pytorch_optimizer's Lion, tuned through
    `optbench tune --batch-trials 3 --workers 2`: its copies take the layers' batched matmuls
    (validate says so) and a batched evaluation, and every trial's epochs.csv is the unbatched
    tune's to the bit."""
    importable_module(tmp_path, "user_mlp_models", USER_MLP, monkeypatch)
    section = {
        "data": {"dataset": "sklearn_digits", "batch_size": 32, "validation": 300},
        "model": {"name": "user_mlp_models.my_mlp"},
        "loss": "cross_entropy",
    }
    layers = "one batched matmul per layer"
    tables = _users_lion_tune_tables(tmp_path, "um", section, [1e-5, 1e-3], layers)
    for batched, lone in zip(tables["batched"], tables["lone"], strict=True):
        assert batched["valid_accuracy"].notna().all()  # evaluated on both splits
        pd.testing.assert_frame_equal(batched, lone, check_exact=True)


BENCHMARK = {
    "name": "batching",
    "problems": ["rosenbrock", "diabetes_linear"],
    "set": {"epochs": 3, "device": "cpu"},
    "optimizers": {
        "SGD": {"name": "SGD", "momentum": 0.0},
        "Momentum": {"name": "SGD", "momentum": 0.9},
        "Adam": {"name": "Adam"},
    },
    "tune": {"space": {"optimizer.lr": {"log_uniform": [1.0e-4, 1.0e-1]}}, "trials": 3},
    "studies": 2,
    "targets": {"rosenbrock": {"distance_to_optimum": 1.5}, "diabetes_linear": {"valid_loss": 1.0}},
}


def test_a_batched_benchmark_batches_studies_together_and_scores_as_the_lone_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`optbench benchmark SUITE --batch-trials 12`: the stream takes its studies in turn, yet
    each batch holds every trial of one problem and optimizer class (SGD's and Momentum's 2
    studies x 3 trials, one SGD optimizer's groups with their own momentum; Adam's 6), trained
    on the local workers; every run's table and every steps score are the unbatched benchmark's."""
    import json

    import optbench.sweeps.batching as batching

    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(BENCHMARK))
    batches: list[list[str]] = []
    made = batching.batch_point
    monkeypatch.setattr(
        batching,
        "batch_point",
        lambda points: batches.append([p[1]["name"] for p in points]) or made(points),
    )
    runner = cli_runner()
    for folder, extra in (("batched", ["--batch-trials", "12"]), ("lone", [])):
        result = runner.invoke(
            app, ["benchmark", str(suite), "--results-dir", str(tmp_path / folder), *extra]
        )
        assert result.exit_code == 0, result.output
    assert sorted(len(names) for names in batches) == [6, 6, 12, 12]
    assert sorted(len(set(names)) for names in batches) == [2, 2, 4, 4]  # studies per batch
    documents = {
        folder: json.loads((tmp_path / folder / "batching" / "benchmark.json").read_text())
        for folder in ("batched", "lone")
    }
    steps = {folder: document["scores"]["steps"] for folder, document in documents.items()}
    assert steps["batched"] == steps["lone"]  # (seconds scores are wall time: never equal)
    tables = {
        folder: {
            run.relative_to(tmp_path / folder): pd.read_csv(run).drop(columns=list(TIMING))
            for run in (tmp_path / folder).glob("*/*/epochs.csv")
        }
        for folder in ("batched", "lone")
    }
    statuses = {
        folder: {
            run.parent.relative_to(tmp_path / folder): json.loads(run.read_text())["status"]
            for run in (tmp_path / folder).glob("*/*/summary.json")
        }
        for folder in ("batched", "lone")
    }
    assert len(statuses["batched"]) == 36  # a run that diverges in its first epoch has no rows
    assert statuses["batched"] == statuses["lone"]
    assert tables["batched"].keys() == tables["lone"].keys()
    for run, table in tables["batched"].items():
        pd.testing.assert_frame_equal(table, tables["lone"][run], check_exact=True)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--batch-trials", "0"], ("--batch-trials", "at least 1")),
        (["--batch-trials", "-2"], ("--batch-trials", "at least 1")),
        (["--batch-trials", "2", "--set", "optimizer.name=LBFGS"], ("--batch-trials", "closure")),
        (["--set", "tune.batch_trials=0"], ("tune.batch_trials",)),
        (["--batch-trials", "1000000000"], ("--batch-trials", "a copy", "at most", "fit")),
    ],
)
def test_bad_batching_is_one_line_and_writes_nothing(
    tmp_path: Path, args: list[str], fragments: tuple[str, ...]
) -> None:
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(TUNE))
    results = tmp_path / "results"
    result = cli_runner().invoke(app, ["tune", str(config), "--results-dir", str(results), *args])
    assert_one_error_line(result, *fragments)
    assert not results.exists() or not any(results.rglob("*.*"))


def test_the_trial_step_finds_group_coupled_state() -> None:
    """An optimizer whose step reads every group (as D-Adaptation and Prodigy sum over them) is
    refused by the trial step, not by a list of names."""
    from optbench.experiment import batched

    class Coupled(torch.optim.SGD):  # scales each step by the number of groups
        def step(self, closure: Any = None) -> Any:
            for group in self.param_groups:
                for p in group["params"]:
                    p.data.add_(p.grad, alpha=-group["lr"] * len(self.param_groups))

    plans = _plans("digits_mlp", "SGD", OPTIMIZERS["SGD"][:2], epochs=1)
    coupled = [dataclasses.replace(p, optimizer=_with_class(p.optimizer, Coupled)) for p in plans]
    assert "couples groups" in (batched._trial_step_refusal(coupled) or "")


def _with_class(bound: Any, cls: type) -> Any:
    class Built:
        def __init__(self) -> None:
            self.info, self.protocol = bound.info, bound.protocol

        def build(self, model: Any) -> Any:
            return cls(model.parameters(), lr=0.01)

    return Built()


def _spy_on_gradients(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], dict[str, int]]:
    """The strategies train_batched chose, and a count of the steps computed for all copies at
    once, by way (vmap, or the stacked forward: the layers' batched matmuls or the model's own)."""
    from optbench.experiment import batched, copy_gradients

    chosen: list[Any] = []
    taken = {"_vmap_grads": 0, "stacked_grads": 0}
    plan_gradients = copy_gradients.copy_gradients

    def choose(plans: Any) -> Any:
        chosen.append(plan_gradients(plans))
        return chosen[-1]

    def counted(name: str) -> Any:
        way = getattr(copy_gradients, name)

        def step(*args: Any, **kwargs: Any) -> Any:
            taken[name] += 1
            return way(*args, **kwargs)

        return step

    monkeypatch.setattr(batched, "copy_gradients", choose)
    for name in taken:
        monkeypatch.setattr(copy_gradients, name, counted(name))
    monkeypatch.setattr(copy_gradients, "CPU_VMAP_FROM", 2)  # the tests' small batches too
    return chosen, taken


@pytest.mark.parametrize(
    ("problem", "name", "data", "way", "strategy"),
    [
        ("digits_mlp", "Adam", None, "stacked_grads", "StackedCopies"),
        ("fmnist_logreg", "SGD", {"subset": 1000}, "stacked_grads", "StackedCopies"),
        ("rosenbrock", "SGD", None, "stacked_grads", "StackedCopies"),
        ("branin", "Adam", None, "stacked_grads", "StackedCopies"),
        ("quadratic_deep", "SGD", None, "_vmap_grads", "VmappedCopies"),
    ],
)
def test_copies_computed_at_once_give_the_lone_runs_tables(
    problem: str,
    name: str,
    data: dict[str, Any] | None,
    way: str,
    strategy: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """digits_mlp's MLP and Fashion-MNIST's logistic regression take the layers' batched
    matmuls (experiment/stacked_layers.py), the 2-D Rosenbrock and Branin their own stacked
    forward, quadratic_deep one torch.func.vmap over the stacked copies, and every trial's
    per-epoch table is its lone run's to the bit. Under the run's one thread, as run_batch
    trains it: the kernels, and so whether a batched kernel sums as the loop does, depend on
    the threads (with two, digits_mlp's steps are not batched)."""
    from optbench.components.data import InMemoryDataset
    from optbench.experiment import copy_gradients

    chosen, taken = _spy_on_gradients(monkeypatch)
    normalized, transformed = InMemoryDataset.normalized, []
    monkeypatch.setattr(
        InMemoryDataset, "normalized", lambda self: transformed.append(self) or normalized(self)
    )
    options = [{**o, "lr": o["lr"] / 10} for o in OPTIMIZERS[name][:4]]
    plans = _plans(problem, name, options, epochs=2, data=data)
    with torch_threads(plans[0].threads):
        _assert_batched_equals_lone(plans)
    assert type(chosen[0]) is getattr(copy_gradients, strategy)
    batch_size = plans[0].config.data.batch_size
    steps = plans[0].config.epochs * -(-len(_train_samples(plans[0])) // batch_size)
    # every step at once (each shape's first as its proof, beside the loop), and planning's
    assert taken[way] == steps + 1
    assert set(chosen[0].refusals.values()) == {None}  # the full batches and the last, smaller
    if strategy == "StackedCopies":  # and the evaluations, all copies in one forward
        assert any(shape[0] == "evaluation" for shape in chosen[0].refusals)
    # the splits transformed once for all trials: training's and, evaluated together, test's
    assert len(transformed) == (2 if strategy == "StackedCopies" else 1)


@pytest.mark.parametrize(
    ("loss_fn", "ignored", "on_stack"),
    [
        (torch.nn.CrossEntropyLoss(), False, True),
        (torch.nn.CrossEntropyLoss(), True, False),  # a target to ignore: each copy's own
        (torch.nn.CrossEntropyLoss(label_smoothing=0.1), False, False),
    ],
)
def test_stacked_losses_are_each_copys_own_cross_entropy_and_its_gradient(
    loss_fn: torch.nn.Module, ignored: bool, on_stack: bool
) -> None:
    """Five copies' cross-entropies on an odd batch of 7 (not a power of two: -1/7 rounds),
    taken on the stack, are each copy's torch.nn.functional.cross_entropy, value and gradient
    on its logits, to the bit."""
    from optbench.experiment.stacked_layers import stacked_losses

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, 10, generator=generator) * 3
    targets = list(torch.randint(0, 10, (5, 7), generator=generator))
    if ignored:
        targets[2][3] = -100
    stacked = logits.clone().requires_grad_()
    losses, summed = stacked_losses(loss_fn, stacked, targets)
    assert (summed.grad_fn.name() == "DivBackward0") is on_stack  # the summed NLL over B
    summed.backward()
    for k, y in enumerate(targets):
        alone = logits[k].clone().requires_grad_()
        loss = loss_fn(alone, y)
        loss.backward()
        assert torch.equal(losses[k], loss.detach())
        assert torch.equal(stacked.grad[k], alone.grad)


@pytest.mark.parametrize("batch", [128, 100])
def test_stacked_losses_take_a_test_functions_value_as_each_copys_own_mean(batch: int) -> None:
    """The 2-D functions' and quadratic_deep's loss (the mean of the per-sample values) on K
    copies' stacked outputs: each copy's value and gradient are its lone mean's, to the bit,
    for a batch whose 1/B rounds (100) too."""
    from optbench.components.models import FunctionValue
    from optbench.experiment.stacked_layers import stacked_losses

    outputs = torch.randn(6, batch, 1, generator=torch.Generator().manual_seed(0)) * 5
    targets = [torch.zeros(batch, 1)] * 6
    stacked = outputs.clone().requires_grad_()
    losses, summed = stacked_losses(FunctionValue(), stacked, targets)
    summed.backward()
    for k in range(6):
        alone = outputs[k].clone().requires_grad_()
        loss = FunctionValue()(alone, targets[k])
        loss.backward()
        assert torch.equal(losses[k], loss.detach())
        assert torch.equal(stacked.grad[k], alone.grad)
    assert summed.grad_fn.name() == "SumBackward0"  # one mean over the stack, not K


def test_a_linear_10_to_1_takes_each_copys_own_forward_product_and_the_lone_runs_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """diabetes_linear's Linear(10, 1): bmm multiplies batches that small with ATen's own loop,
    which sums otherwise than a lone layer's product, so the stacked way is refused; with each
    copy's own F.linear forward (the loss, backward and update still batched) the full batches'
    steps are exact and taken so, the shapes that are not (the last, smaller batch) take the
    loop, and every table is the lone run's to the bit."""
    from optbench.experiment.copy_gradients import StackedCopies

    chosen, taken = _spy_on_gradients(monkeypatch)
    plans = _plans("diabetes_linear", "Adam", OPTIMIZERS["Adam"][:4], epochs=2)
    with torch_threads(plans[0].threads):
        _assert_batched_equals_lone(plans)
    (strategy,) = chosen
    assert type(strategy) is StackedCopies and strategy.per_copy
    assert "each copy's own forward product" in strategy.describe()
    full = [
        shape for shape in strategy.refusals if shape[0] != "evaluation" and shape[0][0][0] == 32
    ]
    assert [strategy.refusals[shape] for shape in full] == [None]
    full_steps = plans[0].config.epochs * (len(_train_samples(plans[0])) // 32)
    assert taken["stacked_grads"] >= full_steps  # each full batch's step, all copies at once


def _train_samples(plan: Any) -> Any:
    from optbench.components.data import load_data

    train_set, _ = load_data(plan.data, plan.config.seed)
    return train_set.targets


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ({"name": "mlp", "hidden_sizes": [100], "dropout": 0.2}, "draws random numbers (dropout)"),
        ({"name": "tests.batched_models.batch_norm_mlp"}, "changes its buffers (BatchNorm"),
        ({"name": "tests.batched_models.branching_mlp"}, "data-dependent control flow"),
    ],
)
def test_models_vmap_cannot_take_train_one_copy_at_a_time_as_lone_runs(
    model: dict[str, Any], reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropout's draws, BatchNorm's running statistics and a Python `if` on a tensor: the batch
    falls back to the per-copy loop, says why, and still gives each lone run's table."""
    from optbench.experiment.copy_gradients import LoopedCopies

    chosen, taken = _spy_on_gradients(monkeypatch)
    plans = [
        make_plan(
            {
                "name": "digits",
                "data": {"dataset": "sklearn_digits", "batch_size": 32},
                "model": model,
                "loss": "cross_entropy",
                "device": "cpu",
                "threads": 1,
                "epochs": 1,
                "seed": k,
                "optimizer": {"name": "SGD", **OPTIMIZERS["SGD"][k]},
            }
        )
        for k in range(2)
    ]
    _assert_batched_equals_lone(plans)
    assert isinstance(chosen[0], LoopedCopies) and reason in chosen[0].describe()
    assert sum(taken.values()) <= 2  # only the planning's trials of them


def test_validate_says_how_batched_trials_get_their_gradients(tmp_path: Path) -> None:
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(TUNE))
    runner = cli_runner()
    vmapped = runner.invoke(app, ["validate", str(config), "--batching"])
    assert vmapped.exit_code == 0, vmapped.output
    assert "batched gradients: one batched matmul per layer for all copies" in vmapped.output
    assert "update: stacked, one op for all parameters of every trial" in vmapped.output
    adagrad = runner.invoke(
        app, ["validate", str(config), "--batching", "--set", "optimizer.name=Adagrad"]
    )
    assert "update: torch.optim's, group by group: no stacked update is written for Adagrad" in (
        adagrad.output
    )
    dropout = runner.invoke(
        app, ["validate", str(config), "--batching", "--set", "model.dropout=0.1"]
    )
    assert "batching: yes" in dropout.output
    assert "not vmapped: its forward draws random numbers (dropout)" in dropout.output


USER_WAVE = """
import torch
from torch import nn


class Wave(nn.Module):
    \"\"\"sum_i w_i tanh(s_i x_i) + b: elementwise, so its K copies can forward at once.\"\"\"

    def __init__(self, in_features):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(in_features))
        self.weight = nn.Parameter(torch.linspace(-0.5, 0.5, in_features))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return (torch.tanh(x * self.scale) * self.weight).sum(dim=1, keepdim=True) + self.bias

    def stacked_forward(self, params, inputs):
        scale, weight = params["scale"][:, None, :], params["weight"][:, None, :]
        summed = (torch.tanh(inputs * scale) * weight).sum(dim=-1, keepdim=True)
        return summed + params["bias"][:, None, :]


def wave(in_features):
    return Wave(in_features)
"""


@pytest.mark.slow
def test_a_users_model_that_forwards_its_copies_itself_batches_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model class of the user's own module that defines `stacked_forward` beside its
    `forward`, stepped by pytorch_optimizer's Lion, tuned through `optbench tune --batch-trials
    3 --workers 2`: validate says its copies take the model's own forward, and every trial's
    epochs.csv is the unbatched tune's to the bit."""
    importable_module(tmp_path, "user_wave_models", USER_WAVE, monkeypatch)
    section = {
        "data": {"dataset": "sklearn_diabetes", "batch_size": 32, "standardize_target": True},
        "model": {"name": "user_wave_models.wave"},
        "loss": "mse",
    }
    own = "the model's own forward"
    tables = _users_lion_tune_tables(tmp_path, "uw", section, [1e-4, 1e-2], own)
    for batched, lone in zip(tables["batched"], tables["lone"], strict=True):
        pd.testing.assert_frame_equal(batched, lone, check_exact=True)
