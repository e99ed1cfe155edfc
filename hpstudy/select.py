"""Selection: the best trial by validation loss, gated against the champion, tested once.

The gate compares like with like: both the study's best model and the current champion
are evaluated, as logged, on this study's validation split. `champion` moves only when
the new model is strictly better; the model it replaces keeps the alias `previous`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from hpstudy.data import Dataset, Split
from hpstudy.errors import UserError
from hpstudy.tracking import Tracker, load_network
from hpstudy.train import evaluate

CHAMPION, PREVIOUS = "champion", "previous"  # registry aliases: what serving loads; its fallback


@dataclass(frozen=True)
class Decision:
    """What selection would do: the study's best model against the current champion."""

    name: str  # registered model name (the study's)
    trial: int
    val_loss: float  # the best trial's logged model, on this study's validation split
    model_uri: str
    run_id: str  # the trial's MLflow run
    moves: bool  # whether `champion` moves to this model
    reason: str
    current_version: str | None = None  # the champion before selection
    current_trial: str | None = None
    current_val_loss: float | None = None  # the champion on the same validation split


@dataclass(frozen=True)
class Selection:
    """What selection did."""

    decision: Decision
    version: str  # the version `champion` points at now
    test_loss: float = math.nan  # measured only when the champion moved
    test_acc: float = math.nan  # NaN for regression, or when the champion stayed

    @property
    def model_uri(self) -> str:
        """The URI that loads the champion."""
        return f"models:/{self.decision.name}@{CHAMPION}"


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The completed trial with the lowest finite validation loss."""
    candidates = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.value is not None and math.isfinite(t.value) and "model_uri" in t.user_attrs]
    if not candidates:
        raise UserError(f"study '{study.study_name}' has no completed trial with a finite "
                        "validation loss yet: run more trials (`hpstudy optimize`) first.")
    return min(candidates, key=lambda t: (t.value, t.number))


def _loss_of(model_uri: str, split: Split, tracker: Tracker) -> tuple[float, float]:
    """Loss and accuracy of a logged model, loaded from its artifact, on `split`."""
    with torch.no_grad():
        return evaluate(load_network(model_uri, tracker.uri), split)


def decide(study: optuna.Study, data: Dataset, tracker: Tracker) -> Decision:
    """Compare the study's best model with the current champion; writes nothing."""
    trial, name = best_trial(study), study.study_name
    uri, run_id = trial.user_attrs["model_uri"], trial.user_attrs["mlflow_run_id"]
    val_loss, _ = _loss_of(uri, data.val, tracker)
    best = {"name": name, "trial": trial.number, "val_loss": val_loss, "model_uri": uri,
            "run_id": run_id}
    current = tracker.version_by_alias(name, CHAMPION)
    if current is None:
        return Decision(**best, moves=True, reason="there is no champion yet")
    held = {"current_version": str(current.version), "current_trial": current.tags.get("trial")}
    if current.source == uri:
        return Decision(**best, **held, current_val_loss=val_loss, moves=False,
                        reason="the study's best model is the champion already")
    try:
        current_loss, _ = _loss_of(current.source, data.val, tracker)
    except (UserError, RuntimeError, ValueError) as error:  # e.g. another input shape
        return Decision(**best, **held, moves=True, reason=f"the champion cannot be evaluated "
                        f"on this validation split ({str(error).splitlines()[0]})")
    if val_loss < current_loss:
        reason = (f"validation loss {val_loss:.4f} is lower than the champion's "
                  f"{current_loss:.4f} on the same split")
    else:
        reason = (f"the study's best, trial {trial.number} (validation loss {val_loss:.4f}), is "
                  f"not better than the champion ({current_loss:.4f}) on the same split")
    return Decision(**best, **held, current_val_loss=current_loss,
                    moves=val_loss < current_loss, reason=reason)


def select(study: optuna.Study, data: Dataset, tracker: Tracker, run_id: str) -> Selection:
    """Decide, then (if the best model wins) test it once, register it and move the aliases."""
    decision = decide(study, data, tracker)
    tracker.set_tags(run_id, {"best_trial": decision.trial, "best_model_uri": decision.model_uri,
                              "champion_moved": decision.moves, "selection": decision.reason})
    tracker.log_metrics(run_id, {"best_val_loss": decision.val_loss})
    if not decision.moves:
        return Selection(decision, decision.current_version or "")
    with torch.no_grad():
        test_loss, test_acc = evaluate(load_network(decision.model_uri, tracker.uri), data.test)
    tracker.log_metrics(run_id, {"test_loss": test_loss}
                        | ({} if math.isnan(test_acc) else {"test_acc": test_acc}))
    version = tracker.register(decision.name, decision.model_uri, decision.run_id, tags={
        "study": decision.name, "trial": decision.trial, "val_loss": decision.val_loss,
        "run_id": decision.run_id, "test_loss": test_loss, "test_acc": test_acc})
    if decision.current_version is not None:
        tracker.set_alias(decision.name, PREVIOUS, decision.current_version)
    tracker.set_alias(decision.name, CHAMPION, version)
    return Selection(decision, version, test_loss, test_acc)
