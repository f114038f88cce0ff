"""DeepOBS's quadratic_deep and 2-D problems: definitions against DeepOBS's numbers, the
distance_to_optimum column, the 2-D path file (exact across --resume) and the path plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from rich.console import Console

from optbench.analysis.compare import compare_runs, two_d_paths
from optbench.components.twod import FUNCTIONS
from optbench.core.config import validate_config
from optbench.core.metrics import RANKING_METRICS, written_columns
from optbench.core.problems import PROBLEMS
from optbench.experiment.checkpoint import CheckpointFile
from optbench.experiment.plan import make_plan
from optbench.experiment.runner import run_plan
from optbench.experiment.train import SilentObserver, train
from optbench.storage.results import RunDir
from optbench.ui.reports import print_comparison
from tests.helpers import StopAt, regression_dict

TWO_D = ("rosenbrock", "beale", "branin")

# DeepOBS's starting points, `starting_point = [...]` in
# deepobs/tensorflow/testproblems/two_d_rosenbrock.py, two_d_beale.py and two_d_branin.py.
DEEPOBS_START = {"rosenbrock": (-0.5, 1.5), "beale": (-4.5, 4.5), "branin": (2.5, 12.5)}
# The deterministic functions' global minima: Rosenbrock (1, 1), Beale (3, 0.5), and Branin's
# three from https://www.sfu.ca/~ssurjano/branin.html (the page DeepOBS's docstring cites),
# each with its value there (Branin 0.397887).
KNOWN_MINIMA = {
    "rosenbrock": (((1.0, 1.0),), 0.0),
    "beale": (((3.0, 0.5),), 0.0),
    "branin": (((-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)), 0.397887),
}


def _plan(problem: str, epochs: int = 1, optimizer: dict[str, Any] | None = None) -> Any:
    config = {
        "name": problem,
        "problem": problem,
        "device": "cpu",
        "epochs": epochs,
        "optimizer": optimizer or {"name": "Adam", "lr": 0.01},  # SGD diverges on beale
    }
    return make_plan(validate_config(config))


@pytest.mark.parametrize("problem", ["quadratic_deep", *TWO_D])
def test_problem_plans_and_trains(problem: str) -> None:
    info = PROBLEMS.get(problem, "problem")
    plan = _plan(problem)
    count = sum(math.prod(shape) for _, shape in plan.parameters)
    assert count == info.parameters == (100 if problem == "quadratic_deep" else 2)
    assert info.metric == "distance_to_optimum" and info.version == 1
    assert plan.config.data.batch_size == 128  # DeepOBS's (deepobs/config.py)
    rows = train(plan).rows
    assert len(rows) == 1
    for key in ("train_loss", "test_loss", "distance_to_optimum"):
        assert math.isfinite(rows[0][key])


@pytest.mark.parametrize("problem", TWO_D)
def test_start_and_minima_are_deepobs(problem: str) -> None:
    function = FUNCTIONS[problem]
    model = _plan(problem).build_model()
    assert tuple(model.point().tolist()) == DEEPOBS_START[problem] == function.start
    minima, value = KNOWN_MINIMA[problem]
    assert function.minima == minima
    for u, v in minima:
        assert function.value(u, v) == pytest.approx(value, abs=1e-5)
    # the model's loss on the zero test noise is the function itself
    zeros = torch.zeros(3, 2)
    expected = function.value(*DEEPOBS_START[problem], math.cos)
    assert model(zeros).squeeze(1).tolist() == pytest.approx([expected] * 3, rel=1e-6)
    start = function.start
    nearest = min(math.dist(start, m) for m in minima)
    assert model.distance_to_optimum() == pytest.approx(nearest)


def test_quadratic_deep_is_deepobs() -> None:
    """theta starts at ones (net_quadratic_deep); Q's spectrum: 90 eigenvalues in (0, 1) and 10
    in (30, 60) (deepobs/pytorch/testproblems/quadratic_deep.py); data N(0, 0.6^2)."""
    plan = _plan("quadratic_deep")
    model = plan.build_model()
    assert torch.equal(model.theta.detach(), torch.ones(100))
    eigenvalues = torch.linalg.eigvalsh(model.hessian.double())
    assert ((eigenvalues[:90] > 0) & (eigenvalues[:90] < 1)).all()
    assert ((eigenvalues[90:] > 30) & (eigenvalues[90:] < 60)).all()
    assert model.distance_to_optimum() == pytest.approx(10.0)  # |ones(100)|: optimum is 0
    from optbench.components.data import load_data

    train_set, test_set = load_data(plan.data, 0)
    assert train_set.inputs.shape == test_set.inputs.shape == (1000, 100)
    assert float(train_set.inputs.std()) == pytest.approx(0.6, abs=0.01)
    assert not torch.equal(train_set.inputs, test_set.inputs)  # seeds 42 and 43


def test_path_file_and_distance_column(tmp_path: Path) -> None:
    plan = _plan("rosenbrock", epochs=2)
    run = RunDir(run_plan(plan, tmp_path, display=SilentObserver()).run_dir)
    path = run.read_path()
    assert path is not None and list(path.columns) == ["epoch", "step", "u", "v"]
    assert len(path) == 1 + 2 * plan.steps_per_epoch
    assert tuple(path.iloc[0][["u", "v"]]) == (-0.5, 1.5) and path["epoch"].iloc[0] == 0
    assert list(path["step"]) == list(range(len(path)))
    epochs = pd.read_csv(run.epochs_path)
    assert list(epochs.columns) == written_columns([])
    last = path.iloc[-1]
    nearest = math.hypot(last["u"] - 1, last["v"] - 1)
    assert epochs["distance_to_optimum"].iloc[-1] == pytest.approx(nearest, rel=1e-6)

    other = make_plan(validate_config(regression_dict(device="cpu")))
    plain = RunDir(run_plan(other, tmp_path, display=SilentObserver()).run_dir)
    assert plain.read_path() is None  # only 2-D problems record a path
    plain_epochs = pd.read_csv(plain.epochs_path)
    assert list(plain_epochs.columns) == written_columns([])
    assert plain_epochs["distance_to_optimum"].isna().all()  # empty for other runs


def test_resumed_run_has_the_identical_path(tmp_path: Path) -> None:
    plan = _plan("beale", epochs=3, optimizer={"name": "Adam", "lr": 0.01})
    reference = RunDir(run_plan(plan, tmp_path / "a", display=SilentObserver()).run_dir)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, tmp_path / "b", display=StopAt(2, 30))
    torch.manual_seed(12345)  # a resumed process starts with unrelated random state
    resumed = RunDir(run_plan(plan, tmp_path / "b", resume=True, display=SilentObserver()).run_dir)
    assert resumed.path_path.read_bytes() == reference.path_path.read_bytes()

    checkpoints = CheckpointFile(tmp_path / "checkpoint.pt", plan.run_id)
    with pytest.raises(KeyboardInterrupt):
        train(plan, StopAt(3, 7), checkpoints)
    rows = train(plan, checkpoints=checkpoints).rows
    paths = [row["path"] for row in rows]
    expected = [row["path"] for row in train(plan).rows]
    assert paths == expected  # exact equality


def test_compare_ranks_by_distance_and_plots_paths(tmp_path: Path) -> None:
    assert {"final_distance_to_optimum", "best_distance_to_optimum"} <= set(RANKING_METRICS)
    for optimizer in ({"name": "SGD", "lr": 0.002}, {"name": "Adam", "lr": 0.01}):
        run_plan(_plan("rosenbrock", 1, optimizer), tmp_path / "r", display=SilentObserver())
    comparison = compare_runs([tmp_path / "r"], metric="final_distance_to_optimum")
    distances = comparison.table["final_distance_to_optimum_mean"]
    assert distances.notna().all() and distances.is_monotonic_increasing
    found = two_d_paths(comparison.frame, comparison.table, comparison.runs)
    assert found is not None and found[0] == "rosenbrock" and len(found[1]) == 2

    console = Console(width=200, record=True)
    png = tmp_path / "paths.png"
    print_comparison(console, comparison, plot=png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "final distance to optimum" in console.export_text()
