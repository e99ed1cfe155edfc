"""Architectures, each built from `width` and `depth`; this file is where their meaning lives.

Every model starts with `Normalize`, so it takes inputs as the dataset stores them
(uint8 images) and a logged model needs no preprocessing outside it.

What `width` and `depth` mean for each architecture is declared once, in `MODELS` below
(`hpstudy list` prints it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hpstudy.tables import require


class Normalize(nn.Module):
    """uint8 images to floats in [0, 1], then standardised with the training split's statistics."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], input_shape: Sequence[int]):
        super().__init__()
        shape = (1, -1) + (1,) * (len(input_shape) - 1)  # broadcast over pixels or features
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised float inputs."""
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std


def _hidden(n_in: int, width: int, depth: int, dropout: float) -> tuple[list[nn.Module], int]:
    """`depth` blocks of Linear, ReLU and (if any) Dropout; returns them and the last width."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        layers += [nn.Dropout(dropout)] if dropout > 0 else []
        n_in = width
    return layers, n_in


@dataclass(frozen=True)
class MLPOptions:
    """[model] keys of `mlp`: none beyond the architecture."""


def mlp(input_shape: Sequence[int], outputs: int, width: int, depth: int, dropout: float,
        options: MLPOptions) -> nn.Sequential:
    """Flatten, `depth` hidden layers of `width` units with ReLU, then a linear output layer."""
    layers, n_in = _hidden(math.prod(input_shape), width, depth, dropout)
    return nn.Sequential(nn.Flatten(), *layers, nn.Linear(n_in, outputs))


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
    """LeNet-style: `depth` blocks of conv, ReLU and 2x2 max pool, then fully connected layers."""
    channels, height, wide = input_shape
    layers: list[nn.Module] = []
    for block in range(depth):
        out = width * 2**block
        layers += [nn.Conv2d(channels, out, options.kernel_size, padding=options.padding),
                   nn.ReLU(), nn.MaxPool2d(2)]
        height = (height + 2 * options.padding - options.kernel_size + 1) // 2
        wide = (wide + 2 * options.padding - options.kernel_size + 1) // 2
        if min(height, wide) < 1:
            raise ValueError(f"depth {depth} shrinks a {input_shape[1]}x{input_shape[2]} input "
                             f"to nothing after block {block + 1}; use depth <= {block}")
        channels = out
    fc, n_in = _hidden(channels * height * wide, options.fc_width, options.fc_depth, dropout)
    return nn.Sequential(*layers, nn.Flatten(), *fc, nn.Linear(n_in, outputs))


@dataclass(frozen=True)
class Architecture:
    """An architecture as the registry knows it."""

    build: Callable[..., nn.Module]  # (input_shape, outputs, width, depth, dropout, options)
    options: type  # dataclass of the [model] keys beside `architecture`
    uses: frozenset[str]  # which of width, depth and dropout mean something here
    width: str  # what width means
    depth: str  # what depth means


MODELS: dict[str, Architecture] = {
    "mlp": Architecture(mlp, MLPOptions, frozenset({"width", "depth", "dropout"}),
                        "hidden units in every hidden layer",
                        "hidden layers (0 gives softmax regression)"),
    "cnn": Architecture(cnn, CNNOptions, frozenset({"width", "depth", "dropout"}),
                        "channels of the first conv block; each further block doubles them",
                        "conv blocks (conv, ReLU, 2x2 max pool) before the FC layers"),
}


def build_model(architecture: str, options: object, input_shape: Sequence[int], outputs: int,
                mean: Sequence[float], std: Sequence[float], width: int, depth: int,
                dropout: float = 0.0) -> nn.Sequential:
    """The network `architecture` behind a `Normalize` layer for the dataset's statistics."""
    body = MODELS[architecture].build(input_shape, outputs, width, depth, dropout, options)
    return nn.Sequential(Normalize(mean, std, input_shape), *body)


def first_layer(model: nn.Module) -> nn.Linear | nn.Conv2d:
    """The first layer with weights (what the filter plot shows)."""
    return next(m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
