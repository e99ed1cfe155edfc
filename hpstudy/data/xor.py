"""`xor`: the four XOR points as a two-class problem (report 002), needing a hidden layer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpstudy.data.base import Dataset, Split, from_splits
from hpstudy.data.variants import DataOptions
from hpstudy.spec.tables import require

POINTS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))
LABELS = (0, 1, 1, 0)  # 1 where exactly one input is 1


@dataclass(frozen=True, kw_only=True)
class XorOptions(DataOptions):
    """[data] keys of `xor`."""

    repeat: int = 1  # copies of the four points in the training split: optimizer steps per epoch

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.repeat >= 1, "repeat", "an integer >= 1", self.repeat)


def load_xor(options: XorOptions, given_dir: str | Path | None) -> Dataset:
    """Train on `repeat` copies of the four points; validate and test on the four points."""
    import torch

    points = Split(torch.tensor(POINTS), torch.tensor(LABELS))
    train = Split(points.x.repeat(options.repeat, 1), points.y.repeat(options.repeat))
    return from_splits(train, points, points, ("0", "1"))
