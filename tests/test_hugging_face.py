"""Hugging Face models and datasets: tiny transformers models built from configs (no download),
trained by optbench and by the loop transformers' docs write, to 1e-6; what planning refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from optbench.components.data.text import load_text
from optbench.core.config import load_config
from optbench.core.errors import ConfigError
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train
from tests import hf_models
from tests.hf_models import bert_config

pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

TEXT = "It was the best of times, it was the worst of times. " * 30


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_bert_trains_as_transformers_docs_loop() -> None:
    """model(**batch) with input_ids, attention_mask and labels; outputs.loss trained on, the
    metrics read from outputs.logits; dropout on, so the global RNG is followed too."""
    result = train(make_plan(load_config(bert_config())))

    train_set, test_set = hf_models.sentences()
    torch.manual_seed(0)
    model = hf_models.tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.001)
    loader = torch.utils.data.DataLoader(
        train_set.with_format("torch"),
        shuffle=True,
        batch_size=16,
        generator=torch.Generator().manual_seed(0),
    )
    for row in result.rows:
        model.train()
        losses = []
        for batch in loader:  # transformers' "Train in native PyTorch" loop
            outputs = model(**batch)
            loss = outputs.loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        model.eval()
        total, correct = 0.0, 0
        for batch in torch.utils.data.DataLoader(test_set.with_format("torch"), batch_size=10):
            with torch.no_grad():
                outputs = model(**batch)
            total += outputs.loss.item() * len(batch["labels"])
            correct += int((outputs.logits.argmax(dim=-1) == batch["labels"]).sum())
        assert row["train_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-6)
        assert row["test_loss"] == pytest.approx(total / len(test_set), rel=1e-6)
        assert row["test_accuracy"] == pytest.approx(correct / len(test_set), rel=1e-6)


def test_bert_on_its_logits_with_cross_entropy_is_the_same_run() -> None:
    """Without labels in the batch, cross_entropy on .logits: BERT's own loss for one label."""
    own = train(make_plan(load_config(bert_config(epochs=1))))
    columns = ["input_ids", "attention_mask"]
    ours = train(
        make_plan(
            load_config(bert_config(epochs=1, data__input_column=columns, loss="cross_entropy"))
        )
    )
    assert ours.rows[0]["train_loss"] == pytest.approx(own.rows[0]["train_loss"], rel=1e-6)
    assert ours.rows[0]["test_accuracy"] == own.rows[0]["test_accuracy"]


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_gpt2_trains_on_token_windows_as_a_hand_loop(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    config = {
        "name": "gpt2",
        "seed": 0,
        "epochs": 2,
        "device": "cpu",
        "data": {
            "dataset": "text",
            "path": str(corpus),
            "context": 16,
            "windows_per_epoch": 24,
            "batch_size": 8,
        },
        "model": {"name": "tests.hf_models.tiny_gpt2"},
        "loss": "token_cross_entropy",
        "optimizer": {"name": "AdamW", "lr": 0.003},
    }
    result = train(make_plan(load_config(config)))

    train_set, test_set = load_text("", False, str(corpus), context=16, windows_per_epoch=24)
    torch.manual_seed(0)
    model = hf_models.tiny_gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.003)
    generator = torch.Generator().manual_seed(0)
    tokens = train_set.tokens
    for row in result.rows:
        model.train()
        losses = []
        for _ in range(3):
            ix = torch.randint(len(tokens) - 16, (8,), generator=generator)
            x = torch.stack([tokens[i : i + 16].long() for i in ix])
            y = torch.stack([tokens[i + 1 : i + 17].long() for i in ix])
            logits = model(input_ids=x).logits
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        torch.empty((), dtype=torch.int64).random_()
        model.eval()
        with torch.no_grad():
            x, y = test_set.fetch(torch.arange(test_set.whole))
            logits = model(input_ids=x).logits
        test_loss = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1)).item()
        assert row["train_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-6)
        assert row["test_loss"] == pytest.approx(test_loss, rel=1e-6)


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        (  # a model whose outputs hold no logits, with a loss on logits
            {
                "model": {"name": "tests.hf_models.tiny_bert_encoder"},
                "loss": "cross_entropy",
                "data__input_column": ["input_ids", "attention_mask"],
            },
            ("model:", "no logits to read", "loss: from_model"),
        ),
        (  # from_model without labels in the batch
            {"data__input_column": ["input_ids", "attention_mask"]},
            ("loss:", "from_model", "no loss", "data.input_column"),
        ),
        (  # a dict batch without the key the model needs
            {"data__input_column": ["attention_mask", "labels"]},
            ("model:", "fails on a batch of shape attention_mask (2, 12), labels (2,)"),
        ),
        (  # a column the dataset does not have
            {"data__input_column": ["input_ids", "token_type"]},
            ("data.input_column", "no column 'token_type'"),
        ),
    ],
)
def test_planning_refuses_what_training_could_not_use(
    changes: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as refused:
        make_plan(load_config(bert_config(**changes)))
    message = str(refused.value)
    for fragment in fragments:
        assert fragment in message, message


def test_integer_inputs_stay_integer() -> None:
    """The issue's case: token ids given as one tensor column reach BERT as int64."""
    config = bert_config(data__input_column="input_ids", loss="cross_entropy", epochs=1)
    plan = make_plan(load_config(config))
    assert plan.data_spec.integer_inputs and plan.data_spec.input_shape == (12,)
    assert train(plan).rows[0]["test_accuracy"] is not None
