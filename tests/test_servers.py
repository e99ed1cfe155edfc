"""The server helpers in tests/servers.py start real servers that work, and leave nothing behind:
an Optuna study on PostgreSQL, an `mlflow server` on PostgreSQL with proxied artifacts."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest
from mlflow.tracking import MlflowClient
from servers import create_database, mlflow_server, port_open, postgres_server

pytestmark = pytest.mark.slow  # real processes, servers or whole studies

PROC = Path("/proc")


def _cmdline(pid_dir: Path) -> str:
    try:
        return (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _stat(pid_dir: Path) -> tuple[str, int] | None:
    """(state, process group) of a process, None if it is gone."""
    try:
        fields = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2])


def _groups_running(needle: str) -> set[int]:
    """Process groups of the live processes whose command line contains `needle`."""
    groups = set()
    for pid_dir in PROC.glob("[0-9]*"):
        if needle in _cmdline(pid_dir) and (stat := _stat(pid_dir)) and stat[0] != "Z":
            groups.add(stat[1])
    return groups


def _alive_in(groups: set[int]) -> list[str]:
    """Command lines of the live (not zombie) processes left in these process groups."""
    return [_cmdline(d) for d in PROC.glob("[0-9]*")
            if (stat := _stat(d)) and stat[1] in groups and stat[0] != "Z"]


needs_proc = pytest.mark.skipif(not PROC.is_dir(), reason="needs Linux /proc to see processes")


def objective(trial: optuna.Trial) -> float:
    return (trial.suggest_float("x", -1.0, 1.0) - 0.5) ** 2


@needs_proc
def test_optuna_study_on_postgres_and_server_gone_after(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with postgres_server(tmp_path / "pg") as url:
        assert url.startswith("postgresql://") and url.endswith("/hpstudy")
        port = urlsplit(url).port
        assert port is not None and port_open(port)
        groups = _groups_running(f"-p {port} ")
        assert groups, "no postgres process found for the port"
        study = optuna.create_study(storage=url, study_name="x")
        study.optimize(objective, n_trials=3)
        loaded = optuna.load_study(study_name="x", storage=url)
        assert len(loaded.trials) == 3
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in loaded.trials)
        assert loaded.best_value == min(t.value for t in study.trials)
    assert not port_open(port)
    assert _alive_in(groups) == []


@needs_proc
def test_mlflow_server_on_postgres(tmp_path: Path) -> None:
    with postgres_server(tmp_path / "pg") as optuna_url:
        backend = create_database(optuna_url, "mlflow")
        assert backend.endswith("/mlflow")
        with mlflow_server(backend, tmp_path / "artifacts") as uri:
            port = urlsplit(uri).port
            groups = _groups_running(f"--port {port} ")
            assert groups, "no mlflow server process found for the port"
            client = MlflowClient(tracking_uri=uri)
            experiment = client.create_experiment("servers")
            run = client.create_run(experiment)
            run_id = run.info.run_id
            client.log_metric(run_id, "loss", 0.25, step=1)
            client.log_text(run_id, "hello from the test\n", "notes/hello.txt")
            client.set_terminated(run_id)

            again = client.get_run(run_id)
            assert again.info.status == "FINISHED"
            assert again.data.metrics == {"loss": 0.25}
            assert [f.path for f in client.list_artifacts(run_id, "notes")] == ["notes/hello.txt"]
            local = client.download_artifacts(run_id, "notes/hello.txt", str(tmp_path / "dl"))
            assert Path(local).read_text() == "hello from the test\n"
            # proxied: the server wrote the file into its --artifacts-destination
            stored = list((tmp_path / "artifacts").rglob("hello.txt"))
            assert len(stored) == 1 and stored[0].read_text() == "hello from the test\n"
        assert not port_open(port)
        assert _alive_in(groups) == []
        assert (tmp_path / "mlflow-server.log").is_file()


def test_postgres_stopped_when_the_body_raises(tmp_path: Path) -> None:
    with pytest.raises(KeyError), postgres_server(tmp_path / "pg", database="other") as url:
        port = urlsplit(url).port
        assert url.endswith("/other") and port is not None and port_open(port)
        raise KeyError("boom")
    assert not port_open(port)
    assert "database system is shut down" in (tmp_path / "pg" / "postgres.log").read_text()
