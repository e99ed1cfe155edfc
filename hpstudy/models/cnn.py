"""`cnn`: LeNet-style conv blocks (conv, ReLU, 2x2 max pool), then fully connected layers.

With kernel 3, no padding, width 64, depth 2 and two FC layers of 512 it is report
001's CNN (2,703,242 parameters); with kernel 3, padding 1, width 8, depth 1 and one FC
layer of 100 it is report 004's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpstudy.spec.tables import require

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class CNNOptions:
    """[model] keys of `cnn`."""

    kernel_size: int = 3  # side of every conv kernel, in pixels
    padding: int = 1  # zero padding of every conv, in pixels (kernel_size // 2 keeps the size)
    fc_width: int = 128  # units in each hidden fully connected layer
    fc_depth: int = 1  # hidden fully connected layers after the conv blocks

    def __post_init__(self) -> None:
        require(self.kernel_size >= 1, "kernel_size", "an integer >= 1", self.kernel_size)
        require(0 <= self.padding < self.kernel_size, "padding",
                f"an integer in [0, kernel_size = {self.kernel_size})", self.padding)
        require(self.fc_width >= 1, "fc_width", "an integer >= 1", self.fc_width)
        require(self.fc_depth >= 0, "fc_depth", "an integer >= 0", self.fc_depth)


def cnn(input_shape: Sequence[int], outputs: int, width: int, depth: int, dropout: float,
        options: CNNOptions) -> nn.Sequential:
    """`depth` blocks of conv, ReLU and 2x2 max pool (channels doubling), then FC layers."""
    from torch import nn

    from hpstudy.models.layers import check_fits, hidden, pooled

    channels, height, wide = input_shape
    layers: list[nn.Module] = []
    for block in range(depth):
        out = width * 2**block
        layers += [nn.Conv2d(channels, out, options.kernel_size, padding=options.padding),
                   nn.ReLU(), nn.MaxPool2d(2)]
        height = pooled(height, options.kernel_size, options.padding)
        wide = pooled(wide, options.kernel_size, options.padding)
        check_fits(height, wide, input_shape, block)
        channels = out
    fc, n_in = hidden(channels * height * wide, options.fc_width, options.fc_depth, dropout)
    return nn.Sequential(*layers, nn.Flatten(), *fc, nn.Linear(n_in, outputs))
