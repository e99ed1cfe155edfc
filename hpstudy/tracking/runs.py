"""MLflow runs: experiments, run logging, the logged model, the registry and its lock.

The `tracking` package is the only one that talks to MLflow. Runs are addressed by id
through `MlflowClient`, so a trial never depends on a global "active run". Each epoch's
metrics go in one batched write (about a millisecond on sqlite).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag, ViewType
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.time import get_current_time_millis

from hpstudy import storage
from hpstudy.errors import UserError
from hpstudy.models import export
from hpstudy.search.record import COMMAND_TAG, FIGURES_ERROR_TAG, RUN_FINISHED, TRIAL_TAG, Process
from hpstudy.tracking.artifacts import (
    MODEL_NAME,
    NETWORK_FILE,
    WEIGHTS_FILE,
    files,
    predictor_code,
    registered_version,
    rerooted,
)
from hpstudy.tracking.packaging import input_example, requirements, signature
from hpstudy.train.loop import EpochMetrics

if TYPE_CHECKING:  # torch is imported where a network is handled: the figure writer needs none
    import torch

PARAM_LIMIT = 6000  # MLflow's longest parameter value, in characters
TAG_LIMIT = 5000  # a tag value we write is cut here (MLflow takes 8000)
LOCK_SUFFIX = ".selection-lock"  # the registered model that serialises a study's selections
LOCK_TTL = 600  # seconds after which a selection lock is taken for abandoned
LOCK_WAIT = 900  # seconds a selection waits for another to finish
DELETED_TAG = "hpstudy.weights_deleted"  # why a trial's weights are gone (storage budget)


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
    # it logs every database error it then raises, traceback and all: hpstudy reports the error
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


class Tracker:
    """One MLflow experiment (one study) in one tracking store."""

    def __init__(self, tracking_uri: str, experiment: str):
        self.uri = tracking_uri
        self.spent: dict[str, float] = {}  # run id -> seconds spent logging to it
        self.context = resolve_tags({})  # MLflow's source, user and git tags, as fluent runs get
        with storage.creation_lock(tracking_uri):  # a fresh sqlite store is made once
            self.client = MlflowClient(tracking_uri, registry_uri=tracking_uri)  # makes tables
            self.client.search_registered_models(max_results=1)  # the registry's, too
            self.experiment_id = self._experiment(experiment)
            storage.share_sqlite(tracking_uri)

    def _experiment(self, name: str) -> str:
        """The experiment's id, created (or restored) if needed; safe when workers race."""
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(
                    name, artifact_location=storage.artifact_location(self.uri, name))
            except MlflowException as error:  # another worker made it first
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = self.client.get_experiment_by_name(name)
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return found.experiment_id

    # ------------------------------------------------------------------ runs

    def start_run(self, name: str, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None, parent_id: str | None = None) -> str:
        """A new run (nested under `parent_id` if given) with its parameters; returns its id."""
        tags = self.context | {k: str(v) for k, v in (tags or {}).items()}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        started = time.perf_counter()
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        if params:
            self.client.log_batch(run_id, params=[Param(k, str(v)[:PARAM_LIMIT])
                                                  for k, v in params.items()])
        self.spent[run_id] = time.perf_counter() - started
        return run_id

    @_timed
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """More parameters on a run."""
        self.client.log_batch(run_id, params=[Param(k, str(v)[:PARAM_LIMIT])
                                              for k, v in params.items()])

    def seconds(self, run_id: str) -> float:
        """Wall time spent logging to this run so far."""
        return self.spent.get(run_id, 0.0)

    @_timed
    def log_epochs(self, run_id: str, history: Sequence[EpochMetrics]) -> None:
        """Epochs' metrics with step = epoch, in one write."""
        now = get_current_time_millis()
        batch = []
        for metrics in history:
            values = {"train_loss": metrics.train_loss, "train_acc": metrics.train_acc,
                      "val_loss": metrics.val_loss, "val_acc": metrics.val_acc,
                      "epoch_seconds": metrics.seconds, "grad_norm": metrics.grad_norm}
            batch += [Metric(k, v, now, metrics.epoch) for k, v in values.items()
                      if not (k in ("train_acc", "val_acc", "grad_norm") and math.isnan(v))]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    @_timed
    def log_weights(self, run_id: str, network: torch.nn.Module) -> str:
        """The trained weights (a state dict, milliseconds to write); returns their URI.

        The servable model is packaged from them only for a trial selection picks.
        """
        import torch

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / WEIGHTS_FILE
            torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, path)
            self.client.log_artifact(run_id, str(path))
        return f"runs:/{run_id}/{WEIGHTS_FILE}"

    @_timed
    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Single values (e.g. test metrics) on a run."""
        now = get_current_time_millis()
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])

    @_timed
    def log_series(self, run_id: str, series: Mapping[str, Sequence[tuple[int, float]]]) -> None:
        """Metrics at several steps each, (step, value) pairs, in one write."""
        now = get_current_time_millis()
        batch = [Metric(name, value, now, step) for name, points in series.items()
                 for step, value in points]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    @_timed
    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Tags on a run."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    @_timed
    def log_text(self, run_id: str, text: str, filename: str) -> None:
        """A text artifact (e.g. the study file that produced the run)."""
        self.client.log_text(run_id, text, filename)

    @_timed
    def log_model(self, run_id: str, network: torch.nn.Module, example: np.ndarray,
                  classes: Sequence[str]) -> str:
        """The network as a servable pyfunc (hpstudy.serve.predictor); returns the model's URI.

        `example` is a small batch of training-format inputs (uint8 images or float
        features); the first one becomes the logged input example. The model is saved
        locally, then written into the run's artifacts through the client.
        """
        import torch

        network = copy.deepcopy(network).cpu().eval()
        image = example.ndim == 4 and example.dtype == np.uint8  # else numbers, as features
        with tempfile.TemporaryDirectory() as folder:
            path, model_dir = Path(folder) / NETWORK_FILE, Path(folder) / MODEL_NAME
            torch.export.save(export(network, example), path)
            mlflow.pyfunc.save_model(
                model_dir, python_model=predictor_code(), artifacts={"network": str(path)},
                model_config={"input_shape": list(example.shape[1:]), "classes": list(classes),
                              "images": image},
                signature=signature(image, bool(classes)),
                input_example=input_example(example[0], image),
                pip_requirements=requirements())
            self.client.log_artifacts(run_id, str(model_dir), MODEL_NAME)
        uri = f"runs:/{run_id}/{MODEL_NAME}"
        self.client.set_tag(run_id, "model_uri", uri)  # from the run to its model
        return uri

    def log_study(self, run_id: str, files: Mapping[str, bytes | str], params: Mapping[str, Any],
                  tags: Mapping[str, Any]) -> None:
        """A study's views on a call's parent run: files under `study/` (PNG bytes, CSV or
        HTML text) in one write, the best parameters and tags."""
        if params:
            self.log_params(run_id, params)
        self.set_tags(run_id, tags)
        with tempfile.TemporaryDirectory() as folder:
            for filename, content in files.items():
                path = Path(folder) / filename
                if isinstance(content, str):
                    path.write_text(content, encoding="utf-8")
                else:
                    path.write_bytes(content)
            self.client.log_artifacts(run_id, folder, "study")

    def delete_artifacts(self, run_id: str, paths: Sequence[str], why: str) -> int:
        """Delete a run's artifacts at `paths` (through MLflow's artifact repository, local or
        remote); tag the run with `why`; the bytes freed where they can be counted."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        location = rerooted(self.client.get_run(run_id).info.artifact_uri, self.uri)
        repository = get_artifact_repository(location, tracking_uri=self.uri)
        freed = 0
        for path in paths:
            freed += sum(f.file_size or 0 for f in files(repository, path))
            repository.delete_artifacts(path)
        self.client.set_tag(run_id, DELETED_TAG, why)
        return freed

    def latest_parent_run(self, command: str) -> str | None:
        """The most recent run of an `hpstudy COMMAND` call in this experiment, or None."""
        runs = self.client.search_runs([self.experiment_id], f"tags.`{COMMAND_TAG}` = '{command}'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def end_run(self, run_id: str, status: str = RUN_FINISHED,
                tags: Mapping[str, Any] | None = None) -> None:
        """Record the time spent logging to the run and `tags`, then end it with `status`."""
        spent = Metric("logging_seconds", self.spent.pop(run_id, 0.0), get_current_time_millis(), 0)
        self.client.log_batch(run_id, metrics=[spent], tags=[
            RunTag(k, str(v)[:TAG_LIMIT]) for k, v in (tags or {}).items()])
        self.client.set_terminated(run_id, status=status)

    def running_runs(self) -> list[Run]:
        """Every run of the experiment still marked RUNNING (live, or left by a dead process)."""
        return self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'",
                                       run_view_type=ViewType.ACTIVE_ONLY, max_results=50000)

    def trial_runs(self) -> list[Run]:
        """Every trial run of the experiment (runs tagged with an Optuna trial number)."""
        return self.client.search_runs([self.experiment_id], f"tags.`{TRIAL_TAG}` != ''",
                                       run_view_type=ViewType.ACTIVE_ONLY, max_results=50000)

    # ------------------------------------------------------------------ registry

    @contextlib.contextmanager
    def registry_lock(self, name: str, timeout: float = LOCK_WAIT) -> Iterator[None]:
        """Hold `name`'s selection lock: a registered model that exists only while held.

        Creating a registered model is atomic in every MLflow store (the name is unique),
        so it serialises selections on one machine or many. A lock whose holder died on
        this machine, or that outlived LOCK_TTL, is broken.
        """
        lock, me = f"{name}{LOCK_SUFFIX}", Process.this()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.create_registered_model(
                    lock, tags=me.tags() | {"expires": str(time.time() + LOCK_TTL)},
                    description="held while hpstudy selects a champion; deleted after")
                break
            except MlflowException as error:
                if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                    continue  # held at our insert, released before MLflow looked it up: again
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            self._break_stale_lock(lock)
            if time.monotonic() > deadline:
                raise UserError(f"another `hpstudy select` has held the registry lock '{lock}' "
                                f"for over {timeout:.0f} s. If no selection is running, delete "
                                "that registered model in the MLflow UI and try again.")
            time.sleep(0.2)
        try:
            yield
        finally:
            with contextlib.suppress(MlflowException):  # broken meanwhile: nothing to release
                self.client.delete_registered_model(lock)

    def _break_stale_lock(self, lock: str) -> None:
        """Delete the lock if its holder is dead or it has expired."""
        try:
            held = self.client.get_registered_model(lock)
            holder = Process.from_tags(held.tags)
            if (holder and holder.is_dead()) or float(held.tags.get("expires", 0)) < time.time():
                self.client.delete_registered_model(lock)
        except MlflowException:
            pass  # released in the meantime

    # ------------------------------------------------------------------ registry

    def register(self, name: str, run_id: str, tags: Mapping[str, Any]) -> str:
        """The registry version of the model logged in `run_id`, created if it has none yet."""
        try:
            self.client.create_registered_model(name, description=f"hpstudy study '{name}'")
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        for version in self.client.search_model_versions(f"name = '{name}'"):
            if version.run_id == run_id:
                return str(version.version)
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{MODEL_NAME}"
        version = self.client.create_model_version(
            name, source=source, run_id=run_id, tags={k: str(v) for k, v in tags.items()})
        return str(version.version)

    def registered_runs(self, name: str) -> set[str]:
        """The runs that hold a registered version of model `name` (none if it has none)."""
        return {v.run_id for v in self.client.search_model_versions(f"name = '{name}'")}

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `name@alias` at `version`."""
        self.client.set_registered_model_alias(name, alias, version)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version `name@alias` points at, or None."""
        return registered_version(self.uri, name, alias)


@dataclass(frozen=True)
class RunEnd:
    """How a run ends: the figures to draw and log, its tags, and its final status."""

    tracking_uri: str
    run_id: str
    status: str  # FINISHED, FAILED or KILLED
    tags: dict[str, str]
    figures: tuple[tuple[str, Callable[..., Figure], tuple], ...] = ()  # (file, draw, args)
    texts: tuple[tuple[str, str], ...] = ()  # (file, text)


def write_run_end(job: RunEnd) -> None:
    """Draw and log the job's figures, then end its run; raises if a figure failed.

    Runs in the background writer process (hpstudy.tracking.writer) or, without one, inline.
    A figure or text file that fails (a full disk too) does not keep the run open: it ends
    as planned, tagged with why.
    """
    client = MlflowClient(job.tracking_uri)
    error = ""
    for filename, *content in [*job.texts, *job.figures]:  # (file, text), (file, draw, args)
        try:
            if len(content) == 1:
                client.log_text(job.run_id, content[0], filename)
            else:
                draw, args = content
                client.log_figure(job.run_id, draw(*args), filename, save_kwargs={"dpi": 100})
        except Exception as failure:
            error = f"{filename}: {type(failure).__name__}: {failure}"[:TAG_LIMIT]
    tags = job.tags | ({FIGURES_ERROR_TAG: error} if error else {})
    client.log_batch(job.run_id, tags=[RunTag(k, str(v)[:TAG_LIMIT]) for k, v in tags.items()])
    client.set_terminated(job.run_id, status=job.status)
    if error:
        raise RuntimeError(f"a figure could not be written ({error})")


