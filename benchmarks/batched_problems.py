"""Training alone, in this process: what batching saves on each problem of the quick suite.

Usage:
    python benchmarks/batched_problems.py [--k 15] [--epochs 20] [--problems digits_mlp ...]

For each of the quick suite's problems (configs/suites/quick.yaml, fmnist_small as its
problems/fmnist_small.yaml), K Adam trials (lr 1e-4 x 1.5^i, seeds 0-2 in turn, one thread)
trained as K lone runs (`train`) and as one batch (`train_batched`), no files, no processes,
timed in this process's CPU seconds; the batch's tables are asserted equal to the lone runs'.
Prints each problem's ratio and how its copies got their gradients.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from common import untimed_rows

from optbench.core.config import validate_config
from optbench.experiment import batched
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train

PROBLEMS: dict[str, dict[str, Any]] = {
    "digits_mlp": {},
    "diabetes_linear": {},
    "fmnist_logreg": {"data": {"subset": 10000, "validation": 2000}},  # fmnist_small
    "quadratic_deep": {},
    "rosenbrock": {},
    "beale": {},
    "branin": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    chosen: list[Any] = []
    choose = batched.copy_gradients
    batched.copy_gradients = lambda plans: chosen.append(choose(plans)) or chosen[-1]
    print(f"{args.k} Adam trials, {args.epochs} epochs; CPU seconds, lone / batched")
    for problem in args.problems:
        extra = PROBLEMS[problem]
        base = {"name": problem, "problem": problem, "device": "cpu", "threads": 1}
        plans = [
            make_plan(
                validate_config(
                    {
                        **base,
                        **extra,
                        "epochs": args.epochs,
                        "seed": i % 3,
                        "optimizer": {"name": "Adam", "lr": 1e-4 * 1.5**i},
                    }
                )
            )
            for i in range(args.k)
        ]
        started = time.process_time()
        lone = [untimed_rows(train(plan)) for plan in plans]
        lone_seconds = time.process_time() - started
        started = time.process_time()
        together = [untimed_rows(r) for r in batched.train_batched(plans)]
        batch_seconds = time.process_time() - started
        assert together == lone, f"{problem}: the batch differs from the lone runs"
        print(
            f"{problem:16s} lone {lone_seconds:6.2f} s  batched {batch_seconds:6.2f} s  "
            f"{lone_seconds / batch_seconds:4.2f}x  ({type(chosen[-1]).__name__})"
        )


if __name__ == "__main__":
    main()
