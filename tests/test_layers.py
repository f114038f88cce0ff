"""The package stands in layers: every import points down the order below, and analysis (which
only scores) imports nothing from sweeps (which trains). Imports are read with `ast`, those
inside functions and under TYPE_CHECKING included, so a lazy import cannot hide an upward one."""

from __future__ import annotations

import ast
from pathlib import Path

import optbench

# From the ground floor up; `__init__` is the package's own __init__.py (`from optbench import
# __version__` is an import of it). A room missing here (`__main__`) is taken as the top floor.
LAYERS = (
    *("core", "storage", "components", "experiment", "sweeps", "analysis"),
    *("api", "__init__", "ui"),
)
FORBIDDEN = {("analysis", "sweeps")}  # below in the order, and still not to be imported


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The absolute module names an import statement names (`from a import b` names a.b too,
    since b may be a submodule)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]


def _room(module: str, root: Path) -> str | None:
    """The layer a module name belongs to: a subpackage or top-level module of the package,
    or `__init__` for the package itself and the names its __init__.py defines."""
    parts = module.split(".")
    if parts[0] != root.name:
        return None
    if len(parts) > 1 and ((root / parts[1]).is_dir() or (root / f"{parts[1]}.py").is_file()):
        return parts[1]
    return "__init__"


def wrong_imports(root: Path) -> list[str]:
    """Every import in the package at `root` that points up LAYERS or is FORBIDDEN, as
    'file:line: room -> room'."""
    floor = {name: index for index, name in enumerate(LAYERS)}
    top = len(LAYERS)
    found = set()
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        here = _room(module, root) if path != root / "__init__.py" else "__init__"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported(node, module, path.name == "__init__.py"):
                there = _room(name, root)
                if there is None or there == here:
                    continue
                upward = floor.get(there, top) > floor.get(here, top)
                if upward or (here, there) in FORBIDDEN:
                    found.add(f"{path.relative_to(root.parent)}:{node.lineno}: {here} -> {there}")
    return sorted(found)


def test_every_import_points_down_the_layers() -> None:
    root = Path(optbench.__file__).parent
    assert wrong_imports(root) == []


def test_the_check_finds_upward_and_forbidden_imports(tmp_path: Path) -> None:
    """What the check above would say about a package that breaks each rule once."""
    root = tmp_path / "optbench"
    for folder in ("core", "experiment", "sweeps", "analysis", "ui"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("__version__ = '1'\nfrom optbench import api\n")
    (root / "api.py").write_text("from optbench.ui import cli\n")  # up
    (root / "core" / "config.py").write_text("def f():\n    from ..experiment import plan\n")
    (root / "experiment" / "runner.py").write_text("from optbench import __version__\n")
    (root / "analysis" / "benchmark.py").write_text("import optbench.sweeps.tune\n")
    # these two point down: not reported
    (root / "sweeps" / "tune.py").write_text("from ..experiment import runner\n")
    (root / "ui" / "cli.py").write_text("from optbench.core import config\nimport optbench\n")
    assert wrong_imports(root) == [
        "optbench/analysis/benchmark.py:1: analysis -> sweeps",
        "optbench/api.py:1: api -> ui",
        "optbench/core/config.py:2: core -> experiment",
        "optbench/experiment/runner.py:1: experiment -> __init__",
    ]
