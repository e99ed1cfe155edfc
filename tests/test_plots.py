"""Figures are for people: titled, with labelled axes and legends."""

from __future__ import annotations

import math

from hpstudy import plots
from hpstudy.models import CNNOptions, MLPOptions, build_model
from hpstudy.train import EpochMetrics

HISTORY = [EpochMetrics(e, 1 / e, 0.5 + e / 10, 1.2 / e, 0.45 + e / 10, 0.1) for e in (1, 2, 3)]


def test_curves_show_loss_and_accuracy_with_labels(tmp_path):
    fig = plots.curves(HISTORY, "study: trial 0")
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_xlabel() == "epoch" and "loss" in loss_ax.get_ylabel()
    assert acc_ax.get_ylabel() == "accuracy (%)"
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["train", "validation"]
    assert fig.get_suptitle() == "study: trial 0"
    fig.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_regression_curves_have_no_accuracy_panel():
    history = [EpochMetrics(1, 0.5, math.nan, 0.6, math.nan, 0.1)]
    fig = plots.curves(history, "functions")
    assert len(fig.axes) == 1 and "MSE" in fig.axes[0].get_ylabel()


def test_first_layer_shows_conv_filters_or_unit_weights(tmp_path):
    cnn = build_model("cnn", CNNOptions(), (1, 8, 8), 10, (0.3,), (0.4,), width=6, depth=1)
    title = plots.first_layer_weights(cnn, (1, 8, 8), "cnn").axes[0].get_title()
    assert "3x3 conv filters" in title and "6 of 6" in title
    mlp = build_model("mlp", MLPOptions(), (1, 8, 8), 10, (0.3,), (0.4,), width=100, depth=1)
    fig = plots.first_layer_weights(mlp, (1, 8, 8), "mlp")
    assert "unit weights over the input" in fig.axes[0].get_title()
    assert "64 of 100" in fig.axes[0].get_title()  # at most 64 tiles
    fig.savefig(tmp_path / "weights.png")


def test_rgb_filters_are_shown_in_colour():
    cnn = build_model("cnn", CNNOptions(), (3, 8, 8), 10, (0.5,) * 3, (0.2,) * 3, width=4, depth=1)
    pixels = plots.first_layer_weights(cnn, (3, 8, 8), "rgb").axes[0].get_images()[0].get_array()
    assert pixels.shape[-1] == 3 and pixels.min() == 0.0 and pixels.max() == 1.0
