"""The Optuna objective: a trial suggests parameters, trains a model, reports, and is logged.

Every trial attempt has exactly one MLflow run, and the run ends as the trial does:
completed (FINISHED), pruned or diverged (KILLED), failed (FAILED, with the reason).
Whatever a trial raises ends that trial alone; the study decides whether to go on.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
import torch

from hpstudy import plots
from hpstudy.config import StudyConfig
from hpstudy.data import Dataset
from hpstudy.models import build_model, count_parameters
from hpstudy.record import (
    ATTEMPT_TAG,
    ATTR,
    COMPLETE,
    DIVERGED,
    FAILED,
    PRUNED,
    REASON_TAG,
    RUN_STATUS,
    STATE_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    Process,
    TrialRecord,
)
from hpstudy.space import PARAMS, Number, Param
from hpstudy.tracking import Tracker
from hpstudy.train import Diverged, EpochMetrics, Recipe, describe_device, fit

CURVES_PNG = "curves.png"  # loss and accuracy per epoch
WEIGHTS_PNG = "first_layer.png"  # the first layer's filters or unit weights


class TrialFailed(Exception):
    """A trial trained but could not be recorded (e.g. its artifacts could not be written)."""


def suggest(trial: optuna.Trial, search: dict[str, Param]) -> dict[str, Number]:
    """Optuna's choice for every searched parameter."""
    chosen: dict[str, Number] = {}
    for name, p in search.items():
        if not p.searched:
            continue
        if p.choices is not None:
            chosen[name] = trial.suggest_categorical(name, list(p.choices))
        elif PARAMS[name].kind is int:
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


def describe_error(error: BaseException) -> str:
    """An exception as a one-line reason."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (SIGINT or SIGTERM)"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:500] if text else type(error).__name__


class Objective:
    """Callable by `study.optimize`: trains one model per trial, logs it as a nested MLflow run."""

    def __init__(self, config: StudyConfig, data: Dataset, tracker: Tracker, parent_id: str,
                 device: torch.device):
        self.config, self.data, self.tracker = config, data, tracker
        self.parent_id, self.device = parent_id, device

    def __call__(self, trial: optuna.Trial) -> float:
        """Train with this trial's parameters; the validation loss of the final model."""
        config, record = self.config, first_record(trial)
        run_id = self.tracker.start_run(
            f"trial-{trial.number}", parent_id=self.parent_id,
            params=config.fixed_params() | {"trial": trial.number,
                                            "device": describe_device(self.device)},
            tags={STUDY_TAG: config.name, TRIAL_TAG: trial.number, ATTEMPT_TAG: record.attempt}
            | record.process.tags())
        record = record.but(run_id=run_id)
        trial.set_user_attr(ATTR, record.to_attr())
        history: list[EpochMetrics] = []
        model: torch.nn.Module | None = None
        started = time.perf_counter()

        def on_epoch(metrics: EpochMetrics) -> None:
            history.append(metrics)
            self.tracker.log_epoch(run_id, metrics)
            trial.report(metrics.val_loss, metrics.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {metrics.epoch}: validation loss "
                                         f"{metrics.val_loss:.4g} is worse than the median")

        try:
            values = suggest(trial, config.search)  # inside: a changed search space fails here
            self.tracker.log_params(run_id, values)
            hp = {name: p.value for name, p in config.search.items()} | values
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda"
                                       else []):  # this trial's seed; the process's RNG untouched
                torch.manual_seed(config.train.seed)  # same parameters, same initial weights
                model = self._build(hp)  # inside: a model too large fails this trial alone
                self.tracker.log_params(run_id, {"n_params": count_parameters(model)})
                fit(model, self.data, self._recipe(hp), self.device, on_epoch)
            seconds = time.perf_counter() - started
            model_uri = self.tracker.log_model(run_id, model, self.data.val.x[:2].cpu().numpy(),
                                               self.data.classes)
        except optuna.TrialPruned as pruned:
            self._end(trial, record, PRUNED, str(pruned), history, model, started)
            raise
        except Diverged as error:  # the diverging epoch is logged too; never selectable
            history = error.history
            self.tracker.log_epoch(run_id, history[-1])
            trial.report(float("inf"), history[-1].epoch)  # TPE learns this region is bad
            self._end(trial, record, DIVERGED, str(error), history, model, started)
            raise optuna.TrialPruned(str(error)) from None
        except BaseException as error:  # anything else fails this trial: say why, then re-raise
            self._end(trial, record, FAILED, describe_error(error), history, model, started)
            raise
        finally:
            self._release()
        ended = self._end(trial, record.but(model_uri=model_uri), COMPLETE, "", history, model,
                          started, seconds)
        if ended.state != COMPLETE:
            raise TrialFailed(ended.fail_reason)
        return history[-1].val_loss

    def _build(self, hp: dict[str, Any]) -> torch.nn.Module:
        """The trial's network."""
        data, model = self.data, self.config.model
        return build_model(model.architecture, model.options, data.input_shape, data.num_outputs,
                           data.mean, data.std, hp["width"], hp["depth"], hp["dropout"])

    def _recipe(self, hp: dict[str, Any]) -> Recipe:
        """How the trial's network is trained."""
        train = self.config.train
        return Recipe(epochs=train.epochs, batch_size=train.batch_size, optimizer=train.optimizer,
                      lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
                      seed=train.seed)

    def _release(self) -> None:
        """Give GPU memory back between trials (a failed trial's too)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _end(self, trial: optuna.Trial, record: TrialRecord, state: str, reason: str,
             history: list[EpochMetrics], model: torch.nn.Module | None, started: float,
             seconds: float | None = None) -> TrialRecord:
        """Log the trial's figures, end its run as `state`, and keep its record in Optuna.

        A completed trial whose figures cannot be written ends failed: a trial counts only
        when what it records is there. Returns the record as it ended.
        """
        run_id, title = record.run_id, f"{self.config.name}: trial {trial.number}"
        try:
            if history:
                self.tracker.log_figure(run_id, plots.curves(history, title), CURVES_PNG)
            if history and model is not None:
                self.tracker.log_figure(run_id, plots.first_layer_weights(
                    model, self.data.input_shape, title), WEIGHTS_PNG)
        except Exception as error:
            if state == COMPLETE:
                state, reason = FAILED, f"could not log its figures: {describe_error(error)}"
        record = record.but(
            state=state, fail_reason=reason, train_seconds=seconds or (
                time.perf_counter() - started), logging_seconds=self.tracker.seconds(run_id),
            val_acc=history[-1].val_acc if history else None,
            model_uri=record.model_uri if state == COMPLETE else "")
        trial.set_user_attr(ATTR, record.to_attr())
        self.tracker.end_run(run_id, RUN_STATUS[state], {STATE_TAG: state} | (
            {REASON_TAG: reason} if reason else {}))
        return record
