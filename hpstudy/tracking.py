"""MLflow, and the only module that talks to it: experiments, runs, artifacts, models, registry.

Runs are addressed by id through `MlflowClient`, so a trial never depends on a global
"active run". Each epoch's metrics go in one batched write (about a millisecond on sqlite).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import Any

import mlflow
import numpy as np
import torch
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.utils.time import get_current_time_millis

from hpstudy import storage
from hpstudy.errors import UserError
from hpstudy.train import EpochMetrics

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"  # MLflow run statuses we end runs with
MODEL_NAME = "model"  # the logged model's name inside a run
PARAM_LIMIT = 6000  # MLflow's longest parameter value, in characters


def quiet() -> None:
    """Keep MLflow's informational chatter out of the CLI's output."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Tracker:
    """One MLflow experiment (one study) in one tracking store."""

    def __init__(self, tracking_uri: str, experiment: str):
        storage.prepare(tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)  # `log_model` works on the fluent API's store
        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=storage.artifact_location(tracking_uri, experiment))
        else:
            self.experiment_id = found.experiment_id
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)

    # ------------------------------------------------------------------ runs

    def start_run(self, name: str, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None, parent_id: str | None = None) -> str:
        """A new run (nested under `parent_id` if given) with its parameters; returns its id."""
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        if params:
            self.client.log_batch(run_id, params=[Param(k, str(v)[:PARAM_LIMIT])
                                                  for k, v in params.items()])
        return run_id

    def log_epoch(self, run_id: str, metrics: EpochMetrics) -> None:
        """One epoch's metrics with step = epoch, in one write."""
        now = get_current_time_millis()
        values = {"train_loss": metrics.train_loss, "train_acc": metrics.train_acc,
                  "val_loss": metrics.val_loss, "val_acc": metrics.val_acc,
                  "epoch_seconds": metrics.seconds}
        batch = [Metric(k, v, now, metrics.epoch) for k, v in values.items() if not math.isnan(v)]
        self.client.log_batch(run_id, metrics=batch)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Single values (e.g. test metrics) on a run."""
        now = get_current_time_millis()
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Tags on a run."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    def log_figure(self, run_id: str, figure: Figure, filename: str) -> None:
        """A matplotlib figure as a PNG artifact."""
        self.client.log_figure(run_id, figure, filename, save_kwargs={"dpi": 100})

    def log_text(self, run_id: str, text: str, filename: str) -> None:
        """A text artifact (e.g. the study file that produced the run)."""
        self.client.log_text(run_id, text, filename)

    def log_model(self, run_id: str, model: torch.nn.Module, example: np.ndarray) -> str:
        """The model, moved to the CPU, with a signature and an input example; returns its URI."""
        model = copy.deepcopy(model).cpu().eval()
        with torch.no_grad():
            output = model(torch.from_numpy(example)).numpy()
        with mlflow.start_run(run_id=run_id):  # log_model attaches to the fluent active run
            info = mlflow.pytorch.log_model(
                model, name=MODEL_NAME, signature=infer_signature(example, output),
                input_example=example, pip_requirements=requirements())
        self.client.set_tag(run_id, "model_uri", info.model_uri)  # from the run to its model
        return info.model_uri

    def end_run(self, run_id: str, status: str = FINISHED) -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status=status)

    # ------------------------------------------------------------------ registry

    def register(self, name: str, model_uri: str, run_id: str, tags: Mapping[str, Any]) -> str:
        """The registry version of `model_uri` under `name`, created if it has none yet."""
        try:
            self.client.create_registered_model(name, description=f"hpstudy study '{name}'")
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        for version in self.client.search_model_versions(f"name = '{name}'"):
            if version.source == model_uri:
                return str(version.version)
        version = self.client.create_model_version(
            name, source=model_uri, run_id=run_id, tags={k: str(v) for k, v in tags.items()},
            model_id=model_uri.removeprefix("models:/"))
        return str(version.version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `name@alias` at `version`."""
        self.client.set_registered_model_alias(name, alias, version)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version `name@alias` points at, or None."""
        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None


def requirements() -> list[str]:
    """What a logged model needs to run, pinned to what trained it."""
    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]


def load_model(model_uri: str, tracking_uri: str) -> torch.nn.Module:
    """A logged or registered model (e.g. models:/NAME@champion) as a callable torch module."""
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.pytorch.load_model(model_uri, map_location="cpu")
    except MlflowException as error:
        raise UserError(f"cannot load {model_uri} from {tracking_uri}: {error.message}") from None
