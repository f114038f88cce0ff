"""How a model is called and its outputs read, whatever it returns: a batch of named columns is
passed as `model(**batch)` (a Hugging Face model's input_ids, attention_mask, labels), a tensor
as `model(inputs)`; a transformers `ModelOutput` is read through its `.logits` (metrics, the
built-in losses) or, with `loss: from_model`, its `.loss`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def forward(model: nn.Module, inputs: torch.Tensor | dict[str, torch.Tensor]) -> Any:
    """The model's outputs on one batch: a dict of columns as keyword arguments."""
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def logits_of(outputs: Any) -> torch.Tensor | None:
    """The class scores in a model's outputs: the tensor itself, or a ModelOutput's `.logits`;
    None when there are none (a ModelOutput holding only a loss, a plain tuple)."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = getattr(outputs, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else None


def describe(inputs: torch.Tensor | dict[str, torch.Tensor]) -> str:
    """A batch's shape in words, for a refusal: '(2, 16)' or 'input_ids (2, 16), labels (2,)'."""
    if isinstance(inputs, dict):
        return ", ".join(f"{key} {tuple(value.shape)}" for key, value in inputs.items())
    return str(tuple(inputs.shape))
