"""data.augment: deepobs_cifar10, DeepOBS's CIFAR-10 augmentation done on whole training batches
(components/augment.py): each component's range, determinism, training batches
only, exact resume."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from optbench.components.augment import (
    BRIGHTNESS,
    CONTRAST,
    SATURATION,
    DeepOBSCifar10Augment,
    jitter,
)
from optbench.components.data import InMemoryDataset, load_data
from optbench.core.config import validate_config
from optbench.core.errors import ConfigError
from optbench.experiment.checkpoint import CheckpointFile
from optbench.experiment.plan import make_plan
from optbench.experiment.train import evaluate, train
from tests.helpers import METRICS, StopAt, regression_dict

MEAN, STD = (0.49139968, 0.48215841, 0.44653091), (0.24703223, 0.24348513, 0.26158784)


def _images(n: int = 64, channels: int = 3, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, channels, 32, 32), dtype=np.uint8))


def _dataset(images: torch.Tensor, seed: int = 0, augment: bool = True) -> InMemoryDataset:
    targets = torch.arange(len(images)) % 10
    return InMemoryDataset(
        images, targets, MEAN, STD, DeepOBSCifar10Augment(seed) if augment else None
    )


# --------------------------------------------------------------------------- the whole batch


def test_shapes_dtype_and_range() -> None:
    images = _images()
    augmented = DeepOBSCifar10Augment(0)(images)
    assert augmented.shape == images.shape and augmented.dtype == torch.float32
    assert augmented.min() >= 0 and augmented.max() <= 1  # before normalising
    inputs, targets = _dataset(images).__getitems__(list(range(10)))
    assert inputs.shape == (10, 3, 32, 32) and inputs.dtype == torch.float32
    assert targets.tolist() == list(range(10))


def test_deterministic_for_a_seed_and_different_for_another() -> None:
    images = _images()
    first, second = DeepOBSCifar10Augment(0), DeepOBSCifar10Augment(0)
    for _ in range(2):  # batch after batch, the same stream
        assert torch.equal(first(images), second(images))
    assert not torch.equal(DeepOBSCifar10Augment(0)(images), DeepOBSCifar10Augment(1)(images))


def test_every_epoch_augments_anew() -> None:
    dataset = _dataset(_images())
    everything = list(range(len(dataset)))
    epoch1, _ = dataset.__getitems__(everything)
    epoch2, _ = dataset.__getitems__(everything)
    assert not torch.equal(epoch1, epoch2)
    # sample by sample too: almost every image gets another crop, flip or jitter
    changed = (epoch1 != epoch2).flatten(1).any(dim=1)
    assert changed.float().mean() > 0.9


def test_the_global_rng_and_the_shuffle_are_untouched() -> None:
    dataset = _dataset(_images())
    state = torch.get_rng_state()
    dataset.__getitems__(list(range(32)))
    assert torch.equal(torch.get_rng_state(), state)


def test_only_training_batches_are_augmented() -> None:
    images = _images()
    augmented, plain = _dataset(images), _dataset(images, augment=False)
    # evaluation's in-order batches: exactly the unaugmented ones, and no draw is spent
    state = augmented.augment.generator.get_state()
    for (a, _), (b, _) in zip(augmented.batches(16), plain.batches(16), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(augmented.augment.generator.get_state(), state)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    loss = torch.nn.CrossEntropyLoss()
    assert evaluate(model, loss, augmented, 16, True) == evaluate(model, loss, plain, 16, True)
    # DataLoader's batches (training) are augmented
    index = list(range(16))
    assert not torch.equal(augmented.__getitems__(index)[0], plain.__getitems__(index)[0])


def test_load_data_augments_the_training_set_only(cifar_root: tuple[Path, np.ndarray]) -> None:
    root, _ = cifar_root
    config = {
        **regression_dict(),
        "data": {"dataset": "cifar10", "root": str(root), "augment": "deepobs_cifar10"},
        "model": {"name": "linear"},
        "loss": "cross_entropy",
    }
    plan = make_plan(validate_config(config))
    assert plan.resolved["data"]["augment"] == "deepobs_cifar10"
    train_set, test_set = load_data(plan.data, seed=0)
    assert isinstance(train_set.augment, DeepOBSCifar10Augment) and test_set.augment is None
    assert train_set.to(torch.device("cpu")).augment is train_set.augment
    plain = make_plan(validate_config({**config, "data": {**config["data"], "augment": None}}))
    assert plain.run_id != plan.run_id
    assert plain.resolved["data"]["augment"] is None  # recorded like every schema field
    assert load_data(plain.data, seed=0)[0].augment is None


def test_augment_takes_known_names_on_images_only() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(regression_dict(data={**regression_dict()["data"], "augment": "flip"}))
    assert caught.value.field == "data.augment"
    with pytest.raises(ConfigError) as caught:
        make_plan(
            validate_config(
                regression_dict(data={**regression_dict()["data"], "augment": "deepobs_cifar10"})
            )
        )
    assert caught.value.field == "data.augment"
    assert "synthetic_regression" in str(caught.value)


# --------------------------------------------------------------------------- each component


def test_the_draws_have_torchvisions_ranges() -> None:
    drawn = DeepOBSCifar10Augment(0).draw(20_000)
    for key in ("rows", "cols"):  # RandomCrop(32) of a 36x36 image: offsets 0..4, uniform
        counts = torch.bincount(drawn[key], minlength=5)
        assert len(counts) == 5 and (counts > 3_600).all()
    assert 0.48 < drawn["flip"].float().mean() < 0.52  # RandomHorizontalFlip(p=0.5)
    orders = {tuple(row) for row in drawn["order"].tolist()}
    assert orders == set(itertools.permutations(range(3)))  # ColorJitter's randperm, any order
    factors = drawn["factors"]
    for column, (low, high) in (
        (BRIGHTNESS, (1 - 63 / 255, 1 + 63 / 255)),
        (CONTRAST, (0.2, 1.8)),
        (SATURATION, (0.5, 1.5)),
    ):
        values = factors[:, column]
        assert values.min() >= low and values.max() <= high
        assert values.min() < low + 0.01 and values.max() > high - 0.01  # the whole range


def test_crops_are_windows_of_the_padded_image_and_flips_mirror_them() -> None:
    images = _images(200)
    augment = DeepOBSCifar10Augment(3)
    drawn = augment.draw(len(images))
    cropped = augment.crop_and_flip(images, drawn)
    assert cropped.dtype == torch.uint8 and cropped.shape == images.shape
    padded = F.pad(images, (2, 2, 2, 2))
    assert drawn["flip"].any() and not drawn["flip"].all()
    for k in range(len(images)):
        r, c = int(drawn["rows"][k]), int(drawn["cols"][k])
        window = padded[k, :, r : r + 32, c : c + 32]
        expected = torch.flip(window, dims=(-1,)) if drawn["flip"][k] else window
        assert torch.equal(cropped[k], expected)


def test_the_colour_jitter_is_torchvisions_in_each_samples_order() -> None:
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    images = _images(60).float().div(255)
    drawn = DeepOBSCifar10Augment(5).draw(len(images))
    jittered = jitter(images, drawn["order"], drawn["factors"])
    kernels = {
        BRIGHTNESS: tvf.adjust_brightness,
        CONTRAST: tvf.adjust_contrast,
        SATURATION: tvf.adjust_saturation,
    }
    for k in range(len(images)):
        image = images[k]
        for op in drawn["order"][k].tolist():
            image = kernels[op](image, float(drawn["factors"][k, op]))
        torch.testing.assert_close(jittered[k], image, atol=2e-6, rtol=0)


def test_factors_of_one_leave_the_image_as_it_is() -> None:
    images = _images(8).float().div(255)
    order = torch.stack([torch.randperm(3) for _ in range(8)])
    assert torch.equal(jitter(images, order, torch.ones(8, 3)), images)


def test_one_channel_images_keep_their_saturation() -> None:
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    images = _images(8, channels=1).float().div(255)
    order = torch.tensor([[SATURATION, BRIGHTNESS, CONTRAST]] * 8)
    factors = torch.tensor([[1.1, 0.5, 0.7]] * 8)
    expected = tvf.adjust_contrast(tvf.adjust_brightness(images, 1.1), 0.5)
    torch.testing.assert_close(jitter(images, order, factors), expected, atol=2e-6, rtol=0)


# --------------------------------------------------------------------------- resume


def _cifar10_3c3d(root: Path) -> dict[str, Any]:
    return {
        "name": "augmented",
        "problem": "cifar10_3c3d",
        "epochs": 2,  # a checkpoint after epoch 1, then epoch 2 stopped mid-way and resumed
        "device": "cpu",
        "data": {"root": str(root), "subset": 48, "batch_size": 16, "test_batch_size": 30},
        "optimizer": {"name": "SGD", "lr": 0.01, "momentum": 0.9},
    }


@pytest.mark.slow  # over 10 s in the loaded inner loop (~3 s alone)
def test_resume_after_an_interruption_is_bit_identical(
    cifar_root: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    root, _ = cifar_root
    plan = make_plan(validate_config(_cifar10_3c3d(root)))
    assert plan.resolved["data"]["augment"] == "deepobs_cifar10"
    reference = train(plan).rows
    checkpoints = CheckpointFile(tmp_path / "checkpoint.pt", plan.run_id)
    with pytest.raises(KeyboardInterrupt):
        train(plan, StopAt(2, 2), checkpoints)
    saved = checkpoints.load(torch.device("cpu"))
    assert saved is not None and saved["epoch"] == 1 and "augment" in saved["rng"]
    torch.manual_seed(12345)  # a resumed process starts with unrelated random state
    resumed = train(plan, checkpoints=checkpoints).rows
    assert [[r[c] for c in METRICS] for r in resumed] == [
        [r[c] for c in METRICS] for r in reference
    ]
    # and augmentation changes training: without it the losses differ
    unaugmented = _cifar10_3c3d(root)
    unaugmented["data"]["augment"] = None
    unaugmented["epochs"] = 1  # its first epoch is the one compared
    rows = train(make_plan(validate_config(unaugmented))).rows
    assert rows[0]["train_loss"] != reference[0]["train_loss"]
