"""Options every dataset accepts: a seeded split, a small training subset, random labels,
augmentation of the training batches.

They act on the training split only, after the dataset has built its splits, so the
validation and test sets stay true and the same whatever these options say.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from hpstudy.data.base import Dataset, Split, from_splits, holdout
from hpstudy.errors import ConfigError
from hpstudy.spec.tables import require


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    """[data] keys that every dataset accepts beside its own."""

    split_seed: int = 0  # seed of the split, the subset and the random labels: fixed, never changes
    subset: int | None = None  # train on this many examples (seeded, stratified): report 000
    random_labels: bool = False  # permute the training labels (val/test stay true): report 003
    augment: Literal["none", "flip_crop"] = "none"  # of each training batch, on the device
    # (hpstudy.data.augment): flip_crop = random horizontal flip + 4-pixel padded random crop

    def __post_init__(self) -> None:
        if self.subset is not None:
            require(self.subset >= 1, "subset", "an integer >= 1 (leave it out for all)",
                    self.subset)


@dataclass(frozen=True, kw_only=True)
class HeldOutOptions(DataOptions):
    """[data] keys of a dataset whose validation images are held out of its training set."""

    val_size: int = 5_000  # training images held out for validation (datasets set their own)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.val_size >= 1, "val_size", "an integer >= 1", self.val_size)


def apply_variants(data: Dataset, options: DataOptions) -> Dataset:
    """`data` with its training split cut to `subset` and its labels randomised, as asked."""
    import torch

    check_augment(data, options)
    train = data.train
    if options.subset is not None:
        require(options.subset <= len(train), "data.subset",
                f"at most {len(train)}, the size of the training split", options.subset)
        labels = train.y.numpy()
        held = holdout(labels, options.subset, options.split_seed)[1]
        train = train.take(held)
    if options.random_labels:
        if data.task != "classification":
            raise ConfigError("data.random_labels", "false for a regression dataset (its targets "
                              "are numbers, not labels)", True)
        order = np.random.default_rng(options.split_seed).permutation(len(train))
        train = Split(train.x, train.y[torch.from_numpy(order)])
    if train is data.train:
        return data
    normalised = from_splits(train, data.val, data.test, data.classes)  # stats of what trains
    return replace(data, train=train, mean=normalised.mean, std=normalised.std)


def check_augment(data: Dataset, options: DataOptions) -> None:
    """A ConfigError unless `augment` is 'none' or the data are images [N, C, H, W]."""
    shape = tuple(data.train.x.shape[1:])
    require(options.augment == "none" or len(shape) == 3, "data.augment",
            "'none' for data that are not images (flips and crops need inputs [C, H, W])",
            f"{options.augment!r} for inputs of shape {list(shape)}",
            "Remove data.augment, or use an image dataset.")
