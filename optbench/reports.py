"""Tables for `optbench list` and `optbench params`: what is available, and where parameters go."""

from __future__ import annotations

import inspect
from typing import Any

from rich.table import Table

from optbench.plan import RunPlan

KINDS = ("optimizers", "schedulers", "models", "datasets", "losses")


def _show(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "(required)"
    if isinstance(value, tuple):
        value = list(value)
    return repr(value) if isinstance(value, str) else str(value)


def _options(defaults: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in defaults.items())


def catalog_table(kind: str) -> Table:
    """One row per registered component of `kind`, with its options and their defaults."""
    table = Table(title=f"optbench {kind}", title_justify="left", show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("options (defaults)" if kind != "datasets" else "shape")
    table.add_column("description")
    if kind == "optimizers":
        from optbench.optimizers import OPTIMIZERS

        for info in OPTIMIZERS:
            table.add_row(info.name, _options(info.defaults), info.description)
    elif kind == "schedulers":
        from optbench.schedulers import SCHEDULERS

        for info in SCHEDULERS:
            table.add_row(info.name, _options(info.defaults), info.description)
    elif kind == "models":
        from optbench.models import MODELS
        from optbench.registry import signature_defaults

        for info in MODELS:
            table.add_row(
                info.name,
                _options(signature_defaults(info.build, skip=("spec",))),
                info.description,
            )
    elif kind == "datasets":
        from optbench.data import DATASETS

        for info in DATASETS:
            spec = info.spec({})
            classes = f"{spec.num_classes} classes" if spec.num_classes else "regression"
            shape = "x".join(map(str, spec.input_shape))
            table.add_row(info.name, f"{shape}, {classes}", info.description)
    elif kind == "losses":
        from optbench.losses import LOSSES

        for info in LOSSES:
            table.add_row(info.name, f"targets: {info.targets}", info.description)
    else:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    return table


def param_table(plan: RunPlan) -> Table:
    """Every parameter's name, shape and group, with that group's effective hyperparameters."""
    from optbench.optimizers import assign_param_groups

    model = plan.build_model()
    named = dict(model.named_parameters())
    groups = assign_param_groups(named, plan.optimizer, plan.config.optimizer)
    top = groups[0].hyperparameters if groups[0].label == "default" else {}
    table = Table(
        title=f"{plan.name}: {plan.model.name} parameters -> {plan.optimizer.name} groups",
        title_justify="left",
    )
    for column in ("parameter", "shape", "numel", "group", "hyperparameters"):
        table.add_column(column, justify="right" if column == "numel" else "left")
    total = 0
    for index, group in enumerate(groups):
        differs = {k: v for k, v in group.hyperparameters.items() if top.get(k, object()) != v}
        shown = differs if index and top else group.hyperparameters
        key_values = ", ".join(
            f"{k}={_show(v)}" for k, v in shown.items() if v is not None and v is not False
        )
        for name in group.names:
            tensor = named[name]
            total += tensor.numel()
            table.add_row(
                name,
                "x".join(map(str, tensor.shape)),
                f"{tensor.numel():,}",
                f"{index} ({group.label})",
                key_values,
            )
    table.caption = f"{total:,} trainable parameters in {len(groups)} group(s)"
    return table


def sweep_table(name: str, points: list[Any], statuses: list[str]) -> Table:
    """`optbench sweep --dry-run`: every run of the grid and whether it already ran."""
    table = Table(title=f"sweep {name}: {len(points)} runs", title_justify="left")
    for column in ("#", "run", "grid point", "on disk"):
        table.add_column(column)
    for index, (point, status) in enumerate(zip(points, statuses, strict=True), 1):
        table.add_row(str(index), point.run_id, point.label, status)
    return table
