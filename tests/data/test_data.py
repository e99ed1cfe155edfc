"""Datasets: fixed, stratified, disjoint splits held as tensors."""

from __future__ import annotations

import pytest
import torch

from hpstudy.data import DATASETS, load
from hpstudy.data.digits import DigitsOptions


@pytest.mark.slow
def test_digits_splits_are_disjoint_and_sized_as_asked():
    data = load("digits", DigitsOptions(val_fraction=0.2, test_fraction=0.2))
    assert (len(data.train), len(data.val), len(data.test)) == (1077, 360, 360)
    assert data.input_shape == (1, 8, 8) and data.train.x.dtype == torch.uint8
    assert data.task == "classification" and data.num_outputs == 10
    rows = {tuple(x.flatten().tolist()) for split in (data.train, data.val) for x in split.x}
    overlap = sum(tuple(x.flatten().tolist()) in rows for x in data.test.x)
    assert overlap < 5  # a few digits are pixel-identical duplicates in the source data


def test_digits_split_never_changes_and_follows_its_seed():
    first, again = load("digits", DigitsOptions()), load("digits", DigitsOptions())
    assert torch.equal(first.test.x, again.test.x) and torch.equal(first.val.y, again.val.y)
    other = load("digits", DigitsOptions(split_seed=1))
    assert not torch.equal(first.test.x, other.test.x)


def test_digits_split_is_stratified():
    data = load("digits", DigitsOptions())
    counts = torch.bincount(data.test.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # about 36 of each of the 10 classes


def test_statistics_come_from_the_training_split():
    data = load("digits", DigitsOptions())
    pixels = data.train.x.double() / 255
    assert abs(data.mean[0] - pixels.mean().item()) < 1e-9
    assert abs(data.std[0] - pixels.std().item()) < 1e-6


def test_every_registered_dataset_describes_itself():
    assert all(spec.description for spec in DATASETS.values())
