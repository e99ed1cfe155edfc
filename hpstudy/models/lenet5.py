"""`lenet5`: LeNet-5 with batch norm and dropout, as report 004 ran it on two-digit sums.

[conv 5x5, BN, ReLU, 2x2 max pool] x 2, flatten, dropout, then FC 120, 84 and the output.
Width scales every layer: width 6 is the classic 6 and 16 channels and 120 and 84 units
(98,995 parameters on 28x56 images with 19 classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

KERNEL = 5  # LeNet-5's kernel side, in pixels, no padding
CONV2, FC1, FC2 = 16 / 6, 20, 14  # second conv channels, FC units, as multiples of width


@dataclass(frozen=True)
class LeNet5Options:
    """[model] keys of `lenet5`: none; width and dropout are searched."""


def lenet5(input_shape: Sequence[int], outputs: int, width: int, depth: int, dropout: float,
           options: LeNet5Options) -> nn.Sequential:
    """Two conv blocks of `width` and 16/6 `width` channels, then FC 20 `width` and 14 `width`."""
    from torch import nn

    from hpstudy.models.layers import check_fits, pooled

    channels, height, wide = input_shape
    second = round(CONV2 * width)
    for block in range(2):
        height, wide = pooled(height, KERNEL, 0), pooled(wide, KERNEL, 0)
        check_fits(height, wide, input_shape, block)
    features = [
        nn.Conv2d(channels, width, KERNEL), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, second, KERNEL), nn.BatchNorm2d(second), nn.ReLU(), nn.MaxPool2d(2)]
    head = [nn.Flatten()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
    head += [nn.Linear(second * height * wide, FC1 * width), nn.ReLU(),
             nn.Linear(FC1 * width, FC2 * width), nn.ReLU(), nn.Linear(FC2 * width, outputs)]
    return nn.Sequential(*features, *head)
