"""Language models: byte-level token data, the nanoGPT-shaped GPT, per-token metrics, each
against what we did not write (nanoGPT's get_batch and training loop written out, its parameter
formula, F.cross_entropy, Hugging Face's GPT-2 built from the same config)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from optbench.components.data.text import (
    FORTUNES_FOLDER,
    SPLIT,
    fortunes_files,
    load_text,
    read_fortunes,
)
from optbench.components.gpt import GPT, NO_DECAY, gpt_parameters
from optbench.core.config import load_config
from optbench.experiment.plan import make_plan
from optbench.experiment.train import train

TEXT = ("The quick brown fox jumps over the lazy dog. " * 40 + "Pack my box with jugs.\n") * 3


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def lm_config(path: Path, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "lm",
        "seed": 0,
        "epochs": 2,
        "device": "cpu",
        "data": {
            "dataset": "text",
            "path": str(path),
            "context": 16,
            "windows_per_epoch": 40,
            "batch_size": 8,
            "test_batch_size": 7,
        },
        "model": {"name": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 16},
        "loss": "token_cross_entropy",
        "optimizer": {"name": "AdamW", "lr": 0.01, "weight_decay": 0.1},
    }
    config.update(changes)
    return config


def test_blocks_are_contiguous_and_windows_predict_the_next_byte(corpus: Path) -> None:
    train_set, test_set = load_text("", False, str(corpus), context=16, windows_per_epoch=40)
    data = torch.tensor(list(TEXT.encode()), dtype=torch.uint8)
    n = len(data)
    train_end, valid_end = int(n * SPLIT[0]), int(n * SPLIT[0]) + int(n * SPLIT[1])
    assert torch.equal(train_set.tokens, data[:train_end])
    assert torch.equal(train_set.validation.tokens, data[train_end:valid_end])
    assert torch.equal(test_set.tokens, data[valid_end:])
    assert len(train_set) == 40 and train_set.spec(test_set).train_size == 40
    # evaluation: every whole non-overlapping window of the test block, in order
    inputs = torch.cat([x for x, _ in test_set.batches(7)])
    targets = torch.cat([y for _, y in test_set.batches(7)])
    whole = (n - valid_end - 1) // 16
    assert inputs.dtype == torch.int64 and inputs.shape == (whole, 16)
    assert torch.equal(inputs.reshape(-1), data[valid_end:][: whole * 16].long())
    assert torch.equal(targets.reshape(-1), data[valid_end:][1 : whole * 16 + 1].long())


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_character_tokens_number_the_corpus_alphabet(tmp_path: Path) -> None:
    """vocabulary: chars: each distinct character a token (multi-byte ones too), the windows
    decode back to the text, and bits per byte divides by the evaluated targets' bytes."""
    text = ("naïve café — déjà vu. " * 30 + "The end.\n") * 3
    path = tmp_path / "accents.txt"
    path.write_text(text)
    train_set, test_set = load_text("", False, str(path), context=8, vocabulary="chars")
    alphabet = sorted(set(text))
    assert train_set.alphabet == "".join(alphabet)
    assert train_set.spec(test_set).num_classes == len(alphabet)
    n = len(text)
    valid_end = int(n * SPLIT[0]) + int(n * SPLIT[1])
    x, y = test_set.fetch(torch.arange(test_set.whole))
    assert test_set.decode(x.reshape(-1).tolist()) == text[valid_end:][: test_set.whole * 8]
    evaluated = text[valid_end:][1 : test_set.whole * 8 + 1]
    assert test_set.decode(y.reshape(-1).tolist()) == evaluated
    per_token = len(evaluated.encode()) / len(evaluated)
    assert train_set.spec(test_set).bytes_per_token == pytest.approx(per_token, rel=1e-12)

    config = lm_config(path, epochs=1)
    config["data"].update(context=8, vocabulary="chars")
    plan = make_plan(load_config(config))
    (row,) = train(plan).rows
    bits = row["test_loss"] / math.log(2) / per_token
    assert row["test_bits_per_byte"] == pytest.approx(bits, rel=1e-9)
    as_bytes = {**config, "data": {**config["data"], "vocabulary": "bytes"}}
    assert plan.run_id != make_plan(load_config(as_bytes)).run_id

    import optbench

    run = optbench.run(config, results_dir=tmp_path / "results")
    sampled = optbench.sample(run.dir, prompt="déjà", tokens=40)
    assert sampled.startswith("déjà") and len(sampled) == 44 and set(sampled) <= set(text)
    with pytest.raises(optbench.ConfigError, match="prompt: has characters the corpus lacks"):
        optbench.sample(run.dir, prompt="Zürich")


def _get_batch(data: torch.Tensor, block_size: int, batch_size: int, generator: Any) -> Any:
    """nanoGPT's train.py get_batch (its memmap read as a tensor), drawing from `generator`."""
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size].long() for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + block_size].long() for i in ix])
    return x, y


def test_an_epoch_is_nanogpt_get_batch_draws(corpus: Path) -> None:
    train_set, _ = load_text("", False, str(corpus), context=16, windows_per_epoch=20)
    loader = train_set.loader(8, torch.Generator().manual_seed(3))
    reference = torch.Generator().manual_seed(3)
    batches = list(loader)
    assert len(batches) == len(loader) == 3  # 8 + 8 + 4 windows
    for size, (x, y) in zip((8, 8, 4), batches, strict=True):
        hx, hy = _get_batch(train_set.tokens, 16, size, reference)
        assert torch.equal(x, hx) and torch.equal(y, hy)


def _nanogpt_loop(
    corpus: Path,
    epochs: int,
    clip: float | None = None,
    bf16: bool = False,
    accumulate: int = 1,
    warmup: int | None = None,
) -> list[dict[str, float]]:
    """nanoGPT's loop written out on lm_config's settings: the model seeded as optbench seeds
    it, get_batch's windows, AdamW with no decay on biases, LayerNorms and embeddings,
    per-token cross-entropy (under bf16 autocast with `bf16`, as nanoGPT's ctx), clip_grad_norm_
    between backward and step when `clip` is set, then evaluation on the test block's
    non-overlapping windows. With `accumulate`, nanoGPT's micro-steps: each micro-batch's loss
    scaled by its share of the step's windows (nanoGPT's 1/gradient_accumulation_steps when
    the shares are equal; an epoch's 5 batches make steps of 2, 2 and 1), backward on each,
    one clip and step; with `warmup`, every step's lr set from get_lr (warmup, then cosine to
    lr/10 at the run's last step) before it, as nanoGPT's loop sets it."""
    train_set, test_set = load_text("", False, str(corpus), context=16, windows_per_epoch=40)
    torch.manual_seed(0)
    model = GPT(256, 16, 2, 2, 16)
    names = dict(model.named_parameters())
    nodecay = {n for n in names if n.endswith(".bias") or ".ln_" in n or ".wt" in n or ".wp" in n}
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in names.items() if n not in nodecay], "weight_decay": 0.1},
            {"params": [p for n, p in names.items() if n in nodecay], "weight_decay": 0.0},
        ],
        lr=0.01,
    )
    generator = torch.Generator().manual_seed(0)
    sizes = (8, 8, 8, 8, 8)
    steps = [sizes[i : i + accumulate] for i in range(0, len(sizes), accumulate)]
    it = 0
    rows = []
    for _ in range(epochs):
        losses, norms = [], []
        for micro in steps:
            if warmup is not None:
                for group in optimizer.param_groups:
                    group["lr"] = _nanogpt_lr(it, 0.01, warmup, epochs * len(steps), 0.001)
            optimizer.zero_grad()
            step_loss = 0.0
            for size in micro:
                x, y = _get_batch(train_set.tokens, 16, size, generator)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = model(x)
                    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
                    loss = loss * size / sum(micro)
                loss.backward()
                step_loss += loss.item()
            if clip is not None:
                norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item())
            optimizer.step()
            losses.append(step_loss)
            it += 1
        torch.empty((), dtype=torch.int64).random_()  # the test DataLoader's draw
        model.eval()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
        with torch.no_grad(), autocast:
            x, y = test_set.fetch(torch.arange(test_set.whole))
            logits = model(x)
            test_loss = F.cross_entropy(logits.view(-1, 256), y.view(-1)).item()
            accuracy = (logits.argmax(-1) == y).float().mean().item()
        model.train()
        rows.append(
            {
                "train_loss": sum(losses) / len(losses),
                "test_loss": test_loss,
                "test_accuracy": accuracy,
                "grad_norm": sum(norms) / len(norms) if norms else None,
            }
        )
    return rows


def _decay_groups_config(corpus: Path, **changes: Any) -> dict[str, Any]:
    config = lm_config(corpus, **changes)
    config["optimizer"]["param_groups"] = [{"params": list(NO_DECAY), "weight_decay": 0.0}]
    return config


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_training_is_the_nanogpt_loop(corpus: Path) -> None:
    result = train(make_plan(load_config(_decay_groups_config(corpus))))
    for row, hand in zip(result.rows, _nanogpt_loop(corpus, 2), strict=True):
        assert row["train_loss"] == pytest.approx(hand["train_loss"], rel=1e-6)
        assert row["test_loss"] == pytest.approx(hand["test_loss"], rel=1e-6)
        assert row["test_accuracy"] == pytest.approx(hand["test_accuracy"], rel=1e-6)
        assert row["test_bits_per_byte"] == pytest.approx(hand["test_loss"] / math.log(2), rel=1e-6)
        assert row["grad_norm"] is None


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_clip_grad_norm_is_nanogpts_clipping(corpus: Path) -> None:
    result = train(make_plan(load_config(_decay_groups_config(corpus, clip_grad_norm=0.5))))
    for row, hand in zip(result.rows, _nanogpt_loop(corpus, 2, clip=0.5), strict=True):
        assert hand["grad_norm"] > 0.5  # it clipped
        assert row["grad_norm"] == pytest.approx(hand["grad_norm"], rel=1e-6)
        assert row["train_loss"] == pytest.approx(hand["train_loss"], rel=1e-6)
        assert row["test_loss"] == pytest.approx(hand["test_loss"], rel=1e-6)


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_bf16_is_autocast_around_forward_and_loss(corpus: Path) -> None:
    result = train(make_plan(load_config(_decay_groups_config(corpus, precision="bf16"))))
    full = _nanogpt_loop(corpus, 2)
    for row, hand, fp32 in zip(result.rows, _nanogpt_loop(corpus, 2, bf16=True), full, strict=True):
        assert row["train_loss"] == pytest.approx(hand["train_loss"], rel=1e-6)
        assert row["test_loss"] == pytest.approx(hand["test_loss"], rel=1e-6)
        assert row["train_loss"] != fp32["train_loss"]  # bf16 did change the arithmetic


@pytest.mark.slow  # trains two small runs (~3 s alone)
def test_accumulation_clipping_and_warmup_cosine_are_nanogpts_loop(corpus: Path) -> None:
    """nanoGPT's train.py with all three on: micro-steps of 2 batches, clipping at 0.5 after
    them, warmup then cosine set per step; optbench's run gives its table."""
    scheduler = {"name": "WarmupCosineLR", "interval": "step", "warmup_steps": 2}
    config = _decay_groups_config(corpus, accumulate=2, clip_grad_norm=0.5, scheduler=scheduler)
    result = train(make_plan(load_config(config)))
    hand = _nanogpt_loop(corpus, 2, clip=0.5, accumulate=2, warmup=2)
    for row, theirs in zip(result.rows, hand, strict=True):
        assert theirs["grad_norm"] > 0.5  # it clipped
        for column in ("train_loss", "test_loss", "test_accuracy", "grad_norm"):
            assert row[column] == pytest.approx(theirs[column], rel=1e-6), column


def test_gpt_parameter_count_is_nanogpt_formula() -> None:
    """nanoGPT's count (model.py get_num_params(non_embedding=False)): the tied output layer
    counted once; 12·C² per block plus biases and LayerNorms."""
    for layers, heads, width, bias in ((2, 2, 64, True), (1, 1, 8, False), (4, 4, 128, True)):
        model = GPT(256, 64, layers, heads, width, bias=bias)
        count = sum(p.numel() for p in model.parameters())
        assert count == gpt_parameters(256, 64, layers, width, bias)
    # the default gpt: about 0.1M, what the problem records
    assert gpt_parameters(256, 64, 2, 64) == 120_576


def test_gpt_parameter_count_is_hugging_face_gpt2s() -> None:
    """GPT-2 as transformers builds it (Conv1D, tied, biases) has the same count."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=2)
    hf = transformers.GPT2LMHeadModel(config)
    assert sum(p.numel() for p in hf.parameters()) == gpt_parameters(256, 64, 2, 64)


def test_the_gpt_is_causal() -> None:
    torch.manual_seed(0)
    model = GPT(256, 16, 2, 2, 16).eval()
    x = torch.randint(256, (1, 16))
    changed = x.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 256
    assert torch.equal(model(x)[:, :10], model(changed)[:, :10])
    assert not torch.equal(model(x)[:, 10:], model(changed)[:, 10:])


def test_decay_groups_cover_norms_biases_and_embeddings(corpus: Path) -> None:
    config = lm_config(corpus)
    config["optimizer"]["param_groups"] = [{"params": list(NO_DECAY), "weight_decay": 0.0}]
    plan = make_plan(load_config(config))
    model = plan.build_model()
    optimizer = plan.build_optimizer(model)
    names = {id(p): n for n, p in model.named_parameters()}
    nodecay = {
        names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]
    }
    # timm's rule (no decay on 1-D tensors) plus the embeddings
    expected = {n for n, p in model.named_parameters() if p.dim() < 2 or "wte" in n or "wpe" in n}
    assert nodecay == expected


@pytest.mark.skipif(not FORTUNES_FOLDER.is_dir(), reason="apt-get install fortunes")
def test_fortunes_is_the_debian_corpus() -> None:
    data = read_fortunes()
    files = fortunes_files()
    assert len(data) == sum(f.stat().st_size for f in files) > 2_000_000
    assert all(f.suffix != ".dat" for f in files)
    data.decode("utf-8")  # text, every file


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_sample_reads_the_trained_weights_and_the_untrained_model(
    corpus: Path, tmp_path: Path
) -> None:
    """The trained run writes the corpus's words; the untrained one is the seed's initial model,
    sampled as nanoGPT's sample.py samples (softmax of the last logits over temperature)."""
    import optbench

    config = lm_config(corpus, epochs=6)
    config["optimizer"]["lr"] = 0.02
    run = optbench.run(config, results_dir=tmp_path / "results")
    assert (run.dir / "weights.pt").is_file() and not (run.dir / "checkpoint.pt").exists()
    trained = optbench.sample(run.dir, prompt="The quick", tokens=60, seed=1)
    untrained = optbench.sample(run.dir, prompt="The quick", tokens=60, seed=1, trained=False)
    assert trained.startswith("The quick") and len(trained.encode()) >= 60
    alphabet = set(TEXT)  # trained: the corpus's letters; untrained: any of 256 bytes

    def share(text: str) -> float:
        return sum(c in alphabet for c in text[9:]) / len(text[9:])

    assert share(trained) > 0.9 > 0.5 > share(untrained)

    torch.manual_seed(0)
    model = GPT(256, 16, 2, 2, 16).eval()
    generator = torch.Generator().manual_seed(1)
    idx = torch.tensor([list(b"The quick")])
    with torch.no_grad():
        for _ in range(60):
            probs = F.softmax(model(idx[:, -16:])[:, -1, :] / 0.8, dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, 1, generator=generator)), dim=1)
    assert untrained == bytes(idx[0].tolist()).decode("utf-8", errors="replace")


def _nanogpt_lr(
    it: int, learning_rate: float, warmup: int, decay_iters: int, min_lr: float
) -> float:
    """nanoGPT's train.py get_lr, as written there."""
    if it < warmup:
        return learning_rate * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    decay_ratio = (it - warmup) / (decay_iters - warmup)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


def test_warmup_cosine_is_nanogpt_get_lr(corpus: Path) -> None:
    config = lm_config(
        corpus, scheduler={"name": "WarmupCosineLR", "interval": "step", "warmup_steps": 3}
    )
    plan = make_plan(load_config(config))
    assert plan.scheduler.options["total_steps"] == 10  # 2 epochs of 5 steps: the run
    model = plan.build_model()
    optimizer = plan.build_optimizer(model)
    scheduler = plan.build_scheduler(optimizer)
    for it in range(13):
        expected = _nanogpt_lr(it, 0.01, 3, 10, 0.001)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12)
        optimizer.step()
        scheduler.step()


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_an_interrupted_language_model_run_resumes_exactly(corpus: Path, tmp_path: Path) -> None:
    """The windows' generator is the checkpointed shuffling generator: a run stopped mid-epoch
    and resumed gives the uninterrupted run's table, with warmup-cosine stepped per batch and
    clipping on."""
    from optbench.experiment.checkpoint import CheckpointFile
    from tests.helpers import StopAt

    scheduler = {"name": "WarmupCosineLR", "interval": "step", "warmup_steps": 2}
    config = lm_config(corpus, epochs=3, clip_grad_norm=1.0, scheduler=scheduler)
    plan = make_plan(load_config(config))
    reference = train(plan).rows
    checkpoints = CheckpointFile(tmp_path / "checkpoint.pt", plan.run_id)
    with pytest.raises(KeyboardInterrupt):
        train(plan, StopAt(2, 3), checkpoints)
    torch.manual_seed(12345)  # a resumed process starts with unrelated random state
    resumed = train(plan, checkpoints=checkpoints).rows
    columns = ["train_loss", "test_loss", "test_accuracy", "test_bits_per_byte", "grad_norm", "lr"]
    assert [[r[c] for c in columns] for r in resumed] == [
        [r[c] for c in columns] for r in reference
    ]


@pytest.mark.parametrize(
    ("optimizer", "rel"),
    [
        ({"name": "SGD", "lr": 0.05, "momentum": 0.9}, 1e-6),
        ({"name": "Adam", "lr": 0.05}, 1e-6),
        # closure: every evaluation runs all micro-batches; LBFGS's history amplifies the
        # float32 summation order to about 1e-4 over 9 steps
        ({"name": "LBFGS", "lr": 0.5, "history_size": 5, "max_iter": 3}, 1e-3),
    ],
    ids=["SGD", "Adam", "LBFGS"],
)
def test_accumulating_k_batches_is_the_k_times_larger_batch(
    optimizer: dict[str, Any], rel: float
) -> None:
    """A model without batch-dependent layers: 4 accumulated batches of 8 are one batch of
    32, the last step's smaller group included (70 samples: steps of 32, 32, 6), per-step
    warmup-cosine counted in steps; equal up to float32 summation order."""
    from tests.helpers import regression_dict

    def run(batch: int, accumulate: int | None) -> Any:
        data = {"dataset": "synthetic_regression", "n_train": 70, "n_test": 20, "batch_size": batch}
        config = regression_dict(
            epochs=3,
            data=data,
            optimizer=optimizer,
            accumulate=accumulate,
            scheduler={"name": "WarmupCosineLR", "interval": "step", "warmup_steps": 2},
        )
        plan = make_plan(load_config(config))
        return plan, train(plan).rows

    small, accumulated = run(8, 4)
    large, rows = run(32, None)
    assert small.steps_per_epoch == large.steps_per_epoch == 3
    assert small.scheduler.options["total_steps"] == 9
    for mine, theirs in zip(accumulated, rows, strict=True):
        for column in ("train_loss", "test_loss", "lr"):
            assert mine[column] == pytest.approx(theirs[column], rel=rel), column


@pytest.mark.slow
def test_compile_trains_the_eager_run_and_reports_its_first_step() -> None:
    """compile: true is nn.Module.compile: the eager run's losses (up to the compiled
    kernels' float order), the same parameter names, and the first step's seconds,
    compilation included, in epoch 1's row only."""
    from tests.helpers import regression_dict

    data = {"dataset": "synthetic_regression", "n_train": 64, "n_test": 32, "batch_size": 16}
    eager = train(make_plan(load_config(regression_dict(data=data)))).rows
    plan = make_plan(load_config(regression_dict(data=data, compile=True)))
    compiled = train(plan).rows
    assert plan.resolved["compile"] is True
    for mine, theirs in zip(compiled, eager, strict=True):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert mine["test_loss"] == pytest.approx(theirs["test_loss"], rel=1e-5)
    assert compiled[0]["first_step_seconds"] > 0 and compiled[1]["first_step_seconds"] is None
    assert eager[0]["first_step_seconds"] is None
