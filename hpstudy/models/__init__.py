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

import contextlib
import dataclasses
import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hpstudy.errors import ConfigError
from hpstudy.models.bn_cnn import BNCNNOptions, bn_cnn
from hpstudy.models.cnn import CNNOptions, cnn
from hpstudy.models.lenet5 import LeNet5Options, lenet5
from hpstudy.models.mlp import LinearOptions, MLPOptions, linear, mlp, mlp_derives
from hpstudy.spec import user_code
from hpstudy.spec.space import PARAMS

if TYPE_CHECKING:
    from torch import nn

    from hpstudy.models.layers import Normalize

__all__ = [
    "MODELS",
    "SHAPE_KEYS",
    "Architecture",
    "BNCNNOptions",
    "CNNOptions",
    "DataShape",
    "DataSpec",
    "LeNet5Options",
    "LinearOptions",
    "MLPOptions",
    "ModelSpec",
    "Normalize",
    "architecture",
    "build_model",
    "count_parameters",
    "first_layer",
]

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
    source: str = ""  # the import path of a user's network ("" for the built-in ones)
    idle_at_depth_0: frozenset[str] = frozenset()  # shape keys that mean nothing at depth 0

    def option_keys(self) -> tuple[str, ...]:
        """The [model] keys beside `architecture`, in the order its options declare them."""
        return tuple(f.name for f in dataclasses.fields(self.options) if f.init)

    def meaningful(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's `params` without those this architecture ignores at their depth (e.g.
        an MLP's width at depth 0): what figures and tables show."""
        idle = self.idle_at_depth_0 if params.get("depth") == 0 else frozenset()
        return {k: v for k, v in params.items() if k not in idle}

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
                        "hidden layers (0 gives softmax regression)", mlp_derives,
                        idle_at_depth_0=frozenset({"width", "dropout"})),
    "cnn": Architecture(cnn, CNNOptions, frozenset({"width", "depth", "dropout"}),
                        "channels of the first conv block; each further block doubles them",
                        "conv blocks (conv, ReLU, 2x2 max pool) before the FC layers",
                        idle_at_depth_0=frozenset({"width"})),
    "linear": Architecture(linear, LinearOptions, frozenset(),
                           "not used: one linear layer from the pixels to the classes",
                           "not used (softmax regression has no hidden layer)"),
    "bn_cnn": Architecture(bn_cnn, BNCNNOptions, frozenset({"width", "depth", "dropout"}),
                           "channels of the first two conv blocks; they double every two blocks",
                           "conv blocks (conv, batch norm, ReLU, 2x2 average pool) before "
                           "one batch-normalised FC layer", idle_at_depth_0=frozenset({"width"})),
    "lenet5": Architecture(lenet5, LeNet5Options, frozenset({"width", "dropout"}),
                           "channels of the first conv (6 is LeNet-5); the second conv has "
                           "16/6 of it, the FC layers 20x and 14x it",
                           "not used: always 2 conv blocks and 3 FC layers"),
}


def architecture(name: str) -> Architecture:
    """The architecture `name`: a built-in one, or a user's network by import path."""
    if name in MODELS:
        return MODELS[name]
    if user_code.is_import_path(name):
        return _user_architecture(name)
    raise KeyError(name)


@functools.cache
def _user_architecture(path: str) -> Architecture:
    """A user's network as an Architecture: its signature gives the [model] keys."""
    key = "model.architecture"
    target = user_code.resolve(path, key)
    options = user_code.options_class(target, path, "model", user_code.CONTEXT + SHAPE_KEYS)
    takes = inspect.signature(target).parameters
    uses = frozenset(k for k in SHAPE_KEYS if k in takes)

    def build(input_shape: tuple[int, ...], outputs: int, width: int, depth: int,
              dropout: float, chosen: Any) -> list[nn.Module]:
        from torch import nn

        values = {"input_shape": tuple(input_shape), "num_outputs": outputs, "width": width,
                  "depth": depth, "dropout": dropout} | dataclasses.asdict(chosen)
        network = user_code.call(target, values, path, key)
        if not isinstance(network, nn.Module):
            raise ConfigError(key, "a callable that returns an nn.Module",
                              f"{path} returning {type(network).__name__}",
                              "Return the network (an nn.Module) from it.")
        return [network]

    own = "your network's `{}` parameter (searched like the built-in architectures')"
    return Architecture(build, options, uses,
                        own.format("width") if "width" in uses else "not used",
                        own.format("depth") if "depth" in uses else "not used", source=path)


def build_model(model: ModelSpec, data: DataSpec,
                params: Mapping[str, Any] | None = None) -> nn.Sequential:
    """The network `model` behind a `Normalize` layer, shaped for `data`, set by `params`.

    `params` are a trial's values (width, depth, dropout and any searched [model] key,
    which replaces the study's); what it leaves out takes its default.
    """
    from torch import nn

    from hpstudy.models.layers import Normalize

    arch, params = architecture(model.architecture), params or {}
    options = dataclasses.replace(model.options, **{k: params[k] for k in arch.option_keys()
                                                    if k in params})
    width, depth, dropout = (params.get(k, PARAMS[k].default) for k in SHAPE_KEYS)
    body = arch.build(data.input_shape, data.num_outputs, width, depth, dropout, options)
    return nn.Sequential(Normalize(data.mean, data.std, data.input_shape), *body)


def export(network: nn.Module, example: Any) -> Any:
    """`network` (on the CPU, in eval mode) as a `torch.export` program for batches of any size
    like `example` (a numpy batch of training-format inputs): what a logged model serves."""
    import torch

    batch = torch.export.Dim("batch", min=1)
    return torch.export.export(network, (torch.from_numpy(example),), dynamic_shapes=({0: batch},))


def check_network(model: ModelSpec, data: Any, params: Mapping[str, Any]) -> None:
    """A ConfigError unless a user's network, built with `params`, maps two training inputs
    to `num_outputs` values each and exports (`torch.export`), as the champion must."""
    import torch

    key, path = "model.architecture", model.architecture
    with torch.random.fork_rng():
        network = build_model(model, data, params).eval()
    sample = data.train.x[:2]
    try:
        with torch.no_grad():
            out = network(sample)
    except Exception as error:
        raise ConfigError(key, f"a network that takes a batch of inputs shaped "
                          f"{tuple(sample.shape)}", path, "Its forward pass raised "
                          f"{user_code.one_line(error)}.") from None
    want = (len(sample), data.num_outputs)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        given = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(key, f"outputs shaped {want} for a batch of {len(sample)} "
                          f"({data.num_outputs} = num_outputs)", f"{path} giving {given}",
                          "Make its last layer produce num_outputs values.")
    try:
        with _stderr_discarded():  # a failing export prints its graph: the message says enough
            export(network, sample.numpy())
    except Exception as error:
        raise ConfigError(key, "a network torch.export can export (the champion is served "
                          "without your code)", path, f"Exporting it raised "
                          f"{user_code.one_line(error)} Avoid data-dependent Python control "
                          "flow in forward().") from None


@contextlib.contextmanager
def _stderr_discarded() -> Iterator[None]:
    """Inside: whatever is written to this process's stderr (Python or C++) is dropped."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            with contextlib.redirect_stderr(devnull):
                yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


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
