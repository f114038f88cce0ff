"""Schedulers: every registered one runs; epoch and step intervals; run lengths from code."""

from __future__ import annotations

import pytest

from optbench.components.schedulers import SCHEDULERS
from optbench.core.errors import ConfigError
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train
from tests.helpers import regression_config

# The arguments each scheduler requires, for a 3-epoch run with 8 steps per epoch.
REQUIRED = {
    "StepLR": {"step_size": 1},
    "MultiStepLR": {"milestones": [1, 2]},
    "ExponentialLR": {"gamma": 0.5},
    "CosineAnnealingWarmRestarts": {"T_0": 2},
    "CyclicLR": {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4},
    "OneCycleLR": {"max_lr": 0.1},
}
SGD = {"name": "SGD", "lr": 0.1, "momentum": 0.9}


def _run(scheduler: dict, epochs: int = 3):
    plan = make_plan(regression_config(optimizer=SGD, scheduler=scheduler, epochs=epochs))
    result = train(plan)
    assert result.status == "completed"
    return plan, [row["lr"] for row in result.rows]


@pytest.mark.parametrize("name", SCHEDULERS.names())
@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_every_registered_scheduler_runs(name: str, interval: str) -> None:
    scheduler = {"name": name, "interval": interval, **REQUIRED.get(name, {})}
    if name == "ReduceLROnPlateau" and interval == "step":
        with pytest.raises(ConfigError, match=r"scheduler\.interval: ReduceLROnPlateau steps on"):
            make_plan(regression_config(optimizer=SGD, scheduler=scheduler))
        return
    _, lrs = _run(scheduler)
    assert len(lrs) == 3 and all(lr >= 0 for lr in lrs)


def test_step_lr_per_epoch_changes_the_lr_column() -> None:
    _, lrs = _run({"name": "StepLR", "step_size": 2, "gamma": 0.1}, epochs=5)
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_per_step_interval_steps_every_batch() -> None:
    # 256 samples / batch 32 = 8 steps per epoch; lr halves every step
    _, lrs = _run({"name": "ExponentialLR", "gamma": 0.5, "interval": "step"})
    assert lrs == pytest.approx([0.1, 0.1 * 0.5**8, 0.1 * 0.5**16])


def test_run_length_arguments_come_from_the_run() -> None:
    plan, _ = _run({"name": "OneCycleLR", "max_lr": 0.1, "interval": "step"})
    assert plan.scheduler.options["total_steps"] == 3 * 8 == 3 * plan.steps_per_epoch
    plan, lrs = _run({"name": "CosineAnnealingLR"}, epochs=4)
    assert plan.resolved["scheduler"]["T_max"] == 4
    assert lrs == pytest.approx([0.1, 0.085355339, 0.05, 0.014644661])


def test_reduce_on_plateau_is_stepped_with_the_test_loss() -> None:
    # Any improvement smaller than 1000% counts as a plateau: the lr drops after every epoch.
    _, lrs = _run(
        {"name": "ReduceLROnPlateau", "patience": 0, "threshold": 10.0, "factor": 0.5}, epochs=3
    )
    assert lrs == pytest.approx([0.1, 0.05, 0.025])


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        ({"name": "StepLR"}, "scheduler.step_size: is required by StepLR"),
        ({"name": "StepLR", "step_size": 1, "gama": 0.1}, "(did you mean 'gamma'?)"),
        ({"name": "LambdaLR"}, "unknown scheduler 'LambdaLR'"),
        ({"name": "StepLR", "step_size": "two"}, "scheduler.step_size: must be"),
    ],
)
def test_bad_scheduler_settings(scheduler: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_plan(regression_config(optimizer=SGD, scheduler=scheduler))
    assert message in str(error.value)
