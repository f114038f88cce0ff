"""From a shape-checked config to a run plan: every component looked up and bound to its signature.

`make_plan` does all checking before anything trains: it builds the model once (parameter names
for param groups), constructs the optimizer and scheduler on it, and throws them away. What it
returns is enough to build fresh objects after seeding, plus the fully resolved config and the
stable run-id derived from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from optbench import identity
from optbench.config import ExperimentConfig, default_data_root
from optbench.data import DATASETS, DatasetInfo, DataSpec, dataset_options, resolve_normalize
from optbench.errors import ConfigError
from optbench.losses import LOSS_CODE_ARGS, LOSSES, LossInfo
from optbench.models import MODELS, ModelInfo
from optbench.optimizers import OptimInfo, create_optimizer, get_optimizer, resolve_hyperparameters
from optbench.registry import bind_options
from optbench.schedulers import (
    SCHEDULERS,
    SchedulerInfo,
    create_scheduler,
    resolve_scheduler_options,
)


@dataclass(frozen=True)
class RunPlan:
    config: ExperimentConfig
    resolved: dict[str, Any]
    run_id: str
    device: torch.device
    dataset: DatasetInfo
    data_spec: DataSpec
    data_root: str
    model: ModelInfo
    model_options: dict[str, Any]
    loss: LossInfo
    loss_options: dict[str, Any]
    optimizer: OptimInfo
    scheduler: SchedulerInfo | None
    scheduler_options: dict[str, Any]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.data_spec, self.config.data.batch_size)

    def build_model(self, device: torch.device | None = None) -> nn.Module:
        try:
            model = self.model.build(self.data_spec, **self.model_options)
        except (ValueError, TypeError) as exc:
            raise ConfigError("model", f"{self.model.name}: {exc}") from None
        return model.to(device or self.device)

    def build_loss(self) -> nn.Module:
        return self.loss.cls(**self.loss_options)

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return create_optimizer(model, self.optimizer, self.config.optimizer)[0]

    def build_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        if self.scheduler is None:
            return None
        return create_scheduler(optimizer, self.scheduler, self.scheduler_options)


def steps_per_epoch(spec: DataSpec, batch_size: int) -> int:
    """Optimizer steps per epoch: the DataLoader keeps the last, smaller batch."""
    return math.ceil(spec.train_size / batch_size)


def resolve_device(name: str) -> torch.device:
    """'auto' is the best available accelerator, else the CPU; others must exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device", f"'{name}' was asked for but CUDA is not available here")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                "device", f"'{name}' does not exist; {torch.cuda.device_count()} GPU(s) here"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", "'mps' was asked for but MPS is not available here")
    return torch.device(name)


def _plain(value: Any) -> Any:
    """YAML/JSON-friendly copy: tuples become lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def make_plan(config: ExperimentConfig) -> RunPlan:
    """Check every component of `config` against what it builds; raise ConfigError on the first
    problem, naming its field."""
    data = config.data
    dataset = DATASETS.get(data.dataset, "data.dataset")
    data_options = dataset_options(data)
    spec = dataset.spec(data_options)
    if data.subset is not None:
        if data.subset > spec.train_size:
            raise ConfigError(
                "data.subset",
                f"{data.subset} is more than the {spec.train_size} training samples "
                f"of {dataset.name}",
            )
        spec = DataSpec(spec.input_shape, spec.num_classes, data.subset)
    normalize = resolve_normalize(data, dataset, spec)

    model_info = MODELS.get(config.model.name, "model.name")
    model_options = bind_options(
        model_info.build, config.model.options, "model", skip=("spec",), label=model_info.name
    )

    loss_info = LOSSES.get(config.loss.name, "loss")
    loss_options = bind_options(
        loss_info.cls,
        config.loss.options,
        "loss",
        skip=(*LOSS_CODE_ARGS, "weight"),
        label=loss_info.name,
    )
    wants = "classes" if spec.num_classes else "values"
    if loss_info.targets != wants:
        kind = "classification" if spec.num_classes else "regression"
        raise ConfigError(
            "loss",
            f"{loss_info.name} expects {loss_info.targets} as targets, but {dataset.name} is a "
            f"{kind} dataset; use "
            + ", ".join(info.name for info in LOSSES if info.targets == wants),
        )

    optimizer_info = get_optimizer(config.optimizer.name)
    hyper = resolve_hyperparameters(optimizer_info, config.optimizer)

    scheduler_info = scheduler_options = None
    if config.scheduler is not None:
        scheduler_info = SCHEDULERS.get(config.scheduler.name, "scheduler.name")
        per_step = config.scheduler.interval == "step"
        if per_step and scheduler_info.steps_on_metric:
            raise ConfigError(
                "scheduler.interval",
                f"{scheduler_info.name} steps on the epoch's test loss, so its interval must be "
                "'epoch'",
            )
        run_length = config.epochs * (steps_per_epoch(spec, data.batch_size) if per_step else 1)
        scheduler_options = resolve_scheduler_options(scheduler_info, config.scheduler, run_length)

    device = resolve_device(config.device)
    plan = RunPlan(
        config=config,
        resolved={},
        run_id="",
        device=device,
        dataset=dataset,
        data_spec=spec,
        data_root=data.root or default_data_root(),
        model=model_info,
        model_options=model_options,
        loss=loss_info,
        loss_options=loss_options,
        optimizer=optimizer_info,
        scheduler=scheduler_info,
        scheduler_options=scheduler_options or {},
    )
    # Build everything once, away from the global RNG, so bad values fail now and not mid-run.
    with torch.random.fork_rng(devices=[]):
        optimizer = plan.build_optimizer(plan.build_model(torch.device("cpu")))
        plan.build_scheduler(optimizer)

    resolved = _plain(
        {
            "name": config.name,
            "seed": config.seed,
            "epochs": config.epochs,
            "device": str(device),
            "data": {
                "dataset": dataset.name,
                "root": plan.data_root,
                "download": data.download,
                "batch_size": data.batch_size,
                "test_batch_size": data.test_batch_size,
                "normalize": {"mean": normalize[0], "std": normalize[1]} if normalize else None,
                "subset": data.subset,
                **data_options,
            },
            "model": {"name": model_info.name, **model_options},
            "loss": {"name": loss_info.name, **loss_options},
            "optimizer": {
                "name": optimizer_info.name,
                **hyper,
                "param_groups": [
                    {"params": g.params, **g.hyperparameters} for g in config.optimizer.param_groups
                ],
            },
            "scheduler": (
                {
                    "name": scheduler_info.name,
                    "interval": config.scheduler.interval,
                    **scheduler_options,
                }
                if scheduler_info and config.scheduler
                else None
            ),
            **({"fast": True} if config.fast else {}),  # exact runs keep their earlier run-ids
        }
    )
    return dataclasses.replace(plan, resolved=resolved, run_id=identity.run_id(resolved))
