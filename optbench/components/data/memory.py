"""Datasets held as whole tensors, normalised per batch and served a batch at a time.

Images stay uint8 in memory (4x smaller than float32) and each batch is converted with the
very float ops of ToTensor + Normalize, so batches are bit-identical to the notebook pipeline.
Training batches come from `ShuffledBatches`, which serves them straight from the tensors by
index while drawing exactly the random numbers DataLoader(shuffle=True) draws from its generator
(same permutation, same generator state), without DataLoader's per-batch sampler and fetcher.
`InMemoryDataset.__getitems__` still lets a DataLoader fetch a whole batch by index.
Every kind of dataset (built-in, imported, a file) ends up as two of these: train and test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch


def _equal_or_none(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return a is b or (a is not None and b is not None and torch.equal(a, b))


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

    def same_samples(self, other: InMemoryDataset) -> bool:
        """Whether `other` serves the very batches this one serves in evaluation (the same
        samples, scaled and normalised alike): a batch of trials then evaluates them once."""
        if type(self) is not InMemoryDataset or type(other) is not InMemoryDataset:
            return False  # columns and token windows batch otherwise
        return (
            self._scale == other._scale
            and torch.equal(self.inputs, other.inputs)
            and torch.equal(self.targets, other.targets)
            and _equal_or_none(self._mean, other._mean)
            and _equal_or_none(self._std, other._std)
        )

    def normalized(self) -> InMemoryDataset:
        """This dataset with every sample transformed once, up front (floats, normalised): the
        same batches to the bit, as the transform's ops act on each element alone, in 4x the
        memory of uint8 images. For a batch of trials, each of which would transform every
        batch it reads. Not for an augmenting dataset (its batches are drawn anew)."""
        assert self.augment is None
        if not self._scale and self._mean is None:  # served as held already
            return self
        return InMemoryDataset(self.transform(self.inputs), self.targets)

    def transform(self, inputs: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """uint8 -> float in [0, 1] -> normalized: the same ops as ToTensor then Normalize;
        with `augment` (and an augmentation), augmented before normalising."""
        fresh = False  # whether `inputs` is a tensor of our own yet, not the caller's
        if augment and self.augment is not None:
            inputs, fresh = self.augment(inputs, scale=self._scale), True
        elif self._scale:
            inputs, fresh = inputs.to(torch.float32).div(255), True
        if self._mean is not None:  # float images: never in place on the caller's (a slice)
            inputs = (inputs.sub_ if fresh else inputs.sub)(self._mean).div_(self._std)
        return inputs

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch at `index` (a 1-D int64 tensor on the data's device), augmented
        where the dataset augments, then normalised."""
        # index_select is several times cheaper than fancy indexing on a 4-D tensor
        return (
            self.transform(self.inputs.index_select(0, index), augment=True),
            self.targets.index_select(0, index),
        )

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fetch(torch.as_tensor(indices, device=self.targets.device))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.__getitems__([index])
        return inputs[0], targets[0]

    def first(self, size: int) -> tuple[Any, torch.Tensor]:
        """The first `size` samples as training sees them (planning's trial batch); copies, as
        transform normalises in place and the cached tensors are the run's."""
        return self.transform(self.inputs[:size].clone()), self.targets[:size].clone()

    def loader(
        self,
        batch_size: int,
        generator: torch.Generator,
        once: bool = False,
        drop_last: bool = False,
        once_seed: int = 0,
    ) -> ShuffledBatches:
        """An epoch's shuffled training batches (token windows draw theirs: data/text.py)."""
        return ShuffledBatches(self, batch_size, generator, once, drop_last, once_seed)

    def batches(self, batch_size: int, end: int | None = None):
        """Consecutive batches in order (evaluation) of the first `end` samples (default: all):
        plain slicing, no sampler, no RNG."""
        for start in range(0, len(self) if end is None else end, batch_size):
            stop = start + batch_size
            yield self.transform(self.inputs[start:stop]), self.targets[start:stop]


class ColumnsDataset(InMemoryDataset):
    """Inputs as named columns (a Hugging Face Dataset's input_ids, attention_mask, labels...),
    each a whole tensor; a batch is a dict of them, passed to the model as `model(**batch)`.
    `inputs` is the first column, whose shape the data's spec reports."""

    def __init__(self, columns: dict[str, torch.Tensor], targets: torch.Tensor) -> None:
        super().__init__(next(iter(columns.values())), targets)
        self.columns = columns

    def select(self, indices: torch.Tensor) -> ColumnsDataset:
        """The samples at `indices`, every column (a subset, a held-out validation set)."""
        return ColumnsDataset(
            {key: value[indices] for key, value in self.columns.items()}, self.targets[indices]
        )

    def to(self, device: torch.device) -> ColumnsDataset:
        moved = {key: value.to(device) for key, value in self.columns.items()}
        return ColumnsDataset(moved, self.targets.to(device))

    def fetch(self, index: torch.Tensor) -> tuple[Any, torch.Tensor]:
        batch = {key: value.index_select(0, index) for key, value in self.columns.items()}
        return batch, self.targets.index_select(0, index)

    def first(self, size: int) -> tuple[Any, torch.Tensor]:
        return self.fetch(torch.arange(min(size, len(self)), device=self.targets.device))

    def batches(self, batch_size: int, end: int | None = None):
        for start in range(0, len(self) if end is None else end, batch_size):
            stop = start + batch_size
            batch = {key: value[start:stop] for key, value in self.columns.items()}
            yield batch, self.targets[start:stop]


def keep_batch(batch: Any) -> Any:
    """DataLoader collate_fn for datasets that already return whole batches."""
    return batch


class ShuffledBatches:
    """The batches of `DataLoader(dataset, batch_size, shuffle=True, generator=generator)`, served
    straight from an InMemoryDataset's tensors by index, without DataLoader's sampler and fetcher
    (their Python work per batch is what separated a run from bare compute).

    Each pass draws from `generator` exactly what DataLoader and its RandomSampler draw, in the
    same order: one int64 when the pass starts (the DataLoader iterator's base seed),
    `torch.randperm(n)` at the first batch, and a second `torch.randperm(n)` that RandomSampler
    draws (and throws away) when its permutation runs out: while the last batch is filled when n
    is not a multiple of batch_size, after the last batch otherwise. So batches, losses and the
    generator's state at every point (what a checkpoint saves) are the DataLoader's.

    `drop_last` serves only whole batches, as DataLoader(drop_last=True), whose sampler then
    runs past its permutation after the last whole batch (the same draws). `once` is DeepOBS's
    TensorFlow pipeline (data.shuffle: once): one order, torch.randperm(n) from a generator
    seeded with `once_seed` (the run's seed), replayed every epoch; `generator` is not drawn.
    """

    def __init__(
        self,
        dataset: InMemoryDataset,
        batch_size: int,
        generator: torch.Generator,
        once: bool = False,
        drop_last: bool = False,
        once_seed: int = 0,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.generator = generator
        self.drop_last = drop_last
        self.order: torch.Tensor | None = None
        if once:  # drawn now, from the seed alone: a resumed run replays the same order
            seeded = torch.Generator().manual_seed(once_seed)
            self.order = torch.randperm(len(dataset), generator=seeded).to(dataset.targets.device)

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.dataset) // self.batch_size
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return map(self.dataset.fetch, self.indices())

    def indices(self) -> Iterator[torch.Tensor]:
        """A pass's batches as the indices `__iter__` fetches, with the same draws: a batch of
        trials sharing the dataset fetches all its trials' batches at once."""
        if self.order is not None:
            return self._in_order(self.order)
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # the base seed
        return self._batches()

    def _draw_permutation(self) -> torch.Tensor:
        return torch.randperm(len(self.dataset), generator=self.generator)

    def _in_order(self, order: torch.Tensor) -> Iterator[torch.Tensor]:
        """The batches of `order`, the partial last one where it is kept."""
        size = self.batch_size
        for start in range(0, len(self) * size, size):
            yield order[start : start + size]

    def _batches(self) -> Iterator[torch.Tensor]:
        n, size = len(self.dataset), self.batch_size
        order = self._draw_permutation().to(self.dataset.targets.device)
        if self.drop_last:
            yield from self._in_order(order)
            self._draw_permutation()  # filling the partial batch runs past the permutation
            return
        for start in range(0, n, size):
            if start + size > n:  # a short last batch: the sampler runs past its permutation
                self._draw_permutation()
            yield order[start : start + size]
        if n % size == 0:  # asked for one more batch, the sampler runs past its permutation
            self._draw_permutation()
