"""Architectures, each built from `width` and `depth`; `MODELS` is where their meaning lives.

Every model starts with `Normalize`, so it takes inputs as the dataset stores them
(uint8 images, or float features) and a logged model needs no preprocessing outside it.

What `width` and `depth` mean for each architecture is declared once, in `MODELS` below
(`hpstudy list` prints it). The registry imports no torch: `hpstudy list` and study-file
checks read it, and torch is imported only when a model is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpstudy.models.bn_cnn import BNCNNOptions, bn_cnn
from hpstudy.models.cnn import CNNOptions, cnn
from hpstudy.models.lenet5 import LeNet5Options, lenet5
from hpstudy.models.mlp import LinearOptions, MLPOptions, linear, mlp, mlp_derives

if TYPE_CHECKING:
    from torch import nn

    from hpstudy.models.layers import Normalize

__all__ = ["MODELS", "Architecture", "BNCNNOptions", "CNNOptions", "LeNet5Options",
           "LinearOptions", "MLPOptions", "Normalize", "build_model", "count_parameters",
           "first_layer"]


def _derives_nothing(options: Any) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Architecture:
    """An architecture as the registry knows it."""

    build: Callable[..., nn.Module]  # (input_shape, outputs, width, depth, dropout, options)
    options: type  # dataclass of the [model] keys beside `architecture`
    uses: frozenset[str]  # which of width, depth and dropout mean something here
    width: str  # what width means
    depth: str  # what depth means
    # which of width, depth, dropout the options set instead (so they must not be searched)
    derives: Callable[[Any], dict[str, str]] = field(default=_derives_nothing)


MODELS: dict[str, Architecture] = {
    "mlp": Architecture(mlp, MLPOptions, frozenset({"width", "depth", "dropout"}),
                        "hidden units in every hidden layer (derived from model.param_budget "
                        "when that is set)",
                        "hidden layers (0 gives softmax regression)", mlp_derives),
    "cnn": Architecture(cnn, CNNOptions, frozenset({"width", "depth", "dropout"}),
                        "channels of the first conv block; each further block doubles them",
                        "conv blocks (conv, ReLU, 2x2 max pool) before the FC layers"),
    "linear": Architecture(linear, LinearOptions, frozenset(),
                           "not used: one linear layer from the pixels to the classes",
                           "not used (softmax regression has no hidden layer)"),
    "bn_cnn": Architecture(bn_cnn, BNCNNOptions, frozenset({"width", "depth", "dropout"}),
                           "channels of the first two conv blocks; they double every two blocks",
                           "conv blocks (conv, batch norm, ReLU, 2x2 average pool) before "
                           "one batch-normalised FC layer"),
    "lenet5": Architecture(lenet5, LeNet5Options, frozenset({"width", "dropout"}),
                           "channels of the first conv (6 is LeNet-5); the second conv has "
                           "16/6 of it, the FC layers 20x and 14x it",
                           "not used: always 2 conv blocks and 3 FC layers"),
}


def build_model(architecture: str, options: object, input_shape: Sequence[int], outputs: int,
                mean: Sequence[float], std: Sequence[float], width: int, depth: int,
                dropout: float = 0.0) -> nn.Sequential:
    """The network `architecture` behind a `Normalize` layer for the dataset's statistics."""
    from torch import nn

    from hpstudy.models.layers import Normalize

    body = MODELS[architecture].build(input_shape, outputs, width, depth, dropout, options)
    return nn.Sequential(Normalize(mean, std, input_shape), *body)


def first_layer(model: nn.Module) -> nn.Linear | nn.Conv2d:
    """The first layer with weights (what the filter plot shows)."""
    from torch import nn

    return next(m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def __getattr__(name: str) -> Any:
    """`Normalize`, a torch module, is imported when first asked for (PEP 562), not with MODELS."""
    if name == "Normalize":
        from hpstudy.models.layers import Normalize

        return Normalize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
