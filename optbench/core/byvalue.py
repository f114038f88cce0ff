"""Python objects given where a config names a component, identified and shipped by value.

A model class, a model or dataset factory, a loss callable or an optimizer class defined in a
notebook or in the script itself has no import path: a worker process cannot import it, and a
run-id cannot name it. Such an object gets a token, `Name@object:<digest>`, that stands where
its path would: the digest hashes its code (the source, else the compiled code) and the values
it closes over (closure cells, the globals its code names, its defaults), recursively, so the
same object gives the same run-id in every process, and editing it or a value it uses gives
another. The object itself travels to worker processes and Ray tasks pickled by value
(cloudpickle, the `notebook` extra) in the config's OBJECTS section, which never reaches the
run-id or any file: a results folder never holds a pickle, so reading one runs no code.
Torch-free.
"""

from __future__ import annotations

import base64
import dis
import functools
import hashlib
import inspect
import json
import re
import sys
import textwrap
import types
from typing import Any

from optbench.core.errors import ConfigError

OBJECTS = "objects"  # the section of a shipped config that carries the objects, by token
_TOKEN = re.compile(r"(?P<name>[A-Za-z_]\w{0,99})@object:(?P<digest>[0-9a-f]{16})")
_known: dict[str, Any] = {}  # token -> the object, in this process
_pickled: dict[str, str] = {}  # token -> its cloudpickle, base64: what a worker gets


class _Unidentifiable(Exception):
    """A value an object uses that has no stable identity (it cannot be pickled)."""


def is_token(name: str) -> bool:
    """Whether a component name is an object's token (see `token_for`)."""
    return _TOKEN.fullmatch(name) is not None


def short_name(name: str) -> str:
    """A token's readable part (`Net` of `Net@object:...`); any other name as it is."""
    match = _TOKEN.fullmatch(name)
    return match["name"] if match else name


def import_path(obj: Any) -> str | None:
    """`module.QualName` when importing it gives back `obj` itself, else None (defined in a
    notebook, the script itself or a function; a lambda; an instance)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    if module in ("__main__", "__mp_main__") or "<" in qualname:
        return None
    found: Any = sys.modules.get(module)
    for part in qualname.split(".") if found is not None else ():
        found = getattr(found, part, None)
    return f"{module}.{qualname}" if found is obj else None


def _cloudpickle(field: str) -> Any:
    try:
        import cloudpickle
    except ImportError:
        raise ConfigError(
            field,
            "a Python object without an import path is shipped by value, which needs "
            "cloudpickle: pip install 'optbench[notebook]' (or give an import path)",
        ) from None
    return cloudpickle


def token_for(obj: Any, field: str) -> str:
    """The token that stands for `obj` in a config (registered here, so this process plans
    it), or a one-line ConfigError on `field` when it cannot be identified or pickled."""
    cloudpickle = _cloudpickle(field)
    name = getattr(obj, "__name__", None) or type(obj).__name__
    name = re.sub(r"\W+", "_", str(name)).strip("_") or "object"
    name = name if name[0].isalpha() else f"object_{name}"
    try:
        description = _describe(obj, name, {})
        pickled = cloudpickle.dumps(obj)
    except _Unidentifiable as exc:
        raise ConfigError(field, f"{name} cannot be identified by value: {exc}") from None
    except Exception as exc:  # what pickling it raised
        raise ConfigError(
            field, f"{name} cannot be shipped to workers by value: {_first_line(exc)}"
        ) from None
    text = json.dumps(description, sort_keys=True)
    token = f"{name[:100]}@object:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    _known.setdefault(token, obj)
    _pickled.setdefault(token, base64.b64encode(pickled).decode("ascii"))
    return token


def lookup(token: str, field: str) -> Any:
    """The object a token stands for, or a one-line ConfigError: it exists only in the Python
    session that gave it (and the workers that session started)."""
    if token not in _known:
        raise ConfigError(
            field,
            f"'{token}' is a Python object given to optbench in another session: pass the "
            "object again from Python (a config file cannot name it; give an import path)",
        )
    return _known[token]


def _tokens_in(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_tokens_in(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_tokens_in(v) for v in node)) if node else set()
    return {node} if isinstance(node, str) and is_token(node) else set()


def with_objects(config: dict[str, Any]) -> dict[str, Any]:
    """`config` as it is shipped to a worker: with an OBJECTS section carrying, pickled, every
    object its tokens stand for (the config itself when it names none)."""
    tokens = sorted(t for t in _tokens_in(config) if t in _pickled)
    if not tokens:
        return config
    return {**config, OBJECTS: {token: _pickled[token] for token in tokens}}


def without_objects(config: dict[str, Any]) -> dict[str, Any]:
    """`config` as a worker plans it: its OBJECTS section (sent by `with_objects`, from the
    driver that started this worker, never read from a file) unpickled into this process."""
    if OBJECTS not in config:
        return config
    config = dict(config)
    shipped = config.pop(OBJECTS)
    cloudpickle = _cloudpickle(OBJECTS)
    for token, pickled in shipped.items():
        if token not in _known:
            _known[token] = cloudpickle.loads(base64.b64decode(pickled))
            _pickled[token] = pickled
    return config


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --------------------------------------------------------------------------- the description


def _describe(value: Any, where: str, seen: dict[int, str]) -> Any:
    """A JSON value that is the same in every process for the same code and values: what the
    digest hashes. `where` names the value for a refusal; `seen` stops cycles (a recursive
    function, a class its own methods name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return [type(value).__name__, repr(value)]
    if isinstance(value, bytes):
        return ["bytes", hashlib.sha256(value).hexdigest()]
    if isinstance(value, (list, tuple)):
        items = [_describe(v, f"{where}[{i}]", seen) for i, v in enumerate(value)]
        return [type(value).__name__, items]
    if isinstance(value, (set, frozenset)):
        items = [_describe(v, f"{where} item", seen) for v in value]
        return [type(value).__name__, sorted(items, key=json.dumps)]
    if isinstance(value, dict):
        pairs = [
            [_describe(k, where, seen), _describe(v, f"{where}[{k!r}]", seen)]
            for k, v in value.items()
        ]
        return ["dict", sorted(pairs, key=json.dumps)]
    if isinstance(value, types.ModuleType):
        return ["module", value.__name__]
    if id(value) in seen:
        return ["again", seen[id(value)]]
    path = import_path(value) if callable(value) else None
    if path is not None:
        return ["import", path]
    seen[id(value)] = where
    if isinstance(value, types.FunctionType):
        return _describe_function(value, where, seen)
    if isinstance(value, type):
        return _describe_class(value, where, seen)
    if isinstance(value, functools.partial):
        parts = (value.func, value.args, value.keywords)
        return ["partial", _describe(parts, where, seen)]
    if isinstance(value, types.MethodType):
        return ["method", _describe((value.__func__, value.__self__), where, seen)]
    if isinstance(value, (staticmethod, classmethod)):
        return [type(value).__name__, _describe(value.__func__, where, seen)]
    if isinstance(value, property):
        return ["property", _describe((value.fget, value.fset, value.fdel), where, seen)]
    return _describe_pickled(value, where)


def _describe_pickled(value: Any, where: str) -> Any:
    """Any other value (an array, a tensor, an instance): the hash of its pickle."""
    import cloudpickle

    try:
        pickled = cloudpickle.dumps(value)
    except Exception as exc:
        raise _Unidentifiable(
            f"it uses {where} (a {type(value).__name__}), which cannot be pickled "
            f"({_first_line(exc)}): create it inside the function, or give an import path"
        ) from None
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    return ["pickled", kind, hashlib.sha256(pickled).hexdigest()]


def _source(function: types.FunctionType) -> str | None:
    """A function's source (not a lambda's: its line holds whatever else the line holds)."""
    if function.__name__ == "<lambda>":
        return None
    try:
        return textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):  # defined in `python -c`, exec'd text: its compiled code
        return None


def _describe_code(code: types.CodeType) -> Any:
    consts = [
        _describe_code(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts
    ]
    return [code.co_code.hex(), consts, list(code.co_names), list(code.co_varnames)]


_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"})


def _global_names(code: types.CodeType) -> set[str]:
    """The globals a function's code (and the code nested in it) names: not its attribute
    names (`self.lock` names no global `lock`)."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in _GLOBAL_OPS}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _describe_function(function: types.FunctionType, where: str, seen: dict[int, str]) -> Any:
    """Its code, and the values it uses: defaults, closure cells and the globals it names."""
    code = function.__code__
    source = _source(function)
    cells = {}
    for name, cell in zip(code.co_freevars, function.__closure__ or (), strict=True):
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell (a name assigned after the function was made)
            continue
        cells[name] = _describe(contents, name, seen)
    used = {
        name: _describe(function.__globals__[name], name, seen)
        for name in sorted(_global_names(code))
        if name in function.__globals__
    }
    return [
        "function",
        function.__qualname__,
        source if source is not None else _describe_code(code),
        _describe(function.__defaults__, f"{function.__name__}'s defaults", seen),
        _describe(function.__kwdefaults__, f"{function.__name__}'s defaults", seen),
        cells,
        used,
    ]


# Attributes every class has, that say nothing its methods and values do not.
_CLASS_BOOKKEEPING = frozenset(
    {
        *("__dict__", "__weakref__", "__module__", "__qualname__", "__doc__", "_abc_impl"),
        *("__firstlineno__", "__static_attributes__", "__annotations__", "__annotate__"),
        *("__parameters__", "__orig_bases__"),
    }
)
_SLOTS = (types.MemberDescriptorType, types.GetSetDescriptorType)


def _describe_class(cls: type, where: str, seen: dict[int, str]) -> Any:
    """Its bases and everything its body defines (methods by their code and the values they
    use, class attributes by value)."""
    attributes = {
        name: _describe(value, f"{cls.__qualname__}.{name}", seen)
        for name, value in sorted(vars(cls).items())
        if name not in _CLASS_BOOKKEEPING and not isinstance(value, _SLOTS)
    }
    bases = [_describe(base, f"{cls.__qualname__}'s base", seen) for base in cls.__bases__]
    return ["class", cls.__qualname__, bases, attributes]
