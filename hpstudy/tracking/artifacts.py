"""Reading back what runs stored: artifacts, weights, networks, the served model, run data."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from hpstudy import storage
from hpstudy.errors import UserError
from hpstudy.search.record import COMMAND_TAG

if TYPE_CHECKING:  # torch is imported where a network is handled: the figure writer needs none
    import torch


MODEL_NAME = "model"  # the logged model's name inside a run
NETWORK_FILE = "network.pt2"  # the torch.export'ed network inside a logged model
WEIGHTS_FILE = "weights.pt"  # every completed trial's trained state dict


def _require_store(tracking_uri: str) -> None:
    """A UserError if a sqlite tracking store does not exist (MLflow would create it)."""
    path = storage.sqlite_file(tracking_uri)
    if path is not None and not path.exists():
        raise UserError(f"no MLflow store at {tracking_uri} ({path} does not exist): run "
                        "`hpstudy optimize` first, or pass the --tracking-uri it used.")


def quiet() -> None:
    """Keep MLflow's informational chatter (and download progress bars) out of the CLI."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # it logs every database error it then raises, traceback and all: hpstudy reports the error
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def latest_call(tracking_uri: str, experiment: str, command: str
                ) -> tuple[str, dict[str, str]] | None:
    """The most recent run of an `hpstudy COMMAND` call in `experiment`, and its tags; None
    if there is none (or no store: this never creates one)."""
    path = storage.sqlite_file(tracking_uri)
    if path is not None and not path.exists():
        return None
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], f"tags.`{COMMAND_TAG}` = '{command}'",
                              order_by=["attributes.start_time DESC"], max_results=1) if (
        found) else []
    return (runs[0].info.run_id, dict(runs[0].data.tags)) if runs else None


def registered_version(tracking_uri: str, name: str, alias: str) -> ModelVersion | None:
    """The version `models:/name@alias` points at, or None; creates nothing."""
    _require_store(tracking_uri)
    try:
        return MlflowClient(tracking_uri, registry_uri=tracking_uri).get_model_version_by_alias(
            name, alias)
    except MlflowException:
        return None


def _resolve(uri: str, tracking_uri: str) -> str:
    """A registered (models:/NAME@ALIAS, models:/NAME/VERSION), logged (models:/MODEL_ID) or
    run (runs:/RUN/PATH) artifact's stored location, re-rooted if its sqlite store was moved
    (`rerooted`)."""
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        uri = f"{client.get_run(run_id).info.artifact_uri}/{path}"
    elif uri.startswith("models:/"):
        name, sep, alias = uri.removeprefix("models:/").partition("@")
        if sep:  # a version's source is its logged model, models:/MODEL_ID
            return _resolve(client.get_model_version_by_alias(name, alias).source, tracking_uri)
        name, _, version = name.rpartition("/")
        if name:
            return _resolve(client.get_model_version(name, version).source, tracking_uri)
        uri = client.get_logged_model(version).artifact_location
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


def files(repository: Any, path: str) -> list[Any]:
    """Every file at or under `path` in an artifact repository."""
    found = []
    for entry in repository.list_artifacts(os.path.dirname(path) or None):
        if entry.path == path:
            found += [f for e in repository.list_artifacts(path)
                      for f in (files(repository, e.path))] if entry.is_dir else [entry]
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


def predictor_code() -> str:
    """The served model's code (MLflow's models from code take it as a file): the module's."""
    from hpstudy.serve import predictor

    return predictor.__file__


def load_predictor(model_uri: str, tracking_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """A logged or registered model (e.g. models:/NAME@champion) as MLflow serves it."""
    return mlflow.pyfunc.load_model(str(_download("the model", model_uri, tracking_uri)))


def predict(model: mlflow.pyfunc.PyFuncModel, inputs: Any, files: Sequence[str]) -> Any:
    """`model.predict(inputs)` for images read from `files`; one the model refuses is a
    UserError naming its file (the model's BadInput, from the code packaged with it, says
    "image N: why" and is matched by its error code)."""
    try:
        return model.predict(inputs)
    except MlflowException as error:
        if error.error_code != "INVALID_PARAMETER_VALUE":
            raise
        row = re.match(r"image (\d+): (.*)", error.message, re.DOTALL)
        where = files[int(row[1])] if row else ", ".join(files)
        raise UserError(f"{where}: {row[2] if row else error.message}. Give PNG or JPEG "
                        "files.") from None


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


def read_bytes(tracking_uri: str, run_id: str, path: str) -> bytes:
    """A binary artifact of a run (e.g. a view of the study, as PNG)."""
    return _download("the file", f"runs:/{run_id}/{path}", tracking_uri).read_bytes()
