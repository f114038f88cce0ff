"""How many batched copies of a trial fit: what one more copy holds, measured while planning,
against the memory its device has free.

A copy holds its parameters, their gradients, its optimizer's state (measured after one real
step, so lazily made state such as Adam's moments counts) and the activations its forward keeps
for backward, counted by autograd's saved-tensor hooks on one batch of the run's batch size
(tensors already counted as parameters are not counted again). The data is not counted: the
trials of a batch read one problem's data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from optbench.experiment.plan import RunPlan, trial_batch
from optbench.experiment.train import _loss

USABLE_SHARE = 0.8  # of the free memory: the rest is left to the allocator, the OS, the loop


@dataclass(frozen=True)
class CopyMemory:
    """Bytes one batched copy of a trial holds, by what holds them."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations


def _bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def copy_memory(plan: RunPlan) -> CopyMemory:
    """One copy of `plan`'s trial built and stepped once on a batch of its batch size."""
    rng = torch.get_rng_state()
    try:
        torch.manual_seed(plan.config.seed)
        model = plan.build_model().to(plan.device)
        optimizer = plan.optimizer.build(model)
        loss_fn = plan.build_loss()
        inputs, targets = trial_batch(plan.data, plan.config.seed, plan.config.data.batch_size)
        inputs, targets = inputs.to(plan.device), targets.to(plan.device)
        parameters = [p for p in model.parameters() if p.requires_grad]
        counted = {p.untyped_storage().data_ptr() for p in parameters}
        saved: dict[int, int] = {}

        def keep(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in counted:
                saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            loss = _loss(model, loss_fn, inputs, targets)
        loss.backward()
        optimizer.step()
        state = sum(
            _bytes(value)
            for per_parameter in optimizer.state.values()
            for value in per_parameter.values()
            if isinstance(value, torch.Tensor)
        )
        return CopyMemory(
            parameters=sum(_bytes(p) for p in parameters),
            gradients=sum(_bytes(p.grad) for p in parameters if p.grad is not None),
            optimizer_state=state,
            activations=sum(saved.values()),
        )
    finally:
        torch.set_rng_state(rng)


def free_bytes(device: torch.device) -> int:
    """Memory free on `device`: the GPU's (torch.cuda.mem_get_info), else the machine's
    MemAvailable (Linux), else its free physical pages."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def copies_that_fit(per_copy: int, free: int) -> int:
    """The most copies of `per_copy` bytes that USABLE_SHARE of `free` bytes holds."""
    return int(free * USABLE_SHARE) // max(per_copy, 1)


def oversized_batch(plan: RunPlan, k: int) -> str | None:
    """Why K copies of `plan`'s trial do not fit its device's free memory (one line, with the
    largest K that does), or None when they fit."""
    memory = copy_memory(plan)
    free = free_bytes(plan.device)
    fit = copies_that_fit(memory.total, free)
    if k <= fit:
        return None
    return (
        f"{k} copies need about {_size(k * memory.total)} ({_size(memory.total)} a copy: "
        f"parameters {_size(memory.parameters)}, gradients {_size(memory.gradients)}, "
        f"optimizer state {_size(memory.optimizer_state)}, activations "
        f"{_size(memory.activations)}), more than {USABLE_SHARE:.0%} of the {_size(free)} free "
        f"on {plan.device}: at most {fit} fit"
    )


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} B"
