"""Time the training data path alone: DataLoader(shuffle=True) over an InMemoryDataset (what
optbench used before issue 20) against ShuffledBatches (what it uses now), no model.

The data path is tens of microseconds per batch, so it can be timed on a shared machine where a
whole epoch cannot: each contender walks whole epochs, in turn, and the minimum per batch is
reported. Random uint8 images shaped like Fashion-MNIST (60000x1x28x28) and CIFAR-10
(50000x3x32x32), batch 64, one torch thread.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from common import BATCH_SIZE, SEED, command_line, load_average, machine
from torch.utils.data import DataLoader

from optbench.components.data import InMemoryDataset, ShuffledBatches, keep_batch

SHAPES = {"fashion_mnist": (60_000, 1, 28, 28), "cifar_shaped": (50_000, 3, 32, 32)}


def per_batch_us(make) -> float:
    started, count = time.perf_counter(), 0
    for _ in make():
        count += 1
    return (time.perf_counter() - started) / count * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="epochs per contender")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"- command: `{command_line()}`\n- machine: {machine()}\n- load: {load_average()}\n")
    print("| data | DataLoader us/batch (min) | ShuffledBatches us/batch (min) |")
    print("|---|---:|---:|")
    for name, shape in SHAPES.items():
        channels = shape[1]
        data = InMemoryDataset(
            torch.randint(0, 256, shape, dtype=torch.uint8),
            torch.randint(0, 10, shape[:1]),
            (0.5,) * channels,
            (0.5,) * channels,
        )
        contenders = {
            "DataLoader": lambda data=data: DataLoader(
                data,
                batch_size=BATCH_SIZE,
                shuffle=True,
                generator=torch.Generator().manual_seed(SEED),
                collate_fn=keep_batch,
            ),
            "ShuffledBatches": lambda data=data: ShuffledBatches(
                data, BATCH_SIZE, torch.Generator().manual_seed(SEED)
            ),
        }
        times: dict[str, list[float]] = {key: [] for key in contenders}
        for _ in range(args.repeats):
            for key, make in contenders.items():
                times[key].append(per_batch_us(make))
        print(f"| {name} | {min(times['DataLoader']):.1f} | {min(times['ShuffledBatches']):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
