"""The Optuna objective: a trial suggests parameters, trains a model, reports, and is logged.

Every trial attempt has exactly one MLflow run, and the run ends as the trial does:
completed (FINISHED), pruned or diverged (KILLED), failed (FAILED, with the reason).
Whatever a trial raises ends that trial alone; the study decides whether to go on.
A completed trial keeps its weights; selection packages a servable model only for the
trial it picks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial

from hpstudy import storage
from hpstudy.data import Dataset
from hpstudy.errors import DiskFull
from hpstudy.models import architecture, build_model, count_parameters
from hpstudy.report import trial_figures as plots
from hpstudy.report.probes import Probe, probe_for
from hpstudy.search.record import (
    ATTEMPT_TAG,
    ATTR,
    COMPLETE,
    DIVERGED,
    FAILED,
    FIGURES_ERROR_TAG,
    PRUNED,
    REASON_TAG,
    RUN_FAILED,
    RUN_STATUS,
    STATE_TAG,
    STUDY_TAG,
    TIMINGS,
    TRIAL_TAG,
    Process,
    TrialRecord,
)
from hpstudy.spec.space import Param, Value
from hpstudy.spec.study_file import StudyConfig
from hpstudy.tracking.artifacts import load_weights
from hpstudy.tracking.packaging import dataset_input
from hpstudy.tracking.runs import RunEnd, Tracker, write_run_end
from hpstudy.tracking.writer import Writer
from hpstudy.train import interrupts
from hpstudy.train.loop import (
    EVAL_BATCH,
    Diverged,
    EpochMetrics,
    Recipe,
    describe_device,
    fit,
    fit_seeds,
    mean_epoch,
    seeded,
)

CURVES_PNG = "curves.png"  # loss and accuracy per epoch
WEIGHTS_PNG = "first_layer.png"  # the first layer's filters or unit weights
CONFUSION_PNG = "confusion_matrix.png"  # validation set, classification only
SUMMARY_TXT = "model_summary.txt"  # layers, output shapes, parameter counts
METRICS_EVERY = 5.0  # seconds between a trial's metric writes (and at its end)


def suggest(trial: optuna.Trial, search: dict[str, Param]) -> dict[str, Value]:
    """Optuna's choice for every searched parameter."""
    chosen: dict[str, Value] = {}
    for name, p in search.items():
        if not p.searched:
            continue
        if p.choices is not None:
            chosen[name] = trial.suggest_categorical(name, list(p.choices))
        elif p.kind is int:
            chosen[name] = trial.suggest_int(name, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            chosen[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
    return chosen


def first_record(trial: optuna.Trial) -> TrialRecord:
    """A new trial's record: attempt 2 when it retries a trial whose worker died."""
    copied = trial.user_attrs.get(ATTR)  # a retry carries the record of the trial it retries
    retry = isinstance(copied, dict) and copied.get("trial") != trial.number
    return TrialRecord(trial=trial.number, attempt=copied["attempt"] + 1 if retry else 1,
                       retry_of=copied["trial"] if retry else None, process=Process.this())


def save(trial: optuna.Trial, record: TrialRecord) -> None:
    """Write what changed in a trial's record to its Optuna user attributes."""
    for key, value in record.changes(trial.user_attrs).items():
        trial.set_user_attr(key, value)


def describe_error(error: BaseException) -> str:
    """An exception as a one-line reason."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (SIGINT or SIGTERM)"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:500] if text else type(error).__name__


def hyperparameters(config: StudyConfig, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's values: the six of space.PARAMS as the study fixes them, then its own."""
    return {name: p.value for name, p in config.search.items()} | params


def build_network(config: StudyConfig, data: Dataset, hp: dict[str, Any]) -> torch.nn.Module:
    """The network a trial with hyperparameters `hp` trains."""
    return build_model(config.model, data, hp)


def trained_network(config: StudyConfig, data: Dataset, trial: FrozenTrial,
                    tracking_uri: str) -> torch.nn.Module:
    """A completed trial's network, rebuilt and given its trained weights, on the CPU."""
    network = build_network(config, data, hyperparameters(config, trial.params))
    network.load_state_dict(load_weights(TrialRecord.of(trial).weights_uri, tracking_uri))
    return network.eval()


def seeded_network(config: StudyConfig, data: Dataset, hp: dict[str, Any],
                   device: torch.device, seed: int) -> torch.nn.Module:
    """A trial's initial network for `seed` (same seed, same weights); the process's RNG
    left alone."""
    with seeded(device, seed):
        return build_network(config, data, hp)


def train_network(config: StudyConfig, data: Dataset, hp: dict[str, Any], device: torch.device,
                  model: torch.nn.Module, on_epoch: Callable[[EpochMetrics], None] | None = None
                  ) -> list[EpochMetrics]:
    """Train a one-seed trial's network as `fit` does; its history."""
    with seeded(device, config.train.seed):  # dropout draws: seeded, the process's untouched
        return fit(model, data, recipe(config, hp), device, on_epoch)


def train_seeds(config: StudyConfig, data: Dataset, hp: dict[str, Any], device: torch.device,
                first: torch.nn.Module, on_epoch: Callable[[list[EpochMetrics]], None]
                ) -> list[torch.nn.Module]:
    """Train seeds train.seed, +1, ... (train.seeds of them; `first` is the first's initial
    network) as each would train alone (`fit_seeds`); the trained networks."""
    how = recipe(config, hp)
    recipes = [dataclasses.replace(how, seed=how.seed + i) for i in range(config.train.seeds)]
    models = [first] + [seeded_network(config, data, hp, device, r.seed) for r in recipes[1:]]
    fit_seeds(models, data, recipes, device, on_epoch)
    return models


def recipe(config: StudyConfig, hp: dict[str, Any]) -> Recipe:
    """How a trial with hyperparameters `hp` trains (its searched [train] keys in place)."""
    train = config.train_for(hp)
    return Recipe(epochs=train.epochs, batch_size=train.batch_size, optimizer=train.optimizer,
                  lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
                  seed=train.seed, schedule=train.schedule, precision=train.precision,
                  channels_last=train.channels_last, compile=train.compile,
                  cuda_graph=train.cuda_graph, augment=config.data.options.augment)


def prunes(trial: optuna.Trial) -> bool:
    """Whether the trial's study has a pruner to ask after each epoch."""
    return not isinstance(trial.study.pruner, optuna.pruners.NopPruner)


class Objective:
    """Callable by `study.optimize`: trains one model per trial, logs it as a nested MLflow run.

    On the training path a trial writes only its parameters, its metrics (buffered, at
    most every METRICS_EVERY seconds) and, when it completes, its weights; its figures
    are drawn and its run closed by `writer` beside the next trial (inline without one).
    A write that meets a full disk fails the trial with "disk full: ..." and stops the study
    (`full` holds why; `storage_url`, the Optuna store's, is named in it).
    """

    def __init__(self, config: StudyConfig, data: Dataset, tracker: Tracker, parent_id: str,
                 device: torch.device, writer: Writer | None = None, storage_url: str = ""):
        self.config, self.data, self.tracker = config, data, tracker
        self.parent_id, self.device, self.writer = parent_id, device, writer
        self.arch = architecture(config.model.architecture)
        name = config.data.name  # the splits every trial trains and validates on, digested once
        self.inputs = [dataset_input(name, part, split, name)
                       for part, split in (("train", data.train), ("val", data.val))]
        self.storage_url, self.full = storage_url, None

    def begin(self, trial: optuna.Trial) -> tuple[TrialRecord, EpochLog]:
        """A trial's MLflow run (with the study's fixed settings) and its first record."""
        config, record = self.config, first_record(trial)
        save(trial, record)  # first: a worker stopped by its first MLflow
        run_id = self.tracker.start_run(  # write (a full disk) is still known to reconcile
            f"trial-{trial.number}", parent_id=self.parent_id,
            params=config.fixed_params() | {"trial": trial.number,
                                            "device": describe_device(self.device)},
            tags={STUDY_TAG: config.name, TRIAL_TAG: trial.number, ATTEMPT_TAG: record.attempt}
            | record.process.tags())
        self.tracker.log_data(run_id, self.inputs)
        record = record.but(run_id=run_id)
        save(trial, record)
        return record, EpochLog(self.tracker, run_id)

    def seeded_network(self, hp: dict[str, Any]) -> torch.nn.Module:
        """The trial's initial network: seeded by the study, the process's RNG left alone."""
        return seeded_network(self.config, self.data, hp, self.device, self.config.train.seed)

    def fit_seeds(self, run_id: str, hp: dict[str, Any], first: torch.nn.Module,
                  on_epoch: Callable[[EpochMetrics], None]) -> torch.nn.Module:
        """Train over train.seeds seeds, `on_epoch` fed their mean; the best seed's network.

        Logged beside the mean: `val_loss_std` per epoch (the spread over seeds) and
        `seed_val_loss` at step i, seed train.seed + i's validation loss at its last epoch.
        """
        spread: list[float] = []
        last: list[float] = []

        def each(seeds: list[EpochMetrics]) -> None:
            spread.append(statistics.stdev(m.val_loss for m in seeds))
            last[:] = [m.val_loss for m in seeds]
            on_epoch(mean_epoch(seeds))

        try:
            models = train_seeds(self.config, self.data, hp, self.device, first, each)
        finally:  # a pruned trial's spread too
            self.tracker.log_series(run_id, {"val_loss_std": list(enumerate(spread, 1)),
                                             "seed_val_loss": list(enumerate(last))})
        return models[last.index(min(last))]

    def __call__(self, trial: optuna.Trial) -> float:
        """Train with this trial's parameters; the validation loss of the final model."""
        interrupts.checkpoint()
        record = None
        try:
            record, log = self.begin(trial)
            return self.train(trial, record, log)
        except Exception as error:
            full = storage.disk_full(error, self.storage_url, self.tracker.uri, self.config.name)
            if full is None:
                raise
            self.stop_full(trial, record, full)
            raise full from None

    def stop_full(self, trial: optuna.Trial, record: TrialRecord | None, full: DiskFull) -> None:
        """A write met a full disk: fail the trial with why, as far as the disk lets, and stop
        the study (its call ends with `full`)."""
        self.full = full
        with contextlib.suppress(RuntimeError):  # outside `study.optimize` there is no loop
            trial.study.stop()
        if record is None:
            return
        with contextlib.suppress(Exception):  # Optuna's store may be the full one
            save(trial, record.but(state=FAILED, fail_reason=full.reason))
        with contextlib.suppress(Exception):  # and MLflow's: then the next start closes the run
            self.tracker.end_run(record.run_id, RUN_FAILED, {
                STATE_TAG: FAILED, REASON_TAG: full.reason,
                FIGURES_ERROR_TAG: "never written: the disk was full"})

    def train(self, trial: optuna.Trial, record: TrialRecord, log: EpochLog) -> float:
        """The trial after `begin`: train, report each epoch, and end as it ended."""
        config = self.config
        run_id = record.run_id
        model: torch.nn.Module | None = None
        probe = probe_for(config.data.name, config.data.options, self.data, config.train.epochs,
                          config.model.architecture)

        def on_epoch(metrics: EpochMetrics) -> None:
            interrupts.checkpoint()  # a signal that came during a write stops the trial here
            log.add(metrics)
            probe.observe(model, metrics.epoch)
            trial.report(metrics.val_loss, metrics.epoch)
            if prunes(trial) and trial.should_prune():  # asking costs a read of the study
                raise optuna.TrialPruned(f"pruned after epoch {metrics.epoch}: validation loss "
                                         f"{metrics.val_loss:.4g} is worse than the median")

        try:
            values = suggest(trial, config.search)  # inside: a changed search space fails here
            self.tracker.log_params(run_id, values)
            hp = hyperparameters(config, values)
            model = self.seeded_network(hp)  # inside the try: a model too large fails alone
            self.tracker.log_params(run_id, {"n_params": count_parameters(model)})
            probe.watch(model, math.ceil(len(self.data.train) / recipe(config, hp).batch_size))
            if config.train.seeds > 1:  # a pruned trial keeps its first seed's network
                model = self.fit_seeds(run_id, hp, model, on_epoch)
            else:
                train_network(config, self.data, hp, self.device, model, on_epoch)
        except optuna.TrialPruned as pruned:
            self.end(trial, record, PRUNED, str(pruned), log, model, probe)
            raise
        except Diverged as error:  # the diverging epoch is logged too; never selectable
            log.add(error.history[-1])
            trial.report(float("inf"), error.history[-1].epoch)  # TPE learns this region is bad
            self.end(trial, record, DIVERGED, str(error), log, model, probe)
            raise optuna.TrialPruned(str(error)) from None
        except BaseException as error:  # anything else fails this trial: say why, then re-raise
            if storage.full_store(error):
                raise  # a full disk: `__call__` fails the trial, without more writes
            self.end(trial, record, FAILED, describe_error(error), log, model, probe)
            raise
        finally:
            self.release()
        self.end(trial, record, COMPLETE, "", log, model, probe)
        return log.history[-1].val_loss

    def release(self) -> None:
        """Give GPU memory back between trials (a failed trial's too)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def pictures(self, trial: optuna.Trial, state: str, history: list[EpochMetrics],
                 model: torch.nn.Module | None, probe: Probe | None = None
                 ) -> tuple[tuple, tuple]:
        """What the writer draws for a trial, from arrays it is sent: (file, draw, args)
        figures, and (file, text) files. Curves for any trial that trained an epoch; the
        first layer, the validation confusion matrix and the model summary once it has a
        model; the task's own view (xor, functions) where there is one."""
        if not history:
            return (), ()
        shown = self.arch.meaningful(trial.params)
        title = plots.trial_title(self.config.name, trial.number, state, shown)
        figures: list[tuple] = [(CURVES_PNG, plots.curves, (history, title))]
        figures += (probe or Probe()).figures(title)
        if model is None:
            return tuple(figures), ()
        data = self.data
        weights, conv, is_output = plots.first_layer_array(model)
        figures.append((WEIGHTS_PNG, plots.layer_weights, (
            weights, conv, data.input_shape, title, data.classes if is_output else ())))
        if data.classes and math.isfinite(history[-1].val_loss):
            figures.append((CONFUSION_PNG, plots.confusion,
                            (confusion_matrix(model, data), data.classes, title)))
        return tuple(figures), ((SUMMARY_TXT, plots.model_summary(model, data.input_shape)),)

    def end(self, trial: optuna.Trial, record: TrialRecord, state: str, reason: str,
             log: EpochLog, model: torch.nn.Module | None, probe: Probe | None = None
             ) -> TrialRecord:
        """Write what is left of the trial, keep its record in Optuna, and end its run.

        Metrics and weights are written here (a trial counts only once they are); the
        figures and the run's end go to the writer.
        """
        run_id, history = record.run_id, log.history
        log.flush()
        weights_uri = ""
        if state == COMPLETE:
            started = time.perf_counter()
            weights_uri = self.tracker.log_weights(run_id, model)
            log.timings["model"] = time.perf_counter() - started
        started = time.perf_counter()
        figures, texts = self.pictures(trial, state, history, model, probe)
        job = RunEnd(self.tracker.uri, run_id, RUN_STATUS[state],
                     {STATE_TAG: state} | ({REASON_TAG: reason} if reason else {}), figures, texts,
                     end_time=int(time.time() * 1000))
        log.timings["figures"] = time.perf_counter() - started
        record = record.but(
            state=state, fail_reason=reason, weights_uri=weights_uri,
            val_acc=history[-1].val_acc if history else None,
            n_params=count_parameters(model) if model is not None else 0,
            train_seconds=sum(m.seconds for m in history),
            logging_seconds=self.tracker.seconds(run_id), timings=log.timings,
            unused=sorted(set(trial.params) - set(self.arch.meaningful(trial.params))))
        save(trial, record)
        self.tracker.log_metrics(run_id, {"logging_seconds": record.logging_seconds})
        if self.writer is None:
            write_run_end(job)
        else:
            self.writer.submit(job)
        return record


class EpochLog:
    """A trial's epochs: kept, and written to its run at most every METRICS_EVERY seconds."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker, self.run_id = tracker, run_id
        self.history: list[EpochMetrics] = []
        self.timings = dict.fromkeys(TIMINGS, 0.0)
        self._unwritten: list[EpochMetrics] = []
        self._written_at = time.perf_counter()

    def add(self, metrics: EpochMetrics) -> None:
        """One more epoch; written now if the last write is METRICS_EVERY seconds old."""
        self.history.append(metrics)
        self._unwritten.append(metrics)
        self.timings["train"] += metrics.seconds - metrics.val_seconds
        self.timings["validate"] += metrics.val_seconds
        if time.perf_counter() - self._written_at >= METRICS_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write the epochs not yet written."""
        started = time.perf_counter()
        if self._unwritten:
            self.tracker.log_epochs(self.run_id, self._unwritten)
            self._unwritten = []
        self._written_at = time.perf_counter()
        self.timings["metrics"] += self._written_at - started


def confusion_matrix(model: torch.nn.Module, data: Dataset) -> np.ndarray:
    """Counts of (true, predicted) classes on the validation split (scikit-learn's)."""
    from sklearn.metrics import confusion_matrix as counts

    was_training = model.training
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(x).argmax(1) for x in data.val.x.split(EVAL_BATCH)])
    model.train(was_training)
    return counts(data.val.y.cpu().numpy(), predicted.cpu().numpy(),
                  labels=range(len(data.classes)))


