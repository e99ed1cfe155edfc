"""Where results live by default: everything under `mlruns/` in the working directory."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

HOME = Path("mlruns")  # the local tracking home; its contents are git-ignored
DEFAULT_TRACKING_URI = f"sqlite:///{HOME}/mlflow.db"  # MLflow runs, metrics, model registry
DEFAULT_STORAGE = f"sqlite:///{HOME}/optuna.db"  # Optuna studies and trials


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, or None for any other URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or parsed.path in ("", "/", "/:memory:"):
        return None
    return Path(parsed.path[1:])  # sqlite:///rel/x.db -> rel/x.db; sqlite:////abs/x.db -> /abs/x.db


def prepare(uri: str) -> None:
    """Create the folder of a sqlite database, so that a fresh checkout just works."""
    path = sqlite_file(uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Artifacts of a sqlite-tracked experiment go beside the database; a server picks its own."""
    path = sqlite_file(tracking_uri)
    if path is None:
        return None
    return (path.parent / "artifacts" / experiment).resolve().as_uri()
