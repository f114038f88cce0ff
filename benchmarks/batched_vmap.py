"""Is a vmapped forward and backward over K stacked model copies exact? And how much faster?

Usage:
    python benchmarks/batched_vmap.py [--k K] [--steps N]

digits_mlp's model (MLP 64-100-10, ReLU), K copies with their own initial weights and their own
batch of 32, cross-entropy. Two ways to get the K copies' gradients:

- loop: each copy's forward and loss, one backward of the summed losses (what
  experiment/batched.py does: each copy's gradient is its lone run's, bit for bit);
- vmap: torch.func.stack_module_state + functional_call + grad, vmapped over the K copies
  (PyTorch's model-ensembling tutorial): one batched matmul per layer for all copies.

It prints the largest difference between the two ways' gradients and each one's time per step:
the median of N steps, one thread, the two ways alternated step by step, timed in this thread's
CPU seconds (time.thread_time), so that waiting for a core on a loaded machine is not counted;
wall-clock medians on a loaded machine once showed the vmap 5.3x faster, which CPU time does
not bear out. experiment/copy_gradients.py uses the loop where the vmap's gradients or losses
are not equal to the bit.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    k = args.k
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10)))
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(k, 32, 64, generator=generator)
    targets = torch.randint(10, (k, 32), generator=generator)
    criterion = nn.CrossEntropyLoss()

    def loop() -> list[torch.Tensor]:
        for model in models:
            model.zero_grad(set_to_none=True)
        losses = [criterion(m(x), y) for m, x, y in zip(models, inputs, targets, strict=True)]
        torch.stack(losses).sum().backward()
        return [p.grad for m in models for p in m.parameters()]  # type: ignore[misc]

    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    base = models[0]

    def loss_of(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return criterion(functional_call(base, (p, b), (x,)), y)

    batched_grad = vmap(grad(loss_of), in_dims=(0, 0, 0, 0))

    def vmapped() -> list[torch.Tensor]:
        grads = batched_grad(params, buffers, inputs, targets)
        return [grads[name][i] for i in range(k) for name, _ in base.named_parameters()]

    looped, mapped = loop(), vmapped()
    worst = max(float((a - b).detach().abs().max()) for a, b in zip(looped, mapped, strict=True))
    equal = all(torch.equal(a, b) for a, b in zip(looped, mapped, strict=True))

    times: dict[object, list[float]] = {loop: [], vmapped: []}
    for _ in range(args.steps):
        for step, seconds in times.items():  # alternated: both see the same load
            started = time.thread_time()
            step()  # type: ignore[operator]
            seconds.append(time.thread_time() - started)
    loop_s, vmap_s = (statistics.median(seconds) for seconds in times.values())
    print(f"K={k}: gradients equal to the bit: {equal}; largest difference {worst:.3g}")
    print(f"CPU per step (forward+backward of K copies): loop {loop_s * 1e3:.2f} ms, ", end="")
    print(f"vmap {vmap_s * 1e3:.2f} ms ({loop_s / vmap_s:.2f}x)")


if __name__ == "__main__":
    main()
