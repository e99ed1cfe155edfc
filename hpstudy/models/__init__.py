"""Architectures, each built from `width` and `depth`; `MODELS` is where their meaning lives.

An architecture takes the [model] keys of its options dataclass and those of width,
depth and dropout it `uses`; all of them may be searched (`Architecture.takes`).

Every model starts with `Normalize`, so it takes inputs as the dataset stores them
(uint8 images, or float features) and a logged model needs no preprocessing outside it.

What `width` and `depth` mean for each architecture is declared once, in `MODELS` below
(`hpstudy list` prints it). The registry imports no torch: `hpstudy list` and study-file
checks read it, and torch is imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hpstudy.models.bn_cnn import BNCNNOptions, bn_cnn
from hpstudy.models.cnn import CNNOptions, cnn
from hpstudy.models.lenet5 import LeNet5Options, lenet5
from hpstudy.models.mlp import LinearOptions, MLPOptions, linear, mlp, mlp_derives
from hpstudy.space import PARAMS

if TYPE_CHECKING:
    from torch import nn

    from hpstudy.models.layers import Normalize

__all__ = ["MODELS", "SHAPE_KEYS", "Architecture", "BNCNNOptions", "CNNOptions", "DataShape",
           "DataSpec", "LeNet5Options", "LinearOptions", "MLPOptions", "ModelSpec", "Normalize",
           "build_model", "count_parameters", "first_layer"]

SHAPE_KEYS = ("width", "depth", "dropout")  # searched in [search] for every architecture using them


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

    def option_keys(self) -> tuple[str, ...]:
        """The [model] keys beside `architecture`, in the order its options declare them."""
        return tuple(f.name for f in dataclasses.fields(self.options) if f.init)

    def takes(self) -> tuple[str, ...]:
        """Every model key it takes: the shape keys it uses, then its options."""
        return tuple(k for k in SHAPE_KEYS if k in self.uses) + self.option_keys()


class ModelSpec(Protocol):
    """What build_model needs of a [model] table (a `config.ModelConfig` is one)."""

    architecture: str
    options: Any  # the architecture's options dataclass


class DataSpec(Protocol):
    """What build_model needs of the data (a `data.Dataset` is one)."""

    @property
    def input_shape(self) -> tuple[int, ...]: ...
    @property
    def num_outputs(self) -> int: ...
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class DataShape:
    """A DataSpec without data: shapes and statistics only."""

    input_shape: tuple[int, ...]  # one input, e.g. (1, 8, 8)
    num_outputs: int  # classes, or regression targets
    mean: tuple[float, ...] = (0.0,)  # per channel (or feature) of the training inputs
    std: tuple[float, ...] = (1.0,)


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


def build_model(model: ModelSpec, data: DataSpec,
                params: Mapping[str, Any] | None = None) -> nn.Sequential:
    """The network `model` behind a `Normalize` layer, shaped for `data`, set by `params`.

    `params` are a trial's values (width, depth, dropout and any searched [model] key,
    which replaces the study's); what it leaves out takes its default.
    """
    from torch import nn

    from hpstudy.models.layers import Normalize

    arch, params = MODELS[model.architecture], params or {}
    options = dataclasses.replace(model.options, **{k: params[k] for k in arch.option_keys()
                                                    if k in params})
    width, depth, dropout = (params.get(k, PARAMS[k].default) for k in SHAPE_KEYS)
    body = arch.build(data.input_shape, data.num_outputs, width, depth, dropout, options)
    return nn.Sequential(Normalize(data.mean, data.std, data.input_shape), *body)


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
