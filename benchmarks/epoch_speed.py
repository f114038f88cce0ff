"""Time one training epoch of cifar_cnn three ways: notebook loop, optbench, bare compute floor.

Usage:
    python benchmarks/epoch_speed.py [--dataset fashion_mnist|cifar_shaped] [--subset N]
                                     [--repeats R] [--data-root DIR]

Every contender trains cifar_cnn (the CIFAR-10 tutorial's LeNet) for one epoch with
SGD(lr=0.01, momentum=0.9), batch size 64, seed 0, on the CPU, with torch's default thread count:

  (a) notebook  the classic loop: a torchvision dataset with ToTensor + Normalize, a DataLoader
                (shuffle=True, generator seeded), torch.manual_seed before the model is built,
                zero_grad / forward / loss / backward / step, running mean of loss.item().
  (b) optbench  train.train(plan) for a config with epochs=1; the time is the row's
                "seconds" (the epoch's training pass, without loading or evaluation).
  (c) bare      the compute floor: the same model, optimizer and seed stepping over contiguous
                float32 batches that were normalized, shuffled (DataLoader's very order) and
                sliced before the clock starts.

Contenders alternate (a b c a b c ...); the table gives each one's median seconds per epoch and
the ratios a/b (goal >= 2) and b/c (goal <= 1.05), plus the minima and, per run, how much of the
CPUs other processes used meanwhile (from /proc/stat): with torch's default threads = all cores,
a run that shares the machine is slowed by large factors, so such runs are flagged.

All three see the same batches in the same order, so their train_loss should agree; for
fashion_mnist a mismatch between (a) and (b) beyond 1e-6 relative is an error (exit status 1).

--dataset cifar_shaped is random uint8 data, 50000x3x32x32 with 10 classes (seed 0). For (a) it
is served like torchvision's CIFAR10 (numpy HWC uint8 -> PIL image -> ToTensor + Normalize); for
(b) it is registered as an in-memory dataset in components.data.DATASETS from this script (at run
time, in this process only), so (b) is train.train(plan) unchanged.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from common import (
    BATCH_SIZE,
    SEED,
    SGD_MOMENTUM,
    Interference,
    benchmark_plan,
    command_line,
    load_average,
    machine,
    share,
    warn_if_disturbed,
)
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms

from optbench.components.data import DATASETS, DatasetInfo, DataSpec, InMemoryDataset, load_data
from optbench.components.models import cifar_cnn
from optbench.experiment.plan import RunPlan
from optbench.experiment.train import train

LR, MOMENTUM = SGD_MOMENTUM["lr"], SGD_MOMENTUM["momentum"]
LOSS_RTOL = 1e-6
GOAL_A_OVER_B = 2.0
GOAL_B_OVER_C = 1.05
WARMUP_BATCHES = 20
CIFAR_SHAPED_TRAIN, CIFAR_SHAPED_TEST = 50_000, 1_000


# --------------------------------------------------------------------------- the notebook's pieces


class NotebookNet(nn.Module):
    """The CIFAR-10 tutorial's Net, written out as a notebook would (channels and size adapted)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int = 10) -> None:
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class HWCImages(Dataset):
    """Served like torchvision.datasets.CIFAR10: numpy HWC uint8 -> PIL image -> transform."""

    def __init__(self, images: np.ndarray, targets: list[int], transform: Callable) -> None:
        self.data, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


# --------------------------------------------------------------------------- setup (untimed)


@dataclass
class Bench:
    dataset: str
    n_train: int
    full_size: int
    shape: tuple[int, int, int]
    notebook_data: Dataset  # (a)
    plan: RunPlan  # (b)
    batches: list[tuple[torch.Tensor, torch.Tensor]]  # (c), in the DataLoader's shuffled order
    notes: list[str] = field(default_factory=list)


def _shuffled_order(n: int) -> torch.Tensor:
    """The permutation DataLoader(shuffle=True, generator seeded) walks through, batch by batch."""
    loader = DataLoader(
        range(n),
        batch_size=BATCH_SIZE,
        shuffle=True,
        generator=torch.Generator().manual_seed(SEED),
    )
    return torch.cat(list(loader))


def _bare_batches(
    images: torch.Tensor, targets: torch.Tensor, mean: float, std: float
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Normalize once with ToTensor + Normalize's float ops, shuffle, cut contiguous slices."""
    inputs = images.to(torch.float32).div(255).sub_(mean).div_(std)
    order = _shuffled_order(len(targets))
    inputs, targets = inputs[order].contiguous(), targets[order].contiguous()
    return list(zip(inputs.split(BATCH_SIZE), targets.split(BATCH_SIZE), strict=True))


def _check_subset(subset: int | None, full: int) -> int:
    if subset is None:
        return full
    if not 1 <= subset <= full:
        sys.exit(f"--subset must be between 1 and {full}, got {subset}")
    return subset


def setup_fashion_mnist(root: str, subset: int | None) -> Bench:
    plan = benchmark_plan("epoch_speed", "fashion_mnist", root, subset)
    load_data(plan.data, SEED)  # unpacks the IDX files on first use

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    full = torchvision.datasets.FashionMNIST(root, train=True, download=False, transform=tf)
    n = _check_subset(subset, len(full))
    notebook_data: Dataset = full if subset is None else Subset(full, range(n))
    images = full.data[:n].unsqueeze(1)  # N x 1 x 28 x 28 uint8
    batches = _bare_batches(images, full.targets[:n].long(), 0.5, 0.5)
    return Bench("fashion_mnist", n, len(full), (1, 28, 28), notebook_data, plan, batches)


def setup_cifar_shaped(root: str, subset: int | None) -> Bench:
    n = _check_subset(subset, CIFAR_SHAPED_TRAIN)
    generator = torch.Generator().manual_seed(SEED)
    train_hwc = torch.randint(
        0, 256, (CIFAR_SHAPED_TRAIN, 32, 32, 3), dtype=torch.uint8, generator=generator
    )
    train_y = torch.randint(0, 10, (CIFAR_SHAPED_TRAIN,), generator=generator)
    test_hwc = torch.randint(
        0, 256, (CIFAR_SHAPED_TEST, 32, 32, 3), dtype=torch.uint8, generator=generator
    )
    test_y = torch.randint(0, 10, (CIFAR_SHAPED_TEST,), generator=generator)
    train_nchw = train_hwc.permute(0, 3, 1, 2).contiguous()
    test_nchw = test_hwc.permute(0, 3, 1, 2).contiguous()

    if "cifar_shaped" not in DATASETS:
        DATASETS.register(
            "cifar_shaped",
            DatasetInfo(
                "cifar_shaped",
                "random uint8 images 3x32x32, 10 classes (benchmarks/epoch_speed.py)",
                lambda options: DataSpec((3, 32, 32), 10, CIFAR_SHAPED_TRAIN),
                lambda root, download: (
                    InMemoryDataset(train_nchw, train_y),
                    InMemoryDataset(test_nchw, test_y),
                ),
                ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
            ),
        )
    plan = benchmark_plan("epoch_speed", "cifar_shaped", root, subset)

    tf = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    )
    notebook_data = HWCImages(train_hwc[:n].numpy(), train_y[:n].tolist(), tf)
    batches = _bare_batches(train_nchw[:n], train_y[:n], 0.5, 0.5)
    notes = [
        "cifar_shaped: random uint8 data (seed 0); (a) serves it like torchvision's CIFAR10 "
        "(numpy HWC -> PIL -> ToTensor + Normalize); (b) is train.train(plan) unchanged, "
        "the data handed to optbench by registering an in-memory DatasetInfo in "
        "optbench.components.data.DATASETS from this script (no optbench file changed); optbench's "
        f"evaluation (untimed) runs on {CIFAR_SHAPED_TEST} random test images."
    ]
    return Bench(
        "cifar_shaped", n, CIFAR_SHAPED_TRAIN, (3, 32, 32), notebook_data, plan, batches, notes
    )


# --------------------------------------------------------------------------- the contenders


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def _timed_epoch(
    model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable
) -> tuple[float, float]:
    """The notebook's loop over `batches`: seconds, and the mean of loss.item()."""
    started = time.perf_counter()
    running_loss, steps = 0.0, 0
    for inputs, labels in batches:
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        steps += 1
    return time.perf_counter() - started, running_loss / steps


def run_notebook(bench: Bench) -> tuple[float, float]:
    trainloader = DataLoader(
        bench.notebook_data,
        batch_size=BATCH_SIZE,
        shuffle=True,
        generator=torch.Generator().manual_seed(SEED),
    )
    torch.manual_seed(SEED)
    net = NotebookNet(bench.shape[0], bench.shape[1])
    criterion = nn.CrossEntropyLoss()
    optimizer = _sgd(net)

    return _timed_epoch(net, criterion, optimizer, trainloader)


def run_optbench(bench: Bench) -> tuple[float, float]:
    result = train(bench.plan)
    if result.status != "completed":
        raise RuntimeError(f"optbench run {result.status}: {result.diverged_at}")
    row = result.rows[0]
    return row["seconds"], row["train_loss"]


def _bare_model(bench: Bench) -> nn.Module:
    return cifar_cnn(DataSpec(bench.shape, 10, bench.n_train))


def run_bare(bench: Bench) -> tuple[float, float]:
    torch.manual_seed(SEED)
    model = _bare_model(bench)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = _sgd(model)
    return _timed_epoch(model, loss_fn, optimizer, bench.batches)


def warm_up(bench: Bench) -> None:
    """A few untimed steps so one-off kernel setup is not charged to whoever runs first."""
    model = _bare_model(bench)
    optimizer = _sgd(model)
    for inputs, targets in bench.batches[:WARMUP_BATCHES]:
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), targets).backward()
        optimizer.step()


CONTENDERS: list[tuple[str, str, Callable[[Bench], tuple[float, float]]]] = [
    ("(a) notebook", "torchvision dataset + ToTensor/Normalize, DataLoader", run_notebook),
    ("(b) optbench", 'train.train(plan), row["seconds"]', run_optbench),
    ("(c) bare", "pre-sliced contiguous float32 batches", run_bare),
]


# --------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time one epoch of cifar_cnn: notebook loop vs optbench vs a bare floor."
    )
    parser.add_argument(
        "--dataset", choices=["fashion_mnist", "cifar_shaped"], default="fashion_mnist"
    )
    parser.add_argument("--subset", type=int, default=None, help="first N training samples")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per contender")
    parser.add_argument("--data-root", default="./data", help="torchvision/optbench data root")
    args = parser.parse_args(argv)
    dataset = args.dataset
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    command = command_line()
    threads = torch.get_num_threads()
    load_before = load_average()
    wall_started = time.perf_counter()

    setup = setup_fashion_mnist if dataset == "fashion_mnist" else setup_cifar_shaped
    bench = setup(args.data_root, args.subset)
    warm_up(bench)

    names = [name for name, _, _ in CONTENDERS]
    times: dict[str, list[float]] = {name: [] for name in names}
    losses: dict[str, list[float]] = {name: [] for name in names}
    others: dict[str, list[float | None]] = {name: [] for name in names}
    for repeat in range(1, args.repeats + 1):
        for name, _, run in CONTENDERS:
            gc.collect()
            if torch.get_num_threads() != threads:
                raise RuntimeError(f"thread count changed to {torch.get_num_threads()}")
            with Interference() as interference:
                seconds, loss = run(bench)
            times[name].append(seconds)
            losses[name].append(loss)
            others[name].append(interference.share)
            print(
                f"  repeat {repeat}/{args.repeats} {name:<13} {seconds:8.3f} s  "
                f"loss {loss:.8f}  other processes {share(interference.share)} of the CPUs",
                file=sys.stderr,
                flush=True,
            )
    medians = {name: statistics.median(values) for name, values in times.items()}
    minima = {name: min(values) for name, values in times.items()}
    a_name, b_name, c_name = names

    steps = len(bench.batches)
    print(
        f"## epoch_speed: cifar_cnn, SGD(lr={LR}, momentum={MOMENTUM}), batch {BATCH_SIZE}, "
        f"seed {SEED}, CPU"
    )
    print()
    print(f"- command: `{command}`")
    print(f"- machine: {machine()}")
    print(
        f"- data: {dataset}, {bench.n_train} of {bench.full_size} training samples "
        f"({'x'.join(map(str, bench.shape))}), {steps} batches/epoch; {args.repeats} "
        f"epoch(s) per contender, run in turn a b c a b c ...; torch threads {threads} for all"
    )
    print(f"- load average before / after: {load_before} / {load_average()}")
    for note in bench.notes:
        print(f"- {note}")
    print()
    print(
        "| contender | what is timed | median s/epoch | min s/epoch | ms/batch (median) "
        "| runs (s, in order) | CPU used by other processes, per run | train_loss |"
    )
    print("|---|---|---:|---:|---:|---|---|---:|")
    for name, what, _ in CONTENDERS:
        runs = ", ".join(f"{t:.3f}" for t in times[name])
        busy = ", ".join(share(v) for v in others[name])
        print(
            f"| {name} | {what} | {medians[name]:.3f} | {minima[name]:.3f} "
            f"| {1000 * medians[name] / steps:.2f} | {runs} | {busy} | {losses[name][0]:.8f} |"
        )
    print()
    a, b, c = (medians[name] for name in names)
    print(
        f"- a/b = {a / b:.2f} (goal >= {GOAL_A_OVER_B:g}: "
        f"{'met' if a / b >= GOAL_A_OVER_B else 'NOT met'}); "
        f"from the minima: {minima[a_name] / minima[b_name]:.2f}"
    )
    print(
        f"- b/c = {b / c:.3f} (goal <= {GOAL_B_OVER_C:g}: "
        f"{'met' if b / c <= GOAL_B_OVER_C else 'NOT met'}); "
        f"from the minima: {minima[b_name] / minima[c_name]:.3f}"
    )
    warn_if_disturbed(others)

    def max_rel(first: list[float], second: list[float]) -> float:
        return max(abs(x - y) / abs(x) for x in first for y in second)

    ok = True
    for other in (b_name, c_name):
        rel = max_rel(losses[a_name], losses[other])
        same = rel <= LOSS_RTOL
        required = other == b_name and dataset == "fashion_mnist"
        verdict = "identical" if same else "DIFFERENT"
        print(
            f"- train_loss {a_name} vs {other}: max relative difference {rel:.3g} over all runs "
            f"(tolerance {LOSS_RTOL:g}): {verdict}" + ("" if required else " (informational)")
        )
        if required and not same:
            ok = False
    print(f"- total wall time: {time.perf_counter() - wall_started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
