"""Per-epoch checkpoints for exact resume.

A checkpoint holds everything that decides what happens next: model, optimizer and scheduler
state, the epoch, the global torch RNG (and CUDA's when used), the data-shuffling generator,
the augmentation's generator where the run augments, and the per-epoch rows so far. Restoring
all of it makes a resumed run's table identical to an uninterrupted one. Checkpoints are read
with torch.load(weights_only=True): tensors and plain containers only, never arbitrary pickled
objects.
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from optbench.components.optimizers import WRAPPED_ARGS
from optbench.core.errors import ConfigError
from optbench.storage.results import EpochSaves, write_atomic

FORMAT = "optbench-checkpoint-1"
_KEYS = {"format", "run_id", "epoch", "rows", "model", "optimizer", "scheduler", "rng"}


class CheckpointFile:
    """checkpoint.pt in a run folder: saved atomically after every epoch (or the epochs `saves`
    says are due: a tiny run's, storage/results.py EpochSaves)."""

    def __init__(self, path: Path, run_id: str, saves: EpochSaves | None = None) -> None:
        self.path = path
        self.run_id = run_id
        self.saves = saves or EpochSaves()

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, state: dict[str, Any]) -> None:
        saved = {"format": FORMAT, "run_id": self.run_id, **state}
        write_atomic(self.path, lambda handle: _torch_save(saved, handle))

    def load(self, device: torch.device) -> dict[str, Any] | None:
        """The saved state, None when there is none; a clear error when it is not usable."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location=device, weights_only=True)
        except Exception as exc:  # truncated zip, foreign pickle, unsafe globals...
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
            reason = text.splitlines()[0].rstrip(" ,.") if text else type(exc).__name__
            raise ConfigError(
                f"checkpoint {self.path} cannot be read ({reason[:200]}); "
                "delete it or pass --force to start the run over"
            ) from None
        if not isinstance(state, dict) or state.get("format") != FORMAT or not set(state) >= _KEYS:
            raise ConfigError(
                f"checkpoint {self.path} is not an optbench checkpoint; "
                "delete it or pass --force to start the run over"
            )
        if state["run_id"] != self.run_id:
            raise ConfigError(
                f"checkpoint {self.path} belongs to run {state['run_id']}, not {self.run_id}"
            )
        return state


def keep_weights(checkpoint: Path, weights: Path) -> None:
    """The model's weights of a finished run's last checkpoint, saved alone (weights_only)."""
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        write_atomic(weights, lambda handle: _torch_save({"model": state["model"]}, handle))


def _torch_save(state: dict[str, Any], handle: BinaryIO) -> None:
    """torch.save, with a failed write raised as the OSError it is: torch reports a short write
    (a full disk) as `RuntimeError: [enforce fail at inline_container.cc] unexpected pos`, the
    file's own OSError only as its context; write_atomic turns that OSError into a
    ResultsWriteError naming the checkpoint."""
    try:
        torch.save(state, handle)
    except RuntimeError as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """optimizer.load_state_dict(state), keeping what the wrapper's constructor shared: a
    wrapper whose param_groups are its base optimizer's list (torch_optimizer.Lookahead) gets
    two lists back from load_state_dict, and a scheduler setting one lr would miss the base."""
    shared = [
        name
        for name in WRAPPED_ARGS  # where wrappers keep the optimizer they wrap
        if getattr(getattr(optimizer, name, None), "param_groups", None) is optimizer.param_groups
    ]
    optimizer.load_state_dict(state)
    for name in shared:
        getattr(optimizer, name).param_groups = optimizer.param_groups


def check_round_trip(optimizer: torch.optim.Optimizer) -> None:
    """Save the optimizer's state as a checkpoint does, read it back as resuming does, and load
    it: what raises here would fail a run at its first checkpoint or its resume."""
    handle = io.BytesIO()
    torch.save(optimizer.state_dict(), handle)
    handle.seek(0)
    load_optimizer_state(optimizer, torch.load(handle, weights_only=True))


def unsaveable_reason(exc: BaseException) -> str:
    """Why a state failed check_round_trip, in one line: torch's weights-only reader names the
    class it refused in a page of advice."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return (
            f"it holds a {refused.group(1)}, which a checkpoint (read back with "
            "torch.load(weights_only=True)) cannot hold"
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:200]}".rstrip(": ")


def seed_global_rngs(seed: int) -> None:
    """Seed the process's global generators with the run's seed: torch's, and NumPy's and
    Python's, which some optimizers draw from (pytorch_optimizer's Kron balances its
    preconditioner when `np.random.random()` says so), so their runs repeat and resume too."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _other_global_rngs() -> dict[str, torch.Tensor]:
    """NumPy's and Python's global generator states as tensors (a checkpoint is read back
    with weights_only=True, which takes tensors, not NumPy arrays)."""
    _kind, keys, position, has_gauss, gauss = np.random.get_state()
    _version, internal, gauss_next = random.getstate()
    return {
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_rest": torch.tensor([position, has_gauss, gauss], dtype=torch.float64),
        "python": torch.tensor(internal, dtype=torch.int64),
        # (has a cached Gaussian, its value): no NaN, so equal states compare equal
        "python_gauss": torch.tensor(
            [0.0, 0.0] if gauss_next is None else [1.0, gauss_next], dtype=torch.float64
        ),
    }


def _restore_other_global_rngs(state: dict[str, Any]) -> None:
    """Put back what _other_global_rngs saved (a checkpoint from before it holds neither)."""
    if "numpy" in state:
        position, has_gauss, gauss = state["numpy_rest"].tolist()
        keys = state["numpy"].cpu().numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, int(position), int(has_gauss), gauss))
    if "python" in state:
        has_gauss, gauss_next = state["python_gauss"].tolist()
        internal = tuple(state["python"].tolist())
        random.setstate((3, internal, gauss_next if has_gauss else None))


def rng_state(
    shuffle: torch.Generator, device: torch.device, augment: torch.Generator | None = None
) -> dict[str, Any]:
    """The global RNGs (torch's, CUDA's, NumPy's and Python's), the shuffling generator and,
    for a run that augments its training batches, the augmentation's generator."""
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    state.update(_other_global_rngs())
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if augment is not None:
        state["augment"] = augment.get_state()
    return state


def restore_rng(
    state: dict[str, Any],
    shuffle: torch.Generator,
    device: torch.device,
    augment: torch.Generator | None = None,
) -> None:
    torch.set_rng_state(state["torch"].cpu())
    _restore_other_global_rngs(state)
    shuffle.set_state(state["shuffle"].cpu())
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
    if augment is not None:
        if "augment" not in state:
            raise ConfigError(
                "the checkpoint holds no augmentation state; delete it or pass --force to "
                "start the run over"
            )
        augment.set_state(state["augment"].cpu())
