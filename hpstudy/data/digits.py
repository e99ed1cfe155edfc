"""`digits`: scikit-learn's bundled 8x8 handwritten digits, the dataset that needs no download."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits as sklearn_digits

from hpstudy.data.base import Dataset, from_arrays, stratified_split
from hpstudy.tables import require

GREY_LEVELS = 16  # scikit-learn stores the digits as integers 0..16


@dataclass(frozen=True)
class DigitsOptions:
    """[data] keys of `digits`."""

    val_fraction: float = 0.2  # share of all 1,797 images held out for validation
    test_fraction: float = 0.2  # share held out for the test set (used by selection only)
    split_seed: int = 0  # seed of the stratified split: keep it fixed and the split never changes

    def __post_init__(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            require(0 < value < 1, key, "a fraction strictly between 0 and 1", value)
        total = self.val_fraction + self.test_fraction
        require(total < 0.9, "val_fraction", "val_fraction + test_fraction < 0.9 (room to train)",
                f"{self.val_fraction} + {self.test_fraction} = {total:g}")


def load_digits(options: DigitsOptions) -> Dataset:
    """The digits as uint8 images [N, 1, 8, 8] with a fixed stratified split."""
    bunch = sklearn_digits()
    images = np.round(bunch.images * (255 / GREY_LEVELS)).astype(np.uint8)[:, None]
    parts = stratified_split(bunch.target, options.val_fraction, options.test_fraction,
                             options.split_seed)
    return from_arrays(images, bunch.target, parts, tuple(str(c) for c in range(10)))
