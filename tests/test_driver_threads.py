"""The driver of `optbench sweep|tune|benchmark` trains runs itself (tiny runs in its thread,
every batched trial), beside worker processes and whatever else shares the cores, so its torch
threads must wait asleep as the workers' do: OpenMP reads OMP_WAIT_POLICY once, when torch is
first imported, so the command must set it before anything imports torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import os, sys
from typer.testing import CliRunner
from optbench.ui.cli import app
loaded_before = "torch" in sys.modules
result = CliRunner().invoke(app, [sys.argv[1], "no_such_file.yaml"])
print(loaded_before, result.exit_code, os.environ.get("OMP_WAIT_POLICY"))
"""


def _probe(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """PROBE in a fresh interpreter: whether torch was loaded, the exit code, the policy."""
    return subprocess.run(
        [sys.executable, "-c", PROBE, command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sweep", "tune", "benchmark"])
def test_the_driver_sets_passive_waiting_before_torch_loads(command: str, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = _probe(command, env, tmp_path)
    # torch not loaded by the CLI's import; the command (refusing the missing file: exit 2)
    # set the policy first, so the OpenMP runtime torch loads later reads it
    assert done.stdout.split() == ["False", "2", "PASSIVE"]


@pytest.mark.slow
def test_a_policy_the_user_set_wins(tmp_path) -> None:
    done = _probe("tune", {**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}, tmp_path)
    assert done.stdout.split() == ["False", "2", "ACTIVE"]
