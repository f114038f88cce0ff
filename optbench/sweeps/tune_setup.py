"""A config's `tune:` section planned into arms, checked before any study or run exists.

One arm per optimizer of the `sweep:` grid (or `--grid`), each with the keys of the search space
its optimizer takes, the same budget, and a study name hashed from its run and space, so a
tune's comparison is fair by construction and a space a run would refuse is refused up front
(`optbench validate` shows the same plan without importing Optuna).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

from optbench.core.config import (
    MAX_TRIALS,
    ConfigSource,
    Distribution,
    Overrides,
    TuneConfig,
    apply_override,
    validate_config,
)
from optbench.core.errors import ConfigError
from optbench.core.metrics import (
    CLASSIFICATION_METRIC,
    DEFAULT_METRIC,
    higher_is_better,
    is_test_metric,
    validation_metric,
)

if TYPE_CHECKING:
    from optbench.sweeps.grid import Grid


@dataclasses.dataclass
class Arm:
    """One optimizer of the tune: its base config, the space it takes and its study."""

    key: str
    config: dict[str, Any]
    space: dict[str, Distribution]
    study_name: str
    epochs: int
    study: Any = None
    budget: int = 0
    asked_all: bool = False
    seed: int = 0  # the sampler's: trial n is asked with seed + n (TrialAsker._ask)
    study_id: int = 0  # the storage's id of the study (tune_studies.py's Studies.trial_id)
    short: bool = False  # a trial was dropped after the arm was asked all: ask again
    seed_run_ids: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TuneSetup:
    name: str
    tune: TuneConfig
    metric: str
    arms: list[Arm]
    # What the tune decided for the user (the default validation split it holds out) and the
    # warning when it selects on the test split: printed above the tune, kept in tune.json.
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def direction(self) -> str:
        return "maximize" if higher_is_better(self.metric) else "minimize"


def config_with(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` with a trial's (or a check's) dotted values set, as overrides are."""
    config = copy.deepcopy(config)
    for key, value in values.items():
        apply_override(config, key.split("."), copy.deepcopy(value), source="tune")
    return config


def _default_metric(plan: Any) -> str:
    """The problem's metric, else test_accuracy or test_loss, read on the validation split
    (valid_accuracy, valid_loss); a metric of no split (distance_to_optimum) as it is."""
    from optbench.core.problems import PROBLEMS

    problem = plan.config.problem
    if problem is not None and problem.name in PROBLEMS:
        return validation_metric(PROBLEMS.get(problem.name, "problem").metric)
    classify = plan.data_spec.num_classes is not None
    return validation_metric(CLASSIFICATION_METRIC if classify else DEFAULT_METRIC)


# A tune of a config that is no registered problem and sets no `data.validation` holds out this
# fraction of its training set (DeepOBS's 10,000 of 60,000 images is about 0.17; 0.1 keeps
# more to train on where a dataset is small).
DEFAULT_VALIDATION_FRACTION = 0.1


def default_validation(data: dict[str, Any], metric: str | None) -> tuple[Any, str] | None:
    """The `data.validation` a tune (or benchmark) adds to a config that sets none, with the
    note that says so: the problem's declared split, else DEFAULT_VALIDATION_FRACTION. None
    when the config has one, or when the tune selects on the test split on purpose."""
    from optbench.core.problems import PROBLEMS

    section = data.get("data")
    if isinstance(section, dict) and section.get("validation") is not None:
        return None
    if metric is not None and is_test_metric(metric):
        return None
    problem = data.get("problem")
    name = problem.get("name") if isinstance(problem, dict) else problem
    if isinstance(name, str) and name in PROBLEMS:
        info = PROBLEMS.get(name, "problem")
        value = info.default_validation
        why = f"{name}'s default: {info.validation[1] if info.validation else ''}"
    else:
        value = DEFAULT_VALIDATION_FRACTION
        why = "optbench's default for a config that is no registered problem"
    return value, (
        f"note: the config sets no data.validation; the tune holds out {value} ({why}) and "
        "selects on that validation split (set data.validation to choose another)"
    )


def selecting_on_test(metric: str) -> str:
    """What a tune selecting on the test split prints (and records in tune.json)."""
    return (
        f"warning: tune.metric {metric} selects on the test split: the tuned figures are "
        "optimistic and no longer estimate test performance; a validation metric "
        f"({validation_metric(metric)}) keeps the test split for reporting"
    )


def _check_metric(metric: str, plan: Any) -> None:
    if metric.endswith("accuracy") and plan.data_spec.num_classes is None:
        raise ConfigError("tune.metric", f"{metric} needs a classification problem")
    if metric == "distance_to_optimum" and not hasattr(plan.build_model(), "distance_to_optimum"):
        raise ConfigError("tune.metric", "distance_to_optimum needs a problem with a known optimum")


def check_storage(spec: str | None) -> None:
    """A journal file's folder must exist (Optuna would fail at its first write, which reads as
    a full disk); a URL is checked by Optuna when it is opened."""
    from pathlib import Path

    if spec is None or "://" in spec:
        return
    path = Path(spec)
    if path.is_dir():
        raise ConfigError(
            "--storage", f"{spec} is a folder; give a file such as {path / 'optuna-journal.log'}"
        )
    if not path.parent.is_dir():
        raise ConfigError("--storage", f"{spec}: folder {path.parent} does not exist")


def load_tune(
    source: ConfigSource,
    overrides: Overrides | None = None,
    grid: Grid | None = None,
    trials: int | None = None,
    check_space: bool = True,
) -> TuneSetup:
    """Read and check everything a tune needs before anything runs: its `tune:` section, one
    arm per optimizer of the grid, each arm's space (the keys its optimizer takes), the metric.
    `check_space=False` skips planning the space's ends (a benchmark's studies of one pair
    differ only in seed: their space was checked on the first)."""
    from optbench.sweeps.grid import expand_grid, read_grid

    data, grid, folder = read_grid(source, grid, None, overrides)
    if "seed" in grid:
        raise ConfigError("sweep.seed", "a tune reruns its best configurations with tune.seeds")
    tune = validate_config(data).tune
    if tune is None:
        raise ConfigError("tune", "is required: optbench tune needs a tune: section with a space")
    if trials is not None:
        if not 1 <= trials <= MAX_TRIALS:
            raise ConfigError(
                "--trials", f"must be at least 1 and at most {MAX_TRIALS}, got {trials}"
            )
        tune = tune.model_copy(update={"trials": trials})
    base = {k: v for k, v in data.items() if k != "tune"}
    notes = []
    held = default_validation(base, tune.metric)
    if held is not None:
        base = config_with(base, {"data.validation": held[0]})
        notes.append(held[1])
    if tune.metric is not None and is_test_metric(tune.metric):
        notes.append(selecting_on_test(tune.metric))
    points = expand_grid(base, grid, folder)

    arms: list[Arm] = []
    metric = tune.metric
    plans = [p.plan for p in points]
    names = [plan.optimizer.info.name for plan in plans]
    for point, plan in zip(points, plans, strict=True):
        accepted = set(plan.optimizer.info.defaults)
        space = {
            k: d
            for k, d in tune.space.items()
            if not k.startswith("optimizer.") or k.split(".")[1] in accepted
        }
        key = plan.optimizer.info.name
        if names.count(key) > 1:
            key = point.label.removeprefix("optimizer=")
        arms.append(Arm(key, point.config, space, "", plan.config.epochs))
        metric = metric or _default_metric(plan)
        _check_metric(metric, plan)
    for key in tune.space:
        if not any(key in arm.space for arm in arms):
            takes = "; ".join(
                f"{plan.optimizer.info.name} takes {', '.join(plan.optimizer.info.defaults)}"
                for plan in plans
            )
            raise ConfigError(f"tune.space.{key}", f"no optimizer of this tune takes it ({takes})")
    if tune.sampler == "grid":
        for key, dist in tune.space.items():
            if dist.kind != "choice":
                raise ConfigError(
                    f"tune.space.{key}",
                    f"the grid sampler needs choice lists, not a {dist.kind} range",
                )
    for arm, plan in zip(arms, plans, strict=True):
        if check_space:
            _check_space(arm)
        spec = {
            "run": plan.run_id,
            "space": {k: d.to_dict() for k, d in arm.space.items()},
            "metric": metric,
        }
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
        arm.study_name = f"{plan.name}.{arm.key}.{digest}"
    assert metric is not None
    return TuneSetup(plans[0].name, tune, metric, arms, notes)


def _ends(dist: Distribution) -> list[tuple[Any, str]]:
    """The values of a range that the sampler can reach at its edges (each with where it lies),
    or every value of a choice: what the space is checked at."""
    if dist.kind == "choice":
        return [(value, "a choice") for value in dist.bounds]
    low, high = dist.bounds
    return [(low, f"the low end of {dist.kind}"), (high, f"the high end of {dist.kind}")]


def _check_space(arm: Arm) -> None:
    """Plan the arm's config at both ends of every range and at every choice (the other keys in
    the middle of theirs), against the schema and the components' own checks, so a space that
    can produce a value the run would refuse is refused before any study exists."""
    from optbench.experiment.plan import make_plan

    middle = {k: _middle(d) for k, d in arm.space.items()}
    for key, dist in arm.space.items():
        for value, where in _ends(dist):
            try:
                make_plan(validate_config(config_with(arm.config, {**middle, key: value})))
            except ConfigError as exc:
                raise ConfigError(
                    f"tune.space.{key}", f"{value!r} ({where}) is refused for {arm.key}: {exc}"
                ) from None


def describe_tune(setup: TuneSetup) -> str:
    """What a tune will do, as `optbench validate` shows it: each optimizer's space and budget."""
    tune = setup.tune
    arms = "; ".join(f"{arm.key}: {', '.join(arm.space)}" for arm in setup.arms)
    seeds = ",".join(map(str, tune.seeds))
    return (
        f"tune: {tune.trials} trials per optimizer ({tune.sampler} sampler, "
        f"{'no' if tune.pruner == 'none' else tune.pruner} pruner), {setup.direction} "
        f"{setup.metric}, best rerun with seeds {seeds}; "
        f"searching {arms}"
    ) + "".join(f"\n{note}" for note in setup.notes)


def _middle(dist: Distribution) -> Any:
    """A value inside the range, to check the space before anything runs."""
    if dist.kind == "choice":
        return dist.bounds[0]
    low, high = dist.bounds
    if dist.kind == "log_uniform":
        return math.sqrt(low * high)
    if dist.kind == "int_uniform":
        return (low + high) // 2
    return (low + high) / 2
