"""Datasets held as whole tensors, normalised per batch and served a batch at a time.

Images stay uint8 in memory (4x smaller than float32) and each batch is converted with the
very float ops of ToTensor + Normalize, so batches are bit-identical to the notebook pipeline.
`InMemoryDataset.__getitems__` lets torch's DataLoader fetch a whole batch by index, which keeps
DataLoader's exact shuffling (same generator, same permutation) without per-sample Python work.
Every kind of dataset (built-in, imported, a file) ends up as two of these: train and test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class InMemoryDataset(torch.utils.data.Dataset):
    """Inputs and targets as whole tensors; batches are fetched by index in one operation."""

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        augment: Callable[..., torch.Tensor] | None = None,
        layout: str | None = None,
    ) -> None:
        self.inputs = inputs
        self.layout = layout  # how imported arrays were laid out (imported.channels_first)
        self.targets = targets
        # Applied to the batches __getitems__ fetches (training), not to `batches` (evaluation)
        self.augment = augment
        self._scale = inputs.dtype == torch.uint8
        self._mean = self._std = None
        if mean is not None and std is not None:
            shape = (-1,) + (1,) * (inputs.dim() - 2)
            self._mean = torch.as_tensor(mean, dtype=torch.float32).view(shape)
            self._std = torch.as_tensor(std, dtype=torch.float32).view(shape)

    def __len__(self) -> int:
        return len(self.targets)

    def to(self, device: torch.device) -> InMemoryDataset:
        moved = InMemoryDataset(
            self.inputs.to(device), self.targets.to(device), augment=self.augment
        )
        moved._scale = self._scale
        if self._mean is not None and self._std is not None:
            moved._mean, moved._std = self._mean.to(device), self._std.to(device)
        return moved

    def transform(self, inputs: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """uint8 -> float in [0, 1] -> normalized: the same ops as ToTensor then Normalize;
        with `augment` (and an augmentation), augmented before normalising."""
        if augment and self.augment is not None:
            inputs = self.augment(inputs, scale=self._scale)
        elif self._scale:
            inputs = inputs.to(torch.float32).div(255)
        if self._mean is not None:
            inputs = inputs.sub_(self._mean).div_(self._std)
        return inputs

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, device=self.targets.device)
        # index_select is several times cheaper than fancy indexing on a 4-D tensor
        return (
            self.transform(self.inputs.index_select(0, index), augment=True),
            self.targets.index_select(0, index),
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.__getitems__([index])
        return inputs[0], targets[0]

    def batches(self, batch_size: int):
        """Consecutive batches in order (evaluation): plain slicing, no sampler, no RNG."""
        for start in range(0, len(self), batch_size):
            end = start + batch_size
            yield self.transform(self.inputs[start:end]), self.targets[start:end]


def keep_batch(batch: Any) -> Any:
    """DataLoader collate_fn for datasets that already return whole batches."""
    return batch
