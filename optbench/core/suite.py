"""A benchmark suite file (`optbench benchmark SUITE.yaml`): problems, optimizers, one budget.

Validated as strictly as an experiment config (unknown keys and wrong types are errors naming
the field). Torch-free: the command checks the file before anything is planned.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from optbench.core.config import (
    NAME_PATTERN,
    OptimizerConfig,
    TuneConfig,
    _describe,
    _Strict,
    name_from_stem,
    read_config_file,
    safe_name,
)
from optbench.core.errors import ConfigError


class SuiteConfig(_Strict):
    """`name`, the problems (registry names, or config paths relative to the suite file), `set`
    (dotted overrides applied to every problem), `optimizers` (label -> optimizer section),
    `tune` (the one budget every pair gets) and `targets` (problem -> {metric: value}, else the
    problem's own target)."""

    name: str
    problems: list[str] = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)
    optimizers: dict[str, OptimizerConfig] = Field(min_length=1)
    tune: TuneConfig
    targets: dict[str, dict[str, float]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        return safe_name(name)

    @field_validator("optimizers", mode="before")
    @classmethod
    def _section_by_name(cls, optimizers: Any) -> Any:
        if not isinstance(optimizers, dict):
            return optimizers
        return {k: {"name": v} if isinstance(v, str) else v for k, v in optimizers.items()}

    @field_validator("optimizers")
    @classmethod
    def _labels(cls, optimizers: dict[str, OptimizerConfig]) -> dict[str, OptimizerConfig]:
        for label in optimizers:
            if not re.fullmatch(NAME_PATTERN, label):
                raise ValueError(f"label {label!r} must be letters, digits or _ . + = -")
        return optimizers

    @field_validator("problems")
    @classmethod
    def _distinct(cls, problems: list[str]) -> list[str]:
        labels = [problem_label(p) for p in problems]
        if len(set(labels)) != len(labels):
            raise ValueError(f"problems {labels} name one problem twice")
        return problems

    @field_validator("targets")
    @classmethod
    def _one_metric(cls, targets: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for problem, target in targets.items():
            if len(target) != 1:
                raise ValueError(f"{problem}: must be one {{metric: value}}, got {target}")
        return targets


def is_config_path(problem: str) -> bool:
    """Whether a suite's problem is a config file (else a registry name)."""
    return problem.endswith((".yaml", ".yml"))


def problem_label(problem: str) -> str:
    """How a suite names a problem: a registry name as it is, a config path by its file stem."""
    return name_from_stem(Path(problem).stem) if is_config_path(problem) else problem


def optimizer_label(name: str) -> str:
    """The label of an optimizer added with --optimizer NAME_OR_PATH: the name, made folder-safe."""
    return name_from_stem(name.replace(":", "."))


def load_suite(path: str | Path) -> SuiteConfig:
    """Read and check a suite file; ConfigError names the first bad field."""
    data = read_config_file(path)
    try:
        suite = SuiteConfig.model_validate(data)
    except ValidationError as exc:
        field, problem = _describe(exc.errors()[0])
        raise ConfigError(field, problem) from None
    folder = Path(path).parent
    problems = [str(folder / p) if is_config_path(p) else p for p in suite.problems]
    suite = suite.model_copy(update={"problems": problems})
    unknown = set(suite.targets) - {problem_label(p) for p in suite.problems}
    if unknown:
        raise ConfigError(f"targets.{sorted(unknown)[0]}", "is not one of the suite's problems")
    return suite
