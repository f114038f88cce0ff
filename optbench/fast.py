"""Fast mode (`fast: true` or `--fast`): speed first, numbers close to but not bit-identical
with the notebook loop.

What it changes, each measured on the 2-core CPU machine (BENCHMARKS.md):
- conv models use the channels_last memory format, where a short trial on the run's own model
  and batch shape shows it is faster (1.5-1.8x on Fashion-MNIST's 1x28x28, slower on 3x32x32);
- batch losses are summed on the device and read once per epoch, with no per-batch host
  synchronisation (what matters on a GPU; costs nothing on the CPU). A NaN or inf loss is then
  found at the end of its epoch.

Measured and left out: torch.compile (slower on this CPU after a 28 s warm-up), fewer torch
threads than cores, and larger test batches (slower evaluation here).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

TRIAL_STEPS = 5
PAYS = 0.9  # channels_last must take at most 90% of the default layout's time


def _step_seconds(model: nn.Module, loss_fn: nn.Module, inputs: torch.Tensor, targets) -> float:
    started = time.perf_counter()
    model.zero_grad()
    loss_fn(model(inputs), targets).backward()
    if inputs.device.type == "cuda":
        torch.cuda.synchronize(inputs.device)
    return time.perf_counter() - started


def channels_last_pays(
    model: nn.Module, loss_fn: nn.Module, inputs: torch.Tensor, targets: torch.Tensor
) -> bool:
    """Whether forward + backward on this batch is clearly faster in channels_last, timed on
    copies of the model (alternating layouts, medians) without touching the global RNG."""
    if inputs.dim() != 4 or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    layouts = {
        torch.contiguous_format: (copy.deepcopy(model), inputs.contiguous()),
        torch.channels_last: (
            copy.deepcopy(model).to(memory_format=torch.channels_last),
            inputs.contiguous(memory_format=torch.channels_last),
        ),
    }
    times: dict[torch.memory_format, list[float]] = {layout: [] for layout in layouts}
    cuda = [inputs.device.index or 0] if inputs.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        for step in range(TRIAL_STEPS + 1):
            for layout, (trial_model, trial_inputs) in layouts.items():
                seconds = _step_seconds(trial_model, loss_fn, trial_inputs, targets)
                if step > 0:  # the first step of each layout is warm-up
                    times[layout].append(seconds)
    fast = statistics.median(times[torch.channels_last])
    return fast <= PAYS * statistics.median(times[torch.contiguous_format])
