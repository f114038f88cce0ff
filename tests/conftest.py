"""Shared fixtures: the real Fashion-MNIST from Debian's package, CIFAR-10-format files, and a
private catalogue cache. Plain helpers live in tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Before torch loads (OpenMP reads it once): the test processes' idle torch threads sleep rather
# than spin, as optbench's own workers' do (sweeps/openmp.py); two xdist workers each spinning
# two threads on two cores slowed each other's small-tensor tests up to 20x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest

from tests.helpers import (
    ECOSYSTEM_OUTCOMES,
    FASHION_MNIST_GZ,
    accept_cifar10_files,
    write_cifar10,
)


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding real Fashion-MNIST, unpacked from Debian's dataset-fashion-mnist."""
    if not FASHION_MNIST_GZ.is_file():
        pytest.fail(
            f"{FASHION_MNIST_GZ} is missing: apt-get install dataset-fashion-mnist "
            "(.ci/run does this)"
        )
    return tmp_path_factory.mktemp("data")


@pytest.fixture(autouse=True, scope="session")
def _private_catalog_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep `optbench list`'s catalogue cache out of the user's home during tests."""
    os.environ["OPTBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def _no_fsync(fd: int) -> None:
    """os.fsync in the test process: a no-op (see _fsync_only_where_durability_is_tested)."""


@pytest.fixture(autouse=True)
def _fsync_only_where_durability_is_tested(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync costs some 5 ms a call on this machine's disk and what a test here checks does
    not depend on it: files are read back by the same machine, never after a power loss. So it
    is a no-op in the test process, except in tests marked `durable`. The crash tests (kills,
    a full disk) run optbench in subprocesses, which keep the real fsync whatever this does."""
    if request.node.get_closest_marker("durable") is None:
        monkeypatch.setattr(os, "fsync", _no_fsync)


@pytest.fixture
def cifar_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, np.ndarray]:
    images, _ = write_cifar10(tmp_path)
    accept_cifar10_files(tmp_path, monkeypatch)
    return tmp_path, images


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker: hand tests/test_ecosystem.py's outcomes to the controller,
    which prints them (pytest_testnodedown, then pytest_terminal_summary)."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["ecosystem_outcomes"] = ECOSYSTEM_OUTCOMES


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: a worker has finished
def pytest_testnodedown(node: Any, error: Any) -> None:
    outcomes = getattr(node, "workeroutput", {}).get("ecosystem_outcomes", {})
    for outcome, lines in outcomes.items():
        ECOSYSTEM_OUTCOMES.setdefault(outcome, []).extend(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How the optimizer packages' lists fared (tests/test_ecosystem.py), when it ran, in this
    process or in pytest-xdist's workers."""
    if not ECOSYSTEM_OUTCOMES:
        return
    counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(ECOSYSTEM_OUTCOMES.items()))
    terminalreporter.section("third-party optimizers through optbench")
    terminalreporter.write_line(counts)
    for outcome in ("refused", "skipped"):
        for line in ECOSYSTEM_OUTCOMES.get(outcome, []):
            terminalreporter.write_line(f"{outcome}: {line}")


@pytest.fixture
def ray_session() -> Any:
    """Ray, shut down after the test (the executor starts a local instance on demand). A test
    that starts Ray is marked `xdist_group("ray")`: under pytest-xdist (`-n 2`, with pyproject's
    `--dist loadgroup`) those run one after another in one worker, so no two local clusters
    start at once and no `ray.init` finds the other's through Ray's address file."""
    import ray

    yield ray
    ray.shutdown()
