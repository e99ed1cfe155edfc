"""MLflow runs: experiments, run logging, the logged model, the registry and its lock.

The `tracking` package is the only one that talks to MLflow. Runs are addressed by id
through `MlflowClient`, so a trial never depends on a global "active run". Each epoch's
metrics go in one batched write (about a millisecond on sqlite).
"""

from __future__ import annotations

import copy
import functools
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import (
    DatasetInput,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    Param,
    Run,
    RunTag,
    ViewType,
)
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.time import get_current_time_millis

from hpstudy import storage
from hpstudy.search.record import FIGURES_ERROR_TAG, RUN_FINISHED, TRIAL_TAG
from hpstudy.tracking.artifacts import (
    MODEL_NAME,
    WEIGHTS_FILE,
    files,
    latest_call,
    read_bytes,
    rerooted,
)
from hpstudy.tracking.packaging import save_network
from hpstudy.tracking.registry import Registry
from hpstudy.train.loop import EpochMetrics

if TYPE_CHECKING:  # torch is imported where a network is handled: the figure writer needs none
    import torch

PARAM_LIMIT = 6000  # MLflow's longest parameter value, in characters
TAG_LIMIT = 5000  # a tag value we write is cut here (MLflow takes 8000)
SYSTEM_EVERY = 5.0  # seconds between samples of a call's CPU, memory and GPU use
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


class Tracker(Registry):
    """One MLflow experiment (one study) in one tracking store, and its registry."""

    def __init__(self, tracking_uri: str, experiment: str):
        self.uri, self.experiment = tracking_uri, experiment
        self.spent: dict[str, float] = {}  # run id -> seconds spent logging to it
        self.monitors: dict[str, Any] = {}  # run id -> its SystemMetricsMonitor, until it ends
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
                  tags: Mapping[str, Any] | None = None, parent_id: str | None = None,
                  system_metrics: bool = False) -> str:
        """A new run (nested under `parent_id` if given) with its parameters; returns its id.

        With `system_metrics`, MLflow's monitor (CPU, memory, disk, network; GPUs when
        pynvml is there) samples every SYSTEM_EVERY seconds, from its own thread, until
        `end_run`.
        """
        tags = self.context | {k: str(v) for k, v in (tags or {}).items()}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        started = time.perf_counter()
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        if params:
            self.client.log_batch(run_id, params=[Param(k, str(v)[:PARAM_LIMIT])
                                                  for k, v in params.items()])
        self.spent[run_id] = time.perf_counter() - started
        if system_metrics:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(run_id, SYSTEM_EVERY, tracking_uri=self.uri)
            monitor.start()
            self.monitors[run_id] = monitor
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
                      "epoch_seconds": metrics.seconds, "grad_norm": metrics.grad_norm,
                      "warmup_seconds": metrics.warmup_seconds}  # compiling or capturing
            batch += [Metric(k, v, now, metrics.epoch) for k, v in values.items()
                      if not (k in ("train_acc", "val_acc", "grad_norm") and math.isnan(v))
                      and not (k == "warmup_seconds" and v == 0)]  # only when it happened
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
                  classes: Sequence[str], step: int) -> str:
        """The network as an MLflow 3 LoggedModel produced by run `run_id` at `step` (its
        last epoch): a servable pyfunc (hpstudy.serve.predictor) with the run's parameters,
        listed in the experiment's Models tab. Returns its URI, models:/<model_id>.

        `example` is a small batch of training-format inputs (see `save_network`).
        """
        run = self.client.get_run(run_id)
        logged = self.client.create_logged_model(
            self.experiment_id, name=run.info.run_name, source_run_id=run_id,
            params=dict(run.data.params), model_type="pyfunc")
        try:
            with tempfile.TemporaryDirectory() as folder:
                local = Path(folder) / MODEL_NAME
                save_network(local, copy.deepcopy(network).cpu().eval(), example, classes,
                             Model(artifact_path=logged.artifact_location, run_id=run_id,
                                   model_uuid=logged.model_id, model_id=logged.model_id))
                self.client.log_model_artifacts(logged.model_id, str(local))
        except BaseException:
            self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
            raise
        self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        self.client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
        uri = f"models:/{logged.model_id}"
        self.client.set_tag(run_id, "model_uri", uri)  # from the run to its model
        return uri

    @_timed
    def log_model_metrics(self, run_id: str, model_uri: str, metrics: Mapping[str, float],
                          data: DatasetInput) -> None:
        """Metrics of the logged model `model_uri`, measured on `data`: on run `run_id` and on
        the model's page, each linked to the dataset."""
        now, model_id = get_current_time_millis(), model_uri.removeprefix("models:/")
        self.client.log_inputs(run_id, datasets=[data])
        self.client.log_batch(run_id, metrics=[
            Metric(k, v, now, 0, model_id=model_id, dataset_name=data.dataset.name,
                   dataset_digest=data.dataset.digest) for k, v in metrics.items()])

    @_timed
    def log_data(self, run_id: str, inputs: Sequence[DatasetInput]) -> None:
        """The datasets a run trained and validated on (its Dataset column), in one write."""
        self.client.log_inputs(run_id, datasets=list(inputs))

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

    def study_file(self, run_id: str, filename: str) -> bytes | None:
        """A file under a call's `study/` that is logged already (by the writer), else None."""
        if filename not in {Path(f.path).name for f in self.client.list_artifacts(run_id,
                                                                                   "study")}:
            return None
        return read_bytes(self.uri, run_id, f"study/{filename}")

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
        found = latest_call(self.uri, self.experiment, command)
        return found[0] if found else None

    def end_run(self, run_id: str, status: str = RUN_FINISHED,
                tags: Mapping[str, Any] | None = None) -> None:
        """Record the time spent logging to the run and `tags`, then end it with `status`."""
        if run_id in self.monitors:
            self.monitors.pop(run_id).finish()
        spent = Metric("logging_seconds", self.spent.pop(run_id, 0.0), get_current_time_millis(), 0)
        self.client.log_batch(run_id, metrics=[spent], tags=[
            RunTag(k, str(v)[:TAG_LIMIT]) for k, v in (tags or {}).items()])
        self.client.set_terminated(run_id, status=status)

    def run_tags(self, run_id: str) -> dict[str, str]:
        """A run's tags."""
        return dict(self.client.get_run(run_id).data.tags)

    def running_runs(self) -> list[Run]:
        """Every run of the experiment still marked RUNNING (live, or left by a dead process)."""
        return self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'",
                                       run_view_type=ViewType.ACTIVE_ONLY, max_results=50000)

    def trial_runs(self) -> list[Run]:
        """Every trial run of the experiment (runs tagged with an Optuna trial number)."""
        return self.client.search_runs([self.experiment_id], f"tags.`{TRIAL_TAG}` != ''",
                                       run_view_type=ViewType.ACTIVE_ONLY, max_results=50000)

@dataclass(frozen=True)
class RunEnd:
    """How a run ends: the figures to draw and log, its tags, and its final status."""

    tracking_uri: str
    run_id: str
    status: str  # FINISHED, FAILED or KILLED; "" leaves it running (a call's early files)
    tags: dict[str, str]
    figures: tuple[tuple[str, Callable[..., Figure], tuple], ...] = ()  # (file, draw, args)
    texts: tuple[tuple[str, str], ...] = ()  # (file, text)
    end_time: int | None = None  # ms since the epoch when the trial ended (None: when written)


def write_run_end(job: RunEnd) -> None:
    """Draw and log the job's figures, then end its run; raises if a figure failed.

    Runs in the background writer process (hpstudy.tracking.writer) or, without one, inline.
    A figure or text file that fails (a full disk too) does not keep the run open: it ends
    as planned, tagged with why. The run's end is the trial's (`end_time`), not the moment
    the writer got to it.
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
    if tags:
        client.log_batch(job.run_id, tags=[RunTag(k, str(v)[:TAG_LIMIT]) for k, v in tags.items()])
    if job.status:
        client.set_terminated(job.run_id, status=job.status, end_time=job.end_time)
    if error:
        raise RuntimeError(f"a figure could not be written ({error})")


