"""The 1-D functions of report 003: float targets (MSE), seeded points in the stated range."""

from __future__ import annotations

import math

import pytest
import torch

from hpstudy.data import load
from hpstudy.data.functions import FunctionsOptions
from hpstudy.errors import ConfigError


@pytest.mark.parametrize(("function", "x", "y"), [
    ("sinc", 0.1, math.sin(0.5 * math.pi) / (0.5 * math.pi)),
    ("sign", 0.1, 1.0), ("sign", 0.3, -1.0), ("sigmoid", 0.0, 0.5)])
def test_each_function_gives_its_values(function, x, y):
    data = load("functions", FunctionsOptions(function=function, x_min=x, x_max=x + 1e-9,
                                              points=2, val_points=1, test_points=1))
    assert data.train.y[0, 0].item() == pytest.approx(y, abs=1e-6)


def test_points_are_seeded_in_range_and_regression_shaped():
    options = FunctionsOptions(points=50, val_points=10, test_points=10, x_min=0.0, x_max=2.0)
    data = load("functions", options)
    assert data.task == "regression" and data.num_outputs == 1 and data.input_shape == (1,)
    assert data.train.y.dtype == torch.float32 and data.train.y.shape == (50, 1)
    assert data.train.x.min() >= 0.0 and data.train.x.max() <= 2.0
    assert torch.equal(load("functions", options).val.x, data.val.x)
    assert not torch.equal(data.train.x[:10], data.val.x)


def test_an_empty_range_is_refused():
    with pytest.raises(ConfigError, match="x_max: expected a number above x_min"):
        FunctionsOptions(x_min=1.0, x_max=1.0)
