"""Fast mode against exact mode: epoch time and how far the losses move, per model.

Usage:
    python benchmarks/fast_mode.py [--subset N] [--repeats R] [--data-root DIR]

Each problem trains one epoch through train.train(plan), as `optbench run` does, once
with the default (bit-exact) settings and once with `fast: true`; the two alternate, each round
in the other order (exact fast, fast exact, ...). Reported per problem: median seconds per epoch
(the row's "seconds", training only), the speed-up exact / fast, and the largest relative
difference of train_loss and test_loss between the modes (the tested bound is 1e-3).

Problems: cifar_cnn on real Fashion-MNIST (1x28x28), cifar_cnn on CIFAR-10-shaped random data
(3x32x32, registered in-process as in epoch_speed.py), and the mlp on Fashion-MNIST.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from typing import Any

import torch
from common import (
    Interference,
    benchmark_plan,
    command_line,
    load_average,
    machine,
    share,
    warn_if_disturbed,
)
from epoch_speed import setup_cifar_shaped

from optbench.experiment.train import train

PROBLEMS = [  # (label, dataset, model)
    ("cifar_cnn, fashion_mnist 1x28x28", "fashion_mnist", "cifar_cnn"),
    ("cifar_cnn, cifar_shaped 3x32x32", "cifar_shaped", "cifar_cnn"),
    ("mlp, fashion_mnist", "fashion_mnist", "mlp"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=12800, help="training samples per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per mode")
    parser.add_argument("--data-root", default=os.environ.get("OPTBENCH_DATA", "data"))
    args = parser.parse_args()
    command, load_before, started = command_line(), load_average(), time.perf_counter()
    setup_cifar_shaped(args.data_root, args.subset)  # registers the cifar_shaped dataset

    print("## fast_mode: exact mode vs `fast: true`, one epoch, SGD(0.01, momentum 0.9), CPU")
    print()
    print(f"- command: `{command}`")
    print(f"- machine: {machine()}")
    print(f"- {args.subset} training samples, batch 64, {args.repeats} epoch(s) per mode")
    print()
    print(
        "| problem | exact s/epoch | fast s/epoch | speed-up "
        "| max rel. loss difference | CPU used by other processes |"
    )
    print("|---|---:|---:|---:|---:|---|")
    others: dict[str, list[float | None]] = {}
    for label, dataset, model in PROBLEMS:
        plans = {
            mode: benchmark_plan(
                "fast_mode", dataset, args.data_root, args.subset, model=model, fast=on
            )
            for mode, on in (("exact", False), ("fast", True))
        }
        train(plans["fast"])  # warm-up, untimed
        times: dict[str, list[float]] = {"exact": [], "fast": []}
        rows: dict[str, dict[str, Any]] = {}
        for round_ in range(args.repeats):
            order = list(plans.items())
            for mode, plan in order if round_ % 2 == 0 else order[::-1]:
                gc.collect()
                with Interference() as interference:
                    result = train(plan)
                others.setdefault(label, []).append(interference.share)
                times[mode].append(result.rows[0]["seconds"])
                rows[mode] = result.rows[0]
                print(f"  {label} {mode}: {times[mode][-1]:.3f} s", file=sys.stderr, flush=True)
        exact, fast = (statistics.median(times[m]) for m in ("exact", "fast"))
        difference = max(
            abs(rows["fast"][k] - rows["exact"][k]) / abs(rows["exact"][k])
            for k in ("train_loss", "test_loss")
        )
        busy = ", ".join(share(v) for v in others[label])
        print(
            f"| {label} | {exact:.3f} | {fast:.3f} | {exact / fast:.2f}x "
            f"| {difference:.2g} | {busy} |"
        )
    print()
    warn_if_disturbed(others)
    print(
        f"- torch threads {torch.get_num_threads()}; load average before / after: "
        f"{load_before} / {load_average()}"
    )
    print(f"- total wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
