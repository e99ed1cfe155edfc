"""Selection: the best trial by validation loss, tested once, registered as `champion`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from hpstudy.data import Dataset
from hpstudy.errors import UserError
from hpstudy.tracking import Tracker, load_model
from hpstudy.train import evaluate

CHAMPION = "champion"  # the registry alias that serving loads


@dataclass(frozen=True)
class Selection:
    """What selection chose and measured."""

    trial: int
    val_loss: float
    test_loss: float
    test_acc: float  # NaN for regression
    run_id: str  # the trial's MLflow run
    model_name: str  # registered model name (the study's)
    version: str  # registry version that `champion` now points at

    @property
    def model_uri(self) -> str:
        """The URI that loads the champion."""
        return f"models:/{self.model_name}@{CHAMPION}"


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The completed trial with the lowest finite validation loss."""
    candidates = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.value is not None and math.isfinite(t.value) and "model_uri" in t.user_attrs]
    if not candidates:
        raise UserError(f"study '{study.study_name}' has no completed trial with a finite "
                        "validation loss yet: run more trials (`hpstudy optimize`) first.")
    return min(candidates, key=lambda t: (t.value, t.number))


def select(study: optuna.Study, data: Dataset, tracker: Tracker, run_id: str) -> Selection:
    """Test the best trial's logged model once, log that to `run_id`, make it the champion."""
    trial = best_trial(study)
    model_uri = trial.user_attrs["model_uri"]
    model = load_model(model_uri, tracker.uri)  # the artifact itself, not the in-memory model
    with torch.no_grad():
        test_loss, test_acc = evaluate(model, data.test)
    metrics = {"test_loss": test_loss} | ({} if math.isnan(test_acc) else {"test_acc": test_acc})
    tracker.log_metrics(run_id, metrics | {"best_val_loss": trial.value})
    tracker.set_tags(run_id, {"best_trial": trial.number, "best_model_uri": model_uri})
    name = study.study_name
    version = tracker.register(name, model_uri, trial.user_attrs["mlflow_run_id"], tags={
        "study": name, "trial": trial.number, "val_loss": trial.value,
        "run_id": trial.user_attrs["mlflow_run_id"], "test_loss": test_loss,
        "test_acc": test_acc})
    tracker.set_alias(name, CHAMPION, version)
    return Selection(trial.number, trial.value, test_loss, test_acc,
                     trial.user_attrs["mlflow_run_id"], name, version)
