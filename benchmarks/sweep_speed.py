"""Wall time of one 8-run sweep with --workers 1, --workers N (default: the CPU cores) and, with
--ray, on a one-node Ray cluster of N CPUs.

Usage:
    python benchmarks/sweep_speed.py [--workers N] [--repeats R] [--subset S] [--epochs E] [--ray]

The sweep is cifar_cnn on real Fashion-MNIST (the first S training samples), 4 optimizers x
2 seeds, E epochs each. Each contender runs `optbench sweep` as a user would, into a fresh
results folder, so every run trains (nothing is skipped). Contenders alternate (1 N ray 1 N
ray ...); the table reports each one's median wall seconds and the speed-ups against
workers-1. --ray starts a head on 127.0.0.1 (`ray start --head`) before and stops it after.
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


def timed_sweep(config: Path, contender: str, workers: int, data_root: str) -> float:
    """Seconds for the whole `optbench sweep` command; `contender` is "local" or "ray"."""
    with tempfile.TemporaryDirectory() as results:
        command = [
            sys.executable,
            *("-m", "optbench", "sweep", str(config), "--workers", str(workers)),
            *("--results-dir", results, "--set", f"data.root={data_root}"),
        ]
        if contender == "ray":
            command += ["--executor", "ray", "--address", "auto"]
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
    parser.add_argument("--ray", action="store_true", help="also on a local one-node Ray cluster")
    args = parser.parse_args()

    contenders = [("local", 1), ("local", args.workers)] + ([("ray", args.workers)] * args.ray)
    ray = str(Path(sys.executable).with_name("ray"))
    if args.ray:
        head = [ray, "start", "--head", "--node-ip-address", "127.0.0.1"]
        head += ["--num-cpus", str(args.workers), "--include-dashboard", "false"]
        subprocess.run(head, check=True, capture_output=True)
    times: dict[tuple[str, int], list[float]] = {c: [] for c in contenders}
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder) / "sweep_speed.yaml"
            CONFIG["epochs"] = args.epochs
            CONFIG["data"]["subset"] = args.subset
            config.write_text(yaml.safe_dump(CONFIG))
            for _ in range(args.repeats):
                for contender, workers in times:
                    seconds = timed_sweep(config, contender, workers, args.data_root)
                    times[(contender, workers)].append(seconds)
                    print(f"  {contender} workers={workers}: {seconds:.1f} s", flush=True)
    finally:
        if args.ray:
            subprocess.run([ray, "stop"], capture_output=True)

    serial = statistics.median(times[("local", 1)])
    print()
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"machine: {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}")
    print(f"sweep: 8 runs, cifar_cnn, Fashion-MNIST subset {args.subset}, {args.epochs} epoch(s)")
    print()
    print("| executor | workers | median wall s | runs | speed-up vs 1 local worker |")
    print("|---|---|---|---|---|")
    for (contender, workers), values in times.items():
        each = ", ".join(f"{v:.1f}" for v in values)
        median = statistics.median(values)
        print(f"| {contender} | {workers} | {median:.1f} | {each} | {serial / median:.2f}x |")


if __name__ == "__main__":
    main()
