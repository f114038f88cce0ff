"""The problem suite as a user meets it: listed with exact counts, overrides shown, and compare
ranking by the problem's own metric beside its published figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from optbench.components.catalog import problem_rows
from optbench.core.problems import PROBLEMS, Reference
from optbench.experiment.runner import run_plan
from optbench.experiment.train import SilentObserver
from tests.helpers import invoke, regression_dict, write_config


def test_list_problems_shows_every_problem_with_its_exact_parameter_count() -> None:
    result = invoke("list", "problems")
    assert result.exit_code == 0, result.output
    for info in PROBLEMS:
        assert info.name in result.stdout
        assert f"{info.parameters} parameters" in result.stdout  # all digits, no rounding
    assert len(problem_rows()) == len(PROBLEMS.names()) == 14


def test_validate_shows_the_problem_and_the_keys_the_config_overrides(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "name": "p",
            "problem": "digits_mlp",
            "epochs": 2,
            "optimizer": {"name": "SGD", "lr": 0.1},
        },
    )
    result = invoke("validate", str(config))
    assert result.exit_code == 0, result.output
    assert "problem digits_mlp (v1); your overrides: epochs=2" in result.stdout


def _run(tmp_path: Path, problem: str, **changes) -> None:
    from optbench.core.config import validate_config
    from optbench.experiment.plan import make_plan

    config = {"name": problem, "problem": problem, **changes}
    run_plan(make_plan(validate_config(config)), tmp_path, display=SilentObserver())


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_compare_ranks_by_the_problems_metric_unless_told_otherwise(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    for lr in (0.05, 0.2):
        _run(tmp_path, "digits_mlp", epochs=1, optimizer={"name": "SGD", "lr": lr})
    by_problem = invoke("compare", str(tmp_path), "--format", "csv")
    assert by_problem.exit_code == 0, by_problem.output
    assert "ranking by final_test_accuracy" not in by_problem.stdout  # csv: no title
    frame = by_problem.stdout.splitlines()
    assert frame[0].startswith("rank,")
    table = invoke("compare", str(tmp_path))
    assert "ranking by final_test_accuracy" in table.stdout  # digits_mlp is judged by accuracy
    told = invoke("compare", str(tmp_path), "--metric", "final_test_loss")
    assert "ranking by final_test_loss" in told.stdout


def test_runs_of_no_problem_rank_by_test_loss_and_have_no_references(tmp_path: Path) -> None:
    config = write_config(tmp_path, regression_dict())
    assert invoke("run", str(config), "--results-dir", str(tmp_path / "r")).exit_code == 0
    result = invoke("compare", str(tmp_path / "r"), "--references")
    assert "ranking by final_test_loss" in result.stdout
    assert "they name no problem" in result.stdout


def test_published_figures_are_shown_beside_runs_marked_as_not_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("sklearn")
    import dataclasses

    info = PROBLEMS.get("digits_mlp", "")
    figure = Reference("SGD", "test_accuracy", 0.97, 30, "lr 0.1", "a paper, Table 2")
    monkeypatch.setitem(
        PROBLEMS._records, "digits_mlp", dataclasses.replace(info, references=(figure,))
    )
    _run(tmp_path, "digits_mlp", epochs=1, optimizer={"name": "SGD", "lr": 0.1})
    result = invoke("compare", str(tmp_path), "--references")
    assert result.exit_code == 0, result.output
    assert "published figures (not runs)" in result.stdout
    assert "a paper, Table 2" in result.stdout and "0.97" in result.stdout
