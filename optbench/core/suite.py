"""A benchmark suite file (`optbench benchmark SUITE.yaml`): problems, optimizers, one budget.

Validated as strictly as an experiment config (unknown keys and wrong types are errors naming
the field). Torch-free: the command checks the file before anything is planned.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from optbench.core.byvalue import import_path, short_name, token_for
from optbench.core.config import (
    NAME_PATTERN,
    Distribution,
    OptimizerConfig,
    TuneConfig,
    _describe,
    _Strict,
    anchor_to_folder,
    apply_overrides,
    name_from_stem,
    read_config_file,
    safe_name,
    validate_config,
)
from optbench.core.errors import ConfigError
from optbench.core.metrics import is_test_metric, validation_metric
from optbench.core.problems import PROBLEMS

# How a pair's time to target is measured (docs/benchmark.md): AlgoPerf's external tuning
# (independent studies, each's fastest trial, the median over studies), or the best final
# metric of one tune rerun with seeds (the median over the seeds).
EXTERNAL_TUNING, BEST_FINAL_RERUNS = "external_tuning", "best_final_reruns"
PROTOCOLS = (EXTERNAL_TUNING, BEST_FINAL_RERUNS)
# External tuning searches quasi-randomly and trains every trial to the end, as AlgoPerf
# does, unless the suite's tune: names a sampler or pruner.
EXTERNAL_SAMPLER, EXTERNAL_PRUNER = "qmc", "none"


class SuiteOptimizer(OptimizerConfig):
    """An optimizer section of a suite: the optimizer's own options, and optionally its own
    search `space` (dotted keys, as tune.space), which replaces the suite's tune.space for it."""

    space: dict[str, Distribution] | None = None

    @field_validator("space")
    @classmethod
    def _keys(cls, space: dict[str, Distribution] | None) -> dict[str, Distribution] | None:
        if space is not None:
            TuneConfig(space=space)  # the same key rules as tune.space
        return space

    def section(self) -> dict[str, Any]:
        """The optimizer section a pair's config gets (its space is the tune's, not its own)."""
        return {k: v for k, v in self.model_dump().items() if k != "space"}


class SuiteConfig(_Strict):
    """`name`, the problems (registry names, or config paths relative to the suite file), `set`
    (dotted overrides applied to every problem), `optimizers` (label -> optimizer section),
    `tune` (the one budget every pair gets) and `targets` (problem -> {metric: value}, else the
    problem's own target)."""

    name: str
    problems: list[str] = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)
    optimizers: dict[str, SuiteOptimizer] = Field(min_length=1)
    tune: TuneConfig
    targets: dict[str, dict[str, float]] = Field(default_factory=dict)
    protocol: Literal["external_tuning", "best_final_reruns"] = EXTERNAL_TUNING
    studies: int = Field(3, ge=1, le=1000)  # external tuning: independent studies per pair
    # Targets, and so tuning, read the validation split (a test metric names its validation
    # twin); true: on the test split, as DeepOBS's baselines were chosen (warned, not advised).
    select_on_test: bool = False
    # Where the pairs' runs train (sweeps/executors), as a config's `executor:` section.
    executor: str | dict[str, Any] | None = None

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
    def _labels(cls, optimizers: dict[str, SuiteOptimizer]) -> dict[str, SuiteOptimizer]:
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


# An optimizer added to a suite's own (`optbench.benchmark(suite, optimizers=[...])`): a
# registered name or import path (what --optimizer takes), an optimizer class, or a
# (label, name or class) pair that labels it.
ExtraOptimizer = str | Callable[..., Any] | tuple[str, str | Callable[..., Any]]


def _object_label(obj: Any) -> str:
    """How a suite labels an optimizer class given as an object: its import path where one
    reaches it (as --optimizer names it), else its qualified name without the function it was
    defined in (`SignSGD`, not `test.<locals>.SignSGD`)."""
    path = import_path(obj)
    if path is not None:
        return optimizer_label(path)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return optimizer_label(str(qualname or type(obj).__name__).rpartition("<locals>.")[2])


def extra_optimizers(extra: Sequence[ExtraOptimizer], taken: Collection[str]) -> dict[str, str]:
    """Label -> the optimizer name a pair's config gets, for each optimizer added to a suite:
    a name as it is; a class by the import path that reaches it, else by value (its token,
    core/byvalue.py: identified by its code and the values it uses, shipped to the workers).
    A bad item, or one whose label is `taken` (the suite's) or another's, is a one-line
    ConfigError."""
    named: dict[str, str] = {}
    for index, item in enumerate(extra):
        field = "--optimizer" if isinstance(item, str) else f"optimizers[{index}]"
        label, given = None, item
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            label, given = item
            if not re.fullmatch(NAME_PATTERN, label):
                raise ConfigError(field, f"label {label!r} must be letters, digits or _ . + = -")
        if isinstance(given, str):
            name = given
        elif callable(given):
            name = import_path(given) or token_for(given, field)
        else:
            raise ConfigError(
                field,
                "must be an optimizer's name or import path, an optimizer class, or a (label, "
                f"name or class) pair, not {type(item).__name__} {str(item)[:60]!r}",
            )
        if label is None:
            label = optimizer_label(given) if isinstance(given, str) else _object_label(given)
        if label in taken:
            shown = given if isinstance(given, str) else short_name(name)
            raise ConfigError(field, f"{shown}: the suite has an optimizer labelled {label}")
        if label in named:
            raise ConfigError(field, f"{label} is added twice: label one, as (label, optimizer)")
        named[label] = name
    return named


def load_suite(path: str | Path) -> SuiteConfig:
    """Read and check a suite file; ConfigError names the first bad field."""
    data = read_config_file(path)
    try:
        suite = SuiteConfig.model_validate(data)
    except ValidationError as exc:
        field, problem = _describe(exc.errors()[0])
        raise ConfigError(field, problem) from None
    folder = Path(path).parent
    # a module beside the suite (--optimizer mypkg.MyOpt, with mypkg/ there) is importable,
    # as beside a config; the folder is what a Ray cluster is sent
    anchor_to_folder({}, folder)
    problems = [str(folder / p) if is_config_path(p) else p for p in suite.problems]
    suite = suite.model_copy(update={"problems": problems})
    unknown = set(suite.targets) - {problem_label(p) for p in suite.problems}
    if unknown:
        raise ConfigError(f"targets.{sorted(unknown)[0]}", "is not one of the suite's problems")
    return suite


# --------------------------------------------------------------------------- pairs and studies

# Keys of a problem's config file that a suite decides, not the problem.
_SUITE_KEYS = ("name", "optimizer", "sweep", "tune", "seed")


@dataclass(frozen=True)
class Study:
    """One tune of a pair: its folder (and run name) and its config (problem, set, optimizer,
    tune). External tuning gives a pair `studies` of them, the rerun protocol one."""

    folder: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Pair:
    """One (optimizer, problem) pair of a suite: its name and its studies."""

    optimizer: str
    problem: str
    name: str
    protocol: str
    studies: tuple[Study, ...]
    own_space: bool  # the optimizer declared its own space (its errors name it)

    @property
    def config(self) -> dict[str, Any]:
        """The first study's config (every study differs only in name and seeds)."""
        return self.studies[0].config


def _problem_config(problem: str) -> dict[str, Any]:
    """A problem's config sections: `problem: NAME` for a registry name, else the config file's
    own mapping without the keys the suite decides."""
    if not is_config_path(problem):
        PROBLEMS.get(problem, "problems")  # refuses an unknown name, with a suggestion
        return {"problem": problem}
    data = read_config_file(problem)
    return {k: v for k, v in data.items() if k not in _SUITE_KEYS}


def _target(suite: SuiteConfig, problem: str, config: dict[str, Any]) -> tuple[str, float]:
    """The suite's target (metric, value) for the problem, else its registry problem's, read
    on the validation split: a problem's own test target names its validation twin, and a
    suite's test target is refused unless the suite opts in (`select_on_test`)."""
    label = problem_label(problem)
    if label in suite.targets:
        ((metric, value),) = suite.targets[label].items()
        if is_test_metric(metric) and not suite.select_on_test:
            raise ConfigError(
                f"targets.{label}.{metric}",
                f"is a test metric: targets are read on the validation split (use "
                f"{validation_metric(metric)}), or set select_on_test: true to select on test",
            )
        return metric, float(value)
    resolved = validate_config(config).problem
    if resolved is None:
        raise ConfigError(f"targets.{label}", "is required: the problem is not a registry problem")
    metric, value = PROBLEMS.get(resolved.name, "problem").benchmark_target
    return (metric if suite.select_on_test else validation_metric(metric)), value


def _tune_section(suite: SuiteConfig, section: SuiteOptimizer | None) -> dict[str, Any]:
    """The suite's tune: with the optimizer's own space, and external tuning's sampler and
    pruner where the suite names none."""
    tune = suite.tune.model_dump(mode="json")
    if section is not None and section.space is not None:
        tune["space"] = {k: d.to_dict() for k, d in section.space.items()}
    if suite.protocol == EXTERNAL_TUNING:
        given = suite.tune.model_fields_set
        tune["sampler"] = tune["sampler"] if "sampler" in given else EXTERNAL_SAMPLER
        tune["pruner"] = tune["pruner"] if "pruner" in given else EXTERNAL_PRUNER
    return tune


def _studies(suite: SuiteConfig, name: str, config: dict[str, Any]) -> tuple[Study, ...]:
    """The rerun protocol: one tune, its best trial rerun with tune.seeds. External tuning:
    `studies` tunes, study k named `<pair>.study<k>` and trained with seed k (so each has its
    own run-ids, its own Optuna study and so its own sampler seed); its one "seed rerun" is
    its best trial itself (seed k), so nothing is trained twice."""
    if suite.protocol == BEST_FINAL_RERUNS:
        return (Study(name, {**config, "name": name}),)
    studies = []
    for k in range(suite.studies):
        folder = f"{name}.study{k}"
        study = {**copy.deepcopy(config), "name": folder, "seed": k}
        study["tune"] = {**study["tune"], "seeds": [k]}
        studies.append(Study(folder, study))
    return tuple(studies)


def suite_pairs(
    suite: SuiteConfig, extra: Sequence[ExtraOptimizer] = ()
) -> tuple[list[Pair], dict[str, tuple[str, float]]]:
    """Every pair's studies (problem + set + optimizer + tune) and each problem's target
    (metric, value), with the `extra` optimizers (see `extra_optimizers`) beside the suite's.
    The tunes' metric is the target's, so trials are judged by what is scored."""
    optimizers: dict[str, SuiteOptimizer | None] = dict(suite.optimizers)
    extra_names = extra_optimizers(extra, suite.optimizers)
    optimizers.update(dict.fromkeys(extra_names))
    pairs, targets = [], {}
    for problem in suite.problems:
        label = problem_label(problem)
        base = _problem_config(problem)
        apply_overrides(base, suite.set)
        for opt_label, section in optimizers.items():
            name = f"{suite.name}.{label}.{opt_label}"
            config = {**copy.deepcopy(base), "name": name}
            config["optimizer"] = (
                {"name": extra_names[opt_label]} if section is None else section.section()
            )
            if label not in targets:
                targets[label] = _target(suite, problem, config)
            config["tune"] = {**_tune_section(suite, section), "metric": targets[label][0]}
            own = section is not None and section.space is not None
            studies = _studies(suite, name, config)
            pairs.append(Pair(opt_label, label, name, suite.protocol, studies, own))
    return pairs, targets
