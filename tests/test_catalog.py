"""`optbench list`: the catalogue matches the registries, and a cached one needs no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optbench.components.catalog import KINDS, build_rows, cache_dir, catalog_rows


@pytest.mark.parametrize("kind", KINDS)
def test_cached_catalogue_is_the_registry(kind: str) -> None:
    catalog_rows(kind)  # builds and caches every kind
    assert catalog_rows(kind) == build_rows(kind)
    assert len(list(cache_dir().glob("catalog-*.json"))) == 1


def test_list_with_a_cached_catalogue_does_not_import_torch() -> None:
    catalog_rows("optimizers")
    script = (
        "import sys\n"
        "from optbench.ui.cli import app\n"
        "app(['list', 'optimizers'], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert "SGD" in completed.stdout and "Adam" in completed.stdout


def test_a_damaged_cache_is_rebuilt() -> None:
    catalog_rows("losses")
    (path,) = cache_dir().glob("catalog-*.json")
    path.write_text('{"losses": ')
    assert catalog_rows("losses") == build_rows("losses")
    assert json.loads(path.read_text())["losses"]


def test_an_unwritable_cache_only_costs_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("OPTBENCH_CACHE", str(blocker / "cache"))
    assert catalog_rows("models") == build_rows("models")


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown kind 'gizmos'"):
        catalog_rows("gizmos")


def test_list_loggers_and_executors_shows_each_registered_class_with_its_signature() -> None:
    """`optbench list loggers|executors` reads the registries runs are planned from: every
    registered class, its constructor's options with their defaults (minus what the plan
    supplies), so a name that plans is a name that is listed and the reverse."""
    import inspect

    import optbench
    from optbench.experiment.loggers.registry import builtin_loggers
    from optbench.sweeps.executors import EXECUTORS

    loggers = optbench.catalog("loggers").set_index("name")
    assert set(loggers.index) == set(builtin_loggers()) >= {"tensorboard", "mlflow", "wandb"}
    wandb_options = list(inspect.signature(builtin_loggers()["wandb"]).parameters)
    assert loggers.loc["wandb", "options"].startswith(f"{wandb_options[0]}=None")
    executors = optbench.catalog("executors").set_index("name")
    assert set(executors.index) == set(EXECUTORS.names()) >= {"local", "ray", "submitit"}
    assert "results_dir" not in executors.loc["ray", "options"]
    assert "cpus_per_run=1.0" in executors.loc["ray", "options"]
    out = subprocess.run(
        [sys.executable, "-m", "optbench", "list", "executors"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0 and "submitit" in out.stdout, out.stderr
