"""Vectorised trials: K trials of one fully connected network trained as one batched network.

A small network at a small batch is overhead-bound: each step launches a few tiny matrix
products, and Python and the dispatcher cost more than the arithmetic. K trials with the
same width and depth (each with its own learning rate, momentum and weight decay) share
that cost here: their weights are stacked ([K, out, in]), one batched product per layer
computes all K at once, and one SGD update moves each member with its own settings.

Every member starts from the weights and sees the batches a separate trial would (the
study's seed fixes both), so it computes what the separate trial computes, up to
floating-point rounding. Like `train.fit`, this module knows nothing of Optuna or MLflow.
Of the step keys (`train.step`) a group runs bf16 autocast (`precision`) and ignores
`channels_last` (fully connected: no convolutions); `compile` and `cuda_graph` need one
network, and are refused (`why_not`, and when the study file is read).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from hpstudy.data import Dataset, Split
from hpstudy.data.augment import augmenter
from hpstudy.models import Normalize
from hpstudy.train import interrupts
from hpstudy.train.loop import EVAL_BATCH, EpochMetrics, Recipe
from hpstudy.train.step import uses_bf16

ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Identity)  # applied to [K, B, H] as they are


def why_not(model: nn.Module, recipes: Sequence[Recipe]) -> str:
    """Why these trials cannot be trained as one batched network, or '' if they can."""
    if not isinstance(model, nn.Sequential):
        return "the network is not a plain stack of layers"
    for layer in model:
        if not isinstance(layer, (Normalize, nn.Flatten, nn.Linear, *ELEMENTWISE)) and not (
                isinstance(layer, nn.Dropout) and layer.p == 0):
            return f"it has a {type(layer).__name__} layer (only fully connected networks)"
    if any(r.optimizer != "sgd" for r in recipes):
        return "only SGD (with or without momentum) is vectorised"
    if any(r.schedule != "constant" for r in recipes):
        return "only a constant learning rate is vectorised"
    if any(r.compile or r.cuda_graph for r in recipes):
        return "a compiled or CUDA-graph step trains one network, not a group"
    shared = {(r.epochs, r.batch_size, r.seed) for r in recipes}
    return "" if len(shared) == 1 else "the trials differ in epochs, batch size or seed"


class Stack:
    """K copies of a fully connected network, weights stacked on a leading member axis."""

    def __init__(self, model: nn.Module, k: int, device: torch.device):
        self.model, self.k = model, k
        self.bf16 = False  # the forward pass under bf16 autocast (train_group sets it)
        self.layers = list(model.to(device))
        linears = [layer for layer in self.layers if isinstance(layer, nn.Linear)]
        self.params = [p.detach().unsqueeze(0).repeat(k, *[1] * p.dim()).requires_grad_()
                       for layer in linears for p in (layer.weight, layer.bias)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs [K, B, ...] of all members for one shared batch x (fp32; under bf16
        autocast if `bf16` is set)."""
        with torch.autocast(x.device.type, torch.bfloat16, enabled=self.bf16):
            return self._forward(x).float()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        params, h = iter(self.params), x
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                weight, bias = next(params), next(params)
                h = torch.baddbmm(bias.unsqueeze(1), h if h.dim() == 3 else
                                  h.expand(self.k, *h.shape), weight.transpose(1, 2))
            else:  # Normalize and Flatten on the shared input; activations per member
                h = layer(h)
        return h

    def member(self, index: int) -> nn.Module:
        """Member `index` as an ordinary network (a copy), e.g. to save or export it."""
        network = copy.deepcopy(self.model)
        linears = [layer for layer in network if isinstance(layer, nn.Linear)]
        with torch.no_grad():
            for i, layer in enumerate(linears):
                layer.weight.copy_(self.params[2 * i][index])
                layer.bias.copy_(self.params[2 * i + 1][index])
        return network


def _member_loss(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and correct predictions per member ([K] each), as `train.loss_and_hits`."""
    if y.is_floating_point():
        per = (out - y).pow(2).sum(dim=(1, 2)) / y.shape[1]
        return per, torch.zeros(out.shape[0], device=y.device)
    k, b = out.shape[:2]
    losses = F.cross_entropy(out.reshape(k * b, -1), y.repeat(k), reduction="none")
    return losses.view(k, b).sum(1), (out.argmax(2) == y).sum(1)


@torch.no_grad()
def _evaluate(stack: Stack, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy per member on `split`, as device tensors."""
    loss = torch.zeros(stack.k, device=split.y.device)
    hits = torch.zeros(stack.k, device=split.y.device)
    for start in range(0, len(split), EVAL_BATCH):
        batch_loss, batch_hits = _member_loss(stack(split.x[start:start + EVAL_BATCH]),
                                              split.y[start:start + EVAL_BATCH])
        loss, hits = loss + batch_loss, hits + batch_hits
    return loss / len(split), hits / len(split)


def _settings(recipes: Sequence[Recipe], device: torch.device) -> dict[str, torch.Tensor]:
    """Each member's learning rate, momentum and weight decay, as [K] tensors."""
    return {name: torch.tensor([getattr(r, name) for r in recipes], device=device)
            for name in ("lr", "momentum", "weight_decay")}


@torch.no_grad()
def _sgd_step(stack: Stack, buffers: list[torch.Tensor], settings: dict[str, torch.Tensor]
              ) -> None:
    """torch.optim.SGD's update (dampening 0, not Nesterov), each member with its own settings."""
    for p, buf in zip(stack.params, buffers, strict=True):
        shape = (stack.k,) + (1,) * (p.dim() - 1)
        grad = p.grad + settings["weight_decay"].view(shape) * p
        buf.mul_(settings["momentum"].view(shape)).add_(grad)  # zero at first: buf = grad
        p.sub_(settings["lr"].view(shape) * buf)
        p.grad = None


def train_group(stack: Stack, data: Dataset, recipes: Sequence[Recipe], device: torch.device,
                on_epoch: Callable[[int, EpochMetrics], bool]) -> None:
    """Train the members of `stack`, one per recipe, on data.train, validating every epoch.

    `on_epoch(member, metrics)` sees each active member's epoch and returns True to stop
    it (pruned or diverged): its trial is over, the others go on. One host
    synchronisation per epoch, as in `train.fit`.
    """
    recipe = recipes[0]  # epochs, batch size and seed are shared (see why_not)
    train, val = data.train.to(device), data.val.to(device)
    stack.bf16 = uses_bf16(recipe.precision, device)
    augment = augmenter(recipe.augment, recipe.seed, device)
    settings = _settings(recipes, device)
    buffers = [torch.zeros_like(p) for p in stack.params]
    order = torch.Generator(device=device).manual_seed(recipe.seed)
    classify = data.task == "classification"
    active = set(range(stack.k))
    for epoch in range(1, recipe.epochs + 1):
        with interrupts.immediate():  # nothing in an epoch writes: a signal stops it at once
            started = time.perf_counter()
            stack.model.train()
            loss_sum = torch.zeros(stack.k, device=device)
            hits = torch.zeros(stack.k, device=device)
            permutation = torch.randperm(len(train), device=device, generator=order)
            for batch in permutation.split(recipe.batch_size):
                x = train.x[batch] if augment is None else augment(train.x[batch])
                loss, batch_hits = _member_loss(stack(x), train.y[batch])
                (loss.sum() / len(batch)).backward()  # members are independent: each its own grad
                _sgd_step(stack, buffers, settings)
                loss_sum, hits = loss_sum + loss.detach(), hits + batch_hits
            stack.model.eval()
            validating = time.perf_counter()
            val_loss, val_acc = _evaluate(stack, val)
            rows = torch.stack([loss_sum / len(train), hits / len(train), val_loss, val_acc], 1)
            numbers = rows.tolist()  # the epoch's one sync
        now = time.perf_counter()
        for member in sorted(active):
            train_loss, train_acc, v_loss, v_acc = numbers[member]
            if not classify:
                train_acc = v_acc = math.nan
            metrics = EpochMetrics(epoch, train_loss, train_acc, v_loss, v_acc,  # seconds: a
                                   (now - started) / stack.k, (now - validating) / stack.k)  # share
            if on_epoch(member, metrics):
                active.discard(member)
        if not active:
            return
