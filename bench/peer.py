"""The plain way, as the benchmarks compare hpstudy against it (a benchmark helper, not a test).

What people usually write in 2026: a per-sample `DataLoader`, a training loop that reads
the loss back every batch, and the MLflow docs' Optuna loop (a parent run, and inside the
objective `with mlflow.start_run(nested=True)`, `mlflow.log_params`, `mlflow.log_metrics(...,
step=epoch)`, a pyplot figure and `mlflow.pytorch.log_model`). optuna-integration's
`MLflowCallback`, which an earlier version used, is deprecated. `bench/gpu_speed.py` uses the
epoch and validation loops; `bench/cpu_speed.py` the whole study (`run_study`).
"""

from __future__ import annotations

import datetime
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import mlflow.pytorch
import optuna
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

EVAL_BATCH = 1000  # validation batch: the test batch of PyTorch's own MNIST example


def sync(device: torch.device) -> None:
    """Wait for the device, so wall time measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------- loops


def plain_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                device: torch.device) -> float:
    """One training epoch the usual way, nothing read back; its wall time in seconds."""
    model.train()
    sync(device)
    started = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - started


def train_one_epoch(model: torch.nn.Module, loader: DataLoader,
                    optimizer: torch.optim.Optimizer, device: torch.device) -> tuple[float, float]:
    """One training epoch the usual way: mean loss and accuracy, read back every batch."""
    model.train()
    loss_sum = hits = count = 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss = F.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(y)
        hits += (out.argmax(1) == y).sum().item()
        count += len(y)
    return loss_sum / count, hits / count


@torch.no_grad()
def plain_validate(model: torch.nn.Module, loader: DataLoader, device: torch.device
                   ) -> tuple[float, float]:
    """Validation loss and accuracy the usual way."""
    model.eval()
    loss = hits = count = 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        hits += (out.argmax(1) == y).sum().item()
        count += len(y)
    return loss / count, hits / count


# ------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class Space:
    """The search space, as a plain objective writes it out; one value means fixed."""

    lr: tuple[float, float]  # log-uniform
    momentum: tuple[float, float]  # uniform
    width: tuple[int, ...]  # choices
    depth: tuple[int, int]  # integers, both ends included

    def suggest(self, trial: optuna.Trial) -> dict[str, float | int]:
        """lr, momentum, width and depth for this trial, in hpstudy's order."""
        width, depth = self.width[0], self.depth[0]
        lr = trial.suggest_float("lr", *self.lr, log=True)
        momentum = trial.suggest_float("momentum", *self.momentum)
        if len(self.width) > 1:
            width = trial.suggest_categorical("width", list(self.width))
        if self.depth[0] != self.depth[1]:
            depth = trial.suggest_int("depth", *self.depth)
        return {"lr": lr, "momentum": momentum, "width": width, "depth": depth}


@dataclass
class Timings:
    """Where one trial's time went, in seconds (what the benchmark adds around the plain code)."""

    epoch_seconds: list[float] = field(default_factory=list)  # train + validate, each epoch
    train: float = 0.0
    validate: float = 0.0
    metrics: float = 0.0  # mlflow.log_metrics, every epoch
    figures: float = 0.0  # draw the curves and mlflow.log_figure
    model: float = 0.0  # mlflow.pytorch.log_model
    run: float = 0.0  # mlflow.start_run(nested=True), log_params, the final value, end_run
    params: dict[str, float | int] = field(default_factory=dict)


@dataclass
class StudyResult:
    """A finished plain study and what it cost."""

    study: optuna.Study
    seconds: float  # wall time: stores, study, every trial, callbacks
    timings: dict[int, Timings]  # by trial number
    began: datetime.datetime  # local wall clock, as Optuna stamps trials
    ended: datetime.datetime


def curves(history: list[dict[str, float]], title: str) -> Figure:
    """Loss and accuracy per epoch, train and validation, drawn the pyplot way."""
    epochs = range(1, len(history) + 1)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    loss_ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss (cross-entropy)", title="Loss")
    acc_ax.plot(epochs, [100 * h["train_acc"] for h in history], "o-", label="train")
    acc_ax.plot(epochs, [100 * h["val_acc"] for h in history], "s-", label="validation")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    return fig


def loaders(train: TensorDataset, val: TensorDataset, batch: int, seed: int
            ) -> tuple[DataLoader, DataLoader]:
    """Per-sample loaders in the main process: shuffled training batches, then validation."""
    shuffle = torch.Generator().manual_seed(seed)
    return (DataLoader(train, batch_size=batch, shuffle=True, generator=shuffle),
            DataLoader(val, batch_size=EVAL_BATCH))


@dataclass(frozen=True)
class Setup:
    """What a plain study trains: the network builder, the data and the recipe."""

    name: str  # the study, and its MLflow experiment
    space: Space
    build: Callable[[int, int], torch.nn.Module]  # (width, depth) -> network
    train: TensorDataset
    val: TensorDataset
    epochs: int
    batch_size: int
    seed: int = 0  # weight init and shuffling, as hpstudy's train.seed
    pip_requirements: list[str] | None = None  # None: MLflow infers them for every model


def fit_and_log(setup: Setup, trial: optuna.Trial, model: torch.nn.Module, spent: Timings
                ) -> tuple[list[dict[str, float]], bool]:
    """Train, validate and mlflow.log_metrics every epoch; the history and whether it diverged."""
    optimizer = torch.optim.SGD(model.parameters(), lr=spent.params["lr"],
                                momentum=spent.params["momentum"])
    train_loader, val_loader = loaders(setup.train, setup.val, setup.batch_size, setup.seed)
    cpu, history = torch.device("cpu"), []
    for epoch in range(1, setup.epochs + 1):
        t0 = time.perf_counter()
        train_loss, train_acc = train_one_epoch(model, train_loader, optimizer, cpu)
        t1 = time.perf_counter()
        val_loss, val_acc = plain_validate(model, val_loader, cpu)
        t2 = time.perf_counter()
        history.append({"train_loss": train_loss, "train_acc": train_acc,
                        "val_loss": val_loss, "val_acc": val_acc})
        mlflow.log_metrics(history[-1], step=epoch)
        spent.train, spent.validate = spent.train + t1 - t0, spent.validate + t2 - t1
        spent.metrics += time.perf_counter() - t2
        spent.epoch_seconds.append(t2 - t0)
        trial.report(val_loss if math.isfinite(val_loss) else math.inf, epoch)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            return history, True  # diverged: like hpstudy, stop; curves but no model
    return history, False


def run_study(setup: Setup, trials: int, folder: Path, enqueue: Sequence[dict] = ()
              ) -> StudyResult:
    """The plain study: TPE(seed 0), no pruning, one nested MLflow run per trial (the MLflow
    docs' hyperparameter-tuning loop) into sqlite under `folder`.

    `enqueue`: parameters to run first, in order (Optuna's `enqueue_trial`).
    """
    plt.switch_backend("agg")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    began, started = datetime.datetime.now(), time.perf_counter()
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")  # artifacts beside it, not ./mlruns
    mlflow.create_experiment(setup.name, artifact_location=(folder / "artifacts").as_uri())
    mlflow.set_experiment(setup.name)
    timings: dict[int, Timings] = {}

    def objective(trial: optuna.Trial) -> float:
        spent = timings[trial.number] = Timings(params=setup.space.suggest(trial))
        t0 = time.perf_counter()
        with mlflow.start_run(nested=True, run_name=f"trial-{trial.number}"):
            mlflow.log_params(spent.params)
            spent.run = time.perf_counter() - t0
            value = train_trial(setup, trial, spent)
            t0 = time.perf_counter()
            mlflow.log_metric("final_val_loss", value)
        spent.run += time.perf_counter() - t0
        return value

    study = optuna.create_study(study_name=setup.name, direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.NopPruner())
    for params in enqueue:
        study.enqueue_trial(params)
    with mlflow.start_run(run_name="study"):
        study.optimize(objective, n_trials=trials)
    return StudyResult(study, time.perf_counter() - started, timings, began,
                       datetime.datetime.now())


def train_trial(setup: Setup, trial: optuna.Trial, spent: Timings) -> float:
    """Inside a trial's run: train, log the curves and the model; the last validation loss."""
    torch.manual_seed(setup.seed)
    model = setup.build(spent.params["width"], spent.params["depth"])
    history, diverged = fit_and_log(setup, trial, model, spent)
    t0 = time.perf_counter()
    figure = curves(history, f"{setup.name}: trial {trial.number}")
    mlflow.log_figure(figure, "curves.png")
    plt.close(figure)
    spent.figures = time.perf_counter() - t0
    if diverged:
        raise optuna.TrialPruned(f"loss became non-finite at epoch {len(history)}")
    t0 = time.perf_counter()
    mlflow.pytorch.log_model(model, name="model", pip_requirements=setup.pip_requirements,
                             input_example=setup.val.tensors[0][:2].numpy())
    spent.model = time.perf_counter() - t0
    return history[-1]["val_loss"]
