"""What every dataset is: fixed train/validation/test splits held as tensors.

torch and scikit-learn are imported in the functions that use them (see `hpstudy.data`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from hpstudy.spec.tables import require

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Split:
    """One part of a dataset: inputs and targets as tensors of equal length."""

    x: torch.Tensor  # uint8 [N, C, H, W] images, or float32 [N, D] features
    y: torch.Tensor  # int64 [N] class indices, or float32 [N, K] regression targets

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        """The same split on `device`."""
        return Split(self.x.to(device), self.y.to(device))

    def digest(self) -> str:
        """16 hex digits that change when any input or target does (BLAKE2b of the bytes)."""
        import hashlib

        digest = hashlib.blake2b(digest_size=8)
        for tensor in (self.x, self.y):
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def take(self, index: np.ndarray | torch.Tensor) -> Split:
        """The examples at `index`, in that order."""
        import torch

        index = torch.as_tensor(index, dtype=torch.int64)
        return Split(self.x[index], self.y[index])


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits plus what a model needs to know about them."""

    train: Split
    val: Split
    test: Split  # touched only by selection, once
    classes: tuple[str, ...]  # class names by index; empty for regression
    mean: tuple[float, ...]  # per-channel (or per-feature) mean of the training inputs
    std: tuple[float, ...]  # the same for the standard deviation; images in [0, 1] units

    def for_training(self, device: torch.device | str) -> Dataset:
        """Train and validation splits moved to `device` once; the test split stays put."""
        return replace(self, train=self.train.to(device), val=self.val.to(device))

    @property
    def task(self) -> str:
        """'classification' or 'regression'."""
        return "classification" if self.classes else "regression"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, e.g. (1, 8, 8)."""
        return tuple(self.train.x.shape[1:])

    @property
    def num_outputs(self) -> int:
        """Classes for classification, targets per example for regression."""
        return len(self.classes) if self.classes else self.train.y.shape[1]


def from_arrays(images: np.ndarray, labels: np.ndarray, parts: tuple[np.ndarray, ...],
                classes: tuple[str, ...]) -> Dataset:
    """A Dataset from uint8 images [N, C, H, W], int labels and (train, val, test) indices."""
    import torch

    x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    train, val, test = (Split(x[i], y[i]) for i in parts)
    return from_splits(train, val, test, classes)


def from_splits(train: Split, val: Split, test: Split, classes: tuple[str, ...]) -> Dataset:
    """A Dataset whose normalisation statistics come from `train`."""
    mean, std = input_stats(train.x)
    return Dataset(train, val, test, classes, mean, std)


def with_test_set(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                  test_y: np.ndarray, val_size: int, seed: int,
                  classes: Sequence[str]) -> Dataset:
    """A Dataset from a published train/test division: validation is held out of train."""
    import torch

    require(val_size < len(train_y), "data.val_size",
            f"fewer than the {len(train_y)} training images", val_size)
    keep, held = holdout(train_y, val_size, seed)
    train = Split(torch.from_numpy(train_x), torch.from_numpy(train_y.astype(np.int64)))
    test = Split(torch.from_numpy(test_x), torch.from_numpy(test_y.astype(np.int64)))
    return from_splits(train.take(keep), train.take(held), test, tuple(classes))


def input_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and standard deviation per image channel, or per feature of float inputs [N, D]."""
    import torch

    if x.dtype == torch.uint8:
        return image_stats(x)
    if x.dim() > 2:  # float images [N, C, H, W]: per channel, as for uint8 ones
        flat = x.double().transpose(0, 1).reshape(x.shape[1], -1)
        return tuple(flat.mean(1).tolist()), tuple(flat.std(1).clamp_min(1e-6).tolist())
    flat = x.double().reshape(len(x), -1)
    return tuple(flat.mean(0).tolist()), tuple(flat.std(0).clamp_min(1e-6).tolist())


def image_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images [N, C, H, W], in [0, 1] units.

    Exact, from a histogram of the 256 grey levels: no float copy of the images is made.
    """
    import torch

    levels = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in range(x.shape[1]):
        counts = torch.bincount(x[:, channel].flatten(), minlength=256).double()
        mean = (counts * levels).sum() / counts.sum()
        variance = (counts * (levels - mean) ** 2).sum() / (counts.sum() - 1)
        means.append(mean.item())
        stds.append(max(variance.sqrt().item(), 1e-6))
    return tuple(means), tuple(stds)


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test indices, stratified by label; the same for the same seed."""
    from sklearn.model_selection import train_test_split

    everything = np.arange(len(labels))
    rest, test = train_test_split(everything, test_size=test_fraction, stratify=labels,
                                  random_state=seed)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                  stratify=labels[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


def holdout(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices kept and `size` indices held out, stratified by label where the counts allow.

    Both come back sorted, so the same labels, size and seed always give the same split.
    """
    from sklearn.model_selection import train_test_split

    everything = np.arange(len(labels))
    if size <= 0 or size >= len(labels):
        return (everything, everything[:0]) if size <= 0 else (everything[:0], everything)
    kept, held = train_test_split(everything, test_size=size, random_state=seed,
                                  stratify=labels if _can_stratify(labels, size) else None)
    return np.sort(kept), np.sort(held)


def _can_stratify(labels: np.ndarray, size: int) -> bool:
    """Whether a stratified holdout of `size` exists: integer labels, two of each class, room."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        return False  # regression targets
    counts = np.unique(labels, return_counts=True)[1]
    return counts.min() >= 2 and len(counts) <= min(size, len(labels) - size)
