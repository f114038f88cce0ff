"""Name -> record registries, and binding config options to a component's signature.

Every component family (optimizers, schedulers, models, datasets, losses) is a `Registry` of
small frozen records, looked up case-insensitively, with the valid names in every error.
`bind_options` checks a config section against the builder's own signature, so a wrong key or
a wrong type fails at load time with the field's name instead of deep inside torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import inspect
import math
import re
import site
import sys
import sysconfig
import typing
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from optbench.core.byvalue import is_token, lookup, short_name
from optbench.core.config import MAX_INTEGER
from optbench.core.errors import ConfigError, did_you_mean
from optbench.core.registry import Record, Registry, qualified_name
from optbench.core.usercode import user_code

_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?")


def is_import_path(name: str) -> bool:
    """A component name with a dot or colon is an import path; others are registered names."""
    return "." in name or ":" in name


def import_object(path: str, field: str) -> Any:
    """The object an import path names, or a one-line ConfigError on `field` saying why not."""
    if not _IMPORT_PATH.fullmatch(path) or (":" not in path and "." not in path):
        raise ConfigError(
            field, f"'{path}' is not a registered name or an import path like package.module.Name"
        )
    module_name, colon, attributes = path.partition(":")
    if not colon:
        module_name, _, attributes = path.rpartition(".")
    if module_name not in sys.modules:
        importlib.invalidate_caches()  # a module written since start-up (next to a config)
    # ImportError, or anything the user's module raises on import, sys.exit() included
    with user_code(field, path, f"cannot import '{path}'"):
        obj: Any = importlib.import_module(module_name)
    for attribute in attributes.split("."):
        try:
            obj = getattr(obj, attribute)
        except AttributeError:
            where = getattr(obj, "__name__", type(obj).__name__)
            raise ConfigError(
                field, f"cannot import '{path}': '{where}' has no attribute '{attribute}'"
            ) from None
    return obj


def summary(obj: Any) -> str:
    """The first line of an object's docstring: a component's description in `optbench list`."""
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


def is_module_or_function(obj: Any) -> bool:
    """An nn.Module class, or a function (what a model or a loss given by path may be)."""
    from torch import nn

    return (inspect.isclass(obj) and issubclass(obj, nn.Module)) or (
        callable(obj) and not inspect.isclass(obj)
    )


def resolve_component(
    registry: Registry[Record],
    name: str,
    field: str,
    check: Callable[[Any], str | None],
    make: Callable[[str, Any, dict[str, Any]], Record],
) -> Record:
    """The record for a component name: a registered name, or an import path.

    An imported object is first checked (`check` returns what is wrong with it, as a phrase
    after its quoted path, or None). One the registry holds comes back as its record, so every
    spelling of a registered component has one name and one run-id; any other is made into a
    record by `make(qualified name, object, code identity)`.
    """
    if is_token(name):  # a Python object given by value: the token is its name and identity
        obj = lookup(name, field)
        problem = check(obj)
        if problem:
            raise ConfigError(field, f"'{short_name(name)}' {problem}")
        code: dict[str, Any] = {"by_value": name}
        if callable(obj) and code_defaults(obj):
            code["code_defaults"] = code_defaults(obj)
        return make(name, obj, code)
    if not is_import_path(name):
        return registry.get(name, field)
    obj = import_object(name, field)
    problem = check(obj)
    if problem:
        raise ConfigError(field, f"'{name}' {problem}")
    registered = registry.find(obj)
    if registered is not None:
        return registered
    return make(qualified_name(obj), obj, code_identity(obj))


@cache
def _site_dirs() -> tuple[Path, ...]:
    dirs = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    return tuple(Path(d).resolve() for d in dirs)


@cache
def _not_user_dirs() -> tuple[Path, ...]:
    """Where code the user did not write lives: site-packages (dist-packages), the standard
    library, and optbench itself (its own code is not part of a run-id)."""
    stdlib = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")}
    own = Path(__file__).resolve().parents[1]
    return (*_site_dirs(), *(Path(d).resolve() for d in stdlib), own)


def _installed(source: str | None) -> bool:
    """Whether a module file lies in site-packages, i.e. came with an installed distribution
    (an editable install or a folder on sys.path keeps its code elsewhere, edited in place)."""
    if not source:
        return False
    path = Path(source).resolve()
    return any(path.is_relative_to(folder) for folder in _site_dirs())


@cache
def _distributions() -> dict[str, list[str]]:
    """Top-level package -> installed distributions; once per process (reading every
    distribution's file list takes seconds)."""
    return importlib.metadata.packages_distributions()


def _source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _user_source(module: ModuleType) -> Path | None:
    """The file of a module the user wrote (next to a config, an editable project), or None for
    the standard library, installed distributions, optbench and modules without a file."""
    source = getattr(module, "__file__", None)
    if not isinstance(source, str):
        return None
    path = Path(source).resolve()
    if not path.is_file() or any(path.is_relative_to(d) for d in _not_user_dirs()):
        return None
    return path


def _module_of(value: Any) -> ModuleType | None:
    """The module a global of a module comes from: itself if a module, else its `__module__`
    (functions, classes and their instances)."""
    if isinstance(value, ModuleType):
        return value
    try:
        name = value.__module__
    except Exception:  # no such attribute, or an object whose __getattr__ raises
        return None
    return sys.modules.get(name) if isinstance(name, str) else None


def user_imports(module: ModuleType) -> dict[str, str]:
    """module name -> source hash of every user module `module` brings in at module level,
    transitively (`import helper`, `from helper import f`, `from . import helper`), itself
    excepted: editing a helper then changes the run-id as editing the component's file does."""
    seen, found, todo = {module.__name__}, {}, [module]
    while todo:
        for value in list(vars(todo.pop()).values()):
            other = _module_of(value)
            if other is None or other.__name__ in seen:
                continue
            seen.add(other.__name__)
            path = _user_source(other)
            if path is not None:  # only the user's own modules are followed further
                found[other.__name__] = _source_digest(path)
                todo.append(other)
    return dict(sorted(found.items()))


def is_setting(value: Any) -> bool:
    """Whether a value is one a config can write (YAML/JSON): None, a bool, number or string,
    or a list, tuple or mapping of them. Anything else (a sentinel object, a class, a function)
    is code."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_setting(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_setting(v) for k, v in value.items())
    return False


def code_defaults(fn: Callable[..., Any]) -> list[str]:
    """`fn`'s keyword arguments whose default is code, not a setting (see `is_setting`):
    bind_options leaves them out, so the component keeps its own default."""
    try:
        defaults = signature_defaults(fn)
    except (ValueError, TypeError):  # a builtin without a Python signature
        return []
    return sorted(
        k for k, v in defaults.items() if v is not inspect.Parameter.empty and not is_setting(v)
    )


def code_identity(obj: Any) -> dict[str, Any]:
    """What identifies the code of a component given by import path: the installed
    distribution's name and version, or (a local or editable module) a hash of its source file
    and of the user's modules it imports (`imports`). Arguments whose default is code are
    listed (`code_defaults`): they are left out of the resolved config. A run-id that includes
    this changes when the code does."""
    module = inspect.getmodule(obj) or sys.modules.get(getattr(obj, "__module__", ""), None)
    name = module.__name__ if module else str(getattr(obj, "__module__", "?"))
    source = getattr(module, "__file__", None)
    distributions = _installed(source) and _distributions().get(name.split(".")[0])
    identity: dict[str, Any] = {"module": name}
    if distributions:
        distribution = importlib.metadata.distribution(distributions[0])
        identity["distribution"] = distribution.metadata["Name"]
        identity["version"] = distribution.version
    elif source and Path(source).is_file():
        identity["sha256"] = _source_digest(Path(source))  # not the path: moving keeps ids
        imports = user_imports(module) if module is not None else {}
        if imports:
            identity["imports"] = imports
    defaults = code_defaults(obj)
    if defaults:
        identity["code_defaults"] = defaults
    return identity


Range = tuple[float, float, bool]  # (low, high, whether high is inclusive); low always is


def check_ranges(values: dict[str, Any], ranges: dict[str, Range], field: str) -> None:
    """Refuse a value outside its key's range (NaN included), or any number of a list given
    for it (a per-group max_lr). Torch checks some of these only when it steps, some never."""
    for key, (low, high, inclusive) in ranges.items():
        value = values.get(key)
        for number in value if isinstance(value, (list, tuple)) else [value]:
            if not _is_number(number):
                continue
            inside = low <= number <= high if inclusive else low <= number < high
            if not inside:  # written this way round so that NaN is outside too
                bound = "]" if inclusive else ")"
                raise ConfigError(
                    f"{field}.{key}", f"must be in [{low:g}, {high:g}{bound}, got {value}"
                )


def _annotation_text(parameter: inspect.Parameter) -> str:
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def _number_kind(parameter: inspect.Parameter, default: Any) -> str | None:
    """'float', 'int' or None (no preference) for a numeric argument: its annotation decides,
    else its default's type."""
    text = _annotation_text(parameter)
    if re.search(r"\bfloat\b", text):
        return "float"
    if re.search(r"\bint\b", text):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, int) and not isinstance(default, bool):
        return "int"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def unsigned_zero(value: Any) -> Any:
    """-0.0 as 0.0 (they compare equal but print, and hash, differently); other values as they
    are. One rule for every number of a resolved config."""
    return 0.0 if isinstance(value, float) and value == 0 else value


def canonical(value: Any, example: Any, kind: str | None = None) -> Any:
    """`value` stored one way whatever the user wrote: a number as the type its parameter takes
    (lr 1 and 1.0 are one value; an int argument stays int; -0.0 is 0.0), a tuple argument as
    a tuple. Raise ValueError when an integer argument gets a fraction."""
    if _is_number(value):
        number = value
        if kind == "float" or (kind is None and isinstance(example, float)):
            number = float(value)
        elif kind == "int" or (kind is None and _is_number(example)):
            if isinstance(value, float) and not value.is_integer():
                if kind == "int":
                    raise ValueError(f"must be an integer, got {value!r}")
            else:
                number = int(value)
        if isinstance(number, int) and abs(number) > MAX_INTEGER:  # torch and numpy: int64
            raise ValueError(f"must be at most {MAX_INTEGER} in size, got {value!r}")
        return unsigned_zero(number)
    if isinstance(value, (list, tuple)):
        if isinstance(example, tuple) and len(example) == len(value):
            return tuple(canonical(v, e) for v, e in zip(value, example, strict=True))
        item = example[0] if isinstance(example, list) and example else None
        items = [canonical(v, item) for v in value]
        return tuple(items) if isinstance(example, tuple) else items
    return value


# Below 2**53 every integer is exactly a float: 1.0 and 1 are then one number.
_EXACT_INTEGERS = 2**53


def canonical_unchecked(value: Any) -> Any:
    """A value whose receiver declares no type (a key passed on through **kwargs to code that
    does not name it): one rule for numbers, a whole number as an int (1.0 is 1, -0.0 is 0;
    torch takes an int wherever it takes a float, not the other way round), others as given."""
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_INTEGERS:
        return int(value)
    if isinstance(value, (list, tuple)):
        return [canonical_unchecked(v) for v in value]
    if isinstance(value, dict):
        return {k: canonical_unchecked(v) for k, v in value.items()}
    return value


def _same_kind(value: Any, default: Any) -> bool:
    """Whether `value` may replace `default`: bools for bools, numbers for numbers, and so on.
    NaN is never a setting."""
    if isinstance(value, float) and math.isnan(value):
        return False
    if default is None or default is inspect.Parameter.empty:
        return True
    if isinstance(default, list):
        return isinstance(value, list) and all(_same_kind(v, default[0]) for v in value)
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return _is_number(value)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(default)
            and all(_same_kind(v, d) for v, d in zip(value, default, strict=True))
        )
    return True


def _kind_name(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, (int, float)):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, tuple):
        return f"a list of {len(default)} values like {list(default)}"
    if isinstance(default, list):
        return f"a list of {_kind_name(default[0]).removeprefix('a ')}s"
    return type(default).__name__


_EXAMPLE_OF_TYPE = {"int": 0, "float": 0.0, "bool": False, "str": "", "list[int]": [0]}


def _example_value(parameter: inspect.Parameter) -> Any:
    """A value of the kind the argument takes: its default, or, where the default says nothing
    (required, or None), one read off a plain annotation such as `int` or `int | None`."""
    if parameter.default not in (None, inspect.Parameter.empty):
        return parameter.default
    text = _annotation_text(parameter).replace(" | None", "").replace("None | ", "")
    return _EXAMPLE_OF_TYPE.get(text, inspect.Parameter.empty)


def parameters_of(fn: Callable[..., Any], field: str, label: str) -> dict[str, inspect.Parameter]:
    """`fn`'s parameters; a ConfigError on `field` for a builtin that has no Python signature."""
    try:
        return dict(inspect.signature(fn).parameters)
    except (ValueError, TypeError):
        raise ConfigError(field, f"cannot read the arguments {label} takes") from None


def signature_defaults(fn: Callable[..., Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Keyword options of `fn` (minus `skip`) with their defaults; required ones map to `empty`."""
    skip = set(skip)
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.name not in skip
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def bind_options(
    fn: Callable[..., Any],
    options: dict[str, Any],
    field: str,
    *,
    skip: Iterable[str] = (),
    provided: dict[str, Any] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Check `options` against `fn`'s signature and return them with every default filled in.

    `skip` names arguments that code passes (params, optimizer); `provided` holds values that
    code supplies when the config leaves them out (step counts). Values come back canonical
    (see `canonical`): tuples where the default is a tuple, so YAML lists work for betas.
    """
    label = label or getattr(fn, "__name__", str(fn))
    parameters = parameters_of(fn, field, label)
    accepted = signature_defaults(fn, skip)
    for key in options:
        if key not in accepted:
            valid = ", ".join(accepted) or "no options"
            raise ConfigError(
                f"{field}.{key}",
                f"{label} does not accept '{key}'{did_you_mean(key, accepted)}; "
                f"it accepts: {valid}",
            )
    resolved: dict[str, Any] = {}
    for key, default in accepted.items():
        if key in options:
            resolved[key] = _bind_value(parameters[key], options[key], f"{field}.{key}")
        elif provided and key in provided:
            resolved[key] = _bind_value(parameters[key], provided[key], f"{field}.{key}", False)
        elif default is inspect.Parameter.empty:
            raise ConfigError(f"{field}.{key}", f"is required by {label}")
        elif is_setting(default):
            resolved[key] = _bind_value(parameters[key], default, f"{field}.{key}", False)
        # else: a default that is code (code_defaults) stays the component's own, unwritten
    return resolved


def _bind_value(parameter: inspect.Parameter, value: Any, field: str, given: bool = True) -> Any:
    """One argument's value, canonical for its parameter; a value the config `given` is first
    checked to be of the parameter's kind. A ConfigError on `field` otherwise."""
    example = _example_value(parameter)
    nullable = parameter.default is None
    if given and not (value is None and nullable) and not _same_kind(value, example):
        raise ConfigError(field, f"must be {_kind_name(example)}, got {value!r}")
    try:
        return canonical(value, example, _number_kind(parameter, parameter.default))
    except ValueError as exc:
        raise ConfigError(field, str(exc)) from None


def receiver_of(builder: Callable[..., Any]) -> type | None:
    """The class a builder returns, read off its return annotation (torchvision's resnet18 ->
    ResNet): where the keys it passes on through **kwargs go. None when it does not say."""
    try:
        returned = typing.get_type_hints(builder).get("return")
    except Exception:  # an annotation that does not evaluate
        return None
    return returned if inspect.isclass(returned) else None


def bind_passed(
    receiver: Callable[..., Any] | None, options: dict[str, Any], field: str
) -> dict[str, Any]:
    """Keys passed on through **kwargs, canonical: those `receiver` declares checked and stored
    as the type it takes (as bind_options does), the others by one rule for numbers
    (`canonical_unchecked`), checked only by the code that receives them."""
    declared: dict[str, inspect.Parameter] = {}
    if receiver is not None:
        with contextlib.suppress(ValueError, TypeError):  # no Python signature: none declared
            declared = dict(inspect.signature(receiver).parameters)
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return {
        key: _bind_value(declared[key], value, f"{field}.{key}")
        if key in declared and declared[key].kind not in variadic
        else canonical_unchecked(value)
        for key, value in options.items()
    }
