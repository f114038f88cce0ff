"""Optimizer overhead as DeepOBS reports it: each optimizer's epoch time relative to SGD.

Usage:
    python benchmarks/optimizer_overhead.py [--subset N] [--epochs E] [--repeats R]
                                            [--only NAME,...] [--data-root DIR]

Every optimizer in optbench's registry (components.optimizers.OPTIMIZERS) trains cifar_cnn on the
first N real Fashion-MNIST training samples through train.train(plan), as `optbench run`
would: batch size 64, seed 0, cross_entropy, CPU, torch's default thread count. An epoch's time
is its row's "seconds" (the training pass, without loading or evaluation). Each optimizer runs at
torch's defaults except lr (LR below); SGD is the baseline and always runs.

The default, 6400 samples x 1 epoch x 5 runs, is a shorter equivalent of DeepOBS's 5 runs x 3
epochs. An untimed warm-up run of every optimizer (on at most 640 samples) comes first, then the
optimizers run in rounds (SGD, ASGD, ..., SGD, ASGD, ...). Reported per optimizer: the median
seconds per epoch over all timed epochs, ms per optimizer step, the ratio to SGD (DeepOBS's
"per-epoch time relative to SGD") from the medians and from the minima, every run, the CPU share
other processes used per run (from /proc/stat) and run 1's final train_loss.

An optimizer that optbench cannot build for cifar_cnn (make_plan raises ConfigError; Muon takes
only 2-D parameters) is listed as skipped with optbench's reason. Every run of an optimizer uses
the same seed and so does the same arithmetic: one that diverges is reported and not repeated.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time

import torch
from common import (
    BATCH_SIZE,
    SEED,
    Interference,
    benchmark_plan,
    command_line,
    load_average,
    machine,
    share,
    warn_if_disturbed,
)

from optbench.components.optimizers import OPTIMIZERS, OptimInfo
from optbench.core.errors import ConfigError
from optbench.experiment.plan import RunPlan
from optbench.experiment.train import train

WARMUP_SUBSET = 640
# torch's default lr, except where it does not suit this problem (found on 640-6400 samples):
LR = {
    "SGD": 0.01,  # torch's 1e-3 hardly moves in an epoch; 0.01 as in epoch_speed.py
    "RMSprop": 1e-3,  # the default 1e-2 takes the loss from 2.3 to 46 in 10 steps
    # Minibatch LBFGS (no line search) trains this model at no lr tried: 1 climbs to loss 4.7
    # in 10 steps, 0.1 and 0.01 give NaN within 30 steps, 0.05 finishes 100 steps with a huge
    # loss (strong_wolfe at lr 1 ends at 5.8 too). 0.05 is kept so that its time is measured.
    "LBFGS": 0.05,
}


def _lr(info: OptimInfo) -> float:
    return LR.get(info.name, info.defaults["lr"])


def _plan(info: OptimInfo, root: str, subset: int, epochs: int) -> RunPlan:
    optimizer = {"name": info.name, "lr": _lr(info)}
    return benchmark_plan(
        "optimizer_overhead", "fashion_mnist", root, subset, optimizer=optimizer, epochs=epochs
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=6400, help="first N training samples")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per optimizer")
    parser.add_argument("--only", default=None, help="comma-separated optimizers (SGD is added)")
    parser.add_argument("--data-root", default=os.environ.get("OPTBENCH_DATA", "data"))
    args = parser.parse_args(argv)
    if min(args.subset, args.epochs, args.repeats) < 1:
        parser.error("--subset, --epochs and --repeats must be at least 1")
    names = [n.strip() for n in args.only.split(",")] if args.only else OPTIMIZERS.names()
    try:
        wanted = {OPTIMIZERS.get(name, "--only").name for name in names} - {"SGD"}
    except ConfigError as exc:
        parser.error(str(exc))
    infos = [OPTIMIZERS.get("SGD", "")] + [i for i in OPTIMIZERS if i.name in wanted]

    command, load_before, wall_started = command_line(), load_average(), time.perf_counter()
    plans: dict[str, RunPlan] = {}
    notes: list[str] = []  # optimizers optbench cannot build for cifar_cnn
    for info in infos:
        try:
            plans[info.name] = _plan(info, args.data_root, args.subset, args.epochs)
        except ConfigError as exc:
            notes.append(f"skipped {info.name}: optbench cannot build it for cifar_cnn ({exc})")
    if "SGD" not in plans:
        sys.exit(f"SGD, the baseline, cannot run: {'; '.join(notes)}")
    for info in infos:  # untimed warm-up: one-off setup is charged to no one
        if info.name in plans:
            train(_plan(info, args.data_root, min(args.subset, WARMUP_SUBSET), 1))

    runs: dict[str, list[list[float]]] = {name: [] for name in plans}
    others: dict[str, list[float | None]] = {name: [] for name in plans}
    losses: dict[str, float] = {}
    failed: dict[str, str] = {}
    for repeat in range(1, args.repeats + 1):
        for name, plan in plans.items():
            if name in failed:
                continue
            gc.collect()
            with Interference() as interference:
                result = train(plan)
            others[name].append(interference.share)
            if result.status == "completed":
                runs[name].append([row["seconds"] for row in result.rows])
                losses.setdefault(name, result.rows[-1]["train_loss"])
                outcome = " ".join(f"{s:7.3f} s" for s in runs[name][-1])
                outcome += f"  loss {result.rows[-1]['train_loss']:.6f}"
            else:
                at = result.diverged_at or {}
                outcome = "diverged at epoch {epoch} step {step}: {reason}".format(**at)
                failed[name] = outcome
            print(
                f"  round {repeat}/{args.repeats} {name:<10} {outcome}  "
                f"other processes {share(interference.share)} of the CPUs",
                file=sys.stderr,
                flush=True,
            )
    if "SGD" in failed:
        sys.exit(f"SGD, the baseline, {failed['SGD']}")

    epochs = {name: [s for run in values for s in run] for name, values in runs.items()}
    median = {name: statistics.median(v) for name, v in epochs.items() if v}
    minimum = {name: min(v) for name, v in epochs.items() if v}
    sgd = plans["SGD"]
    steps = sgd.steps_per_epoch
    params = sum(p.numel() for p in sgd.build_model().parameters())
    blow_up = 2 * math.log(sgd.data_spec.num_classes or 1)
    known = {"Optimizer", *OPTIMIZERS.names()}
    classes = [c for n, c in vars(torch.optim).items() if isinstance(c, type) and n not in known]
    unregistered = [c.__name__ for c in classes if issubclass(c, torch.optim.Optimizer)]

    print(
        f"## optimizer_overhead: cifar_cnn on fashion_mnist, batch {BATCH_SIZE}, seed {SEED}, CPU"
    )
    print()
    print(f"- command: `{command}`")
    print(f"- machine: {machine()}")
    print(
        f"- data: first {sgd.data_spec.train_size} Fashion-MNIST training samples, {steps} "
        f"steps/epoch; {args.repeats} run(s) x {args.epochs} epoch(s) per optimizer, in rounds "
        f"after an untimed warm-up; torch threads {torch.get_num_threads()}"
    )
    print(f"- load average before / after: {load_before} / {load_average()}")
    print(
        "- ratio = median seconds per epoch / SGD's, DeepOBS's \"per-epoch time relative to "
        f"SGD\"; cifar_cnn is small ({params:,} parameters), so the optimizer's own per-step "
        "cost is a visible share of the epoch; on larger models forward/backward weigh more"
    )
    print(
        "- every optimizer at torch's defaults except lr; LBFGS calls step(closure), which "
        "evaluates the model up to max_iter=20 times per step (max_eval=25), so its time "
        f"includes those extra forward/backward passes; '(blew up)': train_loss > {blow_up:.2f}, "
        "twice the chance-level loss ln(classes)"
    )
    if unregistered:
        print(f"- not in optbench's registry (it cannot train them): {', '.join(unregistered)}")
    for note in notes:
        print(f"- {note}")
    print()
    print(
        "| optimizer | lr | median s/epoch | ms/step | ratio to SGD | ratio to SGD (minima) "
        "| runs (s/epoch) | CPU used by other processes, per run | train_loss (run 1) |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|---:|")
    for name, plan in plans.items():
        lr = f"{_lr(plan.optimizer.info):g}"
        busy = ", ".join(share(v) for v in others[name])
        if name not in median:
            print(f"| {name} | {lr} | — | — | — | — | — | {busy} | {failed[name]} |")
            continue
        loss = f"{losses[name]:.4f}" + (" (blew up)" if losses[name] > blow_up else "")
        loss += f"; {failed[name]} later" if name in failed else ""
        print(
            f"| {name} | {lr} | {median[name]:.3f} | {1000 * median[name] / steps:.2f} "
            f"| {median[name] / median['SGD']:.2f} | {minimum[name] / minimum['SGD']:.2f} "
            f"| {', '.join('/'.join(f'{s:.3f}' for s in run) for run in runs[name])} "
            f"| {busy} | {loss} |"
        )
    print()
    warn_if_disturbed(others)
    print(f"- total wall time: {time.perf_counter() - wall_started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
