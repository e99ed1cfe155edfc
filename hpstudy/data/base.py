"""What every dataset is: fixed train/validation/test splits held as tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split


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


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits plus what a model needs to know about them."""

    train: Split
    val: Split
    test: Split  # touched only by selection, once
    classes: tuple[str, ...]  # class names by index; empty for regression
    mean: tuple[float, ...]  # per-channel (or per-feature) mean of the training inputs
    std: tuple[float, ...]  # the same for the standard deviation; images in [0, 1] units

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
    x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    train, val, test = (Split(x[i], y[i]) for i in parts)
    mean, std = image_stats(train.x)
    return Dataset(train, val, test, classes, mean, std)


def image_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images [N, C, H, W], in [0, 1] units."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double() / 255
    return tuple(flat.mean(1).tolist()), tuple(flat.std(1).clamp_min(1e-6).tolist())


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test indices, stratified by label; the same for the same seed."""
    everything = np.arange(len(labels))
    rest, test = train_test_split(everything, test_size=test_fraction, stratify=labels,
                                  random_state=seed)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                  stratify=labels[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)
