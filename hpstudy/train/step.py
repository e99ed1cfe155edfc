"""How a training step runs on its device: bf16 autocast, channels_last, torch.compile, CUDA graph.

The [train] keys `precision`, `channels_last`, `compile` and `cuda_graph` (which go
together is checked when the study file is read: `spec.step_keys`) are resolved here for
one device and one network into a `Speed`, and a `Step` runs the optimizer steps so. Like
the loop, this module knows nothing of Optuna or MLflow.

- bf16: the forward pass under `torch.autocast` (CUDA, or the CPU's own bf16 autocast); the
  weights, their gradients and the optimizer's state stay fp32, and the loss is computed
  from the outputs cast back to fp32.
- channels_last: the network's weights and each batch in NHWC order, which cuDNN's
  convolutions prefer; only for a network with 2-D convolutions on 4-D inputs.
- compile: `torch.compile(network, dynamic=False)` trains; evaluation runs the same
  weights eagerly (its batch sizes differ, and each new shape would compile again). A
  later trial of the same network shape in the process reuses the compiled code
  (measured: docs/performance.md), so there is nothing to cache here.
- cuda_graph: the whole step (forward, loss, backward, optimizer update) captured once as a
  CUDA graph and replayed for every batch: one launch a step instead of hundreds.
With compile or cuda_graph every batch must have one shape: the loop drops the last
partial batch of each epoch (`Speed.static`; a new order every epoch, so every example
is still trained on) rather than padding it, which would weigh the padding in the loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hpstudy.errors import ConfigError

GRAPH_WARMUP = 3  # eager steps on a side stream before capture (CUDA's advice), then undone


@dataclass(frozen=True)
class Speed:
    """The step keys resolved for one device and one network: what the step does."""

    bf16: bool  # the forward pass under bf16 autocast
    channels_last: bool  # weights and batches in NHWC memory order
    compile: bool  # the network trains through torch.compile
    cuda_graph: bool  # the whole step is one captured CUDA graph

    @property
    def static(self) -> bool:
        """Whether every training batch must have one shape (the last partial one is dropped)."""
        return self.compile or self.cuda_graph


def check_device(train: Any, device: torch.device) -> None:
    """A ConfigError unless `device` can run the step keys of `train` (a TrainConfig or Recipe).

    cuda_graph on the CPU is refused rather than ignored: a study that asks for it is
    measured as if captured, and a silent eager step would report the wrong speed.
    """
    if train.cuda_graph and device.type != "cuda":
        raise ConfigError("train.cuda_graph", "false on the CPU (CUDA graphs need a CUDA "
                          f"device; this run trains on {device})", True,
                          "Set train.cuda_graph = false (--set train.cuda_graph=false), or "
                          "train on a GPU.")
    if train.precision == "bf16" and device.type == "cuda" and not _cuda_bf16(device):
        raise ConfigError("train.precision", f"'fp32' or 'auto' on {device} (it has no bf16)",
                          "'bf16'", "Set train.precision = 'auto'.")
    if train.compile and not torch._dynamo.is_dynamo_supported():  # torch's own test
        raise ConfigError("train.compile", "false here (torch.compile does not support this "
                          f"Python or platform, torch {torch.__version__})", True,
                          "Set train.compile = false.")


def _cuda_bf16(device: torch.device) -> bool:
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported()


def resolve(train: Any, model: nn.Module, device: torch.device, input_dims: int) -> Speed:
    """What the step keys of `train` (a Recipe) mean for `model` on `device`, whose inputs
    have `input_dims` dimensions with the batch's; 'auto' picks the fastest that is safe."""
    check_device(train, device)
    cuda = device.type == "cuda"
    bf16 = uses_bf16(train.precision, device)
    convolves = input_dims == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules())
    channels_last = convolves and (train.channels_last is True or (
        train.channels_last == "auto" and cuda))
    return Speed(bf16, channels_last, train.compile, train.cuda_graph)


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether `precision` ('auto', 'fp32' or 'bf16') means bf16 autocast on `device`."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda"
                                   and _cuda_bf16(device))


def loss_and_hits(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and correct predictions of a batch (cross-entropy, or MSE for float targets)."""
    if y.is_floating_point():
        return F.mse_loss(out, y, reduction="sum") / y.shape[1], torch.zeros((), device=y.device)
    return F.cross_entropy(out, y, reduction="sum"), (out.argmax(1) == y).sum()


def grad_norm(model: nn.Module) -> torch.Tensor:
    """L2 norm of the whole gradient of `model`, on its device."""
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters()
                                          if p.grad is not None])


class Step:
    """Optimizer steps of `model` as `speed` says; `forward` runs the network the same way."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, speed: Speed):
        self.model, self.optimizer, self.speed = model, optimizer, speed
        if speed.channels_last:
            model.to(memory_format=torch.channels_last)
        self.network: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(model, dynamic=False) if speed.compile else model)
        self.warmup_seconds = 0.0  # compiling or capturing: paid by the first step alone
        self._compiling = speed.compile  # the first step compiles
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[torch.Tensor, ...] = ()  # the graph's input and output buffers

    def forward(self, x: torch.Tensor, network: Callable | None = None) -> torch.Tensor:
        """Outputs (fp32) of `network` (the eager model by default) for a batch `x`."""
        if self.speed.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, torch.bfloat16, enabled=self.speed.bf16,
                            cache_enabled=not self.speed.cuda_graph):  # no cache in a graph
            out = (network or self.model)(x)
        return out.float()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, measure: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One step on the batch (x, y): its summed loss, its correct predictions and, if
        `measure`, the gradient's norm (before the update; None otherwise)."""
        if self.speed.cuda_graph:
            return self._replay(x, y, measure)
        if self._compiling:
            return self._compile(x, y, measure)
        return self._eager(x, y, measure)

    def _compile(self, x: torch.Tensor, y: torch.Tensor, measure: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The first compiled step, timed; a failure to compile names the key."""
        started = time.perf_counter()
        try:
            result = self._eager(x, y, measure)
        except Exception as error:  # dynamo's and inductor's errors share no base class
            raise ConfigError("train.compile", "a network torch.compile can compile here",
                              f"true, which failed: {type(error).__name__}: "
                              f"{_first_line(error)}", "Set train.compile = false.") from error
        sync(x.device)
        self.warmup_seconds, self._compiling = time.perf_counter() - started, False
        return result

    def _eager(self, x: torch.Tensor, y: torch.Tensor, measure: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        loss, hits = loss_and_hits(self.forward(x, self.network), y)
        self.optimizer.zero_grad(set_to_none=True)
        (loss / len(y)).backward()
        norm = grad_norm(self.model) if measure else None  # a norm every step: a fifth more
        self.optimizer.step()
        return loss.detach(), hits, norm

    def _replay(self, x: torch.Tensor, y: torch.Tensor, measure: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if self._graph is None:
            self._capture(x, y)
        static_x, static_y, loss, hits = self._static
        static_x.copy_(x)
        static_y.copy_(y)
        self._graph.replay()
        # the update leaves the gradient alone: its norm after replay is the one before it
        return loss.clone(), hits.clone(), grad_norm(self.model) if measure else None

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Capture the whole step on buffers shaped as (x, y), after GRAPH_WARMUP eager steps
        on a side stream whose effect on the weights, buffers and optimizer is undone."""
        started = time.perf_counter()
        saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        static_x, static_y = x.clone(), y.clone()
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP):
                self._eager(static_x, static_y, False)
        torch.cuda.current_stream(x.device).wait_stream(side)
        self.optimizer.zero_grad(set_to_none=True)  # the graph allocates its own gradients
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss, hits, _ = self._eager(static_x, static_y, False)
        with torch.no_grad():  # as if the warm-up had not run: a fresh optimizer is all zeros
            for name, value in self.model.state_dict().items():
                value.copy_(saved[name])
            for state in self.optimizer.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()
        self._graph, self._static = graph, (static_x, static_y, loss, hits)
        sync(x.device)
        self.warmup_seconds = time.perf_counter() - started


def steps_per_epoch(examples: int, batch_size: int, speed: Speed) -> int:
    """Optimizer steps in an epoch of `examples`: a compiled or captured step trains whole
    batches only (`Speed.static`), so it drops the last partial one."""
    if not speed.static:
        return math.ceil(examples / batch_size)
    if examples < batch_size:
        key = "train.cuda_graph" if speed.cuda_graph else "train.compile"
        raise ConfigError(key, f"false with batch_size {batch_size} above the {examples} "
                          "training examples (a compiled or captured step trains whole "
                          "batches only)", True, f"Set {key} = false, or a smaller batch_size.")
    return examples // batch_size


def capturable(speed: Speed) -> dict[str, bool]:
    """Keyword arguments Adam and RMSprop need for their update to be captured in a graph."""
    return {"capturable": True} if speed.cuda_graph else {}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def sync(device: torch.device) -> None:
    """Wait for `device`'s queued work (CUDA); nothing on the CPU, which runs it at once."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
