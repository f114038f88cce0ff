"""What a batch of K trials costs against K lone runs, by how its gradients and update are made.

Usage:
    python benchmarks/batched_update.py [--problem digits_mlp] [--optimizer Adam]
        [--k 4 8 16] [--epochs 5] [--repeats 3]

K trials of the problem (lr 0.0005 x 1..K, seeds 0-2 in turn, one thread) trained four ways,
in this process, alternated, each timed in this process's CPU seconds (time.process_time: on a
loaded machine, waiting for a core is not counted), median of the repeats:

- lone: `train` on each plan in turn (what `optbench tune` does without --batch-trials, less
  the process and files);
- grouped, loop: `train_batched` with torch.optim stepping the K groups, each copy's forward
  in turn (how batches stepped before experiment/stacked_update.py);
- stacked, loop: the stacked update, each copy's forward in turn;
- stacked, vmap: the stacked update, one vmap over the stacked copies for every step.

A batch's own checks (decide_batch, copy_gradients) are inside each batched time. Every batched
way's tables are asserted equal to the lone runs' before anything is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from optbench.core.config import validate_config
from optbench.experiment import copy_gradients
from optbench.experiment.batched import BatchDecision, train_batched
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train

TIMING = {"seconds", "eval_seconds", "first_step_seconds"}


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


def _rows(result: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in result.rows]


def _ways(plans: list[Any]) -> dict[str, Any]:
    def batched(stacked: bool, vmap_from: int) -> Any:
        def run() -> list[Any]:
            copy_gradients.CPU_VMAP_FROM = vmap_from
            return train_batched(plans, decision=BatchDecision(None, stacked=stacked))

        return run

    return {
        "lone": lambda: [train(plan) for plan in plans],
        "grouped, loop": batched(False, 10**9),
        "stacked, loop": batched(True, 10**9),
        "stacked, vmap": batched(True, 2),
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
    default_vmap_from = copy_gradients.CPU_VMAP_FROM
    print(f"{args.problem}, {args.optimizer}, {args.epochs} epochs; CPU seconds, median of "
          f"{args.repeats}, and the ratio to lone")  # fmt: skip
    for k in args.k:
        plans = _plans(args.problem, args.optimizer, k, args.epochs)
        ways = _ways(plans)
        lone = [_rows(r) for r in ways["lone"]()]
        for name, way in ways.items():  # equal first: a faster way that is not exact is none
            if name != "lone":
                assert [_rows(r) for r in way()] == lone, f"{name} differs from the lone runs"
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, way in ways.items():
                started = time.process_time()
                way()
                seconds[name].append(time.process_time() - started)
        copy_gradients.CPU_VMAP_FROM = default_vmap_from
        medians = {name: statistics.median(times) for name, times in seconds.items()}
        cells = ", ".join(
            f"{name} {m:.2f} s ({medians['lone'] / m:.2f}x)" for name, m in medians.items()
        )
        print(f"K={k}: {cells}")


if __name__ == "__main__":
    main()
