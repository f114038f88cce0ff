"""Step protocols are read off the optimizer class (or forced), shown to the user, and third-party
optimizers are found by short name, plug-in entry point or `list --from`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from optbench.components.optimizers import OptimInfo, get_optimizer
from optbench.components.stepping import detect_protocol, has_train_eval
from optbench.core.config import validate_config
from optbench.core.errors import ConfigError
from optbench.experiment.plan import make_plan
from tests.custom_optimizers import HistoryLBFGS
from tests.helpers import REPO, invoke, regression_dict, write_config

po = pytest.importorskip("pytorch_optimizer")


@pytest.mark.parametrize(
    ("cls", "protocol", "train_eval"),
    [
        (torch.optim.SGD, "plain", False),
        (torch.optim.LBFGS, "closure", False),
        (HistoryLBFGS, "closure", False),  # a subclass by path: read off the class, not its name
        (po.SAM, "sharpness", False),
        (po.LookSAM, "sharpness", False),
        (po.AdaHessian, "second_order", False),
        (po.SophiaH, "second_order", False),
        (po.ScheduleFreeAdamW, "plain", True),
        (po.ScheduleFreeSGD, "plain", True),
        (po.Lion, "plain", False),
    ],
)
def test_the_protocol_is_read_off_the_class(cls: type, protocol: str, train_eval: bool) -> None:
    assert detect_protocol(cls) == protocol
    assert has_train_eval(cls) is train_eval


def _plan(**optimizer):
    return make_plan(validate_config(regression_dict(optimizer=optimizer)))


def test_a_forced_protocol_is_used_and_is_part_of_the_identity() -> None:
    auto, plain = _plan(name="SGD", lr=0.1), _plan(name="SGD", lr=0.1, protocol="plain")
    closure = _plan(name="SGD", lr=0.1, protocol="closure")
    assert auto.optimizer.protocol.name == "plain" and auto.run_id == plain.run_id
    assert closure.optimizer.protocol.name == "closure" and closure.run_id != auto.run_id


SAM = "pytorch_optimizer.SAM"


def test_sam_binds_its_base_optimizer_and_param_groups_reach_it() -> None:
    plan = _plan(
        name=SAM,
        rho=0.1,
        base_optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9},
        param_groups=[{"params": "bias", "lr": 0.01}],
    )
    resolved = plan.resolved["optimizer"]
    assert resolved["protocol"] == "sharpness" and resolved["rho"] == 0.1
    assert resolved["base_optimizer"]["name"] == "SGD"  # canonical, whatever the spelling
    assert resolved["base_optimizer"]["momentum"] == 0.9
    optimizer = plan.build_optimizer(plan.build_model())
    assert isinstance(optimizer.base_optimizer, torch.optim.SGD)
    base_groups = optimizer.base_optimizer.param_groups  # SAM's groups, shared with its base
    assert sorted(g["lr"] for g in base_groups) == [0.01, 0.1]
    assert plan.resolved["code"]["optimizer"]["distribution"] == "pytorch_optimizer"


@pytest.mark.parametrize(
    ("optimizer", "fragment"),
    [
        ({"name": SAM, "rho": 0.05}, "optimizer.base_optimizer: pytorch_optimizer"),
        ({"name": SAM, "base_optimizer": "SGD"}, "give it as a mapping with a name"),
        ({"name": SAM, "base_optimizer": {"name": "SGD", "foreach": True}}, "takes 'foreach'"),
        ({"name": SAM, "base_optimizer": {"name": "LBFGS"}}, "cannot be a base optimizer"),
        ({"name": SAM, "base_optimizer": {"name": "SGD", "lr": -1}}, "base_optimizer.lr"),
        ({"name": SAM, "lr": 0.1, "base_optimizer": {"name": "SGD"}}, "does not accept 'lr'"),
        ({"name": "pytorch_optimizer.GSAM"}, "GSAM' cannot be stepped"),
        ({"name": "pytorch_optimizer.AliG"}, "optimizer.protocol forces another"),
    ],
)
def test_optimizers_optbench_cannot_step_as_configured_are_refused_with_a_reason(
    optimizer: dict, fragment: str
) -> None:
    with pytest.raises(ConfigError) as refusal:
        _plan(**optimizer)
    assert fragment in str(refusal.value) and "\n" not in str(refusal.value)


def test_a_short_name_finds_a_collections_optimizer_and_names_it_one_way() -> None:
    spellings = ["lion", "Lion", "pytorch_optimizer.Lion", "pytorch_optimizer.optimizer.lion.Lion"]
    plans = [_plan(name=name, lr=0.001) for name in spellings]
    assert {p.run_id for p in plans} == {plans[0].run_id}
    assert plans[0].optimizer.info.cls is po.Lion
    assert get_optimizer("adam").cls is torch.optim.Adam  # torch.optim's names come first


def test_list_from_a_package_shows_every_optimizer_it_exports_with_its_path() -> None:
    exported = {
        name
        for name, obj in vars(po).items()
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)
    }
    result = invoke("list", "optimizers", "--from", "pytorch_optimizer")
    assert result.exit_code == 0, result.output
    shown = {line.split("│")[1].strip() for line in result.stdout.splitlines() if "│ pyt" in line}
    assert shown == {f"pytorch_optimizer.{name}" for name in exported}
    assert "[steps: sharpness]" in result.stdout and "train/eval modes" in result.stdout


def test_validate_and_params_show_how_the_optimizer_steps(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, regression_dict(optimizer={"name": SAM, "base_optimizer": {"name": "SGD"}})
    )
    validated = invoke("validate", str(config))
    assert "steps: sharpness (two passes" in validated.stdout
    assert "steps: sharpness" in invoke("params", str(config)).stdout


@pytest.mark.slow
def test_a_plug_in_registered_by_entry_point_is_found_by_its_short_name(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "myplug").mkdir(parents=True)
    (site / "myplug" / "__init__.py").write_text("")
    (site / "myplug" / "optim.py").write_text(
        "import torch\n\nclass Plugged(torch.optim.SGD):\n    pass\n"
    )
    info = site / "myplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[optbench.optimizers]\nplugged = myplug.optim:Plugged\n"
    )
    config = write_config(tmp_path, regression_dict(optimizer={"name": "plugged", "lr": 0.1}))
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "OPTBENCH_CACHE": str(tmp_path)}

    def optbench(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "optbench", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**env, "COLUMNS": "200"},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = optbench("list", "optimizers")
    assert "plugged" in listed and "myplug.optim:Plugged" in listed
    assert "run-id plugged-seed0-" in optbench("validate", str(config))


def test_from_class_records_are_frozen_and_carry_the_protocol() -> None:
    info = OptimInfo.from_class("x", po.AdaHessian)
    assert info.protocol == "second_order" and not info.train_eval
    with pytest.raises(AttributeError):
        info.protocol = "plain"  # type: ignore[misc]
