"""Selection: the best trial by validation loss, gated against the champion, tested once.

The gate compares like with like: both the study's best model and the current champion
are evaluated, as logged, on this study's validation split. `champion` moves only when
the new model is strictly better; the model it replaces keeps the alias `previous`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from hpstudy.data import Dataset, Split
from hpstudy.errors import NoChampion, UserError
from hpstudy.search.record import CHAMPION_ATTR, TrialRecord
from hpstudy.storage import runs_link
from hpstudy.tracking.artifacts import WEIGHTS_FILE, load_network
from hpstudy.tracking.packaging import dataset_input
from hpstudy.tracking.runs import DELETED_TAG, Tracker
from hpstudy.train import interrupts
from hpstudy.train.loop import constant_loss, evaluate

NetworkOf = Callable[[FrozenTrial], torch.nn.Module]  # a trial's trained network
CHAMPION, PREVIOUS = "champion", "previous"  # registry aliases: what serving loads; its fallback


@dataclass(frozen=True)
class Decision:
    """What selection would do: the study's best model against the current champion."""

    name: str  # registered model name (the study's)
    trial: int
    val_loss: float  # the best trial's trained network, on this study's validation split
    weights_uri: str  # its weights; the servable model is packaged when it becomes champion
    run_id: str  # the trial's MLflow run
    moves: bool  # whether `champion` moves to this model
    reason: str
    current_version: str | None = None  # the champion before selection
    current_trial: str | None = None
    current_val_loss: float | None = None  # the champion on the same validation split
    val_acc: float = math.nan  # the best trial's network on the validation split (NaN: regression)


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


@dataclass(frozen=True)
class Floor:
    """What a champion must beat on the validation split: a constant predictor, at least."""

    max_val_loss: float  # the constant predictor's loss (or the study file's max_val_loss)
    min_val_acc: float  # the most frequent class's share; NaN for regression

    def admits(self, value: float, val_acc: float | None) -> bool:
        """Whether a trial with this validation loss and accuracy may become champion."""
        if not value < self.max_val_loss:
            return False
        return math.isnan(self.min_val_acc) or (val_acc is not None and val_acc > self.min_val_acc)

    def describe(self) -> str:
        """In words, for messages."""
        acc = "" if math.isnan(self.min_val_acc) else (
            f" and a validation accuracy above {100 * self.min_val_acc:.1f}%")
        return f"a validation loss below {self.max_val_loss:.4g}{acc}"


def floor(val: Split, rule: str = "chance", max_val_loss: float | None = None) -> Floor:
    """The floor for a validation split: `chance` = beat predicting the class frequencies
    (or, for regression, the mean); `none` = anything finite. `max_val_loss` lowers it."""
    limit = math.inf if max_val_loss is None else max_val_loss
    if rule == "none":
        return Floor(limit, math.nan)
    loss, accuracy = constant_loss(val)
    return Floor(min(limit, loss), accuracy)


def best_trial(study: optuna.Study, rule: Floor | None = None) -> FrozenTrial:
    """The completed trial with the lowest finite validation loss (that passes the floor)."""
    done = [(t, r) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if (r := TrialRecord.of(t)) is not None and r.weights_uri
            and t.value is not None and math.isfinite(t.value)]
    if not done:
        raise NoChampion(f"study '{study.study_name}' has no completed trial with a model yet: "
                         "run more trials (`hpstudy optimize`) first.")
    qualified = [t for t, r in done if rule is None or rule.admits(t.value, r.val_acc)]
    if not qualified:
        best = min(done, key=lambda pair: pair[0].value)[0]
        raise NoChampion(
            f"no trial of study '{study.study_name}' beats a constant predictor: a champion "
            f"needs {rule.describe()}, and the best of {len(done)} completed trials (trial "
            f"{best.number}) has validation loss {best.value:.4g}. Widen or move the search "
            "(learning rate, epochs), or set champion_floor = \"none\" in the study file.")
    return min(qualified, key=lambda t: (t.value, t.number))


def _loss_of(model_uri: str, split: Split, tracker: Tracker) -> tuple[float, float]:
    """Loss and accuracy of a logged model, loaded from its artifact, on `split`."""
    with torch.no_grad():
        return evaluate(load_network(model_uri, tracker.uri), split)


def decide(study: optuna.Study, data: Dataset, tracker: Tracker, network_of: NetworkOf,
           rule: Floor | None = None) -> Decision:
    """Compare the study's best model with the current champion; writes nothing.

    `network_of(trial)` is the trial's trained network (rebuilt, its weights loaded).
    """
    trial, name = best_trial(study, rule), study.study_name
    record = TrialRecord.of(trial)
    uri, run_id = record.weights_uri, record.run_id
    with torch.no_grad():
        val_loss, val_acc = evaluate(network_of(trial), data.val)
    best = {"name": name, "trial": trial.number, "val_loss": val_loss, "weights_uri": uri,
            "run_id": run_id, "val_acc": val_acc}
    current = tracker.version_by_alias(name, CHAMPION)
    if current is None:
        return Decision(**best, moves=True, reason="the study's first champion (there was none)")
    held = {"current_version": str(current.version), "current_trial": current.tags.get("trial")}
    if current.run_id == run_id:
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


def select(study: optuna.Study, data: Dataset, tracker: Tracker, run_id: str,
           network_of: NetworkOf, rule: Floor | None = None, dataset: str = "") -> Selection:
    """Decide, then (if the best model wins) test it once, register it and move the aliases.

    Holds the study's registry lock throughout: concurrent selections (many workers
    finishing at once) register a model once and all report the same version. A signal
    waits for the end (`interrupts.critical`): never a version without its alias, nor a
    lock left behind. `dataset` names the data in MLflow (the study's [data] name).
    """
    with interrupts.critical(), tracker.registry_lock(study.study_name):
        return _select(study, data, tracker, run_id, network_of, rule, dataset or study.study_name)


def _select(study: optuna.Study, data: Dataset, tracker: Tracker, run_id: str,
            network_of: NetworkOf, rule: Floor | None, dataset: str) -> Selection:
    """`select`, under the lock: the servable model is packaged only for a new champion."""
    decision = decide(study, data, tracker, network_of, rule)
    tracker.set_tags(run_id, {"best_trial": decision.trial, "best_run": decision.run_id,
                              "champion_moved": decision.moves, "selection": decision.reason})
    tracker.log_metrics(run_id, {"best_val_loss": decision.val_loss})
    if not decision.moves:
        return Selection(decision, decision.current_version or "")
    trial = study.trials[decision.trial]
    network = network_of(trial)
    with torch.no_grad():
        test_loss, test_acc = evaluate(network, data.test)
    model_uri = tracker.log_model(decision.run_id, network, data.val.x[:2].cpu().numpy(),
                                  data.classes, step=max(trial.intermediate_values, default=0))
    val = _named("val", decision.val_loss, decision.val_acc)  # measured once, by `decide`
    for part, split, metrics in (("val", data.val, val),
                                 ("test", data.test, _named("test", test_loss, test_acc))):
        tracker.log_model_metrics(run_id, model_uri, metrics,  # on this call's run: the trial's
                                  dataset_input(dataset, part, split, dataset))  # keeps its curves
    version = tracker.register(decision.name, model_uri, decision.run_id, tags={
        "study": decision.name, "trial": decision.trial, "val_loss": decision.val_loss,
        "run_id": decision.run_id, "test_loss": test_loss, "test_acc": test_acc})
    if decision.current_version is not None:
        tracker.set_alias(decision.name, PREVIOUS, decision.current_version)
    tracker.set_alias(decision.name, CHAMPION, version)
    study.set_user_attr(CHAMPION_ATTR, {  # where optuna-dashboard and Optuna's API look
        "trial": decision.trial, "model": f"models:/{decision.name}@{CHAMPION}",
        "version": version, "run_id": decision.run_id, "tracking_uri": tracker.uri,
        "mlflow_runs": runs_link(tracker.uri, tracker.experiment_id),
        "val_loss": decision.val_loss, "test_loss": test_loss,
        "test_acc": None if math.isnan(test_acc) else test_acc})
    return Selection(decision, version, test_loss, test_acc)


def _named(part: str, loss: float, accuracy: float) -> dict[str, float]:
    """{part}_loss and (for classification) {part}_acc."""
    return {f"{part}_loss": loss} | ({} if math.isnan(accuracy) else {f"{part}_acc": accuracy})


# ------------------------------------------------------------------------------- storage budget


@dataclass(frozen=True)
class Cleanup:
    """What the storage budget freed: trials whose weights were deleted, and the bytes."""

    trials: list[int]
    freed_bytes: int


def keep_best_models(study: optuna.Study, tracker: Tracker, keep: int,
                     rule: Floor | None = None) -> Cleanup:
    """Delete the weights of completed trials outside the best `keep` (0: keep every one).

    Kept as well: selection's pick under `rule` and every trial with a registered version
    (champion, previous). Curves, pictures and metrics always stay. A value never changes,
    so a trial that leaves the best k never comes back: its weights are not needed again.
    """
    if keep == 0:
        return Cleanup([], 0)
    done = sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if t.value is not None), key=lambda t: (t.value, t.number))
    kept = {t.number for t in done[:keep]}
    with contextlib.suppress(NoChampion):  # no pick: the best k alone
        kept.add(best_trial(study, rule).number)
    registered = tracker.registered_runs(study.study_name)
    gone = {r.info.run_id for r in tracker.trial_runs() if DELETED_TAG in r.data.tags}
    deleted, freed = [], 0
    for trial in done:
        record = TrialRecord.of(trial)
        if (trial.number in kept or record is None or not record.weights_uri
                or record.run_id in registered or record.run_id in gone):
            continue
        freed += tracker.delete_artifacts(
            record.run_id, [WEIGHTS_FILE], f"not among the best {keep} trials (keep_models)")
        deleted.append(trial.number)
    return Cleanup(deleted, freed)
