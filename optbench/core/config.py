"""The experiment config: its schema, safe YAML loading and dotted `--set` overrides.

This module checks the *shape* of a config (keys, types, ranges) without importing torch.
Whether an optimizer, scheduler, model or dataset accepts its options is checked against the
component's own signature in `optbench.experiment.plan`.
"""

from __future__ import annotations

import copy
import datetime
import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from optbench.core.errors import ConfigError, did_you_mean
from optbench.core.metrics import RankableName

MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_DEPTH = 20
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+=-]{0,99}$"
# The largest integer any field or option may hold: what an int64 (torch, numpy, islice) holds.
MAX_INTEGER = 2**63 - 1


def safe_name(name: str) -> str:
    """An experiment's or a suite's name, which names a folder: NAME_PATTERN, said in words."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(
            "must be 1-100 letters, digits or _ . + = - starting with a letter or digit "
            f"(it names a folder under the results directory), got {name!r}"
        )
    return name


class _Strict(BaseModel):
    """Unknown keys and wrong types are errors; ints pass for floats, nothing else is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class _WithOptions(BaseModel):
    """A component section: a `name` plus flat options bound later to the component's signature."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Normalize(_Strict):
    mean: list[float] = Field(min_length=1)
    std: list[float] = Field(min_length=1)

    @field_validator("std")
    @classmethod
    def _positive(cls, std: list[float]) -> list[float]:
        if any(s <= 0 for s in std):
            raise ValueError("every std must be > 0")
        return std


# The values data.augment takes; components/augment.py builds each.
AUGMENT_NAMES = ("deepobs_cifar10",)
AugmentName = Literal.__getitem__(AUGMENT_NAMES)  # type: ignore[attr-defined]


class DataConfig(BaseModel):
    """Fixed keys below; any other key is an option of the dataset (e.g. synthetic sizes)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    dataset: str
    root: str | None = None
    download: bool = False
    batch_size: int = Field(64, ge=1, le=MAX_INTEGER)
    test_batch_size: int = Field(1000, ge=1, le=MAX_INTEGER)
    normalize: Normalize | None = None
    subset: int | None = Field(None, ge=1, le=MAX_INTEGER)
    # Training batches only (components/augment.py); evaluation never sees it.
    augment: AugmentName | None = None
    # Repeat a grayscale image's channel this many times for a model that takes 3-channel
    # images and not a channel count (components/models.py with_channels); left out of the
    # resolved config when unset, so run-ids from before it stay.
    channels: int | None = Field(None, ge=1, le=MAX_INTEGER)
    # How an imported dataset is read (components/data/imported.py Reading): the split names of
    # a class that takes split= (SVHN, STL10...), a Hugging Face Dataset's columns, the layout
    # of image arrays. Unset: found from the dataset.
    train_split: str | None = None
    test_split: str | None = None
    # several input columns: a batch is a dict of them, passed as model(**batch)
    input_column: str | list[str] | None = None
    target_column: str | None = None
    layout: Literal["nchw", "nhwc"] | None = None
    # Resize each image to image_size x image_size as it is read (photo collections such as
    # Flowers102 or DTD hold images of many sizes, which one tensor cannot).
    image_size: int | None = Field(None, ge=1, le=MAX_INTEGER)
    # Held out of the training set and evaluated at every evaluation (valid_* columns): a
    # fraction 0 < f < 1 or a count of training samples, drawn once with VALIDATION_SEED
    # (components/data/bind.py), or `own`: the dataset's own validation split.
    validation: float | int | Literal["own"] | None = None
    # DeepOBS's TensorFlow pipeline: `once` draws one shuffle order per run and replays it every
    # epoch (default `epoch`: a new order every epoch, as DataLoader(shuffle=True));
    # `drop_last` drops the last partial batch of training and of evaluation.
    shuffle: Literal["epoch", "once"] | None = None
    drop_last: bool | None = None

    @field_validator("validation", mode="before")
    @classmethod
    def _validation_kind(cls, validation: Any) -> Any:
        if validation is None or validation == "own":
            return validation
        if isinstance(validation, bool) or not isinstance(validation, (int, float)):
            raise ValueError(
                "must be a fraction between 0 and 1, a count of training samples, or own; "
                f"got {validation!r}"
            )
        return validation

    @field_validator("validation")
    @classmethod
    def _validation(cls, validation: Any) -> Any:
        if isinstance(validation, float) and not 0 < validation < 1:
            raise ValueError(
                f"a fraction must lie strictly between 0 and 1, got {validation} "
                "(or give a count of samples, or own)"
            )
        if isinstance(validation, int) and not 1 <= validation <= MAX_INTEGER:
            raise ValueError(f"a count of samples must be at least 1, got {validation}")
        return validation

    @field_validator("shuffle", "drop_last")
    @classmethod
    def _default_is_unset(cls, value: Any) -> Any:
        """The default written out is the default: one experiment, one run-id."""
        return None if value in ("epoch", False) else value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# Data fields left out of the resolved config when unset, so run-ids from before them stay.
OPTIONAL_DATA_FIELDS = (
    "channels",
    "train_split",
    "test_split",
    "input_column",
    "target_column",
    "layout",
    "image_size",
    "validation",
    "shuffle",
    "drop_last",
)
# Run fields left out of the resolved config when unset (None, or False for a switch), likewise.
OPTIONAL_RUN_FIELDS = (
    "eval_every",
    "threads",
    "clip_grad_norm",
    "precision",
    "accumulate",
    "compile",
)
# The seed of the draw that holds `data.validation` out of the training set: fixed, not the
# run's seed, so every run (every seed, optimizer and trial) of a problem shares one split.
# 42 is the seed DeepOBS's PyTorch datasets hold their validation set out with.
VALIDATION_SEED = 42


class ModelConfig(_WithOptions):
    pass


class LossConfig(_WithOptions):
    pass


def _name_patterns(params: str | list[str]) -> list[str]:
    """`params` (a glob, or a list of globs over parameter names) as a list; none empty."""
    patterns = [params] if isinstance(params, str) else list(params)
    if not patterns or any(not p.strip() for p in patterns):
        raise ValueError("needs at least one non-empty name pattern")
    return patterns


class _SelectsParameters(BaseModel):
    """A section that selects parameters by name: `params`, a glob or a list of globs."""

    params: str | list[str]

    @field_validator("params")
    @classmethod
    def _not_empty(cls, params: str | list[str]) -> str | list[str]:
        _name_patterns(params)
        return params

    @property
    def patterns(self) -> list[str]:
        return _name_patterns(self.params)


class ParamGroupConfig(_SelectsParameters):
    """`params` selects parameters by name (glob or list of globs); the rest are hyperparameters."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# How an optimizer is stepped (components/stepping.py); detected from the class unless forced.
PROTOCOL_NAMES = ("plain", "closure", "sharpness", "second_order")
ProtocolName = Literal.__getitem__(PROTOCOL_NAMES)  # type: ignore[attr-defined]


class OptimizerConfig(_WithOptions):
    param_groups: list[ParamGroupConfig] = Field(default_factory=list)
    protocol: ProtocolName | None = None


class SchedulerConfig(_WithOptions):
    interval: Literal["epoch", "step"] = "epoch"


class RegularizationConfig(_Strict, _SelectsParameters):
    """An L2 penalty added to the training loss (loss + 0.5 * l2 * sum of squares of the
    parameters `params` matches), as DeepOBS regularises; not the optimizer's weight_decay."""

    l2: float = Field(0.0, ge=0)
    params: str | list[str] = "*weight*"


class ProblemRecord(_Strict):
    """`problem:` once expanded (core/problems.py): which problem, which version of it, and
    the keys the config set differently."""

    name: str
    version: int = Field(ge=0, le=MAX_INTEGER)
    overrides: dict[str, Any] = Field(default_factory=dict)


class LoggerConfig(_WithOptions):
    """One entry of `log:`: a logger's registered name or import path, and its options, bound
    to its class's signature while planning (experiment/loggers/). Not part of the run-id."""


def loggers_from_mapping(log: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`log:` written as a mapping (`{tensorboard: true, mlflow: URI, wandb: {project: p}}`) as
    the list of entries it stands for: per logger name, true (its defaults), false or null
    (off), a mapping of its options, or a string (its `uri`, MLflow's tracking URI)."""
    entries = []
    for name, value in log.items():
        if value is None or value is False:
            continue
        if value is True:
            entries.append({"name": name})
        elif isinstance(value, Mapping):
            entries.append({**value, "name": name})
        elif isinstance(value, str) and value.strip():
            entries.append({"name": name, "uri": value})
        else:
            raise ConfigError(
                str(name),
                f"must be true, false, a mapping of the logger's options or a tracking URI "
                f"string, got {value!r}",
            )
    return entries


def loggers_by_name(log: list[Any], field: str) -> dict[str, Any]:
    """The list form of `log:` as the mapping form, so that `--set log.mlflow=true` (what the
    --tensorboard/--mlflow flags are) adds to or changes a list the config wrote."""
    log = [{"name": e} if isinstance(e, str) else e for e in log]
    named = [e for e in log if isinstance(e, Mapping) and isinstance(e.get("name"), str)]
    names = [e["name"] for e in named]
    if len(named) < len(log) or len(set(names)) < len(names):
        raise ConfigError(field, "names a logger of a list by name: each entry needs a name, once")
    return {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in named}


DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")  # sweeps/study.py maps them


class Distribution(_Strict):
    """One hyperparameter's search range in `tune.space`: exactly one of the distributions."""

    uniform: list[float] | None = Field(None, min_length=2, max_length=2)  # [low, high]
    log_uniform: list[float] | None = Field(None, min_length=2, max_length=2)
    int_uniform: list[int] | None = Field(None, min_length=2, max_length=2)
    choice: list[Any] | None = Field(None, min_length=1)

    @field_validator("choice")
    @classmethod
    def _plain_values(cls, choice: list[Any] | None) -> list[Any] | None:
        for value in choice or []:  # what Optuna's categorical distribution holds
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise ValueError(f"{value!r} is not a number, string, true/false or null")
        return choice

    @model_validator(mode="before")
    @classmethod
    def _one_known(cls, value: Any) -> Any:
        if not isinstance(value, dict) or len(value) != 1:
            raise ValueError(
                "must be one distribution, e.g. {log_uniform: [1.0e-5, 1.0]}; "
                f"valid: {', '.join(DISTRIBUTIONS)}"
            )
        (kind,) = value
        if kind not in DISTRIBUTIONS:
            raise ValueError(
                f"unknown distribution '{kind}'{did_you_mean(str(kind), DISTRIBUTIONS)}; "
                f"valid: {', '.join(DISTRIBUTIONS)}"
            )
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Distribution:
        kind, bounds = self.kind, self.bounds
        if kind != "choice" and bounds[0] >= bounds[1]:
            raise ValueError(f"{kind}: low {bounds[0]} must be below high {bounds[1]}")
        if kind == "log_uniform" and bounds[0] <= 0:
            raise ValueError(f"log_uniform: low {bounds[0]} must be > 0 (a log range)")
        if kind == "int_uniform" and max(abs(b) for b in bounds) > MAX_INTEGER:
            raise ValueError(f"int_uniform: bounds must lie within ±{MAX_INTEGER}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in DISTRIBUTIONS if getattr(self, k) is not None)

    @property
    def bounds(self) -> Any:
        return getattr(self, self.kind)

    @model_serializer
    def to_dict(self) -> dict[str, Any]:
        """As written, `{log_uniform: [low, high]}`: what a run's config (a sweep point, a
        worker's copy) carries and validates again."""
        return {self.kind: list(self.bounds)}


TuneMetric = RankableName  # a column of epochs.csv that training is judged by (core/metrics.py)
# Optuna's samplers and pruners tune takes; sweeps/study.py builds each.
SAMPLER_NAMES = ("tpe", "random", "grid", "qmc")
PRUNER_NAMES = ("median", "hyperband", "none")
MAX_TRIALS = 100_000  # trials per optimizer, in `tune.trials` and `--trials`
SamplerName = Literal.__getitem__(SAMPLER_NAMES)  # type: ignore[attr-defined]
PrunerName = Literal.__getitem__(PRUNER_NAMES)  # type: ignore[attr-defined]


class TuneConfig(_Strict):
    """`optbench tune` (sweep/tune.py): a search space of dotted keys, a budget of trials per
    optimizer, Optuna's sampler and pruner, and the seeds the best configuration is rerun with.
    Not part of any run's identity (core/identity.py)."""

    space: dict[str, Distribution] = Field(min_length=1)
    trials: int = Field(20, ge=1, le=MAX_TRIALS)
    sampler: SamplerName = "tpe"
    pruner: PrunerName = "median"
    # A column of epochs.csv; default: the problem's metric, else test_accuracy or test_loss.
    metric: TuneMetric | None = None
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    # Trials trained K at a time as one optimizer's parameter groups (sweeps/batching.py)
    batch_trials: int | None = Field(None, ge=1, le=MAX_TRIALS)

    @field_validator("space")
    @classmethod
    def _dotted_keys(cls, space: dict[str, Distribution]) -> dict[str, Distribution]:
        for key in space:
            if not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", key):
                raise ValueError(f"'{key}' is not a dotted key like optimizer.lr")
            if key in ("name", "seed", "optimizer.name"):
                raise ValueError(
                    f"'{key}' cannot be tuned (vary optimizers with sweep:, seeds with seeds:)"
                )
        return space

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(not 0 <= s <= MAX_INTEGER for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"must be distinct seeds from 0 to {MAX_INTEGER}")
        return seeds


class ExperimentConfig(_Strict):
    name: str
    problem: ProblemRecord | None = None  # written `problem: fmnist_2c2d`; see apply_problem
    seed: int = Field(0, ge=0, le=MAX_INTEGER)
    epochs: int = Field(ge=1, le=1_000_000)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    data: DataConfig
    model: ModelConfig
    loss: LossConfig
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig | None = None
    regularization: RegularizationConfig | None = None  # applied in train.py's _loss
    fast: bool = False  # losses read once per epoch, not per batch (experiment/train.py)
    # Evaluate every this many optimizer steps, besides each epoch's end (a row each, with its
    # `step`); unset: once per epoch. Left out of the resolved config when unset.
    eval_every: int | None = Field(None, ge=1, le=MAX_INTEGER)
    # torch's intra-op threads while the run trains: float sums depend on it, so it is the run's
    # own (never split by a sweep's workers). Unset: torch's default, absent from the run-id.
    threads: int | None = Field(None, ge=1, le=1024)
    # Clip the gradients' global norm to this before every step (components/stepping.py
    # GradientClipping); left out of the resolved config when unset, so run-ids stay.
    clip_grad_norm: float | None = Field(None, gt=0, allow_inf_nan=False)
    # bf16: forward and loss under torch.autocast(dtype=bfloat16), training and evaluation
    # (experiment/train.py precision_context); left out of the resolved config when unset.
    precision: Literal["bf16"] | None = None
    # Gradient accumulation: one optimizer step per `accumulate` batches of data.batch_size,
    # each backward on its own (components/stepping.py Accumulated); absent when unset.
    accumulate: int | None = Field(None, ge=1, le=MAX_INTEGER)
    # torch.compile the model (nn.Module.compile, in place: parameter names and checkpoints
    # unchanged); the first step's seconds, compilation included, go to epochs.csv. Left out
    # of the resolved config when false.
    compile: bool = False
    sweep: dict[str, list[Any]] | None = None  # read by `optbench sweep`; `run` trains the base
    tune: TuneConfig | None = None  # read by `optbench tune`; `run` trains the base
    log: list[LoggerConfig] = Field(default_factory=list)  # experiment/loggers/ (not in the run-id)
    # Where sweep, tune and benchmark train the runs (sweeps/executors: a name, or a mapping with
    # `name` and the executor's options): never dumped, so neither config.yaml nor the run-id
    # holds it; `run` accepts and ignores it.
    executor: str | dict[str, Any] | None = Field(None, exclude=True)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        return safe_name(name)

    @field_validator("log", mode="before")
    @classmethod
    def _log_as_list(cls, log: Any) -> Any:
        if log is None:
            return []
        if isinstance(log, Mapping):
            return loggers_from_mapping(log)
        if isinstance(log, list):  # `- tensorboard` is `- {name: tensorboard}`
            return [{"name": entry} if isinstance(entry, str) else entry for entry in log]
        return log

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_by_name(cls, loss: Any) -> Any:
        return {"name": loss} if isinstance(loss, str) else loss

    @field_validator("model", "optimizer", "scheduler", mode="before")
    @classmethod
    def _section_by_name(cls, section: Any) -> Any:
        return {"name": section} if isinstance(section, str) else section

    def to_dict(self) -> dict[str, Any]:
        """Plain data (extras included), the form written to config.yaml."""
        return self.model_dump(mode="json", exclude_none=False)


# --------------------------------------------------------------------------- YAML loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loading (no object construction) that refuses duplicate keys, not keep the last."""


class _FastUniqueKeyLoader(getattr(yaml, "CSafeLoader", _UniqueKeyLoader)):  # type: ignore[misc]
    """The same with libyaml's parser, where PyYAML was built with it: a valid file in a sixth
    of the time (a benchmark's scoring reads hundreds of runs' config.yaml); its error
    messages word some problems otherwise, so a file it refuses is parsed again for PyYAML's."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (list, dict)):  # `? [a, b]`: no mapping of a config is keyed so
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is not a string", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


for _loader in (_UniqueKeyLoader, _FastUniqueKeyLoader):
    # YAML 1.1 (PyYAML) reads 1e-3 as a string; learning rates are written that way, so read
    # exponent floats as YAML 1.2 does.
    _loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    _loader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
    )


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely, with errors that give the source and line."""
    try:
        return yaml.load(text, Loader=_FastUniqueKeyLoader)
    except (yaml.YAMLError, RecursionError):
        pass  # said below as PyYAML's own parser says it
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError("", f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{source}: invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError("", f"{source}: nested too deeply to be a config") from None


MAX_CONFIG_VALUES = 100_000
# Sections that may be written as just a name (`loss: mse`) or as a mapping with options.
COMPONENT_SECTIONS = ("model", "loss", "optimizer", "scheduler")


def check_structure(data: dict[str, Any], source: str) -> None:
    """Refuse configs too deep or too large once YAML aliases are expanded (a few hundred bytes
    of nested aliases can stand for billions of values), and keys that are not strings."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                "", f"config {source} expands to more than {MAX_CONFIG_VALUES} values"
            )
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(
                "", f"config {source} is nested more than {MAX_CONFIG_DEPTH} levels deep"
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ConfigError(
                        "",
                        f"config {source}: key {key!r} is not a string (YAML reads unquoted "
                        "on/off/yes/no/true/false and numbers as values; quote the key)",
                    )
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


def _read_regular_file(path: Path) -> bytes:
    """At most MAX_CONFIG_BYTES of a regular file. A device, FIFO or socket is refused before
    anything is read (/dev/zero never ends; opening a FIFO without O_NONBLOCK waits for a
    writer), and a file that grows past the limit while read is refused too."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as file:  # fstat of what was opened: no swap after a check
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError("", f"cannot read config {path}: it is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError("", f"config {path} is not a regular file (a device, FIFO or socket)")
        raw = file.read(MAX_CONFIG_BYTES + 1)
    size = max(info.st_size, len(raw))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            "", f"config {path} is {size} bytes; a config is at most {MAX_CONFIG_BYTES} bytes"
        )
    return raw


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a config file into a mapping, refusing anything that is not a sane YAML mapping."""
    path = Path(path)
    try:
        raw = _read_regular_file(path)
    except FileNotFoundError:
        raise ConfigError("", f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError("", f"cannot read config {path}: it is a directory") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "", f"config {path} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    data = parse_yaml(text, str(path))
    if data is None:
        raise ConfigError("", f"config {path} is empty")
    if not isinstance(data, dict):
        raise ConfigError(
            "", f"config {path} must be a mapping of keys to values, not a {type(data).__name__}"
        )
    check_structure(data, str(path))
    return data


# --------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split 'a.b.c=value' into (['a','b','c'], value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", f"'{text}' is not KEY=VALUE (e.g. --set optimizer.lr=0.1)")
    parts = parse_dotted_key(key, "--set")
    return parts, parse_yaml(value, f"--set {key.strip()}")


def parse_dotted_key(key: str, source: str) -> list[str]:
    """'optimizer.lr' -> ['optimizer', 'lr'], refusing empty or odd segments."""
    parts = key.strip().split(".")
    if any(not re.fullmatch(r"[A-Za-z0-9_]+", p) for p in parts):
        raise ConfigError(source, f"'{key.strip()}' is not a dotted key like optimizer.lr")
    return parts


def apply_override(
    config: dict[str, Any], parts: list[str], value: Any, source: str = "--set"
) -> None:
    """Set config[parts...] = value, creating mappings on the way; list items by index."""
    node: Any = config
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        here = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"{source} {'.'.join(parts)}",
                    f"'{here}' is not an item of a list of {len(node)}",
                )
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
        else:
            raise ConfigError(
                f"{source} {'.'.join(parts)}",
                f"'{'.'.join(parts[:i])}' is not a mapping (it is {node!r})",
            )
        if last:
            node[index] = value
        else:
            if isinstance(node, dict) and index not in node:
                node[index] = {}
            if i == 0 and part in COMPONENT_SECTIONS and isinstance(node[index], str):
                node[index] = {"name": node[index]}  # `loss: mse` then --set loss.delta=...
            by_name = i == 0 and part == "log" and not parts[1].isdigit()
            if by_name and isinstance(node[index], list):  # `log: [...]`, --set log.wandb.mode=
                node[index] = loggers_by_name(node[index], f"{source} {'.'.join(parts)}")
            node = node[index]


def refuse_repeated_key(key: str, seen: set[str], source: str) -> None:
    """A key given twice on the command line is refused, as a duplicate YAML key is: the last
    one would win silently. Adds `key` to `seen`."""
    if key in seen:
        raise ConfigError(f"{source} {key}", "is given twice; give each key once")
    seen.add(key)


# `--set KEY=VALUE` strings (values read as YAML), or a mapping of dotted keys to Python values.
Overrides = list[str] | Mapping[str, Any]


def apply_overrides(config: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """Apply overrides in order; the same `--set` key twice is refused."""
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            if not isinstance(key, str):
                raise ConfigError("overrides", f"key {key!r} is not a dotted key like optimizer.lr")
            parts = parse_dotted_key(key, "overrides")
            apply_override(config, parts, copy.deepcopy(value), source="overrides")
        return config
    seen: set[str] = set()
    for text in overrides:
        parts, value = parse_override(text)
        refuse_repeated_key(".".join(parts), seen, "--set")
        apply_override(config, parts, value)
    return config


# --------------------------------------------------------------------------- validation


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "": ExperimentConfig,
    "data": DataConfig,
    "data.normalize": Normalize,
    "regularization": RegularizationConfig,
}


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    loc = [str(p) for p in error["loc"] if not str(p).startswith("function-")]
    # pydantic names union members ('str', 'list[str]'); drop them from the path
    loc = [p for p in loc if p not in {"str", "list[str]", "SchedulerConfig"}]
    field = ".".join(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = ".".join(loc[:-1])
        model = _SECTION_MODELS.get(parent)
        hint = did_you_mean(loc[-1], _field_names(model)) if model else ""
        return field, f"unknown key{hint}"
    if kind == "missing":
        return field, "is required"
    inner = error.get("ctx", {}).get("error")
    if isinstance(inner, ConfigError) and inner.field:  # raised by a validator, about a key
        return f"{field}.{inner.field}", inner.problem
    message = error["msg"]
    message = message.removeprefix("Value error, ")
    if "input" in error and kind.endswith("_type"):
        message = f"{message}, got {error['input']!r}"
    return field, message


def validate_config(data: dict[str, Any]) -> ExperimentConfig:
    """Check the shape of a config mapping (its `problem:` expanded first); raise ConfigError
    naming the first bad field."""
    from optbench.core.problems import apply_problem

    try:
        return ExperimentConfig.model_validate(apply_problem(data))
    except ValidationError as exc:
        field, problem = _describe(exc.errors()[0])
        more = len(exc.errors()) - 1
        if more:
            problem += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(field, problem) from None


# A config: a YAML file's path, or the mapping such a file would hold.
ConfigSource = str | Path | Mapping[str, Any]


# What a YAML file's scalar can be (the schema judges these; other objects are Python's).
_YAML_SCALARS = (str, int, float, bool, type(None), datetime.date)


def objects_to_paths(node: Any, where: str = "") -> None:
    """Python objects given where a config names a component (a model class or factory, a
    dataset function, a loss callable, an optimizer class: `{"model": {"name": Net}}`),
    replaced in place by the import path that names them, so the run-id, the files and the
    workers see what a YAML file would hold; one that no import path reaches (defined in a
    notebook or the script itself, inside a function, a lambda, a callable instance) by the
    token that identifies it by value (core/byvalue.py), or refused in one line."""
    from optbench.core.byvalue import import_path, token_for

    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        field = f"{where}.{key}" if where else str(key)
        if isinstance(value, (dict, list)):
            objects_to_paths(value, field)
        elif callable(value):
            node[key] = import_path(value) or token_for(value, field)
        elif key == "dataset" and not isinstance(value, _YAML_SCALARS):  # a Dataset, a tensor
            raise ConfigError(
                field,
                f"a {type(value).__name__} object is no dataset name: give a function that "
                "returns (train, test), e.g. lambda: (train_set, test_set), shipped by value",
            )


def read_source(
    source: ConfigSource, overrides: Overrides | None = None
) -> tuple[dict[str, Any], Path]:
    """The config's mapping with `overrides` applied and `name` set (default: the file's stem,
    or `experiment` for a mapping), and the folder its relative names are found in (the file's,
    or the working directory for a mapping). The one reader behind run, validate, sweep, tune."""
    if isinstance(source, Mapping):
        data, folder, stem = copy.deepcopy(dict(source)), Path.cwd(), "experiment"
        check_structure(data, "mapping")
    elif not isinstance(source, (str, os.PathLike)):
        raise ConfigError(
            "config",
            f"must be a YAML file's path or a mapping of keys to values, not "
            f"{type(source).__name__} {str(source)[:60]!r}",
        )
    else:
        data, folder, stem = read_config_file(source), Path(source).parent, Path(source).stem
    if overrides:
        apply_overrides(data, overrides)
        check_structure(data, str(source) if not isinstance(source, Mapping) else "mapping")
    objects_to_paths(data)
    data.setdefault("name", name_from_stem(stem))
    return data, folder


def load_config(source: ConfigSource, overrides: Overrides | None = None) -> ExperimentConfig:
    """Read, override and shape-check a config (see `read_source`)."""
    data, folder = read_source(source, overrides)
    anchor_to_folder(data, folder)
    return validate_config(data)


DATA_FILE_SUFFIXES = (".pt", ".npz")


def is_data_file(dataset: str) -> bool:
    """`data.dataset` names a file of tensors rather than a dataset or an import path."""
    return dataset.lower().endswith(DATA_FILE_SUFFIXES)


_CONFIG_FOLDERS: dict[str, None] = {}  # anchored in this process, in order (an ordered set)


def config_folder() -> Path | None:
    """The folder of the config this process read last (anchor_to_folder): what a Ray cluster
    is sent so that the config's modules and files are found on every node."""
    return Path(next(reversed(_CONFIG_FOLDERS))) if _CONFIG_FOLDERS else None


def anchor_to_folder(config: dict[str, Any], folder: Path) -> None:
    """Names in a config may point into its own folder. Its modules can be imported (the
    folder joins the end of sys.path, so it never shadows an installed package; spawned sweep
    workers inherit sys.path), and a relative data file found there is made absolute."""
    entry = str(folder.resolve())
    if entry not in sys.path:
        sys.path.append(entry)
    _CONFIG_FOLDERS.pop(entry, None)
    _CONFIG_FOLDERS[entry] = None  # the latest last
    data = config.get("data")
    if not isinstance(data, dict) or data.get("root") is not None:
        return
    dataset = data.get("dataset")
    if isinstance(dataset, str) and is_data_file(dataset) and (folder / dataset).exists():
        data["dataset"] = str((folder / dataset).resolve())  # an absolute one stays as it is


def name_from_stem(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.+=-]", "_", stem).lstrip("._-")
    return name[:100] or "experiment"


# Where Debian's dataset packages put gzipped IDX files (apt-get install dataset-fashion-mnist).
SYSTEM_DATA_DIR = Path(os.environ.get("OPTBENCH_SYSTEM_DATA", "/usr/share/datasets"))


def default_data_root() -> str:
    return os.environ.get("OPTBENCH_DATA", "data")


def default_results_dir() -> str:
    return os.environ.get("OPTBENCH_RESULTS", "results")
