"""Datasets as tensors: fixed train/validation/test splits that move to the device whole.

Every dataset is loaded into memory once (images as uint8), so that training can index
batches on the training device instead of going through a per-sample DataLoader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpstudy.data.base import Dataset, Split
from hpstudy.data.digits import DigitsOptions, load_digits

__all__ = ["DATASETS", "Dataset", "DatasetSpec", "Split", "load"]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as the registry knows it: how to load it and which options it takes."""

    load: Callable[[Any], Dataset]
    options: type  # dataclass of the [data] keys beside `name`
    description: str


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(load_digits, DigitsOptions,
                          "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 "
                          "classes); no download"),
}


def load(name: str, options: Any) -> Dataset:
    """The dataset `name` with its validated options."""
    return DATASETS[name].load(options)
