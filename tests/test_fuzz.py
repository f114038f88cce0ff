"""Property: any config, however mangled, is either a valid plan or one clean user error."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from optbench.core.config import load_config
from optbench.core.errors import ConfigError
from optbench.experiment.plan import RunPlan, make_plan
from optbench.ui.cli import app
from tests.helpers import REGRESSION

IMAGES = {
    **copy.deepcopy(REGRESSION),
    "data": {"dataset": "fashion_mnist", "batch_size": 64},
    "model": {"name": "cifar_cnn", "dropout": 0.1},
    "loss": "cross_entropy",
    "optimizer": {
        "name": "SGD",
        "lr": 0.1,
        "momentum": 0.9,
        "param_groups": [{"params": "fc3.*", "lr": 0.01}],
    },
    "scheduler": {"name": "StepLR", "step_size": 1},
}

# Import paths, good and bad: registered classes by path, refused ones, malformed spellings.
IMPORT_PATHS = [
    "torch.optim.SGD",
    "torch.optim:Adam",
    "torch.optim.SparseAdam",
    ".SGD",
    "SGD.",
    "torch..optim.SGD",
    "torch.optim:",
    ":SGD",
    "nosuchpkg.Opt",
    "collections.OrderedDict",
    "torch.nn.HuberLoss",
    "huber",
    "smooth_l1",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["SGD", "Adam", "LBFGS", "StepLR", "cifar_cnn", "mse", "fc3.*", "*", "cpu"]),
    st.sampled_from(IMPORT_PATHS),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
KEYS = [
    "name",
    "seed",
    "epochs",
    "device",
    "data",
    "data.dataset",
    "data.batch_size",
    "data.subset",
    "data.normalize",
    "data.n_train",
    "data.noise",
    "model",
    "model.name",
    "model.dropout",
    "model.hidden_sizes",
    "model.init",
    "loss",
    "loss.name",
    "loss.delta",
    "loss.beta",
    "loss.label_smoothing",
    "loss.reduction",
    "optimizer",
    "optimizer.name",
    "optimizer.lr",
    "optimizer.momentum",
    "optimizer.betas",
    "optimizer.nesterov",
    "optimizer.param_groups",
    "scheduler",
    "scheduler.name",
    "scheduler.interval",
    "scheduler.step_size",
    "sweep",
    "extra",
]


def _mutate(config: dict[str, Any], key: str, value: Any, delete: bool) -> dict[str, Any]:
    config = copy.deepcopy(config)
    *path, last = key.split(".")
    node = config
    for part in path:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if delete:
        node.pop(last, None)
    else:
        node[last] = value
    return config


mutations = st.lists(
    st.tuples(st.sampled_from(KEYS), values, st.booleans()), min_size=1, max_size=4
)


def _check(config: dict[str, Any], folder: Path) -> None:
    path = folder / "fuzz.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    try:
        assert isinstance(make_plan(load_config(path)), RunPlan)
    except ConfigError as error:
        assert str(error)  # a message, not an empty error


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from([REGRESSION, IMAGES]), changes=mutations)
def test_mutated_configs_plan_or_fail_cleanly(tmp_path_factory, base, changes) -> None:
    config = base
    for key, value, delete in changes:
        config = _mutate(config, key, value, delete)
    _check(config, tmp_path_factory.mktemp("fuzz"))


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_as_a_config_file(tmp_path_factory, text: str) -> None:
    folder = tmp_path_factory.mktemp("text")
    (folder / "fuzz.yaml").write_text(text)
    try:
        load_config(folder / "fuzz.yaml")
    except ConfigError as error:
        assert str(error)


@settings(max_examples=40, deadline=None)
@given(changes=mutations, overrides=st.lists(st.text(max_size=20), max_size=2))
def test_cli_validate_exits_0_or_2_and_never_raises(tmp_path_factory, changes, overrides) -> None:
    config = REGRESSION
    for key, value, delete in changes:
        config = _mutate(config, key, value, delete)
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "fuzz.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    args = ["validate", str(path)]
    for override in overrides:
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2), (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)


PLOT_PATHS = st.one_of(
    st.sampled_from(["/nonexistent/x.png", "curves.png", "curves", "curves.txt", ".", "sub/x.png"]),
    st.text(max_size=12).filter(lambda t: "/" not in t and ".." not in t and "\x00" not in t),
)


@settings(max_examples=40, deadline=None)
@given(grid=st.lists(st.text(max_size=24) | st.sampled_from(IMPORT_PATHS), max_size=2))
def test_cli_sweep_grid_exits_0_or_2_and_never_raises(tmp_path_factory, grid) -> None:
    folder = tmp_path_factory.mktemp("grid")
    path = folder / "fuzz.yaml"
    path.write_text(yaml.safe_dump(REGRESSION))
    args = ["sweep", str(path), "--dry-run", "--results-dir", str(folder / "results")]
    for axis in grid:
        args += ["--grid", axis if "=" in axis else f"optimizer.name={axis}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2), (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)


@settings(max_examples=30, deadline=None)
@given(plot=PLOT_PATHS, metric=st.sampled_from(["final_test_loss", "best_test_accuracy", "x"]))
def test_cli_compare_plot_paths_exit_0_or_2_and_never_raise(tmp_path_factory, plot, metric):
    results = _one_run(tmp_path_factory)
    folder = tmp_path_factory.mktemp("plot")
    args = ["compare", str(results), "--metric", metric, "--plot", str(folder / plot)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2), (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)


_RUNS: dict[str, Path] = {}


def _one_run(tmp_path_factory) -> Path:
    """A results folder with one finished run, made once per session."""
    if "runs" not in _RUNS:
        from optbench.experiment.runner import run_plan
        from optbench.experiment.train import SilentObserver

        results = tmp_path_factory.mktemp("runs")
        config = load_config(_write(results, REGRESSION))
        run_plan(make_plan(config), results, display=SilentObserver())
        _RUNS["runs"] = results
    return _RUNS["runs"]


def _write(folder: Path, config: dict[str, Any]) -> Path:
    path = folder / "fuzz.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
