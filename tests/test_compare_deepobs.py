"""DeepOBS's metrics in `optbench compare` (final and best performance, speed, tuneability, the
tuned view), checked on run folders written here against numpy on the same numbers and
against DeepOBS's own speed formula (deepobs/analyzer/analyze.py, SettingAnalyzer) transcribed."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import optbench.analysis.figures as figure_writer
from optbench.analysis.compare import (
    best_of_curve,
    compare_runs,
    mean_curve,
    tuneability_frame,
    tuned_frame,
)
from tests.helpers import assert_one_error_line, invoke
from tests.test_compare import _resolved, _write_run

EPOCHS = 4
# lr: per seed, test_accuracy at epochs 1..4. lr 0.1's seeds peak at different epochs, so the
# best of its mean curve (0.75) is not the mean of its seeds' bests (0.9); lr 0.01 never
# reaches the target 0.8.
CURVES = {
    0.1: [[0.5, 0.9, 0.6, 0.7], [0.5, 0.6, 0.9, 0.7]],
    0.01: [[0.3, 0.4, 0.5, 0.6], [0.4, 0.5, 0.6, 0.7]],
}
TARGET = 0.8


def _deepobs_speed(curves: list[list[float]], conv_perf: float) -> float:
    """DeepOBS's speed, as its SettingAnalyzer computes it for test_accuracies: its curves start
    with an evaluation before training (epoch 0; here below any target)."""
    perf = np.array([[0.0, *curve] for curve in curves])
    return float(
        np.mean(
            np.argmax(perf >= conv_perf, axis=1)
            + np.invert(np.max(perf >= conv_perf, axis=1)) * perf.shape[1]
        )
    )


@pytest.fixture
def lr_grid(tmp_path: Path) -> Path:
    for lr, seeds in CURVES.items():
        for seed, accuracy in enumerate(seeds):
            config = _resolved({"name": "SGD", "lr": lr}, seed, epochs=EPOCHS)
            losses = [1 - a for a in accuracy]
            _write_run(tmp_path, config, losses, accuracy, [1.0] * EPOCHS)
    return tmp_path


def test_best_of_the_mean_curve_and_speed_as_computed_by_hand(lr_grid: Path) -> None:
    comparison = compare_runs([lr_grid], "final_test_accuracy", f"test_accuracy={TARGET}")
    table = comparison.table.set_index("optimizer.lr")
    assert table.attrs["performance"] == "test_accuracy"
    for lr, seeds in CURVES.items():
        curves = np.array(seeds)
        mean = curves.mean(axis=0)
        row = table.loc[lr]
        assert row["final_test_accuracy_mean"] == pytest.approx(mean[-1])
        assert row["final_test_accuracy_std"] == pytest.approx(curves[:, -1].std(ddof=1))
        assert row["mean_curve_best"] == pytest.approx(mean.max())
        assert row["mean_curve_best_epoch"] == int(mean.argmax()) + 1
        assert row["speed_mean"] == pytest.approx(_deepobs_speed(seeds, TARGET))
    # the best of the mean curve is not the mean of each seed's best
    assert table.loc[0.1, "mean_curve_best"] == pytest.approx(0.75)
    assert table.loc[0.1, "best_test_accuracy_mean"] == pytest.approx(0.9)
    assert table.loc[0.1, "mean_curve_best_epoch"] == 2
    # seeds reach 0.8 at epochs 2 and 3; lr 0.01 never does: both seeds count 4 + 1
    assert table.loc[0.1, "speed_mean"] == pytest.approx(2.5)
    assert table.loc[0.01, "speed_mean"] == EPOCHS + 1
    assert table.loc[0.01, "reached_target"] == 0


def test_mean_curve_and_best_of_curve_on_their_own() -> None:
    frames = [
        pd.DataFrame({"epoch": [1, 2, 3], "test_loss": [0.9, 0.2, 0.5]}),
        pd.DataFrame({"epoch": [1, 2, 3], "test_loss": [0.5, 0.6, 0.1]}),
    ]
    curve = mean_curve(frames, "test_loss")
    assert curve.tolist() == pytest.approx([0.7, 0.4, 0.3])
    assert best_of_curve(curve, higher=False) == pytest.approx((0.3, 3))
    assert best_of_curve(curve, higher=True) == pytest.approx((0.7, 1))
    assert np.isnan(best_of_curve(pd.Series(dtype=float), True)[0])


def test_runs_that_stopped_early_stay_out_of_speed_and_the_mean_curve(tmp_path: Path) -> None:
    config = _resolved({"name": "SGD", "lr": 0.1}, 0, epochs=EPOCHS)
    _write_run(tmp_path, config, [0.5] * 4, [0.5, 0.6, 0.7, 0.85], [1.0] * 4)
    stopped = _resolved({"name": "SGD", "lr": 0.1}, 1, epochs=EPOCHS)
    _write_run(tmp_path, stopped, [0.1], [0.99], [1.0], "diverged")
    (row,) = compare_runs([tmp_path], "final_test_accuracy", "test_accuracy=0.8").table.to_dict(
        "records"
    )
    assert row["n"] == 2 and row["completed"] == 1
    assert row["mean_curve_best"] == pytest.approx(0.85)  # not 0.99 from the diverged seed
    assert row["speed_mean"] == 4


def test_compare_prints_and_exports_the_new_columns(lr_grid: Path) -> None:
    args = ["compare", str(lr_grid), "--metric", "final_test_accuracy", "--target"]
    csv = invoke(*args, f"test_accuracy={TARGET}", "--format", "csv")
    assert csv.exit_code == 0, csv.output
    frame = pd.read_csv(io.StringIO(csv.stdout)).set_index("optimizer.lr")
    assert frame.loc[0.1, "mean_curve_best_test_accuracy"] == pytest.approx(0.75)
    assert frame.loc[0.1, "mean_curve_best_epoch"] == 2
    assert frame.loc[0.1, "speed_mean"] == pytest.approx(2.5)
    assert frame.loc[0.01, "speed_mean"] == pytest.approx(5)

    table = invoke(*args, f"test_accuracy={TARGET}")
    assert table.exit_code == 0, table.output
    out = table.stdout
    for header in ("final test acc", "best of mean test_accuracy (epoch)", "speed (epochs)"):
        assert all(word in out for word in header.split()), header  # headers wrap
    line = next(line for line in out.splitlines() if "0.7000 ± 0.0000" in line)
    assert "0.7500 (2)" in line and "2.5 ± 0.7" in line


def _problem_runs(folder: Path) -> Path:
    """Runs whose config.yaml says they are of fmnist_2c2d (DeepOBS's convergence performance
    0.9186 is its target)."""
    for seed, accuracy in enumerate([[0.85, 0.92, 0.93], [0.80, 0.90, 0.93]]):
        run = _write_run(folder, _resolved(ADAM, seed), [0.4] * 3, accuracy, [1.0] * 3)
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["problem"] = {"name": "fmnist_2c2d", "version": 1, "overrides": {}}
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


ADAM = {"name": "Adam", "lr": 0.001}


def test_a_problem_with_a_target_gives_speed_without_target(tmp_path: Path) -> None:
    comparison = compare_runs([_problem_runs(tmp_path)])
    assert comparison.target == ("test_accuracy", 0.9186)
    assert any("fmnist_2c2d's" in note for note in comparison.notes)
    (row,) = comparison.table.to_dict("records")
    assert row["speed_mean"] == pytest.approx((2 + 3) / 2)  # 0.92 at epoch 2, 0.93 at 3
    # --target wins over the problem's
    again = compare_runs([tmp_path], target="test_accuracy=0.5")
    assert again.target == ("test_accuracy", 0.5) and again.table["speed_mean"].iloc[0] == 1


# --------------------------------------------------------------------------- a tune's folder

SEEDS = [0, 1, 2]
# (optimizer, lr, seed) -> final test accuracy at epochs 1..3, as `optbench tune` would leave:
# trials with seed 7, then the best trial's configuration rerun with SEEDS.
TRIALS = {
    ("SGD", 0.1, 7): [0.5, 0.6, 0.70],
    ("SGD", 0.01, 7): [0.6, 0.7, 0.80],
    ("SGD", 0.001, 7): [0.3, 0.4, 0.50],
    ("Adam", 0.01, 7): [0.7, 0.8, 0.85],
    ("Adam", 0.001, 7): [0.6, 0.7, 0.75],
}
RERUNS = {
    ("SGD", 0.01, 0): [0.6, 0.7, 0.78],
    ("SGD", 0.01, 1): [0.6, 0.8, 0.82],
    ("SGD", 0.01, 2): [0.5, 0.7, 0.80],
    ("Adam", 0.01, 0): [0.7, 0.8, 0.86],
    ("Adam", 0.01, 1): [0.8, 0.9, 0.88],
    ("Adam", 0.01, 2): [0.7, 0.8, 0.84],
}


@pytest.fixture
def tune_folder(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    ids: dict[tuple[str, float, int], str] = {}
    for key, accuracy in {**TRIALS, **RERUNS}.items():
        name, lr, seed = key
        config = _resolved({"name": name, "lr": lr}, seed, name="tuned")
        ids[key] = _write_run(results, config, [1 - a for a in accuracy], accuracy, [2.0] * 3).name
    pruned = _resolved({"name": "SGD", "lr": 1.0}, 7, name="tuned")
    ids[("SGD", 1.0, 7)] = _write_run(results, pruned, [0.9], [0.2], [2.0], "pruned").name
    sgd_trials = [k for k in ids if k[0] == "SGD" and k[2] == 7]
    adam_trials = [k for k in ids if k[0] == "Adam" and k[2] == 7]
    tune = {
        "format": 1,
        "name": "tuned",
        "metric": "test_accuracy",
        "direction": "maximize",
        "seeds": SEEDS,
        "storage": "sqlite:///tune.db",
        "optimizers": {
            "SGD": {
                "study": "tuned-SGD",
                "space": {"optimizer.lr": {"log_uniform": [1e-3, 1.0]}},
                "trials": 4,
                "completed": 3,
                "pruned": 1,
                "failed": 0,
                "epochs": 10,
                "seconds": 20.5,
                "best": {
                    "run_id": ids[("SGD", 0.01, 7)],
                    "params": {"optimizer.lr": 0.01},
                    "value": 0.8,
                },
                "trial_run_ids": [ids[k] for k in sgd_trials],
                "seed_run_ids": [ids[("SGD", 0.01, s)] for s in SEEDS],
            },
            "Adam": {
                "study": "tuned-Adam",
                "space": {"optimizer.lr": {"log_uniform": [1e-3, 1.0]}},
                "trials": 2,
                "completed": 2,
                "pruned": 0,
                "failed": 0,
                "epochs": 6,
                "seconds": 12.0,
                "best": {
                    "run_id": ids[("Adam", 0.01, 7)],
                    "params": {"optimizer.lr": 0.01},
                    "value": 0.85,
                },
                "trial_run_ids": [ids[k] for k in adam_trials],
                "seed_run_ids": [ids[("Adam", 0.01, s)] for s in SEEDS],
            },
        },
    }
    (results / "tuned" / "tune.json").write_text(json.dumps(tune, indent=2))
    return results


def test_the_tuned_view_ranks_optimizers_by_their_seed_reruns(tune_folder: Path) -> None:
    comparison = compare_runs([tune_folder], "final_test_accuracy", "test_accuracy=0.8")
    assert comparison.tune is not None
    tuned = tuned_frame(comparison, comparison.tune)
    assert tuned["optimizer"].tolist() == ["Adam", "SGD"]  # 0.86 before 0.80
    rows = tuned.set_index("optimizer")
    for name in ("SGD", "Adam"):
        finals = np.array([RERUNS[(name, 0.01, s)][-1] for s in SEEDS])  # not the seed-7 trial
        curves = np.array([RERUNS[(name, 0.01, s)] for s in SEEDS])
        row = rows.loc[name]
        assert row["n"] == 3 and row["lr"] == 0.01
        assert row["final_mean"] == pytest.approx(finals.mean())
        assert row["final_std"] == pytest.approx(finals.std(ddof=1))
        assert row["mean_curve_best"] == pytest.approx(curves.mean(axis=0).max())
        assert row["speed_mean"] == pytest.approx(_deepobs_speed(curves.tolist(), 0.8))
    budget = ["trials", "trials_pruned", "budget_epochs", "budget_seconds"]
    assert rows.loc["SGD", budget].tolist() == [4, 1, 10, 20.5]  # from tune.json
    # the ordinary ranking still has the seed-7 trial in the same configuration: 4 runs
    ranking = comparison.table.set_index(["optimizer.name", "optimizer.lr"])
    assert ranking.loc[("SGD", 0.01), "n"] == 4


def test_tuned_on_the_command_line(tune_folder: Path) -> None:
    csv = invoke("compare", str(tune_folder), "--tuned", "--format", "csv")
    assert csv.exit_code == 0, csv.output
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert frame["optimizer"].tolist() == ["Adam", "SGD"]
    assert frame["rank"].tolist() == [1, 2]
    assert frame["lr"].tolist() == [0.01, 0.01]
    assert frame["trials"].tolist() == [2, 4]
    assert frame["budget_seconds"].tolist() == [12.0, 20.5]
    assert frame["final_test_loss_mean"].tolist() == pytest.approx(
        [1 - np.mean([0.86, 0.88, 0.84]), 1 - np.mean([0.78, 0.82, 0.80])]
    )

    table = invoke("compare", str(tune_folder), "--tuned", "--metric", "final_test_accuracy")
    assert table.exit_code == 0, table.output
    out = table.stdout
    assert "optimizers by final test_accuracy" in out and "tune.json" in out
    adam = next(line for line in out.splitlines() if "Adam" in line)
    assert "0.8600 ± 0.0200" in adam and "2 (0, 0)" in adam and "12.0" in adam

    plain = invoke("compare", str(tune_folder))
    assert plain.exit_code == 0, plain.output
    assert "--tuned ranks its optimizers" in plain.stdout


def test_tuned_without_a_tune_json_takes_each_optimizers_best_configuration(
    lr_grid: Path,
) -> None:
    result = invoke("compare", str(lr_grid), "--tuned", "--metric", "final_test_accuracy")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if "SGD" in line)
    assert " 0.1 " in line and "0.7000 ± 0.0000" in line and " 2 " in line  # 2 configurations


# --------------------------------------------------------------------------- tuneability


def _capture_figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures analysis/figures.py writes, looked at before they are saved and closed."""
    figures: list[Any] = []
    save = figure_writer._save

    def keep(figure: Any, path: Any, option: str = "--plot") -> None:
        figures.append(
            [
                (
                    axes.get_title(),
                    {line.get_label(): line.get_xydata().tolist() for line in axes.get_lines()},
                )
                for axes in figure.axes
            ]
        )
        save(figure, path, option)

    monkeypatch.setattr(figure_writer, "_save", keep)
    return figures


def test_tuneability_frame_and_plot(
    tune_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    comparison = compare_runs([tune_folder], "final_test_accuracy")
    frame = tuneability_frame(comparison, comparison.tune)
    sgd = frame[frame["optimizer"] == "SGD"].set_index("lr")
    assert sorted(sgd.index) == [0.001, 0.01, 0.1, 1.0]
    assert np.isnan(sgd.loc[1.0, "final_mean"])  # pruned: no final value
    # lr 0.01: the seed-7 trial and the three reruns, one configuration
    assert sgd.loc[0.01, "final_mean"] == pytest.approx(np.mean([0.80, 0.78, 0.82, 0.80]))
    chosen = frame.loc[frame["chosen"], ["optimizer", "lr"]].itertuples(index=False)
    assert sorted(map(tuple, chosen)) == [("Adam", 0.01), ("SGD", 0.01)]  # tune.json's best

    figures = _capture_figures(monkeypatch)
    png = tmp_path / "tuneability.png"
    metric = ["--metric", "final_test_accuracy"]
    result = invoke("compare", str(tune_folder), *metric, "--tuneability", str(png))
    assert result.exit_code == 0, result.output
    assert f"tuneability plot written to {png}" in result.stdout
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 300
    (panels,) = figures
    titles = [title for title, _ in panels]
    assert len(panels) == 2 and set(titles) == {"SGD (1 without a final value)", "Adam"}
    sgd_lines = dict(panels)["SGD (1 without a final value)"]
    points = sgd_lines["configurations"]  # by lr
    assert [x for x, _ in points] == [0.001, 0.01, 0.1]
    assert [y for _, y in points] == pytest.approx([0.5, np.mean([0.80, 0.78, 0.82, 0.80]), 0.7])
    assert sgd_lines["chosen 0.01"] == [[0.01, pytest.approx(0.8)]]
    assert dict(panels)["Adam"]["configurations"] == [
        [0.001, 0.75],
        [0.01, pytest.approx(np.mean([0.85, 0.86, 0.88, 0.84]))],
    ]


def test_a_bad_tuneability_destination_is_one_error_line(lr_grid: Path, tmp_path: Path) -> None:
    result = invoke("compare", str(lr_grid), "--tuneability", str(tmp_path / "x.txt"))
    assert_one_error_line(result, "--tuneability", "must end in the image format")


@pytest.mark.slow
def test_the_deepobs_views_do_not_import_torch(tune_folder: Path, tmp_path: Path) -> None:
    png = tmp_path / "t.png"
    script = (
        "import sys\n"
        "from optbench.ui.cli import app\n"
        f"app(['compare', {str(tune_folder)!r}, '--tuned', '--tuneability', {str(png)!r}],"
        " standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert "optimizers by final" in completed.stdout and png.is_file()
