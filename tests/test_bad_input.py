"""Every mistake a user can make ends in one clear message, exit status 2 and no traceback.

Each case writes a bad config (or passes a bad option) and runs `optbench validate` and
`optbench run` on it. Both must print exactly one `error: ...` line on stderr that names the
field and the problem, print nothing on stdout, exit with status 2 without an exception escaping,
and leave the results directory empty.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import optbench.components.data.torchvision_files
from optbench.ui.cli import app
from tests.helpers import assert_one_error_line, cli_runner, regression_dict
from tests.hf_models import bert_config

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COMMANDS = ["validate", "run"]
TIME_LIMIT_S = 10.0  # CPU seconds a refusal may take (see invoke)
HANG_LIMIT_S = 120.0  # wall-clock seconds before a command that waits counts as hung

REGRESSION: dict[str, Any] = regression_dict(
    name="bad",
    epochs=1,
    data={"dataset": "synthetic_regression", "n_train": 64, "n_test": 16, "batch_size": 16},
)
IMAGES: dict[str, Any] = {
    "name": "bad",
    "seed": 0,
    "epochs": 1,
    "device": "cpu",
    "data": {"dataset": "fashion_mnist", "batch_size": 64},
    "model": {"name": "cifar_cnn"},
    "loss": "cross_entropy",
    "optimizer": {"name": "SGD", "lr": 0.01},
}
DELETE = object()


def changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with dotted keys set (or removed, with DELETE)."""
    config = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)
    return config


def regression(**changes: Any) -> dict[str, Any]:
    """The small regression config with `a__b=value` meaning key a.b set to value."""
    return changed(REGRESSION, {k.replace("__", "."): v for k, v in changes.items()})


def images(**changes: Any) -> dict[str, Any]:
    return changed(IMAGES, {k.replace("__", "."): v for k, v in changes.items()})


def to_text(config: Any) -> str | bytes:
    if isinstance(config, (str, bytes)):
        return config
    return yaml.safe_dump(config, sort_keys=False)


def write(folder: Path, config: Any, filename: str = "exp.yaml") -> Path:
    path = folder / filename
    text = to_text(config)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _deeply_nested_mapping(levels: int) -> str:
    lines = ["name: bad", "epochs: 1", "deep:"]
    lines += ["  " * i + f"k{i}:" for i in range(1, levels)]
    lines.append("  " * levels + "leaf: 1")
    return "\n".join(lines) + "\n"


def _alias_bomb(levels: int) -> str:
    """A few hundred bytes of YAML whose aliases stand for 10**levels values."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- running the CLI


class TookTooLong(Exception):
    """Raised by SIGPROF or SIGALRM inside a command that works too long or hangs, so
    CliRunner records it as the failure."""


def invoke(
    command: str, config: Path, results: Path, *args: str, time_limit: float = TIME_LIMIT_S
) -> Any:
    """`optbench COMMAND CONFIG ARGS` in-process; a command that spends more than `time_limit`
    seconds of this process's CPU time (SIGPROF), or waits HANG_LIMIT_S of wall clock (SIGALRM:
    a blocked read, a sleep), is stopped and fails the check with TookTooLong. CPU time, not
    the wall clock, so other processes loading the machine cannot fail a refusal that is quick."""
    argv = [command, str(config), *args]
    if command == "run":
        argv += ["--results-dir", str(results)]

    def too_long(signum: int, frame: Any) -> None:
        spent = "CPU seconds" if signum == signal.SIGPROF else "seconds, waiting"
        raise TookTooLong(f"still running after {time_limit} {spent}")

    previous = {sig: signal.signal(sig, too_long) for sig in (signal.SIGPROF, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_PROF, time_limit)
    signal.setitimer(signal.ITIMER_REAL, max(time_limit, HANG_LIMIT_S))
    try:
        return cli_runner().invoke(app, argv)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def plain(text: str) -> str:
    return ANSI.sub("", text)


def everything_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def assert_user_error(result: Any, results: Path | None, *fragments: str) -> str:
    """One `error:` line holding every fragment, exit 2, and an empty results directory."""
    message = assert_one_error_line(result, *fragments)
    if results is not None:
        assert everything_in(results) == [], "something was written under the results directory"
    return message


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty results dir; no data root, no Debian dataset copy, nothing in the checkout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPTBENCH_DATA", str(tmp_path / "data"))
    system_data = tmp_path / "system-data"
    system_data.mkdir()
    # core.config reads $OPTBENCH_SYSTEM_DATA at import time; patch the copy the loader reads.
    monkeypatch.setattr(optbench.components.data.torchvision_files, "SYSTEM_DATA_DIR", system_data)
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setenv("OPTBENCH_RESULTS", str(results))
    return results


@pytest.fixture
def results(isolated: Path) -> Path:
    return isolated


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir()
    return folder


# --------------------------------------------------------------------------- the cases


def case(
    id: str,
    config: Any,
    *fragments: str,
    args: tuple[str, ...] = (),
    filename: str = "exp.yaml",
) -> Any:
    return pytest.param(config, args, filename, fragments, id=id)


CASES = [
    # ---- the file is not a YAML mapping
    case(
        "malformed-yaml",
        "name: bad\nepochs: 1\n  seed: 0\n",
        "exp.yaml, line 3",
        "invalid YAML",
    ),
    case(
        "unclosed-bracket",
        "name: bad\noptimizer: {name: SGD, lr: [0.1}\nepochs: 1\n",
        "exp.yaml, line 2",
        "invalid YAML",
    ),
    case("tab-indent", "name: bad\nepochs: 1\n\tseed: 0\n", "exp.yaml, line 3", "'\\t'"),
    case(
        "python-tag",
        "name: bad\nepochs: !!python/object/apply:os.system ['true']\n",
        "exp.yaml, line 2",
        "could not determine a constructor",
    ),
    case("list", "- 1\n- 2\n", "exp.yaml", "must be a mapping", "not a list"),
    case("scalar-int", "42\n", "exp.yaml", "must be a mapping", "int"),
    case("scalar-str", "hello\n", "exp.yaml", "must be a mapping", "str"),
    case("empty", "", "exp.yaml", "is empty"),
    case("comments-only", "# nothing here\n", "exp.yaml", "is empty"),
    case("duplicate-key", "epochs: 1\nepochs: 2\n", "line 2", "duplicate key 'epochs'"),
    case(
        "duplicate-nested-key",
        "optimizer:\n  name: SGD\n  lr: 1\n  lr: 2\n",
        "line 4",
        "duplicate key 'lr'",
    ),
    case("non-utf8", b"\xff\xfe n\x00a\x00m\x00e\x00", "exp.yaml", "not UTF-8"),
    case(
        "huge",
        "name: bad\n# " + "x" * 1_000_001 + "\n",
        "exp.yaml",
        "1000000 bytes",
    ),
    case("nested-25", _deeply_nested_mapping(25), "exp.yaml", "nested more than 20 levels"),
    case(
        "nested-600-brackets", "x: " + "[" * 600 + "]" * 600 + "\n", "exp.yaml", "nested too deeply"
    ),
    # ---- unknown keys
    case("unknown-top-level", regression(epoch=3), "epoch: unknown key", "did you mean 'epochs'"),
    case(
        "unknown-data-key",
        regression(data__shufle=True),
        "data.shufle: unknown key",
        "n_train",  # the valid keys include the dataset's own options
    ),
    case(
        "unknown-image-data-key",
        images(data__batchsize=32),
        "data.batchsize: unknown key",
        "did you mean 'batch_size'",
    ),
    case(
        "unknown-normalize-key",
        images(data__normalize={"mean": [0.5], "std": [0.5], "scale": 2}),
        "data.normalize.scale: unknown key",
    ),
    case("non-string-key", {**REGRESSION, 1: "x"}, "key 1 is not a string", "quote the key"),
    case(
        "yaml11-bool-key",
        "on: 1\n" + yaml.safe_dump(REGRESSION),
        "key True is not a string",
        "on/off/yes/no",
    ),
    case("threads-0", regression(threads=0), "threads: Input should be greater than or equal to 1"),
    # ---- missing keys
    case("missing-epochs", changed(REGRESSION, {"epochs": DELETE}), "epochs: is required"),
    case(
        "missing-dataset-name",
        changed(REGRESSION, {"data.dataset": DELETE}),
        "data.dataset: is required",
    ),
    case("missing-model", changed(REGRESSION, {"model": DELETE}), "model: is required"),
    # ---- wrong types
    case("epochs-string", regression(epochs="ten"), "epochs", "valid integer", "'ten'"),
    case("epochs-bool", regression(epochs=True), "epochs", "valid integer"),
    case("batch-size-float", regression(data__batch_size=1.5), "data.batch_size", "integer"),
    case("download-string", regression(data__download="yes"), "data.download", "boolean"),
    case("data-string", regression(data="synthetic_regression"), "data", "dictionary"),
    case("optimizer-null", regression(optimizer=None), "optimizer", "dictionary"),
    case("optimizer-name-int", regression(optimizer__name=5), "optimizer.name", "string"),
    case(
        "param-groups-mapping",
        regression(optimizer__param_groups={"params": "bias"}),
        "optimizer.param_groups",
        "valid list",
    ),
    case("noise-string", regression(data__noise="lots"), "data.noise", "must be a number"),
    case("init-int", regression(model__init=5), "model.init", "must be a string"),
    case(
        "data-seed-string",
        regression(data__data_seed="abc"),
        "data.data_seed",
    ),
    case(
        "mlp-hidden-sizes-int",
        regression(model={"name": "mlp", "hidden_sizes": 5}),
        "model",
        "hidden_sizes",
    ),
    case(
        "step-size-string",
        regression(scheduler={"name": "StepLR", "step_size": "3"}),
        "scheduler.step_size",
        "must be a number",
        "'3'",
    ),
    # ---- out of range
    case("epochs-0", regression(epochs=0), "epochs", "greater than or equal to 1"),
    case("epochs-huge", regression(epochs=10**7), "epochs", "less than or equal to 1000000"),
    case("batch-size-0", regression(data__batch_size=0), "data.batch_size", "greater than"),
    case(
        "test-batch-size-0",
        regression(data__test_batch_size=0),
        "data.test_batch_size",
        "greater than",
    ),
    case("subset-0", regression(data__subset=0), "data.subset", "greater than"),
    case(
        "subset-too-big",
        regression(data__subset=1000),
        "data.subset",
        "more than the 64 training samples",
    ),
    case("negative-lr", regression(optimizer__lr=-0.1), "optimizer.lr", "must be in [0, inf]"),
    case(
        "nan-lr",
        regression(optimizer__lr=float("nan")),
        "optimizer.lr",
    ),
    case(
        "momentum-1.5",
        regression(optimizer__momentum=1.5),
        "optimizer.momentum",
        "must be in [0, 1), got 1.5",
    ),
    case(
        "negative-weight-decay",
        regression(optimizer__weight_decay=-1),
        "optimizer.weight_decay",
        "must be in",
    ),
    case(
        "group-negative-lr",
        regression(optimizer__param_groups=[{"params": "bias", "lr": -1}]),
        "optimizer.param_groups.0.lr",
        "must be in",
    ),
    case(
        "adam-beta-1.5",
        regression(optimizer={"name": "Adam", "betas": [0.9, 1.5]}),
        "optimizer",
        "Invalid beta parameter",
    ),
    case("seed-negative", regression(seed=-1), "seed", "greater than or equal to 0"),
    case("normalize-std-0", images(data__normalize={"mean": [0.5], "std": [0]}), "std must be > 0"),
    case(
        "normalize-channels",
        images(data__normalize={"mean": [0.5, 0.5], "std": [0.5, 0.5]}),
        "data.normalize.mean",
        "1 channel(s), got 2",
    ),
    case(
        "normalize-regression",
        regression(data__normalize={"mean": [0.5], "std": [0.5]}),
        "data.normalize",
        "not images",
    ),
    case("dropout-1.5", images(model__dropout=1.5), "model", "dropout must be in [0, 1)"),
    case(
        "n-train-negative",
        regression(data__n_train=-5),
        "data.n_train",
    ),
    case(
        "n-test-0",
        regression(data__n_test=0),
        "data.n_test",
    ),
    case("device-gpu", regression(device="gpu"), "device", "should match pattern"),
    case("device-cuda-99", regression(device="cuda:99"), "device: 'cuda:99'"),
    # ---- unknown component names (the message lists the valid ones)
    case(
        "unknown-optimizer",
        regression(optimizer__name="Adamm"),
        "optimizer.name",
        "unknown optimizer 'Adamm'",
        "did you mean 'Adam'",
        "valid: ",
        "SGD",
    ),
    case("sparse-adam", regression(optimizer__name="SparseAdam"), "optimizer.name", "sparse"),
    case(
        "unknown-scheduler",
        regression(scheduler={"name": "StepLRR", "step_size": 1}),
        "scheduler.name",
        "unknown scheduler 'StepLRR'",
        "valid: ",
        "CosineAnnealingLR",
    ),
    case(
        "unknown-model",
        regression(model__name="resnet"),
        "model.name",
        "unknown model 'resnet'",
        "valid: linear, cifar_cnn, mlp",
    ),
    case(
        "unknown-dataset",
        regression(data={"dataset": "imagenet"}),
        "data.dataset",
        "unknown dataset 'imagenet'",
        "valid: ",
        "fashion_mnist",
    ),
    case(
        "unknown-loss",
        regression(loss="hinge"),
        "loss",
        "unknown loss 'hinge'",
        "valid: ",
        "mse",
    ),
    case("unknown-init", images(model__init="zeros"), "model", "unknown init 'zeros'", "valid: "),
    case(
        "missing-optimizer-name", regression(optimizer={"lr": 0.1}), "optimizer.name: is required"
    ),
    # ---- optimizer hyperparameters
    case(
        "adam-momentum",
        regression(optimizer={"name": "Adam", "lr": 0.01, "momentum": 0.9}),
        "optimizer.momentum",
        "Adam does not accept 'momentum'",
        "it accepts: lr, betas",
    ),
    case(
        "group-adam-momentum",
        regression(optimizer={"name": "Adam", "param_groups": [{"params": "bias", "momentum": 1}]}),
        "optimizer.param_groups.0.momentum",
        "Adam does not accept 'momentum'",
    ),
    case(
        "betas-scalar",
        regression(optimizer={"name": "Adam", "betas": 0.9}),
        "optimizer.betas",
        "must be a list of 2 values",
        "got 0.9",
    ),
    case(
        "betas-one-value",
        regression(optimizer={"name": "Adam", "betas": [0.9]}),
        "optimizer.betas",
        "must be a list of 2 values",
    ),
    case(
        "nesterov-string",
        regression(optimizer__nesterov="yes"),
        "optimizer.nesterov",
        "must be true or false",
        "'yes'",
    ),
    case(
        "dotted-path-no-module",
        regression(optimizer__name="nosuch.module.Opt"),
        "optimizer.name",
        "cannot import 'nosuch.module.Opt'",
        "No module named 'nosuch'",
    ),
    case(
        "dotted-path-no-attribute",
        regression(optimizer__name="torch.optim.Nope"),
        "optimizer.name",
        "cannot import 'torch.optim.Nope'",
    ),
    case(
        "dotted-path-not-optimizer",
        regression(optimizer__name="collections.OrderedDict"),
        "optimizer.name",
        "'collections.OrderedDict' is not a torch.optim.Optimizer subclass",
    ),
    case(
        "nesterov-without-momentum",
        regression(optimizer__nesterov=True),
        "optimizer",
        "SGD rejects these settings",
        "Nesterov momentum requires a momentum and zero dampening",  # torch's own words
    ),
    # ---- param groups
    case(
        "group-matches-nothing",
        regression(optimizer__param_groups=[{"params": "conv*", "lr": 0.1}]),
        "optimizer.param_groups.0.params",
        "'conv*' matches no parameter",
        "parameters are: weight, bias",
    ),
    case(
        "group-glob-class-matches-nothing",
        regression(optimizer__param_groups=[{"params": "[xy]*", "lr": 0.1}]),
        "optimizer.param_groups.0.params",
        "'[xy]*' matches no parameter",
    ),
    case(
        "literal-name-in-two-groups",
        regression(
            optimizer__param_groups=[
                {"params": "weight", "lr": 0.1},
                {"params": ["bias", "weight"], "lr": 0.2},
            ]
        ),
        "optimizer.param_groups.1.params",
        "'weight' is already listed in param_groups.0",
    ),
    case(
        "group-fully-shadowed",
        regression(
            optimizer__param_groups=[{"params": "*", "lr": 0.1}, {"params": "b*", "lr": 0.2}]
        ),
        "optimizer.param_groups.1.params",
        "already taken by an earlier group",
    ),
    case(
        "group-empty-pattern",
        regression(optimizer__param_groups=[{"params": ""}]),
        "optimizer.param_groups.0.params",
        "non-empty",
    ),
    case(
        "group-without-params",
        regression(optimizer__param_groups=[{"lr": 0.1}]),
        "optimizer.param_groups.0.params: is required",
    ),
    case(
        "lbfgs-param-groups",
        regression(optimizer={"name": "LBFGS", "param_groups": [{"params": "bias", "lr": 0.1}]}),
        "optimizer",
        "LBFGS",
        "parameter groups",
    ),
    # ---- schedulers
    case(
        "steplr-without-step-size",
        regression(scheduler={"name": "StepLR"}),
        "scheduler.step_size",
        "is required by StepLR",
    ),
    case(
        "unknown-scheduler-argument",
        regression(scheduler={"name": "StepLR", "step_size": 1, "step_sise": 2}),
        "scheduler.step_sise",
        "StepLR does not accept 'step_sise'",
        "did you mean 'step_size'",
    ),
    case(
        "plateau-per-step",
        regression(scheduler={"name": "ReduceLROnPlateau", "interval": "step"}),
        "scheduler.interval",
        "ReduceLROnPlateau",
        "must be 'epoch'",
    ),
    case(
        "interval-batch",
        regression(scheduler={"name": "StepLR", "step_size": 1, "interval": "batch"}),
        "scheduler.interval",
        "'epoch' or 'step'",
    ),
    case(
        "onecycle-zero-steps",
        regression(scheduler={"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 0}),
        "scheduler",
        "OneCycleLR rejects these settings",
        "total_steps",
    ),
    case("scheduler-int", regression(scheduler=5), "scheduler", "dictionary"),
    # ---- models and losses
    case(
        "cifar-cnn-hidden-sizes",
        images(model={"name": "cifar_cnn", "hidden_sizes": [10]}),
        "model.hidden_sizes",
        "cifar_cnn does not accept 'hidden_sizes'",
        "it accepts: dropout, init",
    ),
    case(
        "mse-on-classes",
        images(loss="mse"),
        "loss",
        "mse expects values",
        "fashion_mnist is a classification dataset",
        "use cross_entropy, nll",
    ),
    case(
        "cross-entropy-on-values",
        regression(loss="cross_entropy"),
        "loss",
        "cross_entropy expects classes",
        "regression dataset",
    ),
    # ---- names
    case(
        "name-parent-dirs",
        regression(name="../../etc"),
        "name",
        "name: must be 1-100 letters",
        "names a folder under the results",
    ),
    case(
        "name-dot-dot",
        regression(name=".."),
        "name",
        "name: must be 1-100 letters",
        "names a folder under the results",
    ),
    case(
        "name-absolute",
        regression(name="/etc/passwd"),
        "name",
        "name: must be 1-100 letters",
        "names a folder under the results",
    ),
    case(
        "name-newline",
        regression(name="abc\n"),
        "name",
        "name: must be 1-100 letters",
        "names a folder under the results",
    ),
    case(
        "name-empty",
        regression(name=""),
        "name",
        "name: must be 1-100 letters",
        "names a folder under the results",
    ),
    case(
        "name-from-set",
        regression(),
        "name",
        "name: must be 1-100 letters",
        "names a folder under the results",
        args=("--set", "name=../../etc"),
    ),
    # ---- --set overrides
    case(
        "set-without-equals",
        regression(),
        "--set",
        "'epochs' is not KEY=VALUE",
        args=("-s", "epochs"),
    ),
    case("set-empty-key", regression(), "--set", "is not KEY=VALUE", args=("--set", "=3")),
    case(
        "set-double-dot",
        regression(),
        "--set",
        "'a..b' is not a dotted key",
        args=("--set", "a..b=1"),
    ),
    case(
        "set-below-scalar",
        regression(),
        "--set epochs.x",
        "'epochs' is not a mapping (it is 1)",
        args=("--set", "epochs.x=1"),
    ),
    case(
        "set-list-index-out-of-range",
        regression(optimizer__param_groups=[{"params": "bias", "lr": 0.1}]),
        "--set optimizer.param_groups.3.lr",
        "not an item of a list of 1",
        args=("--set", "optimizer.param_groups.3.lr=1"),
    ),
    case(
        "set-list-index-not-a-number",
        regression(optimizer__param_groups=[{"params": "bias", "lr": 0.1}]),
        "--set optimizer.param_groups.x.lr",
        "not an item of a list",
        args=("--set", "optimizer.param_groups.x.lr=1"),
    ),
    case(
        "set-bad-yaml-value",
        regression(),
        "--set optimizer.lr",
        "line 1",
        "invalid YAML",
        args=("--set", "optimizer.lr=[1, 2"),
    ),
    case(
        "set-unknown-key",
        regression(),
        "epoch: unknown key",
        "did you mean 'epochs'",
        args=("--set", "epoch=3"),
    ),
    case(
        "set-bad-value",
        regression(),
        "optimizer.momentum",
        "must be in [0, 1)",
        args=("--set", "optimizer.momentum=2"),
    ),
    # ---- import paths, options torch checks late, --grid values
    case(
        "import-path-leading-dot",
        regression(),
        "optimizer.name",
        "'.SGD' is not a registered name or an import path",
        args=("--set", "optimizer.name=.SGD"),
    ),
    case(
        "import-path-empty-part",
        regression(optimizer__name="torch..optim.SGD"),
        "optimizer.name",
        "is not a registered name or an import path",
    ),
    case(
        "import-path-to-sparse-adam",
        regression(optimizer__name="torch.optim.SparseAdam"),
        "optimizer.name",
        "'torch.optim.SparseAdam' needs sparse gradients",
    ),
    case(
        "import-path-colon-form-no-module",
        regression(optimizer__name="nosuchpkg.optim:Opt"),
        "optimizer.name",
        "cannot import 'nosuchpkg.optim:Opt'",
        "No module named 'nosuchpkg'",
    ),
    case(
        "loss-option-torch-checks-when-called",
        regression(loss={"name": "huber", "delta": -1.0}),
        "loss",
        "huber rejects these settings",
        "delta",
    ),
    case(
        "loss-option-on-a-loss-given-by-name",
        regression(),
        "loss",
        "huber rejects these settings",
        args=("--set", "loss=huber", "--set", "loss.delta=0"),
    ),
    case(
        "int-argument-given-a-fraction",
        regression(scheduler={"name": "StepLR", "step_size": 1.5}),
        "scheduler.step_size",
        "must be an integer, got 1.5",
    ),
    # ---- models, losses, datasets and schedulers by import path
    case(
        "model-path-not-a-model",
        regression(model__name="collections.OrderedDict"),
        "model.name",
        "'collections.OrderedDict' is not an nn.Module class or a function that returns one",
    ),
    case(
        "model-path-no-module",
        regression(model__name="mypkg.models.Net"),
        "model.name",
        "cannot import 'mypkg.models.Net'",
        "No module named 'mypkg'",
    ),
    case(
        "model-function-returns-no-module",
        regression(model__name="platform.system"),
        "model",
        "platform.system: returned a str, not a torch.nn.Module",
    ),
    case(
        "model-path-without-a-signature",
        regression(model__name="time.time"),
        "model",
        "cannot read the arguments time.time takes",
    ),
    case(
        "model-data-argument-the-data-lacks",
        regression(model__name="torch.nn.Conv2d"),
        "model.in_channels: is required by torch.nn.modules.conv.Conv2d",
    ),
    case(
        "model-outputs-do-not-fit-the-loss",
        regression(model={"name": "torch.nn.Linear", "out_features": 3}),
        "model",
        "gives outputs of shape (2, 3) for a batch of 2; mse needs (2, 1) here",
    ),
    case(
        "torchvision-builder-wrong-key",
        images(model={"name": "torchvision.models.resnet18", "foo": 1}),
        "model",
        "torchvision.models.resnet.resnet18",
        "unexpected keyword argument 'foo'",
    ),
    case(
        "torchvision-builder-passed-key-of-the-wrong-type",
        images(model={"name": "torchvision.models.resnet18", "width_per_group": 64.5}),
        "model.width_per_group",
        "must be an integer, got 64.5",
    ),
    case(
        "loss-path-not-a-loss",
        regression(loss="collections.OrderedDict"),
        "loss",
        "'collections.OrderedDict' is not an nn.Module loss class or a function",
    ),
    case(
        "loss-path-unknown-option",
        regression(loss={"name": "torch.nn.SoftMarginLoss", "margin": 1}),
        "loss.margin",
        "torch.nn.modules.loss.SoftMarginLoss does not accept 'margin'",
    ),
    case(
        "imported-loss-does-not-fit-the-targets",
        images(loss="torch.nn.BCEWithLogitsLoss"),
        "loss",
        "BCEWithLogitsLoss fails on outputs of shape (2, 10)",
        "torch.int64 targets of shape (2,)",
    ),
    case(
        "loss-function-not-a-single-number",
        regression(loss={"name": "torch.nn.functional.mse_loss", "reduction": "none"}),
        "loss",
        "returns (2, 1), not a single number",
    ),
    case(
        "dataset-path-not-a-dataset",
        regression(data={"dataset": "collections.OrderedDict"}),
        "data.dataset",
        "is not a torch Dataset class, a function returning (train, test), or a .pt/.npz file",
    ),
    case(
        "dataset-path-no-module",
        regression(data={"dataset": "mypkg.data.Set"}),
        "data.dataset",
        "cannot import 'mypkg.data.Set'",
    ),
    case(
        "data-file-missing",
        regression(data={"dataset": "points.npz"}),
        "data.dataset",
        "data file 'points.npz' not found next to the config or in the working directory",
    ),
    case(
        "dataset-class-files-missing",
        regression(data={"dataset": "torchvision.datasets.KMNIST", "root": "nodata"}),
        "could not load torchvision.datasets.mnist.KMNIST from nodata",
        "data.download: true",
    ),
    case(
        "dataset-class-unknown-key",
        regression(data={"dataset": "torchvision.datasets.KMNIST", "split": "digits"}),
        "data.split: unknown key",
        "torchvision.datasets.mnist.KMNIST takes: dataset",
    ),
    case(
        "scheduler-path-not-a-scheduler",
        regression(scheduler={"name": "collections.OrderedDict"}),
        "scheduler.name",
        "'collections.OrderedDict' is not a torch.optim.lr_scheduler.LRScheduler subclass",
    ),
    case(
        "scheduler-path-that-needs-code",
        regression(scheduler={"name": "torch.optim.lr_scheduler.LambdaLR"}),
        "scheduler.name",
        "takes Python callables or other schedulers, which a config cannot give",
    ),
    # ---- rich markup in messages
    case(
        "bracket-in-file-name",
        "a: [1\n",
        "[draft] sgd.yaml, line 2",
        filename="[draft] sgd.yaml",
    ),
    case(
        "closing-tag-in-value",
        regression(optimizer__name="[/]"),
        "optimizer.name",
        "unknown optimizer '[/]'",
    ),
    # ---- issue 17's last refusals: odd keys, integers past int64, scheduler rates
    case(
        "key-that-is-a-list",
        "? [a, b]\n: 1\n",
        "exp.yaml, line 1",
        "key ['a', 'b'] is not a string",
    ),
    case(
        "batch-size-past-int64",
        regression(data__batch_size=99999999999999999999999),
        "data.batch_size",
        "less than or equal to 9223372036854775807",
    ),
    case(
        "scheduler-integer-past-int64",
        regression(scheduler={"name": "StepLR", "step_size": 2**70}),
        "scheduler.step_size",
        "must be at most 9223372036854775807",
    ),
    # ---- validation split, evaluation by steps, DeepOBS's pipeline
    case(
        "validation-fraction-zero",
        regression(data__validation=0.0),
        "data.validation",
        "strictly between 0 and 1",
    ),
    case(
        "validation-fraction-one",
        regression(data__validation=1.0),
        "data.validation",
        "strictly between 0 and 1",
    ),
    case(
        "validation-not-a-number",
        regression(data__validation="half"),
        "data.validation",
        "a fraction between 0 and 1, a count of training samples, or own; got 'half'",
    ),
    case(
        "validation-count-whole-training-set",
        regression(data__validation=64),
        "data.validation",
        "holds out 64 of the 64 training samples",
    ),
    case(
        "validation-own-split-missing",
        regression(data__validation="own"),
        "data.validation",
        "has no validation split of its own",
    ),
    case("eval-every-zero", regression(eval_every=0), "eval_every", "greater than or equal to 1"),
    case(
        "eval-every-past-the-run",
        regression(eval_every=5),
        "eval_every",
        "5 is more than the run's 4 optimizer steps",
    ),
    case(
        "drop-last-leaves-no-batch",
        regression(data__drop_last=True, data__batch_size=100),
        "data.drop_last",
        "leaves no step",
    ),
    case("shuffle-unknown", regression(data__shuffle="twice"), "data.shuffle", "'epoch' or 'once'"),
    case(
        "onecycle-negative-max-lr",
        regression(scheduler={"name": "OneCycleLR", "max_lr": -1.0}),
        "scheduler.max_lr",
        "must be in [0, inf], got -1.0",
    ),
    case(
        "model-without-parameters",
        regression(model={"name": "torch.nn.Identity"}),
        "model: torch.nn.modules.linear.Identity has no trainable parameters",
    ),
    case("clip-grad-norm-0", regression(clip_grad_norm=0), "clip_grad_norm", "greater than 0"),
    case(
        "clip-grad-norm-with-a-closure-optimizer",
        regression(clip_grad_norm=1.0, optimizer={"name": "LBFGS", "lr": 0.1}),
        "clip_grad_norm",
        "LBFGS steps by the closure protocol",
    ),
    case("accumulate-0", regression(accumulate=0), "accumulate", "greater than or equal to 1"),
    case(
        "accumulate-with-a-second-order-optimizer",
        regression(accumulate=2, optimizer={"name": "pytorch_optimizer.AdaHessian", "lr": 0.1}),
        "accumulate",
        "AdaHessian steps by the second_order protocol",
    ),
    case(
        "warmup-longer-than-the-run",
        regression(scheduler={"name": "WarmupCosineLR", "warmup_steps": 5}),
        "scheduler",
        "warmup_steps must be in [0, total_steps 1)",
    ),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("config", "args", "filename", "fragments"), CASES)
def test_bad_config_is_one_clear_error(
    command: str,
    config: Any,
    args: tuple[str, ...],
    filename: str,
    fragments: tuple[str, ...],
    configs: Path,
    results: Path,
) -> None:
    path = write(configs, config, filename)
    result = invoke(command, path, results, *args)
    assert_user_error(result, results, *fragments)


# --------------------------------------------------------------------------- files and folders


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_config_file(command: str, configs: Path, results: Path) -> None:
    result = invoke(command, configs / "nope.yaml", results)
    assert_user_error(result, results, "config file", "nope.yaml", "does not exist")


@pytest.mark.parametrize("command", COMMANDS)
def test_directory_as_config(command: str, configs: Path, results: Path) -> None:
    result = invoke(command, configs, results)
    assert_user_error(result, results, str(configs), "it is a directory")


def test_validation_that_takes_a_whole_class_out_of_training_is_refused_before_a_run(
    configs: Path, results: Path
) -> None:
    """Which classes a held-out draw empties is known once the data is loaded: `run` loads it
    before it writes anything (iris: 112 training samples, 111 held out leave one class)."""
    pytest.importorskip("sklearn")
    config = regression(data={"dataset": "sklearn_iris", "validation": 111, "batch_size": 16})
    config.update(loss="cross_entropy", model={"name": "mlp", "hidden_sizes": [4]})
    result = invoke("run", write(configs, config), results)
    assert_user_error(result, results, "data.validation", "holds out every training sample")


def test_results_dir_is_a_file(configs: Path, tmp_path: Path) -> None:
    path = write(configs, REGRESSION)
    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("keep me\n")
    result = invoke("run", path, not_a_folder)
    assert_user_error(result, None, "results directory", "results.txt", "is a file, not a folder")
    assert not_a_folder.read_text() == "keep me\n"


def test_results_dir_below_a_file(configs: Path, tmp_path: Path) -> None:
    path = write(configs, REGRESSION)
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep me\n")
    result = invoke("run", path, a_file / "sub")
    assert_user_error(result, None, "results.txt/sub", "Not a directory")
    assert a_file.read_text() == "keep me\n"


def test_missing_dataset(configs: Path, results: Path, tmp_path: Path) -> None:
    """No data in data.root and no Debian copy (the autouse fixture empties SYSTEM_DATA_DIR)."""
    empty_root = tmp_path / "empty"
    path = write(configs, images(data__root=str(empty_root)))
    result = invoke("run", path, results)
    assert_user_error(
        result,
        results,
        "dataset fashion_mnist was not found",
        str(empty_root / "FashionMNIST" / "raw"),
        str(optbench.components.data.torchvision_files.SYSTEM_DATA_DIR / "fashion-mnist"),
        "data.download: true",
    )
    assert not empty_root.exists()


def test_cifar10_missing_without_download(configs: Path, results: Path, tmp_path: Path) -> None:
    empty_root = tmp_path / "empty"
    path = write(configs, images(data={"dataset": "cifar10", "root": str(empty_root)}))
    result = invoke("run", path, results)
    assert_user_error(
        result,
        results,
        "dataset cifar10 was not found",
        str(empty_root / "cifar-10-batches-py"),
        "data.download: true",
    )
    assert not empty_root.exists()


# --------------------------------------------------------------------------- the real entry point


@pytest.mark.slow
def test_real_entry_point(configs: Path, results: Path) -> None:
    """`python -m optbench validate` itself: exit 2, the message on stderr, no traceback."""
    path = write(configs, regression(optimizer={"name": "Adam", "momentum": 0.9}))
    argv = [sys.executable, "-m", "optbench", "validate", str(path)]
    env = {**os.environ, "OPTBENCH_RESULTS": str(results), "NO_COLOR": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    stderr = plain(proc.stderr)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr + proc.stdout
    assert proc.stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(
        "error: optimizer.momentum: Adam does not accept 'momentum'; it accepts: lr, betas"
    ), lines[0]
    assert everything_in(results) == []


def test_alias_bomb_is_refused_quickly(configs: Path, results: Path) -> None:
    """500 bytes of nested YAML aliases stand for 10**9 values: refused, and fast."""
    path = write(configs, _alias_bomb(9))
    result = invoke("validate", path, results, time_limit=1.0)
    assert_user_error(result, results, "exp.yaml", "expands to more than 100000 values")


def test_grid_values_are_read_as_set_reads_them(configs: Path, results: Path) -> None:
    path = write(configs, regression())
    duplicate = invoke(
        "sweep", path, results, "--dry-run", "--grid", "optimizer={name: SGD, name: Adam}"
    )
    assert_user_error(duplicate, results, "--grid optimizer", "duplicate key 'name'")
    exponent = invoke("sweep", path, results, "--dry-run", "--grid", "optimizer.lr=1e-3,1e-4")
    assert exponent.exit_code == 0, exponent.output


# --------------------------------------------------------------------------- issue 17, section 4


@pytest.mark.parametrize("command", COMMANDS)
def test_a_device_or_fifo_is_refused_without_reading_it(
    command: str, configs: Path, results: Path
) -> None:
    """/dev/zero never ends and a FIFO without a writer blocks: both refused at once."""
    fifo = configs / "pipe.yaml"
    os.mkfifo(fifo)
    for path in (Path("/dev/zero"), fifo):
        result = invoke(command, path, results, time_limit=5.0)
        assert_user_error(result, results, str(path), "is not a regular file")


def test_a_key_given_twice_on_the_command_line_is_refused(configs: Path, results: Path) -> None:
    path = write(configs, regression())
    grid = ("--grid", "optimizer.lr=0.1", "--grid", "optimizer.lr=0.2")
    sweep = invoke("sweep", path, results, "--dry-run", *grid)
    assert_user_error(sweep, results, "--grid optimizer.lr", "is given twice")
    for command in COMMANDS:
        twice = ("--set", "optimizer.lr=0.1", "--set", "optimizer.lr=0.2")
        assert_user_error(
            invoke(command, path, results, *twice), results, "--set optimizer.lr", "given twice"
        )
    # the config's sweep: axis and one --grid for the same key: the shell wins, as documented
    path = write(configs, regression(sweep={"optimizer.lr": [0.3]}))
    once = invoke("sweep", path, results, "--dry-run", "--grid", "optimizer.lr=0.1,0.2")
    assert once.exit_code == 0, once.output
    assert "optimizer.lr=0.1" in plain(once.stdout) and "0.3" not in plain(once.stdout)


IMPORT_STOPS = [
    ("import sys\nsys.exit(0)\n", "it called sys.exit(0)"),
    ("raise KeyboardInterrupt\n", "it raised KeyboardInterrupt"),
    ("raise SystemExit('bye')\n", "it called sys.exit('bye')"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("source", "said"), IMPORT_STOPS)
def test_user_code_that_stops_while_imported_is_a_refusal(
    command: str, source: str, said: str, configs: Path, results: Path, request: Any
) -> None:
    """Not exit 0 with nothing trained, not exit 130 for a run that never existed."""
    module = f"stops_{abs(hash(request.node.name))}"
    (configs / f"{module}.py").write_text(source)
    path = write(configs, regression(model={"name": f"{module}.Net"}))
    result = invoke(command, path, results)
    assert_user_error(result, results, "model.name", f"cannot import '{module}.Net'", said)


def test_a_message_of_several_lines_is_cut_to_its_first(configs: Path, results: Path) -> None:
    (configs / "manylines.py").write_text(
        "raise RuntimeError('the first line\\nthe second\\nthe third')\n"
    )
    path = write(configs, regression(model={"name": "manylines.Net"}))
    result = invoke("validate", path, results)
    assert_user_error(result, results, "the first line (2 more lines: rerun with --verbose)")
    verbose = cli_runner().invoke(app, ["--verbose", "validate", str(path)])
    assert verbose.exit_code == 2
    assert plain(verbose.stderr).strip().splitlines()[1:] == ["the second", "the third"]


TUNE_SPACES = [
    ({"optimizer.lr": {"uniform": [-1.0, 1.0]}}, "-1.0 (the low end of uniform)", "optimizer.lr"),
    ({"epochs": {"int_uniform": [0, 2]}}, "0 (the low end of int_uniform)", "epochs"),
    ({"optimizer.momentum": {"choice": [0.5, 1.0]}}, "1.0 (a choice)", "momentum"),
]


@pytest.mark.parametrize(("space", "value", "why"), TUNE_SPACES)
def test_a_tune_space_the_component_refuses_is_refused_before_the_study(
    space: dict[str, Any], value: str, why: str, configs: Path, results: Path
) -> None:
    """Both ends of each range and every choice are planned: nothing written, no journal."""
    config = regression(tune={"trials": 2, "space": space})
    path = write(configs, config)
    for command in ("tune", "validate"):
        extra = ("--results-dir", str(results)) if command == "tune" else ()
        result = invoke(command, path, results, *extra)
        assert_user_error(result, results, value, why)


def test_a_hanging_constructor_meets_planning_time_limit(
    configs: Path, results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model whose __init__ sleeps for an hour: refused after OPTBENCH_PLAN_TIMEOUT seconds
    naming the model, while the test's own SIGALRM time limit still stands behind it."""
    (configs / "hangs.py").write_text(
        "import time\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        time.sleep(3600)\n"
    )
    monkeypatch.setenv("OPTBENCH_PLAN_TIMEOUT", "0.5")
    path = write(configs, regression(model={"name": "hangs.Net"}))
    for command in COMMANDS:
        result = invoke(command, path, results, time_limit=20.0)
        assert_user_error(
            result, results, "model: hangs.Net did not finish within 0.5 s while planning"
        )
    monkeypatch.setenv("OPTBENCH_PLAN_TIMEOUT", "soon")
    assert_user_error(invoke("validate", write(configs, regression()), results), results, "soon")


def test_a_real_interrupt_while_importing_is_not_a_refusal(tmp_path: Path) -> None:
    """Ctrl-C pressed during an import goes on up as KeyboardInterrupt (the run is
    interrupted), unlike one the module raises itself."""
    from optbench.core.usercode import user_code

    with pytest.raises(KeyboardInterrupt), user_code("model.name", "slow.Net"):
        os.kill(os.getpid(), signal.SIGINT)  # handled at once, in this thread
        for _ in range(1000):
            pass


SUITE: dict[str, Any] = {
    "name": "bad",
    "problems": ["branin"],
    "set": {"epochs": 1, "device": "cpu"},
    "optimizers": {"SGD": {"name": "SGD"}, "Adam": {"name": "Adam"}},
    "tune": {"space": {"optimizer.lr": {"log_uniform": [1.0e-3, 1.0]}}, "trials": 2},
    "studies": 2,
}
SUITE_CASES = [
    ({"studies": 0}, ("studies", "greater than or equal to 1")),
    ({"tune.trials": 0}, ("tune.trials", "greater than or equal to 1")),
    ({"protocol": "external"}, ("protocol", "external_tuning", "best_final_reruns")),
    (
        {"optimizers.Adam.space": {"optimizer.momentum": {"uniform": [0.1, 0.9]}}},
        ("optimizers.Adam.space.optimizer.momentum", "Adam does not take it", "betas"),
    ),
    (
        {"optimizers.Adam.space": {"optimizer.lr": {"log_uniform": [0, 1]}}},
        ("optimizers.Adam.space.optimizer.lr", "must be > 0"),
    ),
    ({"optimizers.Adam.space": {"seed": {"choice": [1, 2]}}}, ("optimizers.Adam.space", "seed")),
    (
        {"targets": {"branin": {"test_loss": 1.0}}},
        ("targets.branin.test_loss", "is a test metric", "valid_loss", "select_on_test"),
    ),
]


@pytest.mark.parametrize(("changes", "fragments"), SUITE_CASES, ids=lambda c: str(c)[:40])
def test_a_bad_benchmark_suite_is_one_clear_error(
    changes: dict[str, Any], fragments: tuple[str, ...], configs: Path, results: Path
) -> None:
    pytest.importorskip("optuna")
    path = write(configs, changed(SUITE, changes), "suite.yaml")
    result = invoke("benchmark", path, results, "--results-dir", str(results))
    assert_user_error(result, results, *fragments)


# --------------------------------------------------------------------------- issue 25's cases


def test_a_data_file_that_is_a_folder_is_called_a_folder(configs: Path, results: Path) -> None:
    (configs / "points.npz").mkdir()
    path = write(configs, regression(data__dataset="points.npz"))
    for command in COMMANDS:
        assert_user_error(invoke(command, path, results), results, "points.npz", "is a folder")


@pytest.mark.parametrize("command", ["run", "sweep", "tune"])
def test_a_results_dir_that_is_a_dangling_symlink_says_so(
    command: str, configs: Path, tmp_path: Path
) -> None:
    config = regression(tune={"space": {"optimizer.lr": {"log_uniform": [0.01, 0.1]}}})
    path = write(configs, config)
    dangling = tmp_path / "results-link"
    dangling.symlink_to(tmp_path / "gone")
    result = cli_runner().invoke(app, [command, str(path), "--results-dir", str(dangling)])
    assert_user_error(result, None, "results-link", "symbolic link", "does not exist")
    assert not (tmp_path / "gone").exists()


def _tune_config(configs: Path) -> Path:
    return write(configs, regression(tune={"space": {"optimizer.lr": {"choice": [0.01, 0.1]}}}))


def test_tune_storage_in_a_folder_that_does_not_exist_is_bad_input(
    configs: Path, results: Path
) -> None:
    pytest.importorskip("optuna")
    storage = "/nonexistent/dir/j.log"
    args = ["tune", str(_tune_config(configs)), "--storage", storage]
    result = cli_runner().invoke(app, [*args, "--results-dir", str(results)])
    assert_user_error(result, results, "--storage", "folder /nonexistent/dir does not exist")


def test_tune_trials_past_the_limit_is_refused(configs: Path, results: Path) -> None:
    pytest.importorskip("optuna")
    args = ["tune", str(_tune_config(configs)), "--trials", "99999999999999999999999"]
    result = cli_runner().invoke(app, [*args, "--results-dir", str(results)])
    assert_user_error(result, results, "--trials", "must be at least 1 and at most 100000")


@pytest.mark.parametrize("name", ["my suite", "réglages"])
def test_a_suite_name_outside_the_allowed_letters_is_said_in_words(
    name: str, configs: Path, results: Path
) -> None:
    suite = {
        "name": name,
        "problems": ["rosenbrock"],
        "optimizers": {"SGD": "SGD"},
        "tune": {"space": {"optimizer.lr": {"choice": [0.01]}}, "trials": 1},
    }
    path = write(configs, suite, "suite.yaml")
    result = cli_runner().invoke(app, ["benchmark", str(path), "--results-dir", str(results)])
    message = assert_user_error(result, results, "name", "letters, digits or _ . + = -", name)
    assert "^[" not in message  # not the pattern itself


def test_the_api_refuses_a_config_that_is_neither_a_path_nor_a_mapping(results: Path) -> None:
    with pytest.raises(optbench.ConfigError, match="config: must be a YAML file's path") as no:
        optbench.run(42)
    assert no.value.field == "config" and "int" in str(no.value)
    assert everything_in(results) == []


# --------------------------------------------------------------------------- token data

TEXT_CONFIG: dict[str, Any] = {
    "name": "bad",
    "seed": 0,
    "epochs": 1,
    "device": "cpu",
    "data": {"dataset": "text", "path": "corpus.txt", "context": 8, "batch_size": 4},
    "model": {"name": "gpt", "n_layer": 1, "n_head": 1, "n_embd": 8},
    "loss": "token_cross_entropy",
    "optimizer": {"name": "AdamW", "lr": 0.001},
}
_WORDS = b"a few words of text, repeated. " * 40
# (files written in the working directory, data keys changed, the message's fragments)
TEXT_CASES = {
    "empty-file": ({"corpus.txt": b""}, {}, ("data.path", "corpus.txt is empty")),
    "binary-file": (
        {"corpus.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"},
        {},
        ("data.path", "binary file"),
    ),
    "not-utf8": ({"corpus.txt": b"caf\xe9 " * 50}, {}, ("data.path", "not UTF-8 text")),
    "shorter-than-a-context": (
        {"corpus.txt": b"tiny text\n" * 5},
        {},
        ("data.context", "8 tokens is longer than", "corpus.txt allows", "holds 1 "),
    ),
    "folder-without-text": (
        {"texts/image.png": b"\x89PNG"},
        {"data.path": "texts"},
        ("data.path", "texts is a folder with no .txt files"),
    ),
    "missing-path": ({}, {}, ("data.path", "corpus.txt does not exist")),
    "context-0": ({"corpus.txt": _WORDS}, {"data.context": 0}, ("data.context", "at least 1")),
    "context-beyond-the-corpus": (
        {"corpus.txt": _WORDS},
        {"data.context": 10**6},
        ("data.context", "1000000 tokens is longer than", "corpus.txt allows"),
    ),
    "vocabulary-of-words": (
        {"corpus.txt": _WORDS},
        {"data.vocabulary": "words"},
        ("data.vocabulary", "must be bytes or chars, got 'words'"),
    ),
    "cross-entropy-on-tokens": (
        {"corpus.txt": _WORDS},
        {"loss": "cross_entropy"},
        ("loss", "text has a target per token", "token_cross_entropy"),
    ),
    "subset-of-windows": ({"corpus.txt": _WORDS}, {"data.subset": 10}, ("data.subset",)),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_bad_token_data_is_one_clear_error(
    case: str, command: str, configs: Path, results: Path, tmp_path_factory: Any
) -> None:
    files, changes, fragments = TEXT_CASES[case]
    folder = tmp_path_factory.mktemp("text")  # outside the results directory
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    path_key = str(folder / changes.get("data.path", "corpus.txt"))
    config = changed(TEXT_CONFIG, {**changes, "data.path": path_key})
    assert_user_error(invoke(command, write(configs, config), results), results, *fragments)


def test_fortunes_missing_says_how_to_install_it(
    configs: Path, results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optbench.components.data.text as text

    monkeypatch.setattr(text, "FORTUNES_FOLDER", tmp_path / "no-fortunes")
    config = changed(TEXT_CONFIG, {"data": {"dataset": "fortunes", "context": 8}})
    result = invoke("validate", write(configs, config), results)
    assert_user_error(result, results, "data.dataset", "apt-get install fortunes")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["nowhere"], ("run_dir", "nowhere is not a run folder")),
        (["RUN", "--tokens", "0"], ("tokens", "must be > 0, got 0")),
    ],
)
def test_sample_refuses_in_one_line(
    args: list[str], fragments: tuple[str, ...], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: x\n")
    argv = ["sample", *[str(run) if a == "RUN" else a for a in args]]
    assert_one_error_line(cli_runner().invoke(app, argv), *fragments)


HF_CONFIG = bert_config(name="bad", epochs=1)  # a tiny transformers BERT, its own loss
HF_CASES = {  # issue 26's Hugging Face refusals, through the CLI (tests/test_hugging_face.py
    # checks the same messages at planning)
    "output-without-logits-or-loss-from-model": (
        {
            "model.name": "tests.hf_models.tiny_bert_encoder",
            "loss": "cross_entropy",
            "data.input_column": ["input_ids", "attention_mask"],
        },
        ("model:", "no logits to read", "loss: from_model"),
    ),
    "dict-batch-missing-a-key": (
        {"data.input_column": ["attention_mask", "labels"]},
        ("model:", "fails on a batch of shape attention_mask (2, 12), labels (2,)"),
    ),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(HF_CASES))
def test_a_hugging_face_model_that_cannot_train_is_one_clear_error(
    case: str, command: str, configs: Path, results: Path
) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("datasets")
    changes, fragments = HF_CASES[case]
    path = write(configs, changed(HF_CONFIG, changes))
    assert_user_error(invoke(command, path, results, time_limit=30.0), results, *fragments)


def test_bf16_on_a_device_without_it(
    configs: Path, results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU without bf16 (no such GPU here: CUDA and its answer are stood in for)."""
    import torch

    import optbench.experiment.plan as plan

    monkeypatch.setattr(plan, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    path = write(configs, regression(precision="bf16"))
    assert_user_error(
        invoke("validate", path, results), results, "precision", "not supported on cuda"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_an_optimizer_whose_state_no_checkpoint_holds_is_refused_while_planning(
    command: str, configs: Path, results: Path
) -> None:
    pytest.importorskip("pytorch_optimizer")
    path = write(configs, regression(optimizer={"name": "pytorch_optimizer.AdaShift", "lr": 0.01}))
    # importing pytorch_optimizer the first time takes seconds on a busy machine
    assert_user_error(
        invoke(command, path, results, time_limit=120),
        results,
        "optimizer: pytorch_optimizer.optimizer.adashift.AdaShift's state cannot be checkpointed",
        "it holds a collections.deque",
    )
