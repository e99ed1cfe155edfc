"""MLflow, and the only module that talks to it: experiments, runs, artifacts, models, registry.

Runs are addressed by id through `MlflowClient`, so a trial never depends on a global
"active run". Each epoch's metrics go in one batched write (about a millisecond on sqlite).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import io
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag, ViewType
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Schema
from mlflow.utils.time import get_current_time_millis

from hpstudy import storage
from hpstudy.errors import UserError
from hpstudy.record import COMMAND_TAG, FIGURES_ERROR_TAG, TRIAL_TAG, EpochMetrics, Process

if TYPE_CHECKING:  # torch is imported where a network is handled: the figure writer needs none
    import torch

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"  # MLflow run statuses we end runs with
MODEL_NAME = "model"  # the logged model's name inside a run
NETWORK_FILE = "network.pt2"  # the torch.export'ed network inside a logged model
WEIGHTS_FILE = "weights.pt"  # every completed trial's trained state dict
PREDICTOR_FILE = Path(__file__).with_name("predictor.py")  # the served model's code
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


class Tracker:
    """One MLflow experiment (one study) in one tracking store."""

    def __init__(self, tracking_uri: str, experiment: str):
        self.uri = tracking_uri
        self.spent: dict[str, float] = {}  # run id -> seconds spent logging to it
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
        """The network as a servable pyfunc (hpstudy/predictor.py); returns the model's URI.

        `example` is a small batch of training-format inputs (uint8 images or float
        features); the first one becomes the logged input example. The model is saved
        locally, then written into the run's artifacts through the client.
        """
        import torch

        network = copy.deepcopy(network).cpu().eval()
        image = example.ndim == 4
        with tempfile.TemporaryDirectory() as folder:
            path, model_dir = Path(folder) / NETWORK_FILE, Path(folder) / MODEL_NAME
            batch = torch.export.Dim("batch", min=1)
            exported = torch.export.export(network, (torch.from_numpy(example),),
                                           dynamic_shapes=({0: batch},))
            torch.export.save(exported, path)
            mlflow.pyfunc.save_model(
                model_dir, python_model=str(PREDICTOR_FILE), artifacts={"network": str(path)},
                model_config={"input_shape": list(example.shape[1:]), "classes": list(classes)},
                signature=_signature(image, bool(classes)),
                input_example=_input_example(example[0], image),
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
            freed += sum(f.file_size or 0 for f in _files(repository, path))
            repository.delete_artifacts(path)
        self.client.set_tag(run_id, DELETED_TAG, why)
        return freed

    def latest_parent_run(self, command: str) -> str | None:
        """The most recent run of an `hpstudy COMMAND` call in this experiment, or None."""
        runs = self.client.search_runs([self.experiment_id], f"tags.`{COMMAND_TAG}` = '{command}'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def end_run(self, run_id: str, status: str = FINISHED,
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

    Runs in the background writer process (hpstudy/writer.py) or, without one, inline.
    A figure that fails does not keep the run open: it ends as planned, tagged with why.
    """
    client = MlflowClient(job.tracking_uri)
    error = ""
    for filename, text in job.texts:
        client.log_text(job.run_id, text, filename)
    for filename, draw, args in job.figures:
        try:
            client.log_figure(job.run_id, draw(*args), filename, save_kwargs={"dpi": 100})
        except Exception as failure:
            error = f"{filename}: {type(failure).__name__}: {failure}"[:TAG_LIMIT]
    tags = job.tags | ({FIGURES_ERROR_TAG: error} if error else {})
    client.log_batch(job.run_id, tags=[RunTag(k, str(v)[:TAG_LIMIT]) for k, v in tags.items()])
    client.set_terminated(job.run_id, status=job.status)
    if error:
        raise RuntimeError(f"a figure could not be written ({error})")


def requirements() -> list[str]:
    """What a logged model needs to run, pinned to what trained it."""
    import PIL
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
            f"pillow=={PIL.__version__}", f"numpy=={np.__version__}"]


def _signature(image: bool, classify: bool) -> ModelSignature:
    """Inputs: one image (or feature list) per row; outputs: class, name, probabilities."""
    from hpstudy import predictor

    inputs = Schema([ColSpec(AnyType(), predictor.IMAGE_FIELD if image else
                             predictor.FEATURE_FIELD)])
    if not classify:
        return ModelSignature(inputs, Schema([ColSpec(Array(DataType.double), "prediction")]))
    return ModelSignature(inputs, Schema([
        ColSpec(DataType.long, "class_index"), ColSpec(DataType.string, "class_name"),
        ColSpec(Array(DataType.double), "probabilities")]))


def _input_example(one: np.ndarray, image: bool) -> pd.DataFrame:
    """One input as a user sends it: a base64 PNG, or a list of numbers."""
    from hpstudy import predictor

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
        return MlflowClient(tracking_uri, registry_uri=tracking_uri).get_model_version_by_alias(
            name, alias)
    except MlflowException:
        return None


def _resolve(uri: str, tracking_uri: str) -> str:
    """A registered (models:/NAME@ALIAS, models:/NAME/VERSION) or logged (runs:/RUN/PATH)
    artifact's stored location, re-rooted if its sqlite store was moved (`rerooted`)."""
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        uri = f"{client.get_run(run_id).info.artifact_uri}/{path}"
    elif uri.startswith("models:/"):
        name, sep, alias = uri.removeprefix("models:/").partition("@")
        if sep:
            uri = client.get_model_version_by_alias(name, alias).source
        else:
            name, _, version = name.rpartition("/")
            uri = client.get_model_version_download_uri(name, version)
    return rerooted(uri, tracking_uri)


def rerooted(uri: str, tracking_uri: str) -> str:
    """A local artifact location of a sqlite store that was copied or mounted elsewhere.

    MLflow stores artifact locations as absolute paths. The artifacts of a sqlite store
    live beside it (`storage.artifact_location`), so a path that no longer exists is found
    again under the store's folder as it is now: `<old root>/artifacts/EXPERIMENT/...` ->
    `<folder of mlflow.db>/artifacts/EXPERIMENT/...`.
    """
    database = storage.sqlite_file(tracking_uri)
    if database is None or not uri.startswith("file:"):
        return uri
    path = Path(unquote(urlparse(uri).path))
    if path.exists():
        return uri
    parts = path.parts
    for i in (i for i, part in enumerate(parts) if part == "artifacts"):  # the store's own?
        moved = database.parent.joinpath("artifacts", *parts[i + 1:])
        if moved.exists():
            return moved.resolve().as_uri()
    return uri


def _files(repository: Any, path: str) -> list[Any]:
    """Every file at or under `path` in an artifact repository."""
    found = []
    for entry in repository.list_artifacts(os.path.dirname(path) or None):
        if entry.path == path:
            found += [f for e in repository.list_artifacts(path)
                      for f in (_files(repository, e.path))] if entry.is_dir else [entry]
    return found


def _download(what: str, uri: str, tracking_uri: str) -> Path:
    """The local path of a logged (runs:/) or registered (models:/) artifact; errors as UserError.

    Local artifacts are used where they are (no copy); remote ones are downloaded.
    """
    _require_store(tracking_uri)
    try:
        location = _resolve(uri, tracking_uri)
        if location.startswith("file:") and Path(unquote(urlparse(location).path)).exists():
            return Path(unquote(urlparse(location).path))
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=location,
                                                        tracking_uri=tracking_uri))
    except (MlflowException, OSError) as error:
        message = getattr(error, "message", str(error))
        raise UserError(f"cannot load {what} {uri} from {tracking_uri}: {message}") from None


def load_weights(weights_uri: str, tracking_uri: str) -> dict[str, torch.Tensor]:
    """A trial's trained state dict (see `Tracker.log_weights`)."""
    import torch

    return torch.load(_download("the weights", weights_uri, tracking_uri), weights_only=True)


def load_network(model_uri: str, tracking_uri: str) -> torch.nn.Module:
    """The exported network inside a logged or registered model, as a callable module."""
    import torch

    folder = _download("the network of", model_uri, tracking_uri)  # the model's folder: small
    return torch.export.load(folder / "artifacts" / NETWORK_FILE).module()


def model_folder(model_uri: str, tracking_uri: str) -> Path:
    """The local folder of a logged or registered model (what `mlflow models serve -m` takes)."""
    return _download("the model", model_uri, tracking_uri)


def load_predictor(model_uri: str, tracking_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """A logged or registered model (e.g. models:/NAME@champion) as MLflow serves it."""
    return mlflow.pyfunc.load_model(str(_download("the model", model_uri, tracking_uri)))


def serve_command(model_uri: str, host: str, port: int) -> list[str]:
    """`mlflow models serve` for a model, in this Python environment."""
    return [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
            "--env-manager", "local", "--host", host, "--port", str(port)]


# ------------------------------------------------------------------ reading a run back


@dataclass(frozen=True)
class LoggedRun:
    """A run read back: its params, tags, and the metrics asked for as {step: value}."""

    run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, dict[int, float]]


def read_run(tracking_uri: str, run_id: str, metrics: Sequence[str] = ()) -> LoggedRun:
    """A run's params, tags and metric histories; writes nothing; a UserError if it is gone."""
    _require_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"no MLflow run {run_id} in {tracking_uri}: pass the --tracking-uri "
                        "the study used.") from None
    histories = {name: {m.step: m.value for m in client.get_metric_history(run_id, name)}
                 for name in metrics}
    return LoggedRun(run_id, dict(run.data.params), dict(run.data.tags), histories)


def read_text(tracking_uri: str, run_id: str, path: str) -> str:
    """A text artifact of a run (e.g. the study file of an `optimize` call's parent run)."""
    return _download("the file", f"runs:/{run_id}/{path}", tracking_uri).read_text()
