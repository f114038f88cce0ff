"""What one batched copy of a trial holds, measured while planning (experiment/batch_memory.py),
against the sizes torch reports for the same model and optimizer built by hand."""

from __future__ import annotations

import pytest
import torch

from optbench.api import plan as make_plan
from optbench.experiment import batch_memory
from optbench.experiment.batch_memory import copies_that_fit, copy_memory, oversized_batch

DIGITS_MLP_PARAMETERS = 64 * 100 + 100 + 100 * 10 + 10  # Linear(64, 100), Linear(100, 10)


def _plan(batch_size: int, optimizer: str = "Adam") -> object:
    return make_plan(
        {
            "problem": "digits_mlp",
            "epochs": 1,
            "optimizer": {"name": optimizer, "lr": 0.01},
            "data": {"batch_size": batch_size},
        }
    )


def test_a_copy_holds_its_parameters_gradients_and_adams_two_moments() -> None:
    memory = copy_memory(_plan(32))
    floats = DIGITS_MLP_PARAMETERS * 4
    assert memory.parameters == floats and memory.gradients == floats
    model = torch.nn.Sequential(torch.nn.Linear(64, 100), torch.nn.Linear(100, 10))
    adam = torch.optim.Adam(model.parameters())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    adam.step()  # torch's own state: two moments and a step count per parameter
    state = sum(v.numel() * v.element_size() for s in adam.state.values() for v in s.values())
    assert memory.optimizer_state == state
    assert copy_memory(_plan(32, "SGD")).optimizer_state == 0  # SGD without momentum


def test_activations_grow_with_the_batch_and_hold_at_least_the_layers_inputs() -> None:
    small, large = copy_memory(_plan(32)).activations, copy_memory(_plan(64)).activations
    assert small >= 32 * (64 + 100) * 4  # each Linear keeps its input for backward
    assert abs(large - 2 * small) <= 64  # linear in the batch, up to a few scalars


def test_k_beyond_the_free_memory_is_refused_with_the_largest_k_that_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = _plan(32)
    per_copy = copy_memory(plan).total
    monkeypatch.setattr(batch_memory, "free_bytes", lambda device: 10 * per_copy)
    fit = copies_that_fit(per_copy, 10 * per_copy)
    assert fit == 8  # 80% of ten copies' worth
    assert oversized_batch(plan, fit) is None
    reason = oversized_batch(plan, fit + 1)
    assert reason is not None and reason.endswith(f"at most {fit} fit")
