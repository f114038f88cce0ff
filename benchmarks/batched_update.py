"""What a batch of K trials costs against K lone runs, by how its gradients and update are made.

Usage:
    python benchmarks/batched_update.py [--problem digits_mlp] [--optimizer Adam]
        [--k 4 8 16] [--epochs 5] [--repeats 3]

K trials of the problem (lr 0.0005 x 1..K, seeds 0-2 in turn, one thread) trained five ways,
in this process, alternated, each timed in this process's CPU seconds (time.process_time: on a
loaded machine, waiting for a core is not counted), median of the repeats:

- lone: `train` on each plan in turn (what `optbench tune` does without --batch-trials, less
  the process and files);
- grouped, loop: `train_batched` with torch.optim stepping the K groups, each copy's forward
  in turn (how batches stepped before experiment/stacked_update.py);
- stacked, loop: the stacked update, each copy's forward in turn;
- stacked, vmap: the stacked update, one vmap over the stacked copies for every step;
- stacked, chosen: the stacked update and the copies' gradients as optbench chooses them: for
  a model of Linear layers and activations (digits_mlp's MLP), one batched matmul per layer
  for every step and every evaluation batch (experiment/stacked_layers.py).

A batch's own checks (decide_batch, and the way's proofs) are inside each batched time. Every
batched way's tables are asserted equal to the lone runs' before anything is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from common import untimed_rows

from optbench.core.config import validate_config
from optbench.experiment import batched
from optbench.experiment.batched import BatchDecision, train_batched
from optbench.experiment.copy_gradients import LoopedCopies, VmappedCopies
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train


def _plans(problem: str, optimizer: str, k: int, epochs: int) -> list[Any]:
    base = {"name": problem, "problem": problem, "device": "cpu", "threads": 1, "epochs": epochs}
    return [
        make_plan(
            validate_config(
                {**base, "seed": i % 3, "optimizer": {"name": optimizer, "lr": 0.0005 * (i + 1)}}
            )
        )
        for i in range(k)
    ]


def _ways(plans: list[Any]) -> dict[str, Any]:
    chooser = batched.copy_gradients  # optbench's own choice of the copies' gradients

    def batch(stacked: bool, gradients: Any) -> Any:
        def run() -> list[Any]:
            batched.copy_gradients = gradients
            try:
                return train_batched(plans, decision=BatchDecision(None, stacked=stacked))
            finally:
                batched.copy_gradients = chooser

        return run

    def loop(plans: Any) -> Any:
        return LoopedCopies("forced")

    return {
        "lone": lambda: [train(plan) for plan in plans],
        "grouped, loop": batch(False, loop),
        "stacked, loop": batch(True, loop),
        "stacked, vmap": batch(True, lambda plans: VmappedCopies(2)),
        "stacked, chosen": batch(True, chooser),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="digits_mlp")
    parser.add_argument("--optimizer", default="Adam")
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{args.problem}, {args.optimizer}, {args.epochs} epochs; CPU seconds, median of "
          f"{args.repeats}, and the ratio to lone")  # fmt: skip
    for k in args.k:
        plans = _plans(args.problem, args.optimizer, k, args.epochs)
        ways = _ways(plans)
        lone = [untimed_rows(r) for r in ways["lone"]()]
        for name, way in ways.items():  # equal first: a faster way that is not exact is none
            if name != "lone":
                assert [untimed_rows(r) for r in way()] == lone, (
                    f"{name} differs from the lone runs"
                )
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, way in ways.items():
                started = time.process_time()
                way()
                seconds[name].append(time.process_time() - started)
        medians = {name: statistics.median(times) for name, times in seconds.items()}
        cells = ", ".join(
            f"{name} {m:.2f} s ({medians['lone'] / m:.2f}x)" for name, m in medians.items()
        )
        print(f"K={k}: {cells}")


if __name__ == "__main__":
    main()
