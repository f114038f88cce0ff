"""The command line end to end: run, validate, params, list; files on disk; exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from optbench.core.metrics import EPOCH_COLUMNS, OPTIONAL_COLUMNS, written_columns
from optbench.ui.cli import app
from tests.helpers import REPO, cli_runner, regression_dict, write_config

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def _only_run_dir(results: Path, name: str = "tiny") -> Path:
    (run_dir,) = (results / name).iterdir()
    return run_dir


def test_run_writes_config_epochs_and_summary(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict())
    results = tmp_path / "results"
    result = _run("run", str(config), "--results-dir", str(results), "--set", "epochs=3")
    assert result.exit_code == 0, result.output
    run_dir = _only_run_dir(results)
    assert f"completed: results in {run_dir}" in result.output

    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert list(epochs.columns) == written_columns([])
    assert epochs["epoch"].tolist() == [1, 2, 3]
    assert epochs["train_loss"].is_monotonic_decreasing

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_completed"] == 3
    assert summary["final"]["test_loss"] == pytest.approx(epochs["test_loss"].iloc[-1])
    assert summary["best"]["test_loss"] == pytest.approx(epochs["test_loss"].min())
    assert summary["seed"] == 0 and summary["device"] == "cpu"
    assert {"torch", "optbench"} <= summary["versions"].keys()

    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["epochs"] == 3  # the override is in the resolved config
    assert resolved["optimizer"]["momentum"] == 0  # defaults are filled in
    assert resolved["data"]["normalize"] is None


def test_run_id_is_stable_and_a_finished_run_needs_force(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict())
    results = tmp_path / "results"
    assert _run("run", str(config), "--results-dir", str(results)).exit_code == 0
    run_dir = _only_run_dir(results)
    before = (run_dir / "epochs.csv").read_text()

    again = _run("run", str(config), "--results-dir", str(results))
    assert again.exit_code == 2
    assert "already finished" in again.output and str(run_dir) in again.output
    assert "--force" in again.output
    assert (run_dir / "epochs.csv").read_text() == before

    forced = _run("run", str(config), "--results-dir", str(results), "--force")
    assert forced.exit_code == 0
    assert _only_run_dir(results) == run_dir

    other = _run("run", str(config), "--results-dir", str(results), "--set", "seed=1")
    assert other.exit_code == 0
    assert len(list((results / "tiny").iterdir())) == 2


def test_run_id_ignores_where_the_data_lives(tmp_path: Path) -> None:
    from optbench.core.config import validate_config
    from optbench.experiment.plan import make_plan

    ids = {
        make_plan(
            validate_config(regression_dict(data={**regression_dict()["data"], "root": r}))
        ).run_id
        for r in ("data", "/elsewhere")
    }
    assert len(ids) == 1


def test_diverging_run_is_recorded_and_keeps_its_table(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict(optimizer={"name": "SGD", "lr": 10.0}))
    results = tmp_path / "results"
    result = _run("run", str(config), "--results-dir", str(results), "--set", "epochs=20")
    assert result.exit_code == 1
    assert "diverged at epoch" in result.output
    run_dir = _only_run_dir(results)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged"
    where = summary["diverged_at"]
    assert where["epoch"] >= 1 and where["step"] >= 1
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert len(epochs) == where["epoch"] - 1 == summary["epochs_completed"]


def test_validate_and_params(tmp_path: Path) -> None:
    config = REPO / "configs" / "param_groups.yaml"
    result = _run("validate", str(config))
    assert result.exit_code == 0 and "valid" in result.output

    result = _run("params", str(config))
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if "│ " in line}
    assert "1 (fc3.*)" in lines["fc3.bias"] and "lr=0.001" in lines["fc3.bias"]
    assert "2 (*.bias)" in lines["fc1.bias"] and "weight_decay=0.0" in lines["fc1.bias"]
    assert "0 (default)" in lines["fc1.weight"]
    assert "44,426 trainable parameters in 3 group(s)" in result.output


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("optimizers", ["SGD", "LBFGS", "momentum=0", "betas=[0.9, 0.999]"]),
        ("schedulers", ["StepLR", "step_size=(required)", "ReduceLROnPlateau"]),
        ("models", ["cifar_cnn", "mlp", "linear", "dropout=0.0"]),
        ("datasets", ["cifar10", "fashion_mnist", "mnist", "synthetic_regression", "3x32x32"]),
        ("losses", ["cross_entropy", "mse"]),
    ],
)
def test_list(kind: str, expected: list[str]) -> None:
    result = runner.invoke(app, ["list", kind], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for text in expected:
        assert text in result.output


@pytest.mark.parametrize("kind", ["problems", "optimizers", "datasets"])
def test_every_command_prints_whole_tables_off_a_terminal_at_any_width(kind: str) -> None:
    """A log or a pipe has no width to fit: the same text at 40 columns as at 250."""
    narrow = runner.invoke(app, ["list", kind], env={"COLUMNS": "40"})
    wide = runner.invoke(app, ["list", kind], env={"COLUMNS": "250"})
    assert narrow.exit_code == wide.exit_code == 0
    assert "…" not in narrow.output and narrow.output == wide.output


@pytest.mark.slow
def test_python_dash_m_and_plain_output_when_not_a_terminal(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict())
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "optbench",
            "run",
            str(config),
            "--results-dir",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    # every column but the optional ones (a distance to an optimum, an effective lr), which a
    # regression with SGD has not got
    assert lines[1].split() == [c for c in EPOCH_COLUMNS if c not in OPTIONAL_COLUMNS]
    assert lines[2].split()[0] == "1" and lines[3].split()[0] == "2"
    assert "\x1b[" not in completed.stdout  # no terminal control codes in a pipe


def test_the_command_list_shows_each_description_whole_not_broken_mid_sentence() -> None:
    import inspect as _inspect

    import typer

    result = cli_runner().invoke(app, ["--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for command in typer.main.get_command(app).commands.values():
        first = (_inspect.getdoc(command.callback) or "").split("\n\n")[0]
        assert " ".join(first.split()) in result.output, command.name  # one line at 400 columns


@pytest.mark.parametrize("command", ["run", "sweep", "compare"])
def test_help_shows_flags_without_a_value_and_arguments_as_click_names_them(command: str) -> None:
    import typer

    result = cli_runner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    # Click's own spelling of the command's arguments: CONFIG, PATHS...
    command_object = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    arguments = [p for p in command_object.params if p.param_type_name == "argument"]
    for argument in arguments:
        name = str(argument.name).upper() + ("..." if argument.nargs != 1 else "")
        assert name in usage.split(), usage
    assert "{" not in usage and "<bool>" not in result.output
    flags = [line for line in result.output.splitlines() if "--help" in line]
    assert flags and flags[0].split("--help")[1].split()[:3] == ["Show", "this", "message"]
