"""Pieces the architectures share: input normalisation, hidden blocks, conv output sizes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


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


def hidden(n_in: int, width: int, depth: int, dropout: float, activation: str = "relu"
           ) -> tuple[list[nn.Module], int]:
    """`depth` blocks of Linear, activation and (if any) Dropout, and the width they end with."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), ACTIVATIONS[activation]()]
        layers += [nn.Dropout(dropout)] if dropout > 0 else []
        n_in = width
    return layers, n_in


def pooled(size: int, kernel: int, padding: int) -> int:
    """A side in pixels after a stride-1 conv and a 2x2 pooling."""
    return (size + 2 * padding - kernel + 1) // 2


def check_fits(height: int, width: int, input_shape: Sequence[int], block: int) -> None:
    """Raise ValueError (which the runner reports against search.depth) if nothing is left."""
    if min(height, width) < 1:
        raise ValueError(f"{block + 1} conv blocks shrink a {input_shape[1]}x{input_shape[2]} "
                         f"input to nothing; use depth <= {block}")
