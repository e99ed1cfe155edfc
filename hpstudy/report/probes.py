"""Task pictures that need the network during training: what the seed reports drew by hand.

`xor` (report 002): the decision boundary over the input plane and the four points as the
hidden layer sees them, at a few epochs. `functions` (report 003): the prediction against
the target function, at a few epochs. A probe looks at the network after the epochs it
chose (evaluation mode, no gradient) and keeps plain arrays; the figures are drawn later,
by the writer, from those arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hpstudy.data import Dataset
from hpstudy.report import trial_figures as plots

XOR_PNG, FIT_PNG = "xor.png", "function_fit.png"
GRID = 81  # points per side of the xor input plane
CURVE = 400  # points along x of the function plot


def snapshot_epochs(epochs: int, first: bool) -> list[int]:
    """A few epochs to look at: a quarter, half and all of training (and the first)."""
    chosen = {max(1, epochs // 4), max(1, epochs // 2), epochs} | ({1} if first else set())
    return sorted(chosen)


class Probe:
    """No task picture: the default for every dataset without one."""

    def observe(self, model: nn.Module, epoch: int) -> None:
        """Look at the network after `epoch` (a probe keeps only what it needs)."""

    def figures(self, title: str) -> tuple[tuple[str, Any, tuple], ...]:
        """(file, draw, args) for the writer."""
        return ()


class XorProbe(Probe):
    """The boundary over [-0.5, 1.5]^2 and the first hidden layer's image of the four points."""

    def __init__(self, data: Dataset, epochs: int):
        self.points, self.labels = data.val.x, data.val.y
        axis = torch.linspace(-0.5, 1.5, GRID)
        self.axis = axis.numpy()
        self.plane = torch.cartesian_prod(axis, axis)[:, [1, 0]]  # row-major: y, then x
        self.epochs = snapshot_epochs(epochs, first=True)
        self.seen: list[tuple[int, np.ndarray, np.ndarray]] = []

    def observe(self, model: nn.Module, epoch: int) -> None:
        if epoch not in self.epochs:
            return
        with _evaluating(model) as device:
            chance = model(self.plane.to(device)).softmax(1)[:, 1].reshape(GRID, GRID)
            hidden = _first_hidden(model, self.points.to(device))
        self.seen.append((epoch, chance.cpu().numpy(), hidden.cpu().numpy()))

    def figures(self, title: str) -> tuple[tuple[str, Any, tuple], ...]:
        if not self.seen:
            return ()
        return ((XOR_PNG, plots.xor_views, (self.seen, self.axis, self.points.cpu().numpy(),
                                            self.labels.cpu().numpy(), title)),)


class FunctionProbe(Probe):
    """The prediction over the input range against the target and the training points."""

    def __init__(self, data: Dataset, epochs: int, target: Any):
        x = data.train.x.cpu()
        self.x = torch.linspace(float(x.min()), float(x.max()), CURVE).unsqueeze(1)
        self.target = target(self.x).numpy()
        self.train = (x.numpy(), data.train.y.cpu().numpy())
        self.epochs = snapshot_epochs(epochs, first=False)
        self.seen: list[tuple[int, np.ndarray]] = []

    def observe(self, model: nn.Module, epoch: int) -> None:
        if epoch in self.epochs:
            with _evaluating(model) as device:
                self.seen.append((epoch, model(self.x.to(device)).cpu().numpy()))

    def figures(self, title: str) -> tuple[tuple[str, Any, tuple], ...]:
        if not self.seen:
            return ()
        return ((FIT_PNG, plots.function_fit, (self.x.numpy(), self.target, self.seen,
                                               self.train, title)),)


def probe_for(dataset: str, options: Any, data: Dataset, epochs: int) -> Probe:
    """The probe of a study's dataset (a do-nothing one for most)."""
    if dataset == "xor":
        return XorProbe(data, epochs)
    if dataset == "functions":
        from hpstudy.data.functions import FUNCTIONS

        return FunctionProbe(data, epochs, FUNCTIONS[options.function])
    return Probe()


class _evaluating:
    """Evaluation mode and no gradient while probing; training mode restored after."""

    def __init__(self, model: nn.Module):
        self.model, self.grad = model, torch.no_grad()

    def __enter__(self) -> torch.device:
        self.training = self.model.training
        self.model.eval()
        self.grad.__enter__()
        return next(self.model.parameters()).device

    def __exit__(self, *exc: object) -> None:
        self.grad.__exit__(*exc)
        self.model.train(self.training)


def _first_hidden(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of the first activation after the first linear layer (the hidden image)."""
    seen_linear = False
    for layer in model.children():
        x = layer(x)
        seen_linear |= isinstance(layer, nn.Linear)
        if seen_linear and not isinstance(layer, nn.Linear | nn.Flatten | nn.Dropout):
            return x
    return x  # no hidden layer: the output itself
