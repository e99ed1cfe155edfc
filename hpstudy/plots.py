"""Figures logged with every trial: learning curves and the first layer's weights."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global figure state, no display needed

from hpstudy.record import EpochMetrics

if TYPE_CHECKING:  # the figure writer draws from arrays: it needs no torch
    from torch import nn

MAX_TILES = 64  # units or filters shown in the weights figure


def curves(history: Sequence[EpochMetrics], title: str) -> Figure:
    """Loss and accuracy against epoch, train and validation, side by side."""
    epochs = [m.epoch for m in history]
    has_acc = not all(math.isnan(m.val_acc) for m in history)
    fig = Figure(figsize=(10 if has_acc else 5.5, 4), layout="constrained")
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)
    loss_ax = axes[0, 0]
    loss_ax.plot(epochs, [m.train_loss for m in history], "o-", label="train")
    loss_ax.plot(epochs, [m.val_loss for m in history], "s-", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss (cross-entropy)" if has_acc else "loss (MSE)",
                title="Loss")
    if all(m.train_loss > 0 and m.val_loss > 0 for m in history):
        loss_ax.set_yscale("log")
    if has_acc:
        acc_ax = axes[0, 1]
        acc_ax.plot(epochs, [100 * m.train_acc for m in history], "o-", label="train")
        acc_ax.plot(epochs, [100 * m.val_acc for m in history], "s-", label="validation")
        acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    return fig


def first_layer_weights(model: nn.Module, input_shape: Sequence[int], title: str) -> Figure:
    """The first layer's weights as images: conv filters, or each unit's weights over the input."""
    return layer_weights(*first_layer_array(model), input_shape, title)


def first_layer_array(model: nn.Module) -> tuple[np.ndarray, bool]:
    """The first layer's weights as an array, and whether they are conv filters."""
    from torch import nn

    from hpstudy.models import first_layer

    layer = first_layer(model)
    return layer.weight.detach().cpu().float().numpy(), isinstance(layer, nn.Conv2d)


def layer_weights(weights: np.ndarray, conv: bool, input_shape: Sequence[int],
                  title: str) -> Figure:
    """`first_layer_weights` from the weights alone (what the background writer is sent)."""
    if conv:
        what, tiles = f"{weights.shape[2]}x{weights.shape[3]} conv filters", weights
    elif len(input_shape) == 3:  # an MLP on images: each unit's weights over the input pixels
        what, tiles = "unit weights over the input", weights.reshape(-1, *input_shape)
    else:
        return _weight_matrix(weights, title)
    tiles = tiles[:MAX_TILES]
    rgb = tiles.shape[1] == 3
    grid, cols = _mosaic(tiles, rgb)
    fig = Figure(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.7), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, cmap=None if rgb else "RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    colours = "colours min-max scaled per filter" if rgb else "red positive, blue negative"
    ax.set_title(f"{title}: first-layer {what}\n{len(tiles)} of {len(weights)}, {cols} a row; "
                 f"{colours}", fontsize=9)
    return fig


def _mosaic(tiles: np.ndarray, rgb: bool) -> tuple[np.ndarray, int]:
    """Filters [N, C, H, W] in one image, a gap between tiles; each tile scaled on its own."""
    n, _, h, w = tiles.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    depth = (3,) if rgb else ()
    grid = np.full(((h + 1) * rows - 1, (w + 1) * cols - 1, *depth), np.nan)
    for i, tile in enumerate(tiles):
        if rgb:  # to [0, 1] per tile
            image = tile.transpose(1, 2, 0)
            span = image.max() - image.min()
            image = (image - image.min()) / span if span > 0 else np.zeros_like(image)
        else:  # first channel to [-1, 1] per tile, keeping 0 at the centre of the colour map
            image = tile[0] / (np.abs(tile[0]).max() or 1.0)
        r, c = divmod(i, cols)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = image
    return (np.nan_to_num(grid, nan=1.0) if rgb else grid), cols


def _weight_matrix(weights: np.ndarray, title: str) -> Figure:
    """A first layer over plain features: its weight matrix as a heat map."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    limit = np.abs(weights).max() or 1.0
    shown = ax.imshow(weights, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set(xlabel="input feature", ylabel="unit", title=f"{title}\nfirst-layer weights")
    ax.set_xticks(range(weights.shape[1]) if weights.shape[1] <= 20 else [])  # feature indices
    ax.yaxis.get_major_locator().set_params(integer=True)
    fig.colorbar(shown, ax=ax, label="weight")
    return fig
