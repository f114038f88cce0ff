"""Training-batch augmentation, batched and vectorised: no per-sample Python work.

`deepobs_cifar10` is DeepOBS's CIFAR-10 training pipeline (deepobs/pytorch/datasets/cifar10.py):

    Pad(2), RandomCrop(32), RandomHorizontalFlip(),
    ColorJitter(brightness=63/255, saturation=[0.5, 1.5], contrast=[0.2, 1.8])

applied to a whole batch at once, each sample with its own draws from the same distributions
as torchvision's per-sample transforms: a crop offset (row and column each uniform in 0..4,
from the zero-padded image), a flip with probability 1/2, brightness uniform in
[1 - 63/255, 1 + 63/255], contrast in [0.2, 1.8], saturation in [0.5, 1.5], and an order of the
three colour operations uniform over the 6 orders (ColorJitter applies its factors in the
order of a fresh randperm on every call; hue is None, so it is skipped).

The colour operations are torchvision's tensor kernels written in batched form, on floats in
[0, 1]: out = clamp(f * x + (1 - f) * ref, 0, 1), with ref = 0 (brightness), the mean of the
sample's grey image (contrast) or its grey image (saturation), grey = 0.2989 R + 0.587 G +
0.114 B. A one-channel image is its own grey image and keeps its saturation (as torchvision
leaves it). The crop is a window of the padded image, so it is taken at the image's own
size (32 for CIFAR-10), and it and the flip are done on the uint8 images, before the
conversion to float.

The draws come from one torch.Generator on the CPU, seeded from the run's seed, apart from the
shuffling generator and the global RNG: the random stream differs from torchvision's (which
draws sample by sample from the global RNG), the distributions do not. Its state goes into
the checkpoint, so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

_PAD = 2
_BRIGHTNESS = (1 - 63 / 255, 1 + 63 / 255)
_CONTRAST = (0.2, 1.8)
_SATURATION = (0.5, 1.5)
BRIGHTNESS, CONTRAST, SATURATION = 0, 1, 2  # the colour operations, as `order` numbers them


def augment_seed(seed: int) -> int:
    """The augmentation generator's seed, derived from the run's seed so that its stream is
    not the shuffling generator's (which is seeded with the run's seed itself)."""
    digest = hashlib.sha256(f"optbench-augment:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class DeepOBSCifar10Augment:
    """Pad 2, random crop, random horizontal flip, colour jitter: see the module's docstring.
    InMemoryDataset calls it on training batches (those DataLoader fetches), never on the
    in-order batches evaluation reads."""

    name = "deepobs_cifar10"

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(augment_seed(seed))

    def draw(self, n: int) -> dict[str, torch.Tensor]:
        """The per-sample draws for a batch of `n`, in a fixed order from the generator."""
        g = self.generator
        offsets = torch.randint(0, 2 * _PAD + 1, (2, n), generator=g)
        flip = torch.rand(n, generator=g) < 0.5
        order = torch.rand(n, 3, generator=g).argsort(dim=1)  # a uniform permutation per sample
        factors = torch.rand(3, n, generator=g)
        for k, (low, high) in enumerate((_BRIGHTNESS, _CONTRAST, _SATURATION)):
            factors[k] = low + (high - low) * factors[k]
        return {
            "rows": offsets[0],
            "cols": offsets[1],
            "flip": flip,
            "order": order,
            "factors": factors.T.contiguous(),  # (n, 3): brightness, contrast, saturation
        }

    def crop_and_flip(self, images: torch.Tensor, drawn: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each sample's window of the zero-padded (B, C, H, W) batch, at the image's size,
        mirrored left to right where drawn: one gather, in the batch's own dtype."""
        n, channels, height, width = images.shape
        device = images.device
        rows, cols, flip = (drawn[k].to(device) for k in ("rows", "cols", "flip"))
        padded = F.pad(images, (_PAD, _PAD, _PAD, _PAD))  # zeros, as Pad's default fill
        across = torch.arange(width, device=device)
        columns = torch.where(
            flip[:, None], cols[:, None] + (width - 1) - across, cols[:, None] + across
        )
        down = rows[:, None] + torch.arange(height, device=device)
        return padded[
            torch.arange(n, device=device)[:, None, None, None],
            torch.arange(channels, device=device)[None, :, None, None],
            down[:, None, :, None],
            columns[:, None, None, :],
        ]

    def __call__(self, images: torch.Tensor, scale: bool = True) -> torch.Tensor:
        """The whole pipeline on a (B, C, H, W) batch: crop and flip (on uint8 where it is
        uint8), then float32 in [0, 1] (/ 255 where `scale`), then the colour jitter. Not
        normalised: InMemoryDataset.transform does that after."""
        drawn = self.draw(len(images))
        cropped = self.crop_and_flip(images, drawn).to(torch.float32)
        if scale:
            cropped = cropped.div_(255)
        device = images.device
        return jitter(cropped, drawn["order"].to(device), drawn["factors"].to(device))


def grey(images: torch.Tensor) -> torch.Tensor:
    """torchvision's rgb_to_grayscale on a (B, 3, H, W) float batch, as (B, 1, H, W); a
    one-channel batch is its own grey image."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def jitter(images: torch.Tensor, order: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Apply, per sample, brightness, contrast and saturation (factors (B, 3) in that column
    order) in the order `order` (B, 3) gives: stage k applies operation order[:, k] to every
    sample at once, as one blend with a per-sample reference image."""
    n = images.shape[0]
    one_channel = images.shape[1] == 1
    picked = factors.gather(1, order).to(images.dtype)  # (B, 3): the factor of each stage
    if one_channel:  # torchvision leaves a one-channel image's saturation as it is
        picked = torch.where(order == SATURATION, torch.ones_like(picked), picked)
    for stage in range(3):
        op = order[:, stage].view(n, 1, 1, 1)
        f = picked[:, stage].view(n, 1, 1, 1)
        g = grey(images)
        mean = g.mean(dim=(-3, -2, -1), keepdim=True)
        ref = torch.where(op == SATURATION, g, torch.where(op == CONTRAST, mean, 0.0))
        images = (f * images + (1 - f) * ref).clamp_(0, 1)
    return images


# Each of the config's AUGMENT_NAMES (core/config.py) by its name; a test checks they match.
AUGMENTATIONS = {cls.name: cls for cls in (DeepOBSCifar10Augment,)}


def make_augment(name: str, seed: int) -> DeepOBSCifar10Augment:
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}")
    return AUGMENTATIONS[name](seed)
