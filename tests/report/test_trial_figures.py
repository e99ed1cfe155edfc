"""Figures are for people: titled, with labelled axes, colour scales and legends."""

from __future__ import annotations

import itertools
import math

import numpy as np

from hpstudy.data import load
from hpstudy.data.digits import DigitsOptions
from hpstudy.models import CNNOptions, DataShape, MLPOptions, build_model
from hpstudy.report import trial_figures as plots
from hpstudy.spec.study_file import ModelConfig
from hpstudy.train.loop import EpochMetrics

HISTORY = [EpochMetrics(e, 1 / e, 0.5 + e / 10, 1.2 / e, 0.45 + e / 10, 0.1) for e in (1, 2, 3)]


def network(architecture: str, options, input_shape, **params):
    shape = DataShape(input_shape, 10, (0.5,) * input_shape[0], (0.2,) * input_shape[0])
    return build_model(ModelConfig(architecture, options), shape, params)


def test_curves_show_loss_and_accuracy_with_labels(tmp_path):
    title = plots.trial_title("study", 0, "complete", {"lr": 0.01234, "width": 16})
    fig = plots.curves(HISTORY, title)
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_xlabel() == "epoch" and "loss" in loss_ax.get_ylabel()
    assert acc_ax.get_ylabel() == "accuracy (%)"
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["train", "validation"]
    assert fig.get_suptitle() == "study: trial 0 (complete)\nlr=0.0123, width=16"
    fig.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_an_exploded_loss_is_clipped_and_marked_and_both_panels_share_the_epochs():
    history = [*HISTORY, EpochMetrics(4, 3e11, 0.1, math.inf, math.nan, 0.1)]
    fig = plots.curves(history, "diverged")
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_ylim()[1] < 1e3  # the rest is not flattened
    labels = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert any("above" in label and "not finite" in label for label in labels)
    assert "clipped" in loss_ax.get_title()
    assert loss_ax.get_xlim() == acc_ax.get_xlim()


def test_regression_curves_have_no_accuracy_panel():
    history = [EpochMetrics(1, 0.5, math.nan, 0.6, math.nan, 0.1)]
    fig = plots.curves(history, "functions")
    assert len(fig.axes) == 1 and "MSE" in fig.axes[0].get_ylabel()


def test_first_layer_shows_conv_filters_or_unit_weights_with_a_colour_bar(tmp_path):
    cnn = network("cnn", CNNOptions(), (1, 8, 8), width=6, depth=1)
    fig = plots.first_layer_weights(cnn, (1, 8, 8), "cnn")
    assert "3x3 conv filters" in fig.get_suptitle() and "6 of 6" in fig.get_suptitle()
    assert "weight" in fig.axes[1].get_ylabel()  # the colour bar
    mlp = network("mlp", MLPOptions(), (1, 8, 8), width=100, depth=1)
    fig = plots.first_layer_weights(mlp, (1, 8, 8), "mlp")
    assert "unit weights over the input" in fig.get_suptitle()
    assert "64 of 100" in fig.get_suptitle()  # at most 64 tiles
    fig.savefig(tmp_path / "weights.png")


def test_a_softmax_regressions_weights_are_labelled_by_class():
    classes = tuple("abcdefghij")
    softmax = network("mlp", MLPOptions(), (1, 8, 8), width=16, depth=0)
    fig = plots.first_layer_weights(softmax, (1, 8, 8), "linear", classes)
    assert "class weights" in fig.get_suptitle()
    assert [t.get_text() for t in fig.axes[0].texts] == list(classes)
    hidden = network("mlp", MLPOptions(), (1, 8, 8), width=16, depth=1)
    assert not plots.first_layer_weights(hidden, (1, 8, 8), "mlp", classes).axes[0].texts


def test_rgb_filters_are_shown_in_colour_on_one_scale():
    cnn = network("cnn", CNNOptions(), (3, 8, 8), width=4, depth=1)
    pixels = plots.first_layer_weights(cnn, (3, 8, 8), "rgb").axes[0].get_images()[0].get_array()
    assert pixels.shape[-1] == 3 and pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert math.isclose(pixels.min(), 0.0, abs_tol=1e-6) or math.isclose(pixels.max(), 1.0)


def test_the_confusion_matrix_names_classes_and_accuracy():
    matrix = np.array([[5, 1], [0, 4]])
    fig = plots.confusion(matrix, ("cat", "dog"), "study: trial 1")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]
    assert "accuracy 90.0%" in ax.get_title()


def test_long_class_names_on_the_confusion_matrix_are_slanted_apart():
    names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck")  # CIFAR-10's: side by side, upright, they run into each other
    fig = plots.confusion(np.eye(10, dtype=int) * 7, names, "cifar: trial 0")
    assert {t.get_rotation() for t in fig.axes[0].get_xticklabels()} == {45}
    fig = plots.confusion(np.eye(10, dtype=int) * 7, [str(d) for d in range(10)], "digits")
    fig.canvas.draw()  # digits stay upright, and apart
    boxes = [t.get_window_extent() for t in fig.axes[0].get_xticklabels()]
    assert {t.get_rotation() for t in fig.axes[0].get_xticklabels()} == {0}
    assert not any(a.overlaps(b) for a, b in itertools.pairwise(boxes))


def test_the_model_summary_lists_layers_shapes_and_parameters():
    data = load("digits", DigitsOptions())
    mlp = network("mlp", MLPOptions(), data.input_shape, width=16, depth=1)
    text = plots.model_summary(mlp, data.input_shape)
    assert "Linear" in text and "[16]" in text and "[10]" in text
    assert f"total trainable parameters: {64 * 16 + 16 + 16 * 10 + 10:,}" in text
