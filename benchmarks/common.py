"""What every benchmark reports: the machine, its load, and how much CPU other processes took.

Timings on a small shared machine swing by large factors when anything else runs, because torch
uses every core; each benchmark therefore records the CPU share other processes used per run.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from typing import Any

import torch
import torchvision

from optbench.core.config import validate_config
from optbench.experiment.plan import RunPlan, make_plan

SEED = 0
BATCH_SIZE = 64
SGD_MOMENTUM = {"name": "SGD", "lr": 0.01, "momentum": 0.9}
TIMING = {"seconds", "eval_seconds", "first_step_seconds"}  # epochs.csv's wall-time columns


def untimed_rows(result: Any) -> list[dict[str, Any]]:
    """A training result's rows without their wall times: what two ways of training the same
    runs must agree on to the bit."""
    return [{k: v for k, v in row.items() if k not in TIMING} for row in result.rows]


def benchmark_plan(
    name: str,
    dataset: str,
    root: str,
    subset: int | None = None,
    *,
    model: str = "cifar_cnn",
    optimizer: dict | None = None,
    epochs: int = 1,
    fast: bool = False,
) -> RunPlan:
    """The problem every benchmark trains unless told otherwise: cifar_cnn, batch 64, seed 0,
    CPU, cross-entropy, SGD(lr=0.01, momentum=0.9)."""
    data = {"dataset": dataset, "root": root, "batch_size": BATCH_SIZE}
    config = {
        "name": name,
        "seed": SEED,
        "epochs": epochs,
        "device": "cpu",
        "fast": fast,
        "data": data if subset is None else {**data, "subset": subset},
        "model": model,
        "loss": "cross_entropy",
        "optimizer": optimizer or SGD_MOMENTUM,
    }
    return make_plan(validate_config(config))


def command_line() -> str:
    """The command that produced a report, as a user would type it."""
    return shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))


def machine() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, os.cpu_count()={os.cpu_count()} "
        f"(usable {usable}), torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"torch.get_num_threads()={torch.get_num_threads()}, python {platform.python_version()}"
    )


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class Interference:
    """Share of the machine that other processes used while a run was going on."""

    def __enter__(self) -> Interference:
        self.share: float | None = None
        self._busy, self._own = cpu_busy_seconds(), own_cpu_seconds()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, wall = cpu_busy_seconds(), time.perf_counter() - self._wall
        if busy is None or self._busy is None or wall <= 0:
            return
        others = (busy - self._busy) - (own_cpu_seconds() - self._own)
        self.share = max(0.0, others) / (wall * (os.cpu_count() or 1))


def share(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.0f}%"


def warn_if_disturbed(shares_by_contender: dict[str, list[float | None]]) -> None:
    """A report line when other processes took more than 10% of the CPUs during some run."""
    shares = [v for values in shares_by_contender.values() for v in values if v is not None]
    if shares and max(shares) > 0.10:
        print(
            f"- WARNING: other processes used up to {share(max(shares))} of the CPUs during "
            "some runs; with torch's default threads = all cores, such runs are slowed by "
            "large factors, so medians over them are unreliable (the minima are the least "
            "disturbed)"
        )
