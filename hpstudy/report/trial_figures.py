"""Figures logged with every trial: curves, first-layer weights, confusion matrix, task views."""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global figure state, no display needed

from hpstudy.train.loop import EpochMetrics

if TYPE_CHECKING:  # the figure writer draws from arrays: it needs no torch
    from torch import nn

MAX_TILES = 64  # units or filters shown in the weights figure
CLIP = 100.0  # loss values above CLIP x the median loss are drawn at the top, marked
TITLE_WIDTH = 90  # characters a line of a figure title holds at 9-10 pt on a 7-inch figure


def curves(history: Sequence[EpochMetrics], title: str) -> Figure:
    """Loss and accuracy against epoch, train and validation, side by side, same epochs.

    An exploded loss (a diverging trial reaches 1e11, or inf) would flatten every other
    point: values above CLIP x the median are drawn at that ceiling with a marker.
    """
    epochs = [m.epoch for m in history]
    has_acc = not all(math.isnan(m.val_acc) for m in history)
    fig = Figure(figsize=(10 if has_acc else 5.5, 4.4), layout="constrained")
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False, sharex=True)
    loss_ax = axes[0, 0]
    series = (("train", "o-", [m.train_loss for m in history]),
              ("validation", "s-", [m.val_loss for m in history]))
    finite = [v for _, _, values in series for v in values if math.isfinite(v)]
    ceiling = CLIP * statistics.median(finite) if finite else 1.0
    clipped = not finite or max(finite) > ceiling or len(finite) < 2 * len(history)
    for label, style, values in series:
        shown = [v if math.isfinite(v) and v <= ceiling else ceiling for v in values]
        line, = loss_ax.plot(epochs, shown, style, label=label)
        off = [e for e, v in zip(epochs, values, strict=True)
               if not (math.isfinite(v) and v <= ceiling)]
        if off:
            loss_ax.plot(off, [ceiling] * len(off), "^", color=line.get_color(), markersize=11,
                         label=f"{label}: above {ceiling:.3g} or not finite")
    loss_ax.set(xlabel="epoch", ylabel="loss (cross-entropy)" if has_acc else "loss (MSE)",
                title="Loss" + (" (clipped)" if clipped else ""))
    if all(v > 0 for v in finite):
        loss_ax.set_yscale("log")
    if has_acc:
        acc_ax = axes[0, 1]
        acc_ax.plot(epochs, [100 * m.train_acc for m in history], "o-", label="train")
        acc_ax.plot(epochs, [100 * m.val_acc for m in history], "s-", label="validation")
        acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title, fontsize=10)
    return fig


def trial_title(study: str, trial: int, state: str, params: dict[str, object]) -> str:
    """A trial figure's title: the study, the trial number, how it ended and its parameters."""
    values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in params.items())
    return f"{study}: trial {trial} ({state})\n" + "\n".join(textwrap.wrap(values, TITLE_WIDTH))


def first_layer_weights(model: nn.Module, input_shape: Sequence[int], title: str,
                        classes: Sequence[str] = ()) -> Figure:
    """The first layer's weights as images: conv filters, or each unit's weights over the input."""
    weights, conv, is_output = first_layer_array(model)
    return layer_weights(weights, conv, input_shape, title, classes if is_output else ())


def first_layer_array(model: nn.Module) -> tuple[np.ndarray, bool, bool]:
    """The first layer's weights as an array, whether they are conv filters, and whether that
    layer is also the last (a softmax regression: its rows are the classes)."""
    from torch import nn

    from hpstudy.models import first_layer

    layer = first_layer(model)
    layers = sum(isinstance(m, nn.Linear | nn.Conv2d) for m in model.modules())
    return (layer.weight.detach().cpu().float().numpy(), isinstance(layer, nn.Conv2d),
            layers == 1)


def layer_weights(weights: np.ndarray, conv: bool, input_shape: Sequence[int],
                  title: str, classes: Sequence[str] = ()) -> Figure:
    """`first_layer_weights` from the weights alone (what the background writer is sent).

    Grey tiles share one colour scale (the bar); RGB filters are scaled together to [0, 1].
    Where the layer is the output, `classes` label its rows.
    """
    if conv:
        what, tiles = f"{weights.shape[2]}x{weights.shape[3]} conv filters", weights
    elif len(input_shape) == 3:  # an MLP on images: each unit's weights over the input pixels
        what = "class weights over the input" if classes else "unit weights over the input"
        tiles = weights.reshape(-1, *input_shape)
    else:
        return _weight_matrix(weights, title, classes)
    tiles = tiles[:MAX_TILES]
    rgb = tiles.shape[1] == 3
    grid, cols, scale = _mosaic(tiles, rgb)
    fig = Figure(figsize=(6.8, 6 * grid.shape[0] / grid.shape[1] + 0.9), layout="constrained")
    ax = fig.subplots()
    shown = ax.imshow(grid, cmap=None if rgb else "RdBu_r", vmin=-scale, vmax=scale,
                      interpolation="nearest")
    ax.set_axis_off()
    if rgb:
        note = f"RGB, all filters scaled together from [{-scale:.2g}, {scale:.2g}] to [0, 1]"
    else:
        note = "one colour scale for all tiles"
        fig.colorbar(shown, ax=ax, label="weight (red positive, blue negative)", shrink=0.8)
    if classes:
        h, w = tiles.shape[2], tiles.shape[3]
        for i, name in enumerate(classes[:len(tiles)]):
            r, c = divmod(i, cols)
            ax.text(c * (w + 1) - 0.3, r * (h + 1) - 0.3, name, ha="left", va="top", fontsize=8,
                    bbox={"facecolor": "white", "alpha": 0.8, "pad": 1, "linewidth": 0})
    fig.suptitle(f"{title}\nfirst-layer {what}: {len(tiles)} of {len(weights)}, {cols} a row;"
                 f"\n{note}", fontsize=9)  # the figure's, not the axes': never cut at the sides
    return fig


def _mosaic(tiles: np.ndarray, rgb: bool) -> tuple[np.ndarray, int, float]:
    """Filters [N, C, H, W] in one image, a gap between tiles; the shared scale's limit."""
    n, _, h, w = tiles.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    depth = (3,) if rgb else ()
    limit = float(np.abs(tiles if rgb else tiles[:, 0]).max()) or 1.0
    grid = np.full(((h + 1) * rows - 1, (w + 1) * cols - 1, *depth), np.nan)
    for i, tile in enumerate(tiles):
        # RGB to [0, 1] around 0.5 = zero weight; grey keeps the weights (first channel)
        image = tile.transpose(1, 2, 0) / (2 * limit) + 0.5 if rgb else tile[0]
        r, c = divmod(i, cols)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = image
    return (np.nan_to_num(grid, nan=1.0) if rgb else grid), cols, limit


def _weight_matrix(weights: np.ndarray, title: str, classes: Sequence[str] = ()) -> Figure:
    """A first layer over plain features: its weight matrix as a heat map."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    limit = np.abs(weights).max() or 1.0
    shown = ax.imshow(weights, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set(xlabel="input feature", ylabel="class" if classes else "unit",
           title=f"{title}\nfirst-layer weights")
    ax.set_xticks(range(weights.shape[1]) if weights.shape[1] <= 20 else [])  # feature indices
    if classes:
        ax.set_yticks(range(len(classes)), labels=list(classes))
    else:
        ax.yaxis.get_major_locator().set_params(integer=True)
    fig.colorbar(shown, ax=ax, label="weight")
    return fig


def confusion(matrix: np.ndarray, classes: Sequence[str], title: str) -> Figure:
    """The validation set's confusion matrix (counts; scikit-learn's display)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    size = 4 + 0.35 * len(classes)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.subplots()
    ConfusionMatrixDisplay(matrix, display_labels=list(classes)).plot(
        ax=ax, cmap="Blues", colorbar=True, include_values=len(classes) <= 20,
        xticks_rotation="vertical" if len(classes) > 10
        else 45 if max(map(len, classes), default=0) > 3 else "horizontal")  # names apart
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"{title}\nvalidation confusion matrix (counts; accuracy {100 * accuracy:.1f}%)")
    ax.title.set_fontsize(9)
    return fig


def model_summary(model: nn.Module, input_shape: Sequence[int]) -> str:
    """The network's layers with their output shapes and parameter counts, as text."""
    import copy

    import torch

    model = copy.deepcopy(model).cpu().eval()  # the trained one stays where and as it is
    rows, shape = [], torch.zeros(1, *input_shape)
    with torch.no_grad():
        for name, layer in model.named_children():
            shape = layer(shape)
            params = sum(p.numel() for p in layer.parameters())
            rows.append(f"{name:>4}  {type(layer).__name__:<14} {list(shape.shape[1:])!s:<16} "
                        f"{params:>10,}")
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return "\n".join([f"input {list(input_shape)}",
                      f"{'':>4}  {'layer':<14} {'output shape':<16} {'parameters':>10}", *rows,
                      f"total trainable parameters: {total:,}", "", str(model), ""])


def xor_views(seen: Sequence[tuple[int, np.ndarray, np.ndarray]], axis: np.ndarray,
              points: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """XOR at a few epochs (report 002): the boundary over the input plane (top) and the
    four points as the first hidden layer maps them (bottom: its first two units)."""
    fig = Figure(figsize=(3.6 * len(seen) + 1, 6.8), layout="constrained")
    axes = fig.subplots(2, len(seen), squeeze=False)
    colours = np.where(labels == 1, "tab:red", "tab:blue")
    shown = None
    for column, (epoch, chance, hidden) in enumerate(seen):
        top, bottom = axes[0, column], axes[1, column]
        shown = top.contourf(axis, axis, chance, levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                             vmin=0, vmax=1)
        top.contour(axis, axis, chance, levels=[0.5], colors="k", linewidths=1.5)
        top.scatter(points[:, 0], points[:, 1], c=colours, edgecolors="k", s=70, zorder=3)
        top.set(xlabel="input x1", ylabel="input x2" if column == 0 else "",
                title=f"epoch {epoch}: boundary (P = 0.5)", aspect="equal")
        units = hidden[:, :2] if hidden.shape[1] >= 2 else np.c_[hidden, np.zeros(len(hidden))]
        for (u, v), label, point in zip(units, labels, points, strict=True):
            bottom.scatter(u, v, c="tab:red" if label == 1 else "tab:blue", edgecolors="k",
                           s=70)
            bottom.annotate(f"({point[0]:.0f},{point[1]:.0f})", (u, v), fontsize=8,
                            xytext=(4, 4), textcoords="offset points")
        bottom.set(xlabel="hidden unit 1", ylabel="hidden unit 2" if column == 0 else "",
                   title=f"epoch {epoch}: the points in the hidden layer")
        bottom.grid(alpha=0.3)
        bottom.margins(0.25)
    handles = [axes[1, 0].scatter([], [], c=c, edgecolors="k", label=f"class {k}")
               for k, c in ((0, "tab:blue"), (1, "tab:red"))]
    axes[1, -1].legend(handles=handles, fontsize=8, loc="best")
    fig.colorbar(shown, ax=axes[0, :].tolist(), label="P(class 1)", shrink=0.9)
    fig.suptitle(title, fontsize=10)
    return fig


def function_fit(x: np.ndarray, target: np.ndarray, seen: Sequence[tuple[int, np.ndarray]],
                 train: tuple[np.ndarray, np.ndarray], title: str) -> Figure:
    """A 1-D regression at a few epochs (report 003): prediction against the target."""
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(train[0][:, 0], train[1][:, 0], s=4, c="0.75", label="training points")
    ax.plot(x[:, 0], target[:, 0], "k-", linewidth=2, label="target")
    for epoch, prediction in seen:
        ax.plot(x[:, 0], prediction[:, 0], "-", label=f"prediction after epoch {epoch}")
    ax.set(xlabel="input x", ylabel="output y", title=f"{title}\nprediction against target")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def weight_paths(panels: Sequence[tuple[str, np.ndarray, tuple[float, float]]],
                 epochs: np.ndarray, title: str) -> Figure:
    """The weights' path over training (report 003, Fig 2.1.4/2.1.5), one panel per set of
    weights: each snapshot projected on the first two principal components of all of them,
    coloured by epoch (0 = the initial weights), start and end marked."""
    fig = Figure(figsize=(5.2 * len(panels) + 0.8, 4.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    shown = None
    for ax, (name, path, explained) in zip(axes, panels, strict=True):
        ax.plot(path[:, 0], path[:, 1], "-", color="0.6", linewidth=0.8, zorder=1)
        shown = ax.scatter(path[:, 0], path[:, 1], c=epochs, cmap="viridis", s=14, zorder=2,
                           vmin=0, vmax=max(float(epochs[-1]), 1e-9))
        ax.plot(*path[0], "k^", markersize=9, label="initial weights", zorder=3)
        ax.plot(*path[-1], "r*", markersize=13, label="final weights", zorder=3)
        ax.set(xlabel=f"PC 1 ({100 * explained[0]:.0f}% of the variance)",
               ylabel=f"PC 2 ({100 * explained[1]:.0f}% of the variance)", title=name)
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.colorbar(shown, ax=axes.tolist(), label="epoch", shrink=0.9)
    fig.suptitle(f"{title}\nweight trajectory: principal components of the weights over training",
                 fontsize=9)
    return fig
