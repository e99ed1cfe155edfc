"""`subset` and `random_labels`: applied to any dataset's training split, leaving val/test true."""

from __future__ import annotations

import pytest
import torch

from hpstudy.data import load
from hpstudy.data.digits import DigitsOptions
from hpstudy.data.functions import FunctionsOptions
from hpstudy.errors import ConfigError


def test_subset_keeps_n_stratified_training_examples_and_nothing_else_changes():
    full = load("digits", DigitsOptions())
    small = load("digits", DigitsOptions(subset=50))
    assert len(small.train) == 50 and torch.bincount(small.train.y).tolist() == [5] * 10
    assert torch.equal(small.val.x, full.val.x) and torch.equal(small.test.y, full.test.y)
    pixels = small.train.x.double() / 255
    assert abs(small.mean[0] - pixels.mean().item()) < 1e-9  # statistics of what trains
    assert torch.equal(load("digits", DigitsOptions(subset=50)).train.x, small.train.x)
    assert not torch.equal(load("digits", DigitsOptions(subset=50, split_seed=1)).train.x,
                           small.train.x)


def test_subset_works_on_regression_data_too():
    data = load("functions", FunctionsOptions(points=100, subset=10))
    assert data.train.x.shape == (10, 1) and len(data.val) == 200


def test_subset_larger_than_the_training_split_is_refused():
    with pytest.raises(ConfigError, match=r"data.subset: expected at most 1077"):
        load("digits", DigitsOptions(subset=5000))


def test_random_labels_permute_training_labels_only():
    true = load("digits", DigitsOptions())
    shuffled = load("digits", DigitsOptions(random_labels=True))
    assert torch.equal(shuffled.train.x, true.train.x)
    assert torch.equal(torch.bincount(shuffled.train.y), torch.bincount(true.train.y))
    assert (shuffled.train.y == true.train.y).float().mean() < 0.2  # about 1 in 10 by chance
    assert torch.equal(shuffled.val.y, true.val.y) and torch.equal(shuffled.test.y, true.test.y)
    again = load("digits", DigitsOptions(random_labels=True))
    assert torch.equal(again.train.y, shuffled.train.y)


def test_random_labels_on_regression_are_refused():
    with pytest.raises(ConfigError, match=r"data\.random_labels: expected false for a regression"):
        load("functions", FunctionsOptions(random_labels=True))


def test_subset_must_be_positive():
    with pytest.raises(ConfigError, match="subset"):
        DigitsOptions(subset=0)
