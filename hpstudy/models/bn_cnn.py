"""`bn_cnn`: conv, batch norm, ReLU and 2x2 average pooling per block (report 002).

Report 002's network on MNIST is width 32, depth 3 and kernel 5: conv 32, 32, 64
('same' padding), then Linear(576, 64), BatchNorm1d, ReLU and Linear(64, 10): 115,690
parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpstudy.spec.tables import require

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class BNCNNOptions:
    """[model] keys of `bn_cnn`."""

    kernel_size: int = 5  # odd side of every conv kernel, in pixels; padding keeps the size
    fc_width: int = 64  # units of the hidden fully connected layer (batch-normalised)

    def __post_init__(self) -> None:
        require(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "kernel_size",
                "an odd integer >= 1 ('same' padding needs an odd kernel)", self.kernel_size)
        require(self.fc_width >= 1, "fc_width", "an integer >= 1", self.fc_width)


def bn_cnn(input_shape: Sequence[int], outputs: int, width: int, depth: int, dropout: float,
           options: BNCNNOptions) -> nn.Sequential:
    """`depth` conv blocks (channels width, width, 2 width, 2 width, ...), then one BN FC layer."""
    from torch import nn

    from hpstudy.models.layers import check_fits, pooled

    channels, height, wide = input_shape
    kernel, padding = options.kernel_size, options.kernel_size // 2
    layers: list[nn.Module] = []
    for block in range(depth):
        out = width * 2 ** (block // 2)  # doubling every second block: 32, 32, 64 in report 002
        layers += [nn.Conv2d(channels, out, kernel, padding=padding), nn.BatchNorm2d(out),
                   nn.ReLU(), nn.AvgPool2d(2)]
        height, wide = pooled(height, kernel, padding), pooled(wide, kernel, padding)
        check_fits(height, wide, input_shape, block)
        channels = out
    head = [nn.Flatten(), nn.Linear(channels * height * wide, options.fc_width),
            nn.BatchNorm1d(options.fc_width), nn.ReLU()]
    head += [nn.Dropout(dropout)] if dropout > 0 else []
    return nn.Sequential(*layers, *head, nn.Linear(options.fc_width, outputs))
