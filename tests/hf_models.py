"""Tiny Hugging Face models built from configs (no download) and a Dataset of token columns,
named by import path in tests/test_hugging_face.py's configs."""

from __future__ import annotations

from typing import Any

import torch


def tiny_gpt2(vocab_size: int = 256, n_positions: int = 16) -> Any:
    """transformers' GPT2LMHeadModel: 2 layers of width 32, no dropout."""
    import transformers

    config = transformers.GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return transformers.GPT2LMHeadModel(config)


def _bert_config(num_labels: int) -> Any:
    import transformers

    return transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        num_labels=num_labels,
    )


def tiny_bert(num_labels: int = 2) -> Any:
    """transformers' BertForSequenceClassification: 2 layers of width 32, its dropout kept."""
    import transformers

    return transformers.BertForSequenceClassification(_bert_config(num_labels))


def tiny_bert_encoder() -> Any:
    """transformers' BertModel: hidden states and a pooled output, no logits."""
    import transformers

    return transformers.BertModel(_bert_config(2))


def sentences(n_train: int = 64, n_test: int = 24, length: int = 12) -> tuple[Any, Any]:
    """Train and test `datasets.Dataset`s of input_ids, attention_mask and labels: padded
    sequences of random token ids, labelled 1 when token 7 occurs in them."""
    import datasets

    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> Any:
        ids = torch.randint(1, 50, (n, length), generator=generator)
        lengths = torch.randint(4, length + 1, (n,), generator=generator)
        mask = (torch.arange(length) < lengths.unsqueeze(1)).long()
        ids = ids * mask  # padding: token 0
        labels = (ids == 7).any(dim=1).long()
        return datasets.Dataset.from_dict(
            {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": labels.tolist()}
        )

    return split(n_train), split(n_test)


def bert_config(**changes: Any) -> dict[str, Any]:
    """A run of tiny_bert on sentences (its own loss), with `section__field=value` changes."""
    config: dict[str, Any] = {
        "name": "bert",
        "seed": 0,
        "epochs": 2,
        "device": "cpu",
        "data": {
            "dataset": "tests.hf_models.sentences",
            "input_column": ["input_ids", "attention_mask", "labels"],
            "target_column": "labels",
            "batch_size": 16,
            "test_batch_size": 10,
        },
        "model": {"name": "tests.hf_models.tiny_bert"},
        "loss": "from_model",
        "optimizer": {"name": "AdamW", "lr": 0.001},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            config[section][field] = value
        else:
            config[section] = value
    return config
