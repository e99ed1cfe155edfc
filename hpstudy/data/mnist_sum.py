"""`mnist_sum`: two MNIST digits side by side (28x56), labelled with their sum (19 classes).

Report 004's two-digit-sum task, rebuilt deterministically: training pairs are drawn
from MNIST's training split, validation pairs from its validation split and test pairs
from its test set, so no digit image crosses from one split to another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpstudy.data.base import Dataset, Split, from_splits
from hpstudy.data.mnist import MnistOptions, load_mnist
from hpstudy.data.variants import DataOptions
from hpstudy.spec.tables import require

CLASSES = tuple(str(total) for total in range(19))  # sums 0..18


@dataclass(frozen=True, kw_only=True)
class MnistSumOptions(DataOptions):
    """[data] keys of `mnist_sum`."""

    val_size: int = 10_000  # MNIST training images held out; validation pairs come from them
    train_pairs: int = 50_000  # two-digit images to train on (report 004: 50,000)
    val_pairs: int = 10_000  # two-digit images to validate on (report 004: 10,000)
    test_pairs: int = 5_000  # two-digit images to test on (report 004: about 5,000)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("val_size", "train_pairs", "val_pairs", "test_pairs"):
            require(getattr(self, key) >= 1, key, "an integer >= 1", getattr(self, key))


def pairs(split: Split, count: int, seed: int, stream: int) -> Split:
    """`count` images of two digits of `split` side by side, labelled with their sum."""
    import torch

    rng = np.random.default_rng([seed, stream])  # one stream per split: sizes stay independent
    left, right = (torch.from_numpy(rng.integers(0, len(split), count)) for _ in range(2))
    return Split(torch.cat([split.x[left], split.x[right]], dim=3), split.y[left] + split.y[right])


def load_mnist_sum(options: MnistSumOptions, given_dir: str | Path | None) -> Dataset:
    """Pairs drawn (seeded) within each split of MNIST."""
    digits = load_mnist(MnistOptions(val_size=options.val_size, split_seed=options.split_seed),
                        given_dir)
    seed = options.split_seed
    return from_splits(pairs(digits.train, options.train_pairs, seed, 0),
                       pairs(digits.val, options.val_pairs, seed, 1),
                       pairs(digits.test, options.test_pairs, seed, 2), CLASSES)
