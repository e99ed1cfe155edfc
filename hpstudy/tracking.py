"""MLflow, and the only module that talks to it: experiments, runs, artifacts, models, registry.

Runs are addressed by id through `MlflowClient`, so a trial never depends on a global
"active run". Each epoch's metrics go in one batched write (about a millisecond on sqlite).
"""

from __future__ import annotations

import base64
import copy
import functools
import io
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Schema
from mlflow.utils.time import get_current_time_millis

from hpstudy import predictor, storage
from hpstudy.errors import UserError
from hpstudy.train import EpochMetrics

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"  # MLflow run statuses we end runs with
MODEL_NAME = "model"  # the logged model's name inside a run
NETWORK_FILE = "network.pt2"  # the torch.export'ed network inside a logged model
PREDICTOR_FILE = Path(predictor.__file__)  # the served model's code, logged with every model
PARAM_LIMIT = 6000  # MLflow's longest parameter value, in characters


def _timed(method: Callable) -> Callable:
    """Count a per-run call's wall time against its run (`Tracker.seconds`)."""

    @functools.wraps(method)
    def timed(self: Tracker, run_id: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(self, run_id, *args, **kwargs)
        finally:
            self.spent[run_id] = self.spent.get(run_id, 0.0) + time.perf_counter() - started

    return timed


def quiet() -> None:
    """Keep MLflow's informational chatter (and download progress bars) out of the CLI."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Tracker:
    """One MLflow experiment (one study) in one tracking store."""

    def __init__(self, tracking_uri: str, experiment: str):
        storage.prepare(tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)  # `log_model` works on the fluent API's store
        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.spent: dict[str, float] = {}  # run id -> seconds spent logging to it
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
        started = time.perf_counter()
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        if params:
            self.client.log_batch(run_id, params=[Param(k, str(v)[:PARAM_LIMIT])
                                                  for k, v in params.items()])
        self.spent[run_id] = time.perf_counter() - started
        return run_id

    def seconds(self, run_id: str) -> float:
        """Wall time spent logging to this run so far."""
        return self.spent.get(run_id, 0.0)

    @_timed
    def log_epoch(self, run_id: str, metrics: EpochMetrics) -> None:
        """One epoch's metrics with step = epoch, in one write."""
        now = get_current_time_millis()
        values = {"train_loss": metrics.train_loss, "train_acc": metrics.train_acc,
                  "val_loss": metrics.val_loss, "val_acc": metrics.val_acc,
                  "epoch_seconds": metrics.seconds}
        batch = [Metric(k, v, now, metrics.epoch) for k, v in values.items() if not math.isnan(v)]
        self.client.log_batch(run_id, metrics=batch)

    @_timed
    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Single values (e.g. test metrics) on a run."""
        now = get_current_time_millis()
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])

    @_timed
    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Tags on a run."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    @_timed
    def log_figure(self, run_id: str, figure: Figure, filename: str) -> None:
        """A matplotlib figure as a PNG artifact."""
        self.client.log_figure(run_id, figure, filename, save_kwargs={"dpi": 100})

    @_timed
    def log_text(self, run_id: str, text: str, filename: str) -> None:
        """A text artifact (e.g. the study file that produced the run)."""
        self.client.log_text(run_id, text, filename)

    @_timed
    def log_model(self, run_id: str, network: torch.nn.Module, example: np.ndarray,
                  classes: Sequence[str]) -> str:
        """The network as a servable pyfunc (hpstudy/predictor.py); returns the model's URI.

        `example` is a small batch of training-format inputs (uint8 images or float
        features); the first one becomes the logged input example.
        """
        network = copy.deepcopy(network).cpu().eval()
        image = example.ndim == 4
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / NETWORK_FILE
            batch = torch.export.Dim("batch", min=1)
            exported = torch.export.export(network, (torch.from_numpy(example),),
                                           dynamic_shapes=({0: batch},))
            torch.export.save(exported, path)
            with mlflow.start_run(run_id=run_id):  # log_model attaches to the fluent active run
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME, python_model=str(PREDICTOR_FILE),
                    artifacts={"network": str(path)},
                    model_config={"input_shape": list(example.shape[1:]), "classes": list(classes)},
                    signature=_signature(image, bool(classes)),
                    input_example=_input_example(example[0], image),
                    pip_requirements=requirements())
        self.client.set_tag(run_id, "model_uri", info.model_uri)  # from the run to its model
        return info.model_uri

    def end_run(self, run_id: str, status: str = FINISHED) -> None:
        """Record the time spent logging to the run, then mark it FINISHED, FAILED or KILLED."""
        spent = Metric("logging_seconds", self.spent.pop(run_id, 0.0), get_current_time_millis(), 0)
        self.client.log_batch(run_id, metrics=[spent])
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
        return registered_version(self.uri, name, alias)


def requirements() -> list[str]:
    """What a logged model needs to run, pinned to what trained it."""
    import PIL

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
            f"pillow=={PIL.__version__}", f"numpy=={np.__version__}"]


def _signature(image: bool, classify: bool) -> ModelSignature:
    """Inputs: one image (or feature list) per row; outputs: class, name, probabilities."""
    inputs = Schema([ColSpec(AnyType(), predictor.IMAGE_FIELD if image else
                             predictor.FEATURE_FIELD)])
    if not classify:
        return ModelSignature(inputs, Schema([ColSpec(Array(DataType.double), "prediction")]))
    return ModelSignature(inputs, Schema([
        ColSpec(DataType.long, "class_index"), ColSpec(DataType.string, "class_name"),
        ColSpec(Array(DataType.double), "probabilities")]))


def _input_example(one: np.ndarray, image: bool) -> pd.DataFrame:
    """One input as a user sends it: a base64 PNG, or a list of numbers."""
    if not image:
        return pd.DataFrame({predictor.FEATURE_FIELD: [one.astype(float).tolist()]})
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(one[0] if one.shape[0] == 1 else one.transpose(1, 2, 0)).save(png, "PNG")
    return pd.DataFrame({predictor.IMAGE_FIELD: [base64.b64encode(png.getvalue()).decode()]})


def _require_store(tracking_uri: str) -> None:
    """A UserError if a sqlite tracking store does not exist (MLflow would create it)."""
    path = storage.sqlite_file(tracking_uri)
    if path is not None and not path.exists():
        raise UserError(f"no MLflow store at {tracking_uri} ({path} does not exist): run "
                        "`hpstudy optimize` first, or pass the --tracking-uri it used.")


def registered_version(tracking_uri: str, name: str, alias: str) -> ModelVersion | None:
    """The version `models:/name@alias` points at, or None; creates nothing."""
    _require_store(tracking_uri)
    try:
        return MlflowClient(tracking_uri).get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _call(what: str, uri: str, tracking_uri: str, load: Any) -> Any:
    """`load(uri)` against `tracking_uri`, with MLflow's errors turned into a UserError."""
    _require_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return load(uri)
    except MlflowException as error:
        raise UserError(f"cannot load {what} {uri} from {tracking_uri}: {error.message}") from None


def load_network(model_uri: str, tracking_uri: str) -> torch.nn.Module:
    """The exported network inside a logged or registered model, as a callable module."""
    def load(uri: str) -> torch.nn.Module:
        folder = Path(mlflow.artifacts.download_artifacts(uri))  # the model's folder: small
        return torch.export.load(folder / "artifacts" / NETWORK_FILE).module()

    return _call("the network of", model_uri, tracking_uri, load)


def load_predictor(model_uri: str, tracking_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """A logged or registered model (e.g. models:/NAME@champion) as MLflow serves it."""
    return _call("the model", model_uri, tracking_uri, mlflow.pyfunc.load_model)


def serve_command(model_uri: str, host: str, port: int) -> list[str]:
    """`mlflow models serve` for a model, in this Python environment."""
    return [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
            "--env-manager", "local", "--host", host, "--port", str(port)]
