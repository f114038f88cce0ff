"""Start-up: how long the command line takes before it does anything, against `import torch`.

Usage:
    python benchmarks/startup.py [--repeats R] [--data-root DIR]

Each contender is a fresh process, timed from spawn to exit; they alternate in rounds and the
table gives medians and the ratio to a bare `python -c "import torch"`:

  notebook preamble         import torch and torchvision, build one torch.optim optimizer: the
                            floor any PyTorch training script pays before its first batch
  optbench --help           Typer's help; must not import torch (goal < 0.5 s)
  optbench list             the catalogue, read from its cache (goal < 0.5 s); the first call
                            after an install builds the cache and is reported separately
  optbench run (1 batch)    cifar_cnn on real Fashion-MNIST with data.subset=64, one epoch: the
                            wall time minus the epoch's training and evaluation seconds (from
                            epochs.csv) is the time from the command to the first batch
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from common import command_line, load_average, machine

CONFIG = {
    "name": "startup",
    "epochs": 1,
    "device": "cpu",
    "data": {"dataset": "fashion_mnist", "subset": 64},
    "model": "cifar_cnn",
    "loss": "cross_entropy",
    "optimizer": {"name": "SGD", "lr": 0.01},
}


# What any training script runs before its first batch: torch.optim's first optimizer imports
# torch._dynamo (about 1.5 s here), torchvision brings its datasets.
PREAMBLE = "import torch, torchvision; torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)"


def _optbench() -> list[str]:
    found = shutil.which("optbench")
    return [found] if found else [sys.executable, "-m", "optbench"]


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-root", default=os.environ.get("OPTBENCH_DATA", "data"))
    args = parser.parse_args()
    command, load_before = command_line(), load_average()

    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "OPTBENCH_CACHE": str(Path(folder) / "cache")}
        config = Path(folder) / "startup.yaml"
        config.write_text(yaml.safe_dump({**CONFIG, "data": {**CONFIG["data"]}}))
        results = Path(folder) / "results"
        run = [
            *_optbench(),
            "run",
            str(config),
            "--force",
            "--results-dir",
            str(results),
            "--set",
            f"data.root={args.data_root}",
        ]
        _timed(run, env)  # unpacks the dataset and writes its tensor file: not start-up
        cold_list = _timed([*_optbench(), "list"], env)

        contenders = {
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "notebook preamble": [sys.executable, "-c", PREAMBLE],
            "optbench --help": [*_optbench(), "--help"],
            "optbench list": [*_optbench(), "list"],
            "optbench run (1 batch)": run,
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        to_first_batch: list[float] = []
        for _ in range(args.repeats):
            for name, argv in contenders.items():
                times[name].append(_timed(argv, env))
                print(f"  {name}: {times[name][-1]:.3f} s", file=sys.stderr, flush=True)
            (epochs_csv,) = results.glob("startup/*/epochs.csv")
            row = pd.read_csv(epochs_csv).iloc[0]
            to_first_batch.append(times["optbench run (1 batch)"][-1] - row.seconds)
            to_first_batch[-1] -= row.eval_seconds

    torch_import = statistics.median(times['python -c "import torch"'])
    print("## startup: wall time of fresh processes, medians")
    print()
    print(f"- command: `{command}`")
    print(f"- machine: {machine()}")
    print(f"- {args.repeats} rounds; load average before / after: {load_before} / {load_average()}")
    print()
    print("| command | median s | / import torch | runs (s) |")
    print("|---|---:|---:|---|")
    for name, values in times.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {median:.3f} | {median / torch_import:.2f} | {runs} |")
    first = statistics.median(to_first_batch)
    print(
        f"| optbench run: command to first batch | {first:.3f} | {first / torch_import:.2f} "
        f"| {', '.join(f'{v:.2f}' for v in to_first_batch)} |"
    )
    preamble = statistics.median(times["notebook preamble"])
    print(f"| (command to first batch) / notebook preamble | {first / preamble:.2f} | | |")
    print(
        f"| optbench list, first call (builds the cache) | {cold_list:.3f} | "
        f"{cold_list / torch_import:.2f} | {cold_list:.2f} |"
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
