"""pytorch_optimizer's own registry through optbench: every optimizer it lists (and its SAM
family) trains a small problem with a finite loss, or is refused while planning with a reason.
Nothing is run wrongly. The counts are printed at the end of the test run."""

from __future__ import annotations

import inspect
import math

import pytest

from optbench.core.config import validate_config
from optbench.core.errors import ConfigError
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train
from tests.helpers import ECOSYSTEM_OUTCOMES, regression_dict

po = pytest.importorskip("pytorch_optimizer")
pytestmark = pytest.mark.slow  # 134 optimizers, each planned and trained

SAM_FAMILY = ["SAM", "GSAM", "WSAM", "BSAM", "FriendlySAM", "LookSAM"]
NAMES = [*po.get_supported_optimizers(), *SAM_FAMILY]


def _load(name: str) -> type:
    return getattr(po, name) if name in SAM_FAMILY else po.load_optimizer(name)


@pytest.mark.parametrize("name", NAMES)
def test_every_pytorch_optimizer_trains_or_is_refused_with_a_reason(name: str) -> None:
    try:
        cls = _load(name)
    except (ImportError, NotImplementedError) as exc:  # an optional dependency, or CUDA
        ECOSYSTEM_OUTCOMES.setdefault("skipped", []).append(f"{name}: {exc}")
        pytest.skip(f"{name}: {exc}")
    parameters = inspect.signature(cls).parameters
    optimizer: dict = {"name": f"{cls.__module__}.{cls.__qualname__}"}
    if "lr" in parameters:
        optimizer["lr"] = 0.01
    if "base_optimizer" in parameters:
        optimizer["base_optimizer"] = {"name": "SGD", "lr": 0.05}
    config = regression_dict(
        epochs=1,
        data={"dataset": "synthetic_regression", "n_train": 64, "n_test": 16, "batch_size": 16},
        model={"name": "mlp", "hidden_sizes": [8]},
        optimizer=optimizer,
    )
    try:
        plan = make_plan(validate_config(config))
    except ConfigError as refusal:
        message = str(refusal)
        assert message.count("\n") == 0 and message.startswith("optimizer"), message
        if "needs a package that is not installed" in message:
            ECOSYSTEM_OUTCOMES.setdefault("skipped", []).append(f"{name}: {message}")
            pytest.skip(message)
        ECOSYSTEM_OUTCOMES.setdefault("refused", []).append(f"{name}: {message}")
        return
    result = train(plan)
    assert result.status == "completed", (name, result.diverged_at)
    assert all(math.isfinite(row["train_loss"]) for row in result.rows)
    ECOSYSTEM_OUTCOMES.setdefault(f"trained ({plan.optimizer.protocol.name})", []).append(name)
