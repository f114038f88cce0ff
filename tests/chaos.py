"""Chaos: an optbench command SIGKILLed at seeded random moments, then run to completion.

optbench promises that a SIGKILL at any moment, of the driver or of a worker, loses nothing,
and that running the same command again ends where an undisturbed run ends. `run_chaos` puts
that to the test for any command whose rerun resumes (sweep, tune, benchmark): it starts the
command, and at each moment of a seeded schedule kills the driver or one of its worker
processes (found under /proc), starting the command again whenever it is not running; after
the last kill it reruns the command until it exits 0, then calls the caller's checker. The
checkers here compare a sweep's, a tune's or a benchmark's results with an undisturbed run's:
every run's per-epoch table bit for bit (wall-clock columns aside), no run lost or added, no
lock left held, for a tune (and each pair of a benchmark) the budgets spent on trained trials
only and the same tune.json, and for a benchmark the same benchmark.json but for its
wall-clock figures.

The suite runs short schedules (tests/test_chaos.py); a longer one by hand, for BENCHMARKS.md:

    python tests/chaos.py sweep --kills 20 --seed 1
    python tests/chaos.py tune --kills 20 --seed 1
    python tests/chaos.py benchmark --kills 20 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WALL_CLOCK_COLUMNS = ("seconds", "eval_seconds")  # of epochs.csv: differ between any two runs


# A worker kill waits this long for the command to have a worker (it starts them once its runs
# prove not tiny); the driver is killed where none comes.
WORKER_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Kill:
    """One kill of a schedule: `after` seconds after the command (re)started or the last kill,
    of the driver or of a worker process (the driver where it has none at that moment)."""

    after: float
    target: str  # "driver" or "worker"


def schedule(kills: int, seed: int, between: tuple[float, float] = (1.0, 8.0)) -> list[Kill]:
    """`kills` kills at seeded random moments, each of the driver or a worker at even odds,
    but never MAX_DEATHS worker kills in a row: a sweep or tune fails (and counts) a run whose
    worker dies that often in one driver without an epoch between, as the out-of-memory killer's
    pattern, which stray kills are not meant to mimic."""
    from optbench.sweeps.reruns import MAX_DEATHS

    rng = random.Random(seed)
    plan: list[Kill] = []
    for _ in range(kills):
        after, target = round(rng.uniform(*between), 2), rng.choice(("driver", "worker"))
        recent = [k.target for k in plan[-(MAX_DEATHS - 1) :]]
        if len(recent) == MAX_DEATHS - 1 and set(recent) == {"worker"}:
            target = "driver"
        plan.append(Kill(after, target))
    return plan


@dataclass
class ChaosLog:
    """What a chaos run did: each kill (target, pid, seconds since its start), each exit
    status of the command, how many times it was started, and how long it all took."""

    kills: list[tuple[str, int, float]] = field(default_factory=list)
    exits: list[int] = field(default_factory=list)
    starts: int = 0
    no_worker: int = 0  # worker kills that found none in WORKER_WAIT_SECONDS: the driver's
    seconds: float = 0.0
    output: str = ""  # the last start's output

    def killed(self, target: str) -> int:
        return sum(kill[0] == target for kill in self.kills)

    def line(self) -> str:
        return (
            f"{len(self.kills)} kills ({self.killed('driver')} driver, of which "
            f"{self.no_worker} found no worker; {self.killed('worker')} worker), "
            f"{self.starts} starts, exits {self.exits}, "
            f"{self.seconds:.1f} s"
        )


def workers_of(pid: int) -> list[int]:
    """The worker processes of driver `pid`: its children started by multiprocessing's spawn
    (not its resource tracker), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == pid and "spawn_main" in command:
            found.append(int(entry.name))
    return found


def run_chaos(
    command: Sequence[str],
    kills: Sequence[Kill],
    check: Callable[[], Any] | None = None,
    *,
    seed: int = 0,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
    attempts: int = 5,
    timeout: float = 600.0,
) -> ChaosLog:
    """Run `command` through the `kills`, then to completion (exit 0, at most `attempts` more
    starts), then `check()`. The worker a kill picks is drawn from `seed`. Raises
    AssertionError when the command never completes (with its last output)."""
    rng = random.Random(seed)
    log, started = ChaosLog(), time.monotonic()
    environment = {**os.environ, "COLUMNS": "200", **(env or {})}
    process: subprocess.Popen[str] | None = None

    def start() -> subprocess.Popen[str]:
        log.starts += 1
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own group: nothing it leaves outlives the harness
        )

    def ended(process: subprocess.Popen[str]) -> int:
        """Its exit status, its output read and its exit logged once (it may be asked twice: a
        start that finished before the schedule did is the completion too)."""
        if process.stdout is not None and not process.stdout.closed:
            log.output = process.communicate()[0]
            log.exits.append(process.returncode)
        return process.returncode

    try:
        for kill in kills:
            if process is not None and process.poll() is not None:
                if ended(process) == 0:
                    break  # finished before the schedule did: the rest has nothing to kill
                process = None
            if process is None:
                process = start()
            deadline = time.monotonic() + kill.after
            while time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.01)
            if process.poll() is not None:
                continue
            workers = []
            wait_until = time.monotonic() + WORKER_WAIT_SECONDS
            while kill.target == "worker" and process.poll() is None:
                workers = workers_of(process.pid)
                if workers or time.monotonic() > wait_until:
                    break
                time.sleep(0.05)
            if process.poll() is not None:
                continue
            victim = rng.choice(workers) if workers else process.pid
            with _gone():
                os.kill(victim, signal.SIGKILL)
            target = "worker" if workers else "driver"
            log.no_worker += kill.target == "worker" and not workers
            log.kills.append((target, victim, round(time.monotonic() - started, 2)))
            if victim == process.pid:
                ended(process)
                process = None
        tries = 0
        while True:  # to completion
            if process is None:
                process = start()
            process.wait(timeout=timeout)
            if ended(process) == 0:
                break
            process, tries = None, tries + 1
            if tries > attempts:
                raise AssertionError(f"never completed: {log.line()}\n{log.output}")
    finally:
        if process is not None and process.poll() is None:
            with _gone():
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    log.seconds = time.monotonic() - started
    if check is not None:
        check()
    return log


class _gone:
    """Ignore a ProcessLookupError: the process ended by itself a moment before the kill."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, *rest: Any) -> bool:
        return kind is ProcessLookupError


# --------------------------------------------------------------------------- checkers


def compare_runs(undisturbed: Path, disturbed: Path) -> int:
    """Every run folder of `undisturbed` (a sweep's or tune's, results/<name>) is in
    `disturbed` and no other: each finished alike, with the same epochs.csv bit for bit but for
    its wall-clock columns, and its lock not held. Returns the runs compared."""
    import pandas as pd

    from optbench.storage.results import RunDir

    def runs(folder: Path) -> set[str]:
        return {p.parent.name for p in folder.glob("*/summary.json")}

    assert runs(disturbed) == runs(undisturbed), "runs lost or added"
    for name in sorted(runs(undisturbed)):
        before, after = undisturbed / name, disturbed / name
        assert not RunDir(after).is_locked(), f"{name}: its lock is still held"
        status = [json.loads((f / "summary.json").read_text())["status"] for f in (before, after)]
        assert status[0] == status[1], f"{name}: {status[1]}, undisturbed {status[0]}"
        written = [(f / "epochs.csv").is_file() for f in (before, after)]
        assert written[0] == written[1], f"{name}: epochs.csv written: {written}"
        if not written[0]:  # diverged in its first epoch: no epoch to write
            continue
        frames = [pd.read_csv(f / "epochs.csv") for f in (before, after)]
        columns = [c for c in frames[0].columns if c not in WALL_CLOCK_COLUMNS]
        pd.testing.assert_frame_equal(frames[1][columns], frames[0][columns], check_exact=True)
    return len(runs(undisturbed))


# Why a trial may be left out of its budget after kills: its worker died, its driver died
# (or was stopped) with it in flight, or its driver died between asking and recording it.
UNCOUNTED_AFTER_KILLS = (
    "the worker process running it died",
    "its process died",
    "interrupted",
    "its asker stopped before recording itself",
)


def compare_tunes(undisturbed: Path, disturbed: Path) -> None:
    """The tune in `disturbed` (results/<name>) ended as the one in `undisturbed`: the same
    tune.json but for wall-clock seconds and the storage's path; in each study (read by
    Optuna), the budget spent on trained trials only, the same points asked in the same
    order, and every trial left out of the budget left out for a kill."""
    import optuna

    reports = [json.loads((f / "tune.json").read_text()) for f in (undisturbed, disturbed)]
    for report in reports:
        del report["storage"]
        for arm in report["optimizers"].values():
            del arm["seconds"]
    assert reports[1] == reports[0], "tune.json differs"
    points = []
    for folder in (undisturbed, disturbed):
        report = json.loads((folder / "tune.json").read_text())
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(report["storage"])
        )
        asked = {}
        for key, arm in report["optimizers"].items():
            trials = optuna.load_study(study_name=arm["study"], storage=storage).get_trials()
            retried = {t.user_attrs.get("retry_of") for t in trials}
            left_out = [
                t
                for t in trials
                if t.user_attrs.get("not_counted")
                or (t.state.name == "FAIL" and t.number in retried)
            ]
            for trial in left_out:
                why = str(trial.user_attrs.get("not_counted"))
                assert why.startswith(UNCOUNTED_AFTER_KILLS), f"{key} trial {trial.number}: {why}"
                assert trial.number in retried, f"{key} trial {trial.number} was never retried"
            counted = [t for t in trials if t not in left_out]
            assert len(counted) == arm["trials"], f"{key}: {len(counted)} trials counted"
            assert all(t.state.name != "RUNNING" for t in trials), f"{key}: a trial still running"
            first = {t.number: _first_asked(t, trials) for t in counted}
            asked[key] = [t.params for t in sorted(counted, key=lambda t: first[t.number])]
        points.append(asked)
    assert points[1] == points[0], "other points asked"


def without_wall_clock(value: Any) -> Any:
    """A benchmark.json (or any part of it) without its wall-clock figures: every `seconds`
    (or `..._seconds`) key: the times to target, scores, ratios and profiles on the seconds
    clock, a pair's seconds per step."""
    if isinstance(value, dict):
        return {
            k: without_wall_clock(v)
            for k, v in value.items()
            if k != "seconds" and not str(k).endswith("_seconds")
        }
    if isinstance(value, list):
        return [without_wall_clock(v) for v in value]
    return value


def compare_benchmarks(undisturbed: Path, disturbed: Path, suite: str) -> int:
    """The benchmark in `disturbed` (a results folder) ended as the one in `undisturbed`: the
    same benchmark.json but for wall-clock figures, and each pair's folder as `compare_runs`
    and `compare_tunes` check a tune's. Returns the runs compared."""
    documents = [
        json.loads((folder / suite / "benchmark.json").read_text())
        for folder in (undisturbed, disturbed)
    ]
    assert without_wall_clock(documents[1]) == without_wall_clock(documents[0]), (
        "benchmark.json differs"
    )
    compared = 0
    for row in documents[0]["pairs"].values():
        for pair in row.values():
            for folder in pair["folders"]:
                compared += compare_runs(undisturbed / folder, disturbed / folder)
                compare_tunes(undisturbed / folder, disturbed / folder)
    return compared


def _first_asked(trial: Any, trials: list[Any]) -> int:
    """The number of the trial that first asked this one's point (following its retry_of)."""
    by_number = {t.number: t for t in trials}
    while (origin := trial.user_attrs.get("retry_of")) is not None:
        trial = by_number[origin]
    return trial.number


# --------------------------------------------------------------------------- the experiments


DIGITS = {  # scikit-learn's digits: no download; 30 epochs of about 60 ms
    "problem": "digits_mlp",
    "device": "cpu",
    "optimizer": {"name": "SGD", "lr": 0.05},
}


def sweep_experiment(folder: Path, small: bool = False, epochs: int = 30) -> tuple[list[str], str]:
    """2 optimizers x 2 lr x 2 seeds on digits (`small`: one lr), on 2 workers: the command
    line (without --results-dir) and the sweep's name."""
    import yaml

    config = folder / "chaos_sweep.yaml"
    lrs = [0.05] if small else [0.01, 0.05]
    grid = {"optimizer.name": ["SGD", "Adam"], "optimizer.lr": lrs, "seed": [0, 1]}
    body = {"name": "chaos_sweep", **DIGITS, "epochs": epochs, "sweep": grid}
    config.write_text(yaml.safe_dump(body))
    return [sys.executable, "-m", "optbench", "sweep", str(config), "--workers", "2"], "chaos_sweep"


def tune_experiment(folder: Path, small: bool = False, epochs: int = 30) -> tuple[list[str], str]:
    """SGD and Adam, each 4 trials (`small`: 3) of a learning rate (TPE's random start-up, no
    pruner: the choices a resumed tune can repeat exactly) and a seed rerun, on digits, on 2
    workers."""
    trials = 3 if small else 4
    import yaml

    config = folder / "chaos_tune.yaml"
    tune = {
        "space": {"optimizer.lr": {"log_uniform": [0.003, 0.1]}},
        "trials": trials,
        "pruner": "none",
        "seeds": [0, 1],
    }
    body = {
        "name": "chaos_tune",
        **DIGITS,
        "epochs": epochs,
        "sweep": {"optimizer.name": ["SGD", "Adam"]},
        "tune": tune,
    }
    config.write_text(yaml.safe_dump(body))
    return [sys.executable, "-m", "optbench", "tune", str(config), "--workers", "2"], "chaos_tune"


def benchmark_experiment(
    folder: Path, small: bool = False, epochs: int = 3, digits: bool = False
) -> tuple[list[str], str]:
    """SGD and Adam on Rosenbrock (`small`) or on Rosenbrock and Branin, each pair 2 trials of
    a learning rate (TPE's random start-up, no pruner) and 2 seed reruns of the best (the
    best_final_reruns protocol), on 2 workers: the command line and the suite's name.
    `digits`: on digits' MLP instead, 10 epochs, runs long enough for worker processes."""
    import yaml

    suite = folder / "chaos_benchmark.yaml"
    problems = ["rosenbrock"] if small else ["rosenbrock", "branin"]
    targets = {"rosenbrock": {"distance_to_optimum": 1.9}, "branin": {"distance_to_optimum": 2}}
    body = {
        "name": "chaos_benchmark",
        "problems": problems,
        "set": {"epochs": epochs, "device": "cpu"},
        "optimizers": {"SGD": {"name": "SGD"}, "Adam": {"name": "Adam"}},
        "protocol": "best_final_reruns",
        "tune": {
            "space": {"optimizer.lr": {"log_uniform": [1.0e-3, 1.0e-2]}},
            "trials": 2,
            "pruner": "none",
            "seeds": [0, 1],
        },
        "targets": {problem: targets[problem] for problem in problems},
    }
    if digits:  # the problem's own target
        del body["targets"]
        body.update(problems=["digits_mlp"], set={"epochs": 10, "device": "cpu"})
        body["tune"]["space"] = {"optimizer.lr": {"log_uniform": [0.003, 0.1]}}
    suite.write_text(yaml.safe_dump(body))
    command = [sys.executable, "-m", "optbench", "benchmark", str(suite), "--workers", "2"]
    return command, "chaos_benchmark"


EXPERIMENTS = {
    "sweep": sweep_experiment,
    "tune": tune_experiment,
    "benchmark": benchmark_experiment,
}


def chaos_against_undisturbed(
    kind: str,
    folder: Path,
    kills: int,
    seed: int,
    between: tuple[float, float] = (1.0, 8.0),
    small: bool = False,
    digits: bool = False,
    wild_args: Sequence[str] = (),
) -> tuple[ChaosLog, int]:
    """Run the `kind` (sweep, tune or benchmark) experiment undisturbed, then through `kills`
    kills, and check that the two ended alike; the chaos log and the runs compared.
    `digits`: the benchmark on digits (see benchmark_experiment). `wild_args`: options of the
    killed run only (`--batch-trials 2`: batched, it must end as the undisturbed unbatched)."""
    if digits:
        command, name = benchmark_experiment(folder, small, digits=True)
    else:
        command, name = EXPERIMENTS[kind](folder, small)
    calm, wild = folder / "undisturbed", folder / "chaos"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    calm_log = run_chaos([*command, "--results-dir", str(calm)], [], env=env, attempts=0)
    assert calm_log.exits == [0], calm_log.output
    compared = 0

    def check() -> None:
        nonlocal compared
        if kind == "benchmark":
            compared = compare_benchmarks(calm, wild, name)
            return
        compared = compare_runs(calm / name, wild / name)
        if kind == "tune":
            compare_tunes(calm / name, wild / name)

    log = run_chaos(
        [*command, *wild_args, "--results-dir", str(wild)],
        schedule(kills, seed, between),
        check,
        seed=seed,
        env=env,
    )
    return log, compared


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=tuple(EXPERIMENTS))
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--between", type=float, nargs=2, default=(1.0, 8.0), metavar=("LOW", "HIGH")
    )
    parser.add_argument("--folder", type=Path, help="where to write (default: a temporary one)")
    parser.add_argument("--digits", action="store_true", help="benchmark: on digits' MLP")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="optbench-chaos-") as scratch:
        folder = options.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        log, compared = chaos_against_undisturbed(
            options.kind,
            folder,
            options.kills,
            options.seed,
            tuple(options.between),
            digits=options.digits,
        )
    print(f"{options.kind}, seed {options.seed}: {log.line()}")
    print(
        f"identical to the undisturbed run: {compared} runs' epochs.csv"
        + {
            "sweep": "",
            "tune": ", tune.json and every study's counted trials",
            "benchmark": ", benchmark.json, every pair's tune.json and counted trials",
        }[options.kind]
    )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
