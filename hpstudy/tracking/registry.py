"""The registry side of a `Tracker`: versions, aliases and the lock that serialises selections.

A version is registered from its MLflow 3 LoggedModel (`models:/<model_id>`), and the
LoggedModel records the version, as MLflow's own `register_model` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from hpstudy.errors import UserError
from hpstudy.search.record import Process
from hpstudy.tracking.artifacts import registered_version

LOCK_SUFFIX = ".selection-lock"  # the registered model that serialises a study's selections
LOCK_TTL = 600  # seconds after which a selection lock is taken for abandoned
LOCK_WAIT = 900  # seconds a selection waits for another to finish


@contextlib.contextmanager
def _default_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's SQL registry finds a logged model through the process's default tracking URI,
    not its client's (a TODO in its `create_model_version`): point that at `uri` for the call,
    then put it (and MLFLOW_TRACKING_URI) back as they were."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    environment = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if environment is not None:
            os.environ["MLFLOW_TRACKING_URI"] = environment


class Registry:
    """Model-registry calls of a tracking store (`client`, `uri`: set by `Tracker`)."""

    client: MlflowClient
    uri: str

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

    def register(self, name: str, model_uri: str, run_id: str, tags: Mapping[str, Any]) -> str:
        """The registry version of run `run_id`'s logged model `model_uri` (models:/<id>),
        created if the run has none yet."""
        try:
            self.client.create_registered_model(name, description=f"hpstudy study '{name}'")
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        for version in self.client.search_model_versions(f"name = '{name}'"):
            if version.run_id == run_id:
                return str(version.version)
        with _default_tracking_uri(self.uri):
            version = self.client.create_model_version(
                name, source=model_uri, run_id=run_id, tags={k: str(v) for k, v in tags.items()},
                model_id=model_uri.removeprefix("models:/"))
        self.client.set_logged_model_tags(  # the Models tab's link to the version, as MLflow's
            model_uri.removeprefix("models:/"),  # own register_model writes it
            {MLFLOW_MODEL_VERSIONS: json.dumps([{"name": name, "version": version.version}])})
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
