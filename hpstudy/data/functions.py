"""`functions`: 1-D regression of the three functions of report 003, trained with MSE.

Inputs are drawn uniformly (seeded) from [x_min, x_max]; targets are float, so the
training loop uses mean squared error and reports no accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from hpstudy.data.base import Dataset, Split, from_splits
from hpstudy.data.variants import DataOptions
from hpstudy.spec.tables import require

if TYPE_CHECKING:
    import torch

FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sinc": lambda x: (5 * x).sinc(),  # sin(5 pi x) / (5 pi x), 1 at x = 0
    "sign": lambda x: (5 * math.pi * x).sin().sign(),  # a square wave
    "sigmoid": lambda x: x.sigmoid(),  # 1 / (1 + e^-x)
}


@dataclass(frozen=True, kw_only=True)
class FunctionsOptions(DataOptions):
    """[data] keys of `functions`."""

    function: Literal["sinc", "sign", "sigmoid"] = "sinc"  # which target function
    points: int = 1_000  # training points
    val_points: int = 200  # validation points
    test_points: int = 200  # test points
    x_min: float = -1.0  # inputs are drawn uniformly from [x_min, x_max]
    x_max: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("points", "val_points", "test_points"):
            require(getattr(self, key) >= 1, key, "an integer >= 1", getattr(self, key))
        require(self.x_min < self.x_max, "x_max", f"a number above x_min = {self.x_min}",
                self.x_max)


def sample(options: FunctionsOptions, count: int, stream: int) -> Split:
    """`count` points x [count, 1] and f(x) [count, 1], drawn with their own seeded stream."""
    import torch

    generator = torch.Generator().manual_seed(options.split_seed * 1_000 + stream)
    x = options.x_min + (options.x_max - options.x_min) * torch.rand(count, 1, generator=generator)
    return Split(x, FUNCTIONS[options.function](x))


def load_functions(options: FunctionsOptions, given_dir: str | Path | None) -> Dataset:
    """Seeded training, validation and test points of the chosen function."""
    return from_splits(sample(options, options.points, 0), sample(options, options.val_points, 1),
                       sample(options, options.test_points, 2), ())
