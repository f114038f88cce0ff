"""Wall time of a sweep of many small trials against a plain script that trains the same runs in
one process.

Usage:
    python benchmarks/small_trials.py [--repeats R] [--workers N]
    python benchmarks/small_trials.py --batch-trials K [--repeats R] [--epochs E]

The sweep is configs/linear_regression.yaml (nn.Linear(10, 1), MSE, 1000 synthetic samples,
20 epochs) over 8 learning rates x 2 seeds: 16 runs of a fraction of a second each, where
process start-up and imports, not training, decide the time. Contenders, alternated, each a
fresh process as a user would start it:

- plain: one Python script with the tutorial loop (DataLoader, nn.Linear, SGD, an evaluation
  after every epoch) over the same 16 runs, writing nothing;
- sweep: `optbench sweep` with the default workers (or --workers N), into a fresh results
  folder, so every run trains;
- sweep, processes: the same, with every run but the first sent to worker processes
  (TINY_RUN_SECONDS=0: how sweeps ran before tiny runs stayed in the driver);
- tune: `optbench tune` of the same config, 16 trials of the random sampler over lr in
  [0.001, 0.2] (pruner none, its best rerun with seed 0 only, answered from disk): the same
  16 trainings' cost plus Optuna's asking, telling and journal file.

With `--batch-trials K` the problem is digits_mlp (MLP 64-100-10 on scikit-learn's digits,
batch 32, one thread, 5 epochs or --epochs E: with more, each run's training outweighs the
imports every contender pays once) and the contenders are: plain (the tutorial loop over the
same 16 runs: 8 learning rates x 2 seeds, Adam, an evaluation after every epoch), `optbench
tune` (16 random-sampler trials over lr, seeds [0]), the same tune with `--batch-trials K`
(experiment/batched.py: K trials as one optimizer's parameter groups stepped as stacks, their
gradients from one vmap over the stacked copies where that was proven exact) and the same
again with the copies' gradients computed one copy at a time (experiment/copy_gradients.py's
loop, forced).

The table reports each one's median wall seconds and its ratio to the plain script, and the
same for its own CPU seconds (the process and its children: on a loaded machine, less disturbed
than wall time, which counts the waits for a core).
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

import yaml
from common import cpu_busy_seconds, load_average, machine, share, warn_if_disturbed

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "linear_regression.yaml"
LRS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
SEEDS = [0, 1]

PLAIN = f"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

for lr in {LRS!r}:
    for seed in {SEEDS!r}:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(1200, 10, generator=generator)
        w = torch.randn(10, 1, generator=generator)
        b = torch.randn(1, generator=generator)
        y = x @ w + b + 0.1 * torch.randn(1200, 1, generator=generator)
        torch.manual_seed(seed)
        model = nn.Linear(10, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        criterion = nn.MSELoss()
        loader = DataLoader(
            TensorDataset(x[:1000], y[:1000]),
            batch_size=100,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        for epoch in range(20):
            model.train()
            for inputs, targets in loader:
                optimizer.zero_grad()
                criterion(model(inputs), targets).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                test_loss = criterion(model(x[1000:]), y[1000:]).item()
        print(lr, seed, test_loss)
"""

DIGITS_EPOCHS = 5
DIGITS = {
    "name": "digits_mlp",
    "problem": "digits_mlp",
    "device": "cpu",
    "threads": 1,
    "epochs": DIGITS_EPOCHS,  # or --epochs
    "optimizer": {"name": "Adam", "lr": 0.001},
}
DIGITS_PLAIN = f"""
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.set_num_threads(1)
x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=0.25, random_state=0, stratify=y
)
mean, std = x_train.mean(0), x_train.std(0) + 1e-8
x_train = torch.tensor((x_train - mean) / std, dtype=torch.float32)
x_test = torch.tensor((x_test - mean) / std, dtype=torch.float32)
y_train, y_test = torch.tensor(y_train), torch.tensor(y_test)
for lr in {[lr / 20 for lr in LRS]!r}:
    for seed in {SEEDS!r}:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10))
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        criterion = nn.CrossEntropyLoss()
        loader = DataLoader(
            TensorDataset(x_train, y_train),
            batch_size=32,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        for epoch in range(EPOCHS):
            model.train()
            for inputs, targets in loader:
                optimizer.zero_grad()
                criterion(model(inputs), targets).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(lr, seed, accuracy)
"""

# `optbench sweep` with every run after the first in worker processes (the old behaviour).
BATCHING = False  # --batch-trials: the digits_mlp contenders

PROCESSES = (
    "import sys; import optbench.sweeps.executors.local as e; e.TINY_RUN_SECONDS = 0.0; "
    "from optbench.ui.cli import app; sys.argv[0] = 'optbench'; app()"
)
# `optbench tune --batch-trials K` with every batch's gradients one copy at a time (no vmap).
LOOPED = (
    "import sys; import optbench.experiment.batched as b; "
    "from optbench.experiment.copy_gradients import LoopedCopies; "
    "b.copy_gradients = lambda plans: LoopedCopies('forced'); "
    "from optbench.ui.cli import app; sys.argv[0] = 'optbench'; app()"
)
LOOP = ", one copy at a time"  # the suffix of that contender's name


class Others:
    """Share of the CPUs that processes other than this one and its children used meanwhile
    (common.Interference counts a contender's own subprocesses as others)."""

    def __enter__(self) -> Others:
        self.share: float | None = None
        self._busy, self._own, self._wall = cpu_busy_seconds(), _own(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, wall = cpu_busy_seconds(), time.perf_counter() - self._wall
        if busy is not None and self._busy is not None and wall > 0:
            others = (busy - self._busy) - (_own() - self._own)
            self.share = max(0.0, others) / (wall * (os.cpu_count() or 1))
        self.cpu = _own() - self._own  # the contender's own CPU seconds, once waited for


def _own() -> float:
    t = os.times()  # children count once they have been waited for, as subprocess.run does
    return t.user + t.system + t.children_user + t.children_system


TUNE = {
    "space": {"optimizer.lr": {"log_uniform": [min(LRS), max(LRS)]}},
    "trials": len(LRS) * len(SEEDS),
    "sampler": "random",
    "pruner": "none",
    "seeds": [0],
}


def command(contender: str, results: str, plain: Path, workers: int | None) -> list[str]:
    if contender == "plain":
        return [sys.executable, str(plain)]
    if contender.startswith("tune") and BATCHING:  # digits_mlp, with or without batching
        tuned = Path(results) / "tune.yaml"
        space = {"optimizer.lr": {"log_uniform": [min(LRS) / 20, max(LRS) / 20]}}
        config = DIGITS | {"epochs": DIGITS_EPOCHS, "tune": TUNE | {"space": space}}
        tuned.write_text(yaml.safe_dump(config))
        extra = contender.removesuffix(LOOP).split()[1:]  # --batch-trials K
        start = ["-c", LOOPED] if contender.endswith(LOOP) else ["-m", "optbench"]
        return [sys.executable, *start, "tune", str(tuned), "--results-dir", results, *extra]
    if contender == "tune":
        config = yaml.safe_load(CONFIG.read_text()) | {"tune": TUNE}
        tuned = Path(results) / "tune.yaml"
        tuned.write_text(yaml.safe_dump(config))
        options = ["--results-dir", results, *(["--workers", str(workers)] if workers else [])]
        return [sys.executable, "-m", "optbench", "tune", str(tuned), *options]
    grid = ["--grid", "optimizer.lr=" + ",".join(map(str, LRS)), "--seeds", "0,1"]
    options = [str(CONFIG), *grid, "--results-dir", results]
    options += ["--workers", str(workers)] if workers else []
    if contender == "sweep":
        return [sys.executable, "-m", "optbench", "sweep", *options]
    return [sys.executable, "-c", PROCESSES, "sweep", *options]


def timed(contender: str, plain: Path, workers: int | None) -> tuple[float, float | None, float]:
    """Wall seconds of one contender's command, the CPU share other processes took, and the
    command's own CPU seconds (less disturbed by a loaded machine than its wall time)."""
    with tempfile.TemporaryDirectory() as results:
        argv = command(contender, results, plain, workers)
        with Others() as load:
            started = time.perf_counter()
            completed = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
            seconds = time.perf_counter() - started
        if completed.returncode != 0:
            sys.exit(f"{contender} failed:\n{completed.stdout}\n{completed.stderr}")
        tuned = "16 trials (16 completed"
        expected = {"plain": None, "tune": tuned}.get(contender, "16 completed")
        expected = tuned if contender.startswith("tune") else expected
        if expected and expected not in completed.stdout:
            sys.exit(f"expected {expected} runs:\n{completed.stdout}")
        if contender == "plain" and len(completed.stdout.splitlines()) != 16:
            sys.exit(f"the plain script trained other runs:\n{completed.stdout}")
    return seconds, load.share, load.cpu


def main() -> None:
    global BATCHING, DIGITS_EPOCHS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="default: optbench's")
    parser.add_argument("--batch-trials", type=int, default=None, help="digits_mlp, batched")
    parser.add_argument("--epochs", type=int, default=DIGITS_EPOCHS, help="digits_mlp's runs")
    args = parser.parse_args()
    BATCHING = args.batch_trials is not None
    DIGITS_EPOCHS = args.epochs
    contenders = ["plain", "sweep", "sweep, processes", "tune"]
    if BATCHING:
        batched = f"tune --batch-trials {args.batch_trials}"
        contenders = ["plain", "tune", batched, batched + LOOP]
    times: dict[str, list[float]] = {c: [] for c in contenders}
    shares: dict[str, list[float | None]] = {c: [] for c in contenders}
    cpus: dict[str, list[float]] = {c: [] for c in contenders}
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / "plain_loop.py"
        digits = DIGITS_PLAIN.replace("range(EPOCHS)", f"range({DIGITS_EPOCHS})")
        plain.write_text(digits if BATCHING else PLAIN)
        for _ in range(args.repeats):
            for contender in contenders:
                seconds, other, cpu = timed(contender, plain, args.workers)
                times[contender].append(seconds)
                shares[contender].append(other)
                cpus[contender].append(cpu)
                print(
                    f"  {contender}: {seconds:.2f} s, CPU {cpu:.2f} s (others {share(other)})",
                    flush=True,
                )

    reference = statistics.median(times["plain"])
    print()
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"machine: {machine()}")
    print(f"load average at the end: {load_average()}")
    problem = f"digits_mlp, {DIGITS_EPOCHS} epochs" if BATCHING else CONFIG.relative_to(REPO)
    print(
        f"runs: {problem}, {len(LRS)} learning rates x {len(SEEDS)} seeds, "
        f"workers {args.workers or 'default'}"
    )
    warn_if_disturbed(shares)
    print()
    cpu_reference = statistics.median(cpus["plain"])
    print(
        "| contender | median wall s | / plain script | runs (s) | median CPU s | / plain, CPU "
        "| others' CPU share (max) |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    for contender, values in times.items():
        median, cpu = statistics.median(values), statistics.median(cpus[contender])
        each = ", ".join(f"{v:.2f}" for v in values)
        worst = max((s for s in shares[contender] if s is not None), default=None)
        print(
            f"| {contender} | {median:.2f} | {median / reference:.2f}x | {each} | {cpu:.2f} "
            f"| {cpu / cpu_reference:.2f}x | {share(worst)} |"
        )


if __name__ == "__main__":
    main()
