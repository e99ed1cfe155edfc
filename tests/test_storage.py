"""Default store locations: everything under mlruns/, folders made on first use."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from mlflow.exceptions import MlflowException

from hpstudy import storage
from hpstudy.errors import UserError


def test_defaults_live_under_mlruns():
    assert storage.DEFAULT_TRACKING_URI == "sqlite:///mlruns/mlflow.db"
    assert storage.sqlite_file(storage.DEFAULT_STORAGE) == Path("mlruns/optuna.db")


def test_sqlite_paths_relative_and_absolute():
    assert storage.sqlite_file("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert storage.sqlite_file("http://127.0.0.1:5000") is None
    assert storage.sqlite_file("postgresql://u@h/db") is None


def test_artifacts_go_beside_the_database(tmp_path):
    uri = f"sqlite:///{tmp_path}/deep/er/mlflow.db"
    assert storage.artifact_location(uri, "s") == (tmp_path / "deep/er/artifacts/s").as_uri()
    assert storage.artifact_location("http://127.0.0.1:5000", "s") is None


def test_a_full_disk_is_recognised_and_its_store_named(tmp_path):
    sqlite_full = sqlalchemy.exc.OperationalError("COMMIT", {}, Exception(
        "database or disk is full"))
    try:
        try:
            raise sqlite_full
        except sqlalchemy.exc.OperationalError as error:
            raise optuna.exceptions.StorageInternalError("commit failed") from error
    except optuna.exceptions.StorageInternalError as error:
        optuna_full = error
    assert storage.full_store(optuna_full) == "optuna"
    assert storage.full_store(MlflowException(str(sqlite_full))) == "mlflow"
    no_space = OSError(errno.ENOSPC, "No space left on device", "x.png")
    assert storage.full_store(no_space) == "artifacts"
    assert storage.full_store(f"run 1: OSError: {no_space}") == "artifacts"  # the writer's
    assert storage.full_store("run 1: MlflowException: database or disk is full") == "mlflow"
    assert storage.full_store(OSError(errno.EACCES, "Permission denied")) == ""
    assert storage.full_store(RuntimeError("CUDA out of memory")) == ""
    full = storage.disk_full(optuna_full, f"sqlite:///{tmp_path}/optuna.db",
                     f"sqlite:///{tmp_path}/mlflow.db", "study")
    assert full.reason == f"disk full: the Optuna store sqlite:///{tmp_path}/optuna.db ({tmp_path})"
    assert str(tmp_path) in str(full) and "MB free" in str(full) and "Free space" in str(full)
    assert storage.disk_full(RuntimeError("no"), "sqlite:///a.db", "sqlite:///b.db", "s") is None


def test_a_file_that_is_not_sqlite_is_refused_with_its_path(tmp_path):
    (tmp_path / "mlflow.db").write_text("name,value\n" * 20)
    with pytest.raises(UserError, match="is not an SQLite database") as error:
        storage.check_tracking(f"sqlite:///{tmp_path}/mlflow.db")
    assert str(tmp_path / "mlflow.db") in str(error.value)


def test_a_database_locked_by_a_live_writer_is_not_called_foreign(tmp_path):
    """Busy is not corrupt: the store waits for its writer; the check must not refuse it."""
    path = tmp_path / "mlflow.db"
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x)")
    writer.commit()
    writer.execute("PRAGMA locking_mode=EXCLUSIVE")
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("INSERT INTO t VALUES (1)")
    try:
        storage.check_tracking(f"sqlite:///{path}")
    finally:
        writer.rollback()
        writer.close()


def test_the_link_names_the_runs_page_the_port_and_how_to_start_the_ui():
    assert storage.runs_link("sqlite:///mlruns/mlflow.db", "3") == (
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
        "&orderByKey=metrics.%60val_loss%60&orderByAsc=true  "
        "(after `mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`)")
    assert storage.runs_link("sqlite:///x.db", "3", ui_port=8080).startswith("http://127.0.0.1:8080/#/")
    assert "--port 8080`" in storage.runs_link("sqlite:///x.db", "3", ui_port=8080)
    assert storage.runs_link("http://mlflow.example:5000/", "3") == (
        "http://mlflow.example:5000/#/experiments/3/runs?workflowType=machine_learning"
        "&orderByKey=metrics.%60val_loss%60&orderByAsc=true")
