"""The Optuna objective: a trial suggests parameters, trains a model, reports, and is logged."""

from __future__ import annotations

from typing import Any

import optuna
import torch

from hpstudy import plots
from hpstudy.config import StudyConfig
from hpstudy.data import Dataset
from hpstudy.models import build_model, count_parameters
from hpstudy.space import PARAMS, Number, Param
from hpstudy.tracking import FAILED, FINISHED, KILLED, Tracker
from hpstudy.train import Diverged, EpochMetrics, Recipe, describe_device, fit

CURVES_PNG = "curves.png"  # loss and accuracy per epoch
WEIGHTS_PNG = "first_layer.png"  # the first layer's filters or unit weights


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


class Objective:
    """Callable by `study.optimize`: trains one model per trial, logs it as a nested MLflow run."""

    def __init__(self, config: StudyConfig, data: Dataset, tracker: Tracker, parent_id: str,
                 device: torch.device):
        self.config, self.data, self.tracker = config, data, tracker
        self.parent_id, self.device = parent_id, device

    def __call__(self, trial: optuna.Trial) -> float:
        """Train with this trial's parameters; the validation loss of the final model."""
        config, values = self.config, suggest(trial, self.config.search)
        hp = {name: p.value for name, p in config.search.items()} | values
        torch.manual_seed(config.train.seed)  # same parameters, same initial weights
        model = build_model(config.model.architecture, config.model.options,
                            self.data.input_shape, self.data.num_outputs, self.data.mean,
                            self.data.std, hp["width"], hp["depth"], hp["dropout"])
        run_id = self.tracker.start_run(
            f"trial-{trial.number}", parent_id=self.parent_id,
            params=config.fixed_params() | values | {
                "trial": trial.number, "device": describe_device(self.device),
                "n_params": count_parameters(model)},
            tags={"optuna.study": config.name, "optuna.trial_number": trial.number})
        trial.set_user_attr("mlflow_run_id", run_id)
        history: list[EpochMetrics] = []

        def on_epoch(metrics: EpochMetrics) -> None:
            history.append(metrics)
            self.tracker.log_epoch(run_id, metrics)
            trial.report(metrics.val_loss, metrics.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {metrics.epoch}: validation loss "
                                         f"{metrics.val_loss:.4g} is worse than the median")

        recipe = Recipe(epochs=config.train.epochs, batch_size=config.train.batch_size,
                        optimizer=config.train.optimizer, lr=hp["lr"], momentum=hp["momentum"],
                        weight_decay=hp["weight_decay"], seed=config.train.seed)
        try:
            fit(model, self.data, recipe, self.device, on_epoch)
            model_uri = self.tracker.log_model(run_id, model, self.data.val.x[:2].cpu().numpy(),
                                               self.data.classes)
        except optuna.TrialPruned:
            self._close(trial, run_id, history, model, KILLED)
            raise
        except Diverged as error:
            trial.set_user_attr("fail_reason", str(error))
            self._close(trial, run_id, error.history, model, FAILED)
            raise
        except BaseException:
            self.tracker.end_run(run_id, FAILED)
            raise
        trial.set_user_attr("model_uri", model_uri)
        self._close(trial, run_id, history, model, FINISHED)
        return history[-1].val_loss

    def _close(self, trial: optuna.Trial, run_id: str, history: list[EpochMetrics],
               model: Any, status: str) -> None:
        """Log the trial's figures, then end its run with `status`."""
        if history:
            trial.set_user_attr("val_acc", history[-1].val_acc)
            title = f"{self.config.name}: trial {trial.number}"
            self.tracker.log_figure(run_id, plots.curves(history, title), CURVES_PNG)
            self.tracker.log_figure(
                run_id, plots.first_layer_weights(model, self.data.input_shape, title), WEIGHTS_PNG)
        trial.set_user_attr("logging_seconds", self.tracker.seconds(run_id))
        self.tracker.end_run(run_id, status)
