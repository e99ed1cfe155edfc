"""The training loop: knows tensors, models and optimizers; nothing of Optuna or MLflow.

Batches are sliced from tensors already on the device (and augmented there, if asked:
`hpstudy.data.augment`); each optimizer step runs as `hpstudy.train.step` says (bf16,
channels_last, torch.compile, CUDA graph); the loss and accuracy are summed on the device
and read back once per epoch (one host synchronisation per epoch).
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from hpstudy.data import Dataset, Split
from hpstudy.data.augment import augmenter
from hpstudy.train import interrupts
from hpstudy.train.step import (
    Speed,
    Step,
    capturable,
    loss_and_hits,
    resolve,
    steps_per_epoch,
    sync,
)

GRAD_SAMPLES = 4  # steps per epoch, evenly spaced, whose gradient norm is measured
EVAL_BATCH = 4096  # examples per forward pass when evaluating: no gradients, so go large
SCHEDULES = ("constant", "step", "cosine", "one-cycle")  # learning rate over training (below)
STEP_GAMMA = 0.1  # `step`: the learning rate is multiplied by this ...
STEP_PARTS = 3  # ... after every 1/STEP_PARTS of the epochs (at least one epoch)


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch measured; accuracies are NaN for regression."""

    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's batches, in training mode
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float  # wall time of the epoch, validation included
    val_seconds: float = 0.0  # of which validation (on CUDA: until its kernels are queued)
    grad_norm: float = math.nan  # L2 norm of the whole gradient, mean of a few evenly spaced steps
    warmup_seconds: float = 0.0  # of `seconds`, compiling or capturing the step (first epoch)


@dataclass(frozen=True)
class Recipe:
    """Everything about how one model is trained."""

    epochs: int
    batch_size: int
    optimizer: str  # sgd | adam | rmsprop
    lr: float
    momentum: float = 0.0  # SGD and RMSprop only
    weight_decay: float = 0.0
    seed: int = 0  # shuffling order (weight init is seeded by the caller before building)
    schedule: str = "constant"  # one of SCHEDULES; `lr` is its starting (one-cycle: peak) value
    precision: str = "fp32"  # auto | fp32 | bf16: the step's arithmetic (train.step)
    channels_last: str | bool = False  # auto | True | False: conv nets' memory format
    compile: bool = False  # torch.compile the network
    cuda_graph: bool = False  # the whole step as one CUDA graph (CUDA only, constant lr)
    augment: str = "none"  # of each training batch: a name in hpstudy.data.augment.AUGMENTS


EXPLODED = 1e6  # a finite loss this many times a constant predictor's (or 1e6) has exploded


class Diverged(Exception):
    """The loss became NaN, infinite or exploded: the learning rate is too high for this model."""

    def __init__(self, history: list[EpochMetrics], why: str = ""):
        self.history = history
        super().__init__(why or f"loss became non-finite at epoch {history[-1].epoch}")


def constant_loss(split: Split) -> tuple[float, float]:
    """The loss of the best constant prediction on `split` (the class frequencies, or the
    mean for regression), and its accuracy (the most frequent class's share; NaN for
    regression): what a model must beat to have learnt anything."""
    y = split.y
    if y.is_floating_point():  # the mean's MSE, as loss_and_hits computes it
        return y.var(0, correction=0).mean().item(), math.nan
    share = torch.bincount(y).double() / len(y)
    share = share[share > 0]
    return -(share * share.log()).sum().item(), share.max().item()


def loss_limit(train: Split) -> float:
    """Above this, a finite loss has exploded: EXPLODED x the constant predictor's (at least 1)."""
    return EXPLODED * max(1.0, constant_loss(train)[0])


def diverged(metrics: EpochMetrics, limit: float) -> str:
    """Why an epoch's losses mean the trial has diverged, or '' if they do not."""
    if not (math.isfinite(metrics.train_loss) and math.isfinite(metrics.val_loss)):
        return f"loss became non-finite at epoch {metrics.epoch}"
    worst = max(metrics.train_loss, metrics.val_loss)
    if worst > limit:
        return (f"loss exploded to {worst:.3g} at epoch {metrics.epoch} (above {limit:.3g}, "
                f"{EXPLODED:.0e} x a constant prediction's)")
    return ""


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: the first CUDA device if there is one, else the CPU; otherwise as named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """The device in words, e.g. 'cuda:0 (NVIDIA H100 80GB HBM3)' or 'cpu'."""
    if device.type == "cuda":
        index = device.index or 0
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def make_optimizer(model: nn.Module, recipe: Recipe, speed: Speed | None = None
                   ) -> torch.optim.Optimizer:
    """The optimizer the recipe names (its update capturable in a CUDA graph if `speed` is)."""
    params, lr, wd = model.parameters(), recipe.lr, recipe.weight_decay
    graph = capturable(speed) if speed is not None else {}
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=wd)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=recipe.momentum, weight_decay=wd,
                                   **graph)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **graph)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int
                   ) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The recipe's learning-rate schedule, stepped after every batch; None when constant.

    step: times STEP_GAMMA at every 1/STEP_PARTS of the epochs; cosine: from lr down to 0
    over all steps; one-cycle: up to lr and down again (momentum left as the trial set it).
    """
    from torch.optim import lr_scheduler

    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "constant":
        return None
    if recipe.schedule == "step":
        every = max(1, recipe.epochs // STEP_PARTS) * steps_per_epoch
        return lr_scheduler.StepLR(optimizer, step_size=every, gamma=STEP_GAMMA)
    if recipe.schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if recipe.schedule == "one-cycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total,
                                       cycle_momentum=False)
    raise ValueError(f"unknown schedule {recipe.schedule!r}; expected one of {SCHEDULES}")


def leave_a_core(device: torch.device) -> None:
    """Train on all cores but one: the background writer draws figures on that one.

    Measured on the 2-core CPU: a 20-trial digits study took 23.6 s with one training
    thread and the writer beside it, 25.6 s with two threads and figures drawn inline,
    32.1 s with two threads competing with the writer (README 'Measured'). An explicit
    OMP_NUM_THREADS (as `--jobs` sets for its workers) is left as it is.
    """
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(min(torch.get_num_threads(), max(1, (os.cpu_count() or 2) - 1)))


@torch.no_grad()
def evaluate_lazy(model: nn.Module, split: Split,
                  forward: Callable[[torch.Tensor], torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy over `split` as device tensors; the caller sets eval mode.
    `forward` runs the model on a batch (`Step.forward`: as it trains); the model itself
    by default."""
    loss, hits = torch.zeros((), device=split.y.device), torch.zeros((), device=split.y.device)
    forward = forward or model
    for start in range(0, len(split), EVAL_BATCH):
        batch_loss, batch_hits = loss_and_hits(forward(split.x[start:start + EVAL_BATCH]),
                                               split.y[start:start + EVAL_BATCH])
        loss, hits = loss + batch_loss, hits + batch_hits
    return loss / len(split), hits / len(split)


def evaluate(model: nn.Module, split: Split) -> tuple[float, float]:
    """Mean loss and accuracy (NaN for regression) of `model` on `split`."""
    loss, acc = evaluate_lazy(model, split)
    return loss.item(), acc.item() if not split.y.is_floating_point() else math.nan


def fit(model: nn.Module, data: Dataset, recipe: Recipe, device: torch.device,
        on_epoch: Callable[[EpochMetrics], None] | None = None) -> list[EpochMetrics]:
    """Train `model` on data.train, validating on data.val after every epoch.

    `on_epoch` sees each epoch's metrics and may raise to stop training early (a pruner).
    Raises Diverged when the loss stops being finite or explodes.
    """
    history: list[EpochMetrics] = []
    for metrics in epochs(model, data, recipe, device):
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
    return history


def epochs(model: nn.Module, data: Dataset, recipe: Recipe, device: torch.device
           ) -> Iterator[EpochMetrics]:
    """`fit` one epoch at a time: each `next` trains and validates one more epoch.

    Nothing runs before the first `next`. Raises Diverged when the loss stops being finite
    or explodes.
    """
    model.to(device)
    train, val = data.train.to(device), data.val.to(device)  # no copy if already there
    speed = resolve(recipe, model, device, train.x.dim())
    optimizer = make_optimizer(model, recipe, speed)
    steps = steps_per_epoch(len(train), recipe.batch_size, speed)
    run = Training(Step(model, optimizer, speed), make_scheduler(optimizer, recipe, steps),
                   torch.Generator(device=device).manual_seed(recipe.seed),
                   augmenter(recipe.augment, recipe.seed, device))
    classify = data.task == "classification"
    limit = loss_limit(train)
    history: list[EpochMetrics] = []
    for epoch in range(1, recipe.epochs + 1):
        with interrupts.immediate():  # nothing in an epoch writes: a signal stops it at once
            metrics = _epoch(run, train, val, recipe, classify, epoch)
        history.append(metrics)
        if why := diverged(metrics, limit):
            raise Diverged(history, why)
        yield metrics


@dataclass(frozen=True)
class Training:
    """What one model's training carries from epoch to epoch."""

    step: Step  # the model, its optimizer, and how a step runs
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    order: torch.Generator  # the shuffling
    augment: Callable[[torch.Tensor], torch.Tensor] | None  # of each training batch


def _epoch(run: Training, train: Split, val: Split, recipe: Recipe, classify: bool,
           epoch: int) -> EpochMetrics:
    """Train one epoch on `train` and validate on `val`: what `epochs` yields."""
    device, step = train.x.device, run.step
    started = time.perf_counter()
    step.model.train()
    loss_sum, hits = torch.zeros((), device=device), torch.zeros((), device=device)
    grad_sum = torch.zeros((), device=device)
    permutation = torch.randperm(len(train), device=device, generator=run.order)
    batches = permutation.split(recipe.batch_size)[:steps_per_epoch(
        len(train), recipe.batch_size, step.speed)]
    trained = sum(len(batch) for batch in batches)  # all, or whole batches only (static)
    sampled = range(0, len(batches), max(1, len(batches) // GRAD_SAMPLES))
    for index, batch in enumerate(batches):
        x = train.x[batch] if run.augment is None else run.augment(train.x[batch])
        loss, batch_hits, norm = step(x, train.y[batch], index in sampled)
        if norm is not None:  # a norm on every step would cost a small MLP a fifth more
            grad_sum = grad_sum + norm
        if run.scheduler is not None:
            run.scheduler.step()
        loss_sum, hits = loss_sum + loss, hits + batch_hits
    step.model.eval()
    validating = time.perf_counter()
    val_loss, val_acc = evaluate_lazy(step.model, val, step.forward)
    numbers = torch.stack([loss_sum / trained, hits / trained, val_loss, val_acc,
                           grad_sum / len(sampled)])
    train_loss, train_acc, val_loss_f, val_acc_f, grad_norm = numbers.tolist()  # one sync
    if not classify:
        train_acc = val_acc_f = math.nan
    now = time.perf_counter()
    return EpochMetrics(epoch, train_loss, train_acc, val_loss_f, val_acc_f, now - started,
                        now - validating, grad_norm, step.warmup_seconds if epoch == 1 else 0.0)


def step_seconds(model: nn.Module, data: Dataset, recipe: Recipe, device: torch.device,
                 steps: int = 5, warmup: int = 3) -> float:
    """Seconds one training step of `recipe.batch_size` examples takes here, after `warmup`
    untimed ones (the first steps of a process pay for setting up); `model`'s weights are
    put back after. The step runs in the recipe's precision and memory format, eagerly
    (compiling for a few steps would cost more than the estimate is worth)."""
    model.to(device).train()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    batch = data.train.take(torch.arange(min(recipe.batch_size, len(data.train)))).to(device)
    eager = replace(resolve(recipe, model, device, batch.x.dim()), compile=False,
                    cuda_graph=False)
    step = Step(model, make_optimizer(model, recipe), eager)
    started = 0.0
    for index in range(warmup + steps):
        if index == warmup:
            sync(device)
            started = time.perf_counter()
        step(batch.x, batch.y, False)
    sync(device)
    seconds = (time.perf_counter() - started) / steps
    model.load_state_dict(saved)
    return seconds


# ------------------------------------------------------------------ one configuration, N seeds


def mean_epoch(seeds: Sequence[EpochMetrics]) -> EpochMetrics:
    """One epoch's metrics averaged over seeds; wall times summed (the seeds ran in turn)."""
    def mean(name: str) -> float:
        return statistics.fmean(getattr(m, name) for m in seeds)

    return EpochMetrics(seeds[0].epoch, mean("train_loss"), mean("train_acc"), mean("val_loss"),
                        mean("val_acc"), sum(m.seconds for m in seeds),
                        sum(m.val_seconds for m in seeds), mean("grad_norm"),
                        sum(m.warmup_seconds for m in seeds))


@contextlib.contextmanager
def seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Inside: torch's RNG seeded with `seed`; after: the process's RNG (the CPU's and this
    CUDA device's) as it was before."""
    with torch.random.fork_rng(devices=_cuda(device)):
        torch.manual_seed(seed)
        yield


def _cuda(device: torch.device) -> list[torch.device]:
    """The CUDA devices whose RNG training on `device` draws from."""
    return [device] if device.type == "cuda" else []


def fit_seeds(models: Sequence[nn.Module], data: Dataset, recipes: Sequence[Recipe],
              device: torch.device,
              on_epoch: Callable[[list[EpochMetrics]], None] | None = None
              ) -> list[list[EpochMetrics]]:
    """Train one model per recipe (one configuration, one seed each), epoch by epoch in turn.

    Each model draws its random numbers (dropout) from the torch RNG seeded with its
    recipe's seed, kept apart from the others', so it computes what `fit` computes for it
    alone after `torch.manual_seed(recipe.seed)`; the process's RNG is left as it was.
    `on_epoch` sees every seed's metrics of an epoch once all have trained it, and may
    raise to stop them all. Raises Diverged (with the mean over seeds of each epoch) when
    any seed's loss stops being finite.
    """
    cuda = _cuda(device)
    histories: list[list[EpochMetrics]] = [[] for _ in models]
    with torch.random.fork_rng(devices=cuda):
        runs, states = [], []
        for model, recipe in zip(models, recipes, strict=True):
            torch.manual_seed(recipe.seed)
            runs.append(epochs(model, data, recipe, device))
            states.append(_rng_state(cuda))
        for _ in range(recipes[0].epochs):
            diverged = False
            for i, run in enumerate(runs):
                _set_rng_state(states[i], cuda)
                try:
                    histories[i].append(next(run))
                except Diverged as error:
                    histories[i].append(error.history[-1])
                    diverged = True
                states[i] = _rng_state(cuda)
            if diverged:
                raise Diverged([mean_epoch(epoch) for epoch in zip(*histories, strict=True)])
            if on_epoch is not None:
                on_epoch([history[-1] for history in histories])
    return histories


def _rng_state(cuda: list[torch.device]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The torch RNG's state: the CPU's and, when training on CUDA, that device's."""
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in cuda]


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor]],
                   cuda: list[torch.device]) -> None:
    """Put back a state `_rng_state` took."""
    torch.set_rng_state(state[0])
    for device, cuda_state in zip(cuda, state[1], strict=True):
        torch.cuda.set_rng_state(cuda_state, device)
