"""Wall time of one 8-run sweep with --workers 1 against --workers N (default: the CPU cores).

Usage:
    python benchmarks/sweep_speed.py [--workers N] [--repeats R] [--subset S] [--epochs E]

The sweep is cifar_cnn on real Fashion-MNIST (the first S training samples), 4 optimizers x
2 seeds, E epochs each. Each contender runs `optbench sweep` as a user would, into a fresh
results folder, so every run trains (nothing is skipped). Contenders alternate (1 N 1 N ...);
the table reports each one's median wall seconds and the speed-up workers-1 / workers-N.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

CONFIG = {
    "name": "sweep_speed",
    "seed": 0,
    "epochs": 1,
    "device": "cpu",
    "data": {"dataset": "fashion_mnist", "batch_size": 64, "subset": 6400},
    "model": {"name": "cifar_cnn"},
    "loss": "cross_entropy",
    "optimizer": {"name": "SGD", "lr": 0.01},
    "sweep": {"optimizer.name": ["SGD", "Adam", "RMSprop", "Adagrad"], "seed": [0, 1]},
}


def timed_sweep(config: Path, workers: int, data_root: str) -> float:
    with tempfile.TemporaryDirectory() as results:
        command = [
            sys.executable,
            "-m",
            "optbench",
            "sweep",
            str(config),
            "--workers",
            str(workers),
            "--results-dir",
            results,
            "--set",
            f"data.root={data_root}",
        ]
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if completed.returncode != 0:
            sys.exit(f"sweep failed:\n{completed.stdout}\n{completed.stderr}")
        if "8 completed" not in completed.stdout:
            sys.exit(f"expected 8 completed runs:\n{completed.stdout}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--subset", type=int, default=6400)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data-root", default=os.environ.get("OPTBENCH_DATA", "data"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "sweep_speed.yaml"
        CONFIG["epochs"] = args.epochs
        CONFIG["data"]["subset"] = args.subset
        config.write_text(yaml.safe_dump(CONFIG))
        times: dict[int, list[float]] = {1: [], args.workers: []}
        for _ in range(args.repeats):
            for workers in times:
                times[workers].append(timed_sweep(config, workers, args.data_root))
                print(f"  workers={workers}: {times[workers][-1]:.1f} s", flush=True)

    serial, parallel = (statistics.median(times[w]) for w in times)
    print()
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"machine: {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}")
    print(f"sweep: 8 runs, cifar_cnn, Fashion-MNIST subset {args.subset}, {args.epochs} epoch(s)")
    print()
    print("| workers | median wall s | runs |")
    print("|---|---|---|")
    for workers, values in times.items():
        each = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {workers} | {statistics.median(values):.1f} | {each} |")
    print()
    print(f"speed-up workers {args.workers} vs 1: {serial / parallel:.2f}x")


if __name__ == "__main__":
    main()
