"""The public Python API (`import optbench`): cheap to import, Python values and exceptions in
and out, the numbers of a hand-written torch loop, files that pandas and yaml read back the
same, and the CLI as a thin client that calls exactly these functions."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
import yaml
from torch import nn

import optbench
from optbench.ui.cli import app
from tests.helpers import REPO, cli_runner, regression_dict, write_config
from tests.test_small_trials import DATA, _hand_written_test_losses

OVERRIDES = {"optimizer.lr": 0.1, "epochs": 2}


def _config(**changes: Any) -> dict[str, Any]:
    """The small regression problem (96 training rows: three batches, trained in the driver)."""
    return regression_dict(data=DATA, **changes)


def _assert_same_run(mine: optbench.Run, other: optbench.Run) -> None:
    """Field by field: a Run holds a DataFrame, whose `==` is elementwise."""
    assert (mine.dir, mine.run_id, mine.status) == (other.dir, other.run_id, other.status)
    assert (mine.summary, mine.config) == (other.summary, other.config)
    pd.testing.assert_frame_equal(mine.epochs, other.epochs)


class Recorder:
    """A training observer that writes down what it is told, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def run_started(self, title: str, epochs: int) -> None:
        self.calls.append(("run_started", epochs))

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        self.calls.append(("epoch_started", epoch))

    def batch_finished(self, batch: int, loss: float | None) -> None:
        self.calls.append(("batch_finished", batch))

    def epoch_finished(self, row: dict[str, Any]) -> None:
        self.calls.append(("epoch_finished", row["epoch"]))

    def run_ended(self, status: str) -> None:
        self.calls.append(("run_ended", status))

    def events(self, *names: str) -> list[tuple[str, Any]]:
        return [call for call in self.calls if call[0] in names]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[optbench.Run, Path]:
    """One run of the dict config with dict overrides, and its results folder."""
    results = tmp_path_factory.mktemp("results")
    return optbench.run(_config(), OVERRIDES, results_dir=results), results


def test_import_optbench_loads_neither_torch_nor_pandas() -> None:
    code = (
        "import sys, optbench\n"
        "print(sorted(m for m in ('torch', 'pandas', 'optbench.api') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_run_from_a_dict_reads_back_as_its_files_with_a_hand_written_loops_numbers(
    trained: tuple[optbench.Run, Path],
) -> None:
    run, results = trained
    assert isinstance(run, optbench.Run)
    assert run.dir == results / "tiny" / run.run_id
    assert run.status == "completed"
    assert run.summary == json.loads((run.dir / "summary.json").read_text())
    assert run.config == yaml.safe_load((run.dir / "config.yaml").read_text())
    assert (run.config["optimizer"]["lr"], run.config["epochs"]) == (0.1, 2)
    pd.testing.assert_frame_equal(run.epochs, pd.read_csv(run.dir / "epochs.csv"))
    assert list(run.epochs["epoch"]) == [1, 2]
    expected = _hand_written_test_losses(seed=0, lr=0.1, epochs=2)
    assert list(run.epochs["test_loss"]) == pytest.approx(expected, rel=1e-6, abs=0)


def test_a_finished_run_is_refused_returned_with_resume_and_trained_again_with_force(
    trained: tuple[optbench.Run, Path],
) -> None:
    run, results = trained
    with pytest.raises(optbench.RunExistsError) as refused:
        optbench.run(_config(), OVERRIDES, results_dir=results)
    assert isinstance(refused.value, optbench.ConfigError)
    assert (refused.value.run_dir, refused.value.status) == (run.dir, "completed")

    seen = Recorder()
    resumed = optbench.run(_config(), OVERRIDES, results_dir=results, resume=True, observers=[seen])
    _assert_same_run(resumed, run)
    assert seen.events("epoch_finished") == []  # returned, not trained

    seen = Recorder()
    again = optbench.run(_config(), OVERRIDES, results_dir=results, force=True, observers=[seen])
    assert seen.events("epoch_finished") == [("epoch_finished", 1), ("epoch_finished", 2)]
    assert (again.dir, again.status) == (run.dir, "completed")
    pd.testing.assert_frame_equal(
        again.epochs.drop(columns=["seconds", "eval_seconds"]),
        run.epochs.drop(columns=["seconds", "eval_seconds"]),
    )


def _adam_with_momentum(tmp_path: Path) -> pytest.ExceptionInfo[optbench.ConfigError]:
    with pytest.raises(optbench.ConfigError) as refused:
        optbench.run(
            _config(),
            {"optimizer.name": "Adam", "optimizer.momentum": 0.9},
            results_dir=tmp_path / "results",
        )
    return refused


def test_bad_input_is_a_config_error_naming_the_field_and_writes_nothing(tmp_path: Path) -> None:
    refused = _adam_with_momentum(tmp_path)
    assert "optimizer.momentum" in str(refused.value)
    assert refused.value.field.startswith("optimizer")
    assert list(tmp_path.iterdir()) == []


def test_a_config_error_is_a_value_error(tmp_path: Path) -> None:
    assert isinstance(_adam_with_momentum(tmp_path).value, ValueError)


def test_observers_hear_the_run_in_order_and_progress_draws_a_text_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = Recorder()
    run = optbench.run(_config(), OVERRIDES, results_dir=tmp_path, observers=[seen], progress=True)
    assert seen.events("run_started", "epoch_finished", "run_ended") == [
        ("run_started", 2),
        ("epoch_finished", 1),
        ("epoch_finished", 2),
        ("run_ended", "completed"),
    ]
    assert [call[0] for call in seen.calls[1:5]] == ["epoch_started"] + ["batch_finished"] * 3
    captured = capsys.readouterr()
    assert "2/2" in captured.err and run.status in captured.err  # tqdm's text bar, on stderr
    assert captured.out == ""


def test_a_sweep_returns_its_runs_skips_them_again_and_compares_per_configuration(
    tmp_path: Path,
) -> None:
    lrs, seeds = [0.1, 0.05], [0, 1]
    result = optbench.sweep(
        _config(), grid={"optimizer.lr": lrs}, seeds=seeds, workers=1, results_dir=tmp_path
    )
    assert isinstance(result, optbench.SweepResult)
    runs = list(result)
    assert len(runs) == 4 and result.skipped == []
    assert {r.status for r in runs} == {"completed"}
    points = {(r.config["optimizer"]["lr"], r.config["seed"]) for r in runs}
    assert points == set(itertools.product(lrs, seeds))
    for each in runs:
        _assert_same_run(optbench.load(each.dir), each)
        expected = _hand_written_test_losses(each.config["seed"], each.config["optimizer"]["lr"], 2)
        assert list(each.epochs["test_loss"]) == pytest.approx(expected, rel=1e-6, abs=0)

    again = optbench.sweep(
        _config(), grid={"optimizer.lr": lrs}, seeds=seeds, workers=1, results_dir=tmp_path
    )
    assert sorted(again.skipped) == sorted(r.run_id for r in runs)
    assert again.counts()["skipped"] == 4 and again.counts()["completed"] == 0

    table = optbench.compare(tmp_path / result.name)
    assert isinstance(table, pd.DataFrame)
    assert len(table) == 2  # one row per configuration, the two seeds aggregated
    assert table.to_string().count("0.05") >= 1


def test_validate_gives_the_runs_id_and_params_counts_torchs_parameters(
    trained: tuple[optbench.Run, Path],
) -> None:
    run, _ = trained
    assert optbench.validate(_config(), OVERRIDES).run_id == run.run_id

    config = _config(model={"name": "mlp", "hidden_sizes": [16, 8]})
    frame = optbench.params(config)
    assert isinstance(frame, pd.DataFrame)
    independent = nn.Sequential(
        nn.Flatten(), nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1)
    )
    assert frame["numel"].sum() == sum(p.numel() for p in independent.parameters())
    assert len(frame) == len(list(independent.parameters()))


# --------------------------------------------------------------------------- CLI -> API

COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]


class ReachedTheApi(Exception):
    """Raised by the stubbed API function: the command got that far (a command may turn it
    into an exit status, so the stub also writes the call down)."""


def _calls(config: str, folder: str) -> dict[str, tuple[str, list[str]]]:
    """Every command (and sweep's --dry-run) -> the API function it calls, and its arguments."""
    return {
        "run": ("run", ["run", config]),
        "lr-find": ("lr_find", ["lr-find", config]),
        "validate": ("validate", ["validate", config]),
        "params": ("plan", ["params", config]),
        "sweep": ("sweep", ["sweep", config, "--seeds", "0,1"]),
        "sweep --dry-run": ("sweep_points", ["sweep", config, "--dry-run"]),
        "tune": ("tune", ["tune", config]),
        "benchmark": ("benchmark", ["benchmark", config]),
        "compare": ("comparison", ["compare", folder]),
        "report": ("report", ["report", folder, "--output", f"{folder}/r.html"]),
        "show": ("load", ["show", folder]),
        "sample": ("sample", ["sample", folder]),
        "list": ("catalog", ["list"]),
    }


CASES = [*sorted(COMMANDS), "sweep --dry-run"]


@pytest.mark.parametrize("command", CASES)
def test_every_command_calls_its_api_function(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optbench.api

    config = write_config(tmp_path, _config())
    calls = _calls(str(config), str(tmp_path))
    assert command in calls, f"`optbench {command}` has no API function in this test"
    function, args = calls[command]
    assert callable(getattr(optbench.api, function))

    reached: list[str] = []

    def stub(*args: Any, **kwargs: Any) -> Any:
        reached.append(function)
        raise ReachedTheApi(function)

    monkeypatch.setattr(optbench.api, function, stub)
    monkeypatch.setattr(optbench, function, stub, raising=False)
    result = cli_runner().invoke(app, args)
    assert reached == [function], (result.output, result.exception)
    assert result.exit_code != 0  # the sentinel stopped it, whatever the command made of it
    assert not any((tmp_path / name).exists() for name in ("results", "r.html"))


def test_the_command_list_is_the_one_this_test_maps() -> None:
    assert set(COMMANDS) == set(_calls("c", "d")) - {"sweep --dry-run"}


def test_a_sweep_whose_runs_failed_says_so_in_a_warning_and_lists_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import importable_module
    from tests.test_sweep import FAILING_OPTIMIZER

    module = "optbench_test_api_failing_optimizer"
    importable_module(tmp_path, module, FAILING_OPTIMIZER, monkeypatch)
    grid = {"optimizer.name": ["SGD", f"{module}.FailsOnThirdStep"]}
    with pytest.warns(optbench.FailedRunsWarning, match=r"sweep tiny: 1 failed: ") as warned:
        result = optbench.sweep(_config(), grid, workers=1, results_dir=tmp_path / "r")
    (failing,) = [r for r in result if r.config["optimizer"]["name"].endswith("FailsOnThirdStep")]
    assert result.failed == [failing.run_id] and failing.status == "failed"
    assert failing.run_id in str(warned[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all finished now: nothing to warn about
        assert optbench.sweep(_config(), workers=1, results_dir=tmp_path / "r").failed == []


def _fails_on_third_step() -> type:
    """A user's optimizer by value, as a notebook cell defines it (its module __main__, no
    import path): SGD that raises on its third step (the first of a run's second batch of
    three, _config's data)."""
    from tests.test_sweep import FAILING_OPTIMIZER

    cell: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(FAILING_OPTIMIZER, "<notebook cell>", "exec"), cell)
    return cell["FailsOnThirdStep"]


def test_a_tune_whose_trials_failed_says_so_in_a_warning_and_lists_them(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    space = {"optimizer.lr": {"choice": [0.01, 0.1]}}
    config = _config(
        epochs=1,
        optimizer={"name": _fails_on_third_step()},
        tune={"space": space, "trials": 2, "sampler": "random", "seeds": [0]},
    )
    with pytest.warns(optbench.FailedRunsWarning, match=r"tune tiny: 3 failed: ") as warned:
        result = optbench.tune(config, workers=1, results_dir=tmp_path)
    (key,) = result.best
    trials = TuneFileRuns(tmp_path / "tiny" / "tune.json").trial_run_ids(key)
    assert len(trials) == 2 and result.best[key] is None
    assert result.failed == [f"{key} trial {run_id}" for run_id in trials] + [
        f"{key}: no completed trial"
    ]
    for line in result.failed:
        assert line in str(warned[0].message)
    for run_id in trials:  # each run says why, as written
        summary = json.loads((tmp_path / "tiny" / run_id / "summary.json").read_text())
        assert summary["status"] == "failed" and "step 3 exploded" in summary["error"]


class TuneFileRuns:
    """tune.json read with json, not with optbench's own reader."""

    def __init__(self, path: Path) -> None:
        self.document = json.loads(path.read_text())

    def trial_run_ids(self, key: str) -> list[str]:
        return self.document["optimizers"][key]["trial_run_ids"]


def test_a_benchmark_draws_a_bar_and_names_its_failed_pairs_in_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("optuna")
    suite = {
        "name": "tiny",
        "problems": ["rosenbrock"],
        "set": {"epochs": 1, "device": "cpu"},
        "optimizers": {"SGD": {"name": "SGD"}},
        "tune": {
            "space": {"optimizer.lr": {"log_uniform": [1.0e-3, 1.0e-2]}},
            **{"trials": 1, "sampler": "random", "pruner": "none", "seeds": [0]},
        },
        "studies": 1,
        "targets": {"rosenbrock": {"distance_to_optimum": 1.9}},
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    with pytest.warns(optbench.FailedRunsWarning) as warned:
        result = optbench.benchmark(
            path, [_fails_on_third_step()], workers=1, results_dir=tmp_path / "r", progress=True
        )
    assert result.failed == ["tiny.rosenbrock.FailsOnThirdStep"]
    assert str(warned[0].message) == "benchmark tiny: 1 failed: tiny.rosenbrock.FailsOnThirdStep"
    (trial,) = result.document["pairs"]["FailsOnThirdStep"]["rosenbrock"]["trials"]
    assert trial["status"] == "failed" and trial["steps_to_target"] is None
    assert result.document["scores"]["steps"]["FailsOnThirdStep"] == 0.0  # never reached
    captured = capsys.readouterr()
    assert "benchmark (pairs 2/2): 100%" in captured.err and captured.out == ""  # tqdm's bar


_SWEEP_SCRIPT = """
import optbench

CONFIG, GRID = {config!r}, {{"optimizer.lr": [0.1, 0.05]}}
{guard}result = optbench.sweep(CONFIG, GRID, workers=2, results_dir={results!r})
{guard}print("failed:", result.failed)
"""


@pytest.mark.slow  # starts Python processes
def test_a_script_without_the_main_guard_is_refused_before_any_worker_starts(
    tmp_path: Path,
) -> None:
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = tmp_path / "unguarded.py"
    script.write_text(_SWEEP_SCRIPT.format(config=_config(), guard="", results=str(results)))
    ran = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert ran.returncode == 1
    last = ran.stderr.strip().splitlines()[-1]
    assert last.startswith("optbench.core.errors.ConfigError: workers: ") and (
        "unguarded.py, line 5" in last and 'if __name__ == "__main__":' in last
    ), ran.stderr
    assert "RuntimeError" not in ran.stderr and not results.exists()  # no worker, no file

    guarded = tmp_path / "guarded.py"
    text = _SWEEP_SCRIPT.format(config=_config(), guard="    ", results=str(results))
    guarded.write_text(text.replace("\n    result", '\nif __name__ == "__main__":\n    result', 1))
    ran = subprocess.run(
        [sys.executable, str(guarded)], capture_output=True, text=True, env=env, timeout=300
    )
    assert ran.returncode == 0 and "failed: []" in ran.stdout, ran.stderr


@pytest.mark.slow  # starts Python processes
@pytest.mark.parametrize(
    "call",
    [
        "optbench.tune({config!r}, workers=2, results_dir={results!r})",
        "optbench.benchmark({suite!r}, workers=2, results_dir={results!r})",
    ],
    ids=["tune", "benchmark"],
)
def test_a_tune_or_benchmark_without_the_main_guard_is_refused_too(
    tmp_path: Path, call: str
) -> None:
    results = tmp_path / "results"
    space = {"optimizer.lr": {"choice": [0.1]}}
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        yaml.safe_dump(
            {"name": "s", "problems": ["rosenbrock"], "optimizers": {"SGD": "SGD"}},
        )
        + yaml.safe_dump({"tune": {"space": space}})
    )
    tuned = _config(tune={"space": space, "trials": 1})
    script = tmp_path / "unguarded.py"
    line = call.format(config=tuned, suite=str(suite), results=str(results))
    script.write_text(f"import optbench\n\n{line}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ran = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    function = call.split("(")[0]
    last = ran.stderr.strip().splitlines()[-1]
    assert ran.returncode == 1 and f"{function}() at its top level (unguarded.py, line 3)" in last
    assert 'if __name__ == "__main__":' in last and not results.exists(), ran.stderr


def test_a_sweep_with_progress_draws_a_bar_and_its_frame_is_one_row_per_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = {"optimizer.lr": [0.1, 0.05]}
    result = optbench.sweep(_config(), grid, workers=1, results_dir=tmp_path, progress=True)
    captured = capsys.readouterr()
    assert "2/2" in captured.err and captured.out == ""  # tqdm's text bar, on stderr
    frame = result.frame()
    assert list(frame["run_id"]) == [r.run_id for r in result]
    for row, each in zip(frame.to_dict("records"), result, strict=True):
        written = pd.read_csv(each.dir / "epochs.csv")
        assert row["final_test_loss"] == written["test_loss"].iloc[-1]
        assert row["config.optimizer.lr"] == each.config["optimizer"]["lr"]


def test_a_tunes_frame_is_the_studys_best_trial_as_optuna_reads_it_and_progress_draws_a_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    optuna = pytest.importorskip("optuna")
    config = _config(
        epochs=1,
        tune={
            "space": {"optimizer.lr": {"choice": [0.01, 0.1]}},
            "trials": 2,
            "sampler": "random",
            "seeds": [0],
        },
    )
    result = optbench.tune(config, workers=1, results_dir=tmp_path, progress=True)
    captured = capsys.readouterr()
    assert "100%" in captured.err and "3/3" in captured.err and captured.out == ""  # tqdm's bar
    (row,) = result.frame().to_dict("records")
    from optuna.storages.journal import JournalFileBackend

    journal = optuna.storages.JournalStorage(JournalFileBackend(result.storage))
    study = optuna.load_study(study_name=result.studies[row["optimizer"]], storage=journal)
    assert row["best_value"] == study.best_value
    assert row["optimizer.lr"] == study.best_params["optimizer.lr"]
    assert row["completed"] == 2 and row["failed"] == 0 and result.failed == []


_NET_MODULE = """
from torch import nn


class TinyNet(nn.Sequential):
    def __init__(self, in_features: int, num_outputs: int) -> None:
        super().__init__(nn.Linear(in_features, 4), nn.ReLU(), nn.Linear(4, num_outputs))
"""


def test_components_given_as_python_objects_are_the_runs_their_import_paths_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    import torch

    (tmp_path / "api_objects_net.py").write_text(_NET_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("api_objects_net")
    by_object = _config(
        model={"name": module.TinyNet},
        loss=torch.nn.functional.mse_loss,
        optimizer={"name": torch.optim.Adam, "lr": 0.01},
    )
    by_path = _config(
        model={"name": "api_objects_net.TinyNet"},
        loss="torch.nn.functional.mse_loss",
        optimizer={"name": "torch.optim.Adam", "lr": 0.01},
    )
    assert optbench.plan(by_object).run_id == optbench.plan(by_path).run_id
    run = optbench.run(by_object, {"epochs": 1}, results_dir=tmp_path / "r")
    assert run.config["model"]["name"] == "api_objects_net.TinyNet"  # what a YAML file holds
    grid = {"optimizer.name": [torch.optim.SGD, torch.optim.Adam]}
    points = optbench.sweep_points(by_path, grid, results_dir=tmp_path / "r")
    assert list(points["point"]) == [
        "optimizer.name=torch.optim.sgd.SGD",
        "optimizer.name=torch.optim.adam.Adam",
    ]

    class Local(torch.nn.Linear):  # no import path reaches it: named by value (test_byvalue)
        pass

    named = optbench.plan(_config(model={"name": Local})).config.model.name
    assert named.startswith("Local@object:")
