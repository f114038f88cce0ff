"""A full disk, through a real small filesystem (a 4 MB tmpfs, filled): tune, sweep and report
exit 3 with one line naming the file, never hang, and the same command finishes the work once
space returns; Optuna (`optuna.load_study`) judges what the tune's study holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, regression_dict, write_config

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.durable  # fsync is part of what fills the disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    stat = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler


def _optbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optbench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,  # a hang fails the test
    )


def _one_write_failure(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("write failed: cannot write "), lines[0]
    assert "No space left on device" in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _config(tmp_path: Path, name: str, **changes: Any) -> Path:
    config = regression_dict(name=name, **changes)
    config["model"] = {"name": "mlp"}  # a checkpoint of some 13 KB per epoch
    return write_config(tmp_path, config)


@pytest.mark.slow
def test_a_tune_on_a_full_disk_exits_3_and_resumes_to_exactly_its_budget(
    tmp_path: Path, small_disk: Path
) -> None:
    tune = {"space": {"optimizer.lr": {"log_uniform": [1e-2, 0.3]}}, "trials": 4, "seeds": [0]}
    config = _config(tmp_path, "full", epochs=3, tune=tune, sweep={"optimizer.name": ["SGD"]})
    results, filler = small_disk / "results", _fill(small_disk, 60_000)
    args = ("tune", str(config), "--results-dir", str(results), "--workers", "1")
    _one_write_failure(_optbench(*args), str(small_disk))
    filler.unlink()  # space again: the same command finishes the tune
    again = _optbench(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((results / "full" / "tune.json").read_text())
    study = optuna.load_study(
        study_name=report["optimizers"]["SGD"]["study"],
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(report["storage"])
        ),
    )
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if not t.user_attrs.get("not_counted")]
    assert len(counted) == 4 and {t.state.name for t in counted} <= {"COMPLETE", "PRUNED"}
    assert "RUNNING" not in {t.state.name for t in trials}


@pytest.mark.slow
def test_a_sweep_and_a_report_on_a_full_disk_exit_3_naming_the_file(
    tmp_path: Path, small_disk: Path
) -> None:
    config = _config(tmp_path, "sw", epochs=3)
    results = tmp_path / "results"  # the report's runs, trained with space to spare
    ran = _optbench("sweep", str(config), "--results-dir", str(results), "--seeds", "0,1")
    assert ran.returncode == 0, ran.stderr
    filler = _fill(small_disk, 20_000)
    page = small_disk / "report.html"
    _one_write_failure(_optbench("report", str(results / "sw"), "-o", str(page)), str(page))
    assert not page.exists()  # no half page
    swept = small_disk / "results"
    args = ("sweep", str(config), "--results-dir", str(swept), "--seeds", "0,1", "--workers", "1")
    _one_write_failure(_optbench(*args), str(swept / "sw"))
    filler.unlink()
    again = _optbench(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    statuses = [json.loads(p.read_text())["status"] for p in swept.glob("sw/*/summary.json")]
    assert statuses == ["completed", "completed"]
