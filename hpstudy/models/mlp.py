"""Fully connected networks: `linear` (softmax regression) and `mlp` (hidden layers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hpstudy.spec.tables import require

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class LinearOptions:
    """[model] keys of `linear`: none."""


def linear(input_shape: Sequence[int], outputs: int, width: int, depth: int, dropout: float,
           options: LinearOptions) -> nn.Sequential:
    """Flatten, then one linear layer: softmax regression with cross-entropy (report 000)."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), outputs))


@dataclass(frozen=True)
class MLPOptions:
    """[model] keys of `mlp`."""

    activation: Literal["relu", "tanh"] = "relu"  # after every hidden layer
    param_budget: int | None = None  # if set: the width is derived so parameters ~ this budget

    def __post_init__(self) -> None:
        if self.param_budget is not None:
            require(self.param_budget >= 1, "param_budget", "an integer >= 1 (parameters)",
                    self.param_budget)


def mlp_parameters(n_in: int, outputs: int, width: int, depth: int) -> int:
    """Parameters (weights and biases) of an MLP with `depth` hidden layers of `width` units."""
    if depth == 0:
        return (n_in + 1) * outputs
    return (n_in + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * outputs


def budget_width(n_in: int, outputs: int, depth: int, budget: int) -> int:
    """The width whose parameter count is closest to `budget` (ties go to the narrower)."""
    narrowest = mlp_parameters(n_in, outputs, 1, depth)
    if narrowest > budget:
        raise ValueError(f"param_budget {budget} is below the {narrowest} parameters of {depth} "
                         "hidden layers of width 1; lower the depth or raise the budget")
    low, high = 1, budget  # parameters grow with width: bisect for the last width within budget
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if mlp_parameters(n_in, outputs, middle, depth) <= budget \
            else (low, middle - 1)
    below, above = (mlp_parameters(n_in, outputs, w, depth) for w in (low, low + 1))
    return low if budget - below <= above - budget else low + 1


def mlp(input_shape: Sequence[int], outputs: int, width: int, depth: int, dropout: float,
        options: MLPOptions) -> nn.Sequential:
    """Flatten, `depth` hidden layers of `width` units, then a linear output layer."""
    from torch import nn

    from hpstudy.models.layers import hidden

    n_in = math.prod(input_shape)
    if options.param_budget is not None and depth > 0:
        width = budget_width(n_in, outputs, depth, options.param_budget)
    layers, n_in = hidden(n_in, width, depth, dropout, options.activation)
    return nn.Sequential(nn.Flatten(), *layers, nn.Linear(n_in, outputs))


def mlp_derives(options: MLPOptions) -> dict[str, str]:
    """What `mlp`'s options set instead of the search: the width, under a parameter budget."""
    if options.param_budget is None:
        return {}
    return {"width": f"model.param_budget = {options.param_budget} sets the width for each depth"}
