"""Architectures: width and depth build the layers they promise; inputs stay uint8."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpstudy.models import (
    MODELS,
    BNCNNOptions,
    CNNOptions,
    DataShape,
    LeNet5Options,
    LinearOptions,
    MLPOptions,
    build_model,
    count_parameters,
)
from hpstudy.models.mlp import budget_width, mlp_parameters
from hpstudy.spec.study_file import ModelConfig

SHAPE, MEAN, STD = (1, 8, 8), (0.3,), (0.4,)


def net(architecture: str, options: object, shape: tuple[int, ...] = SHAPE, outputs: int = 10,
        **params) -> nn.Sequential:
    """build_model for inputs of `shape` with MEAN and STD, given a trial's `params`."""
    data = DataShape(shape, outputs, MEAN, STD)
    return build_model(ModelConfig(architecture, options), data, params)


def test_mlp_has_depth_hidden_layers_of_width_units():
    model = net("mlp", MLPOptions(), width=32, depth=2)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 32), (32, 10)]


def test_mlp_of_depth_zero_is_softmax_regression():
    model = net("mlp", MLPOptions(), width=32, depth=0)
    assert count_parameters(model) == 64 * 10 + 10


def test_cnn_doubles_channels_per_block_then_fully_connected():
    model = net("cnn", CNNOptions(fc_width=20, fc_depth=1), width=4, depth=2)
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [4, 8]
    out = model(torch.zeros(5, *SHAPE, dtype=torch.uint8))
    assert out.shape == (5, 10)


def test_report_001_cnn_has_its_published_shape():
    options = CNNOptions(kernel_size=3, padding=0, fc_width=512, fc_depth=2)
    model = net("cnn", options, (3, 32, 32), width=64, depth=2)
    first_fc = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first_fc.in_features == 4608  # 128 channels x 6 x 6, as in report 001
    assert count_parameters(model) == 2_703_242


def test_too_deep_a_cnn_says_which_depth_fits():
    with pytest.raises(ValueError, match="use depth <= 3"):
        net("cnn", CNNOptions(), width=4, depth=4)


def test_normalize_turns_uint8_into_standardised_floats():
    model = net("mlp", MLPOptions(), width=8, depth=1)
    normalised = model[0](torch.full((1, *SHAPE), 255, dtype=torch.uint8))
    assert torch.allclose(normalised, torch.full_like(normalised, (1 - 0.3) / 0.4))


def test_every_architecture_says_what_width_and_depth_mean():
    assert all(a.width and a.depth for a in MODELS.values())


def test_linear_is_one_layer_from_pixels_to_classes():
    model = net("linear", LinearOptions(), (1, 28, 28), width=64, depth=3)
    assert count_parameters(model) == 784 * 10 + 10  # report 000's 10x784 weights, plus biases
    assert MODELS["linear"].uses == frozenset()


def test_mlp_takes_a_tanh_activation_and_float_features():
    model = net("mlp", MLPOptions(activation="tanh"), (2,), 2, width=2, depth=1)
    assert any(isinstance(m, nn.Tanh) for m in model.modules())
    assert count_parameters(model) == 2 * 2 + 2 + 2 * 2 + 2  # report 002's 2-2 net, two outputs
    assert model(torch.tensor([[0.0, 1.0]])).shape == (1, 2)


@pytest.mark.parametrize(("depth", "width"), [(1, 250), (3, 18), (7, 10)])
def test_a_parameter_budget_sets_the_width_closest_to_it(depth, width):
    assert budget_width(1, 1, depth, 751) == width  # report 003: 1 hidden layer of 250 is 751
    options = MLPOptions(param_budget=751)
    model = net("mlp", options, (1,), 1, width=64, depth=depth)
    assert count_parameters(model) == mlp_parameters(1, 1, width, depth)
    for other in (width - 1, width + 1):
        assert abs(mlp_parameters(1, 1, other, depth) - 751) >= abs(count_parameters(model) - 751)


def test_a_budget_too_small_for_the_depth_says_so():
    with pytest.raises(ValueError, match="param_budget 10 is below the 16 parameters"):
        net("mlp", MLPOptions(param_budget=10), (1,), 1, width=8, depth=7)


def test_report_002_bn_cnn_has_its_published_shape():
    model = net("bn_cnn", BNCNNOptions(), (1, 28, 28), width=32, depth=3)
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [32, 32, 64]
    assert next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features == 576
    assert count_parameters(model) == 115_690
    assert any(isinstance(m, nn.AvgPool2d) for m in model.modules())


def test_report_004_lenet5_has_its_published_shape():
    model = net("lenet5", LeNet5Options(), (1, 28, 56), 19, width=6, dropout=0.1)
    linears = [(m.in_features, m.out_features) for m in model.modules()
               if isinstance(m, nn.Linear)]
    assert linears == [(704, 120), (120, 84), (84, 19)]
    assert count_parameters(model) == 98_995
    assert model.eval()(torch.zeros(3, 1, 28, 56, dtype=torch.uint8)).shape == (3, 19)


def test_report_004_cnns_have_their_published_sizes():
    options = CNNOptions(kernel_size=3, padding=1, fc_width=100, fc_depth=1)
    digits = net("cnn", options, (1, 28, 28), width=8, depth=1)
    sums = net("cnn", options, (1, 28, 56), 19, width=8, depth=1)
    assert (count_parameters(digits), count_parameters(sums)) == (157_990, 315_699)


def test_every_architecture_declares_the_model_keys_it_takes():
    assert MODELS["mlp"].takes() == ("width", "depth", "dropout", "activation", "param_budget")
    assert MODELS["linear"].takes() == ()
    assert MODELS["lenet5"].takes() == ("width", "dropout")
    assert MODELS["cnn"].option_keys() == ("kernel_size", "padding", "fc_width", "fc_depth")


def test_a_trial_value_of_a_model_key_replaces_the_study_one():
    options = CNNOptions(kernel_size=3, padding=1, fc_width=20)
    model = net("cnn", options, width=4, depth=1, kernel_size=5, padding=2, fc_width=7)
    assert [m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)] == [(5, 5)]
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [7, 10]
    tanh = net("mlp", MLPOptions(), width=4, activation="tanh")  # depth left out: its default 1
    assert [type(m) for m in tanh.modules() if isinstance(m, nn.Tanh | nn.ReLU)] == [nn.Tanh]
