"""Architectures: width and depth build the layers they promise; inputs stay uint8."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpstudy.models import MODELS, CNNOptions, MLPOptions, build_model, count_parameters

SHAPE, MEAN, STD = (1, 8, 8), (0.3,), (0.4,)


def test_mlp_has_depth_hidden_layers_of_width_units():
    model = build_model("mlp", MLPOptions(), SHAPE, 10, MEAN, STD, width=32, depth=2)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 32), (32, 10)]


def test_mlp_of_depth_zero_is_softmax_regression():
    model = build_model("mlp", MLPOptions(), SHAPE, 10, MEAN, STD, width=32, depth=0)
    assert count_parameters(model) == 64 * 10 + 10


def test_cnn_doubles_channels_per_block_then_fully_connected():
    model = build_model("cnn", CNNOptions(fc_width=20, fc_depth=1), SHAPE, 10, MEAN, STD,
                        width=4, depth=2)
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [4, 8]
    out = model(torch.zeros(5, *SHAPE, dtype=torch.uint8))
    assert out.shape == (5, 10)


def test_report_001_cnn_has_its_published_shape():
    options = CNNOptions(kernel_size=3, padding=0, fc_width=512, fc_depth=2)
    model = build_model("cnn", options, (3, 32, 32), 10, (0.5,) * 3, (0.25,) * 3, 64, 2)
    first_fc = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first_fc.in_features == 4608  # 128 channels x 6 x 6, as in report 001
    assert count_parameters(model) == 2_703_242


def test_too_deep_a_cnn_says_which_depth_fits():
    with pytest.raises(ValueError, match="use depth <= 3"):
        build_model("cnn", CNNOptions(), SHAPE, 10, MEAN, STD, width=4, depth=4)


def test_normalize_turns_uint8_into_standardised_floats():
    model = build_model("mlp", MLPOptions(), SHAPE, 10, MEAN, STD, width=8, depth=1)
    normalised = model[0](torch.full((1, *SHAPE), 255, dtype=torch.uint8))
    assert torch.allclose(normalised, torch.full_like(normalised, (1 - 0.3) / 0.4))


def test_every_architecture_says_what_width_and_depth_mean():
    assert all(a.width and a.depth for a in MODELS.values())
