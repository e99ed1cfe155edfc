"""Default store locations: everything under mlruns/, folders made on first use."""

from __future__ import annotations

from pathlib import Path

from hpstudy import storage


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
