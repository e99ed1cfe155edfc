"""`digits`: scikit-learn's bundled 8x8 handwritten digits, the dataset that needs no download."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpstudy.data.base import Dataset, from_arrays, stratified_split
from hpstudy.data.variants import DataOptions
from hpstudy.spec.tables import require

GREY_LEVELS = 16  # scikit-learn stores the digits as integers 0..16


@dataclass(frozen=True, kw_only=True)
class DigitsOptions(DataOptions):
    """[data] keys of `digits`."""

    val_fraction: float = 0.2  # share of all 1,797 images held out for validation
    test_fraction: float = 0.2  # share held out for the test set (used by selection only)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            require(0 < value < 1, key, "a fraction strictly between 0 and 1", value)
        total = self.val_fraction + self.test_fraction
        require(total < 0.9, "val_fraction", "val_fraction + test_fraction < 0.9 (room to train)",
                f"{self.val_fraction} + {self.test_fraction} = {total:g}")


def load_digits(options: DigitsOptions, given_dir: str | Path | None = None) -> Dataset:
    """The digits as uint8 images [N, 1, 8, 8] with a fixed stratified split (no data folder)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255 / GREY_LEVELS)).astype(np.uint8)[:, None]
    parts = stratified_split(bunch.target, options.val_fraction, options.test_fraction,
                             options.split_seed)
    return from_arrays(images, bunch.target, parts, tuple(str(c) for c in range(10)))
