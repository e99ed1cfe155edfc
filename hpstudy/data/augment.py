"""Augmentation on the device: each training batch flipped and cropped where it lies, no DataLoader.

`[data] augment` names one of AUGMENTS. The training loop applies it to every training
batch it slices from the device-resident split (uint8 images [B, C, H, W]), drawing from
its own generator seeded by the trial's seed; validation and test batches never pass
through here. The study file's check that the data are images is `variants.check_augment`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

CROP_PAD = 4  # pixels of zero padding on each side before cropping back to the image's size
AUGMENT_SEED = 0xA06  # added to the trial's seed: augmentation draws apart from the shuffling


def flip_crop(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images [B, C, H, W] each flipped left-right with probability 1/2, then cropped to H x W
    at a random offset from itself padded with CROP_PAD zero pixels on every side."""
    b, c, h, w = x.shape
    device = x.device
    flipped = torch.rand(b, device=device, generator=generator) < 0.5
    x = torch.where(flipped.view(b, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (CROP_PAD,) * 4)  # zeros: black pixels, as torchvision's RandomCrop
    dy, dx = torch.randint(0, 2 * CROP_PAD + 1, (2, b), device=device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]  # [B, 1, 1, W]
    images = torch.arange(b, device=device)[:, None, None, None]
    channels = torch.arange(c, device=device)[None, :, None, None]
    return padded[images, channels, rows, cols]


AUGMENTS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None] = {
    "none": None,  # every batch as it is stored
    "flip_crop": flip_crop,  # random horizontal flip + 4-pixel padded random crop (CIFAR-10's)
}


def augmenter(name: str, seed: int, device: torch.device
              ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The augmentation `name` as a function of a training batch, seeded by `seed`; None for
    'none'. The same seed gives the same flips and crops, batch after batch."""
    augment = AUGMENTS[name]
    if augment is None:
        return None
    generator = torch.Generator(device=device).manual_seed(seed + AUGMENT_SEED)
    return lambda x: augment(x, generator)
