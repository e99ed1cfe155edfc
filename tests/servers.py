"""Real servers for tests: a throwaway PostgreSQL cluster and an `mlflow server`, each a context
manager that starts the server, yields its URL, and stops it (and every process it started) on
exit, also when the body raised.

    with postgres_server(tmp_path / "pg") as db, mlflow_server(create_database(db, "mlflow"),
                                                               tmp_path / "artifacts") as uri:
        ...  # db: postgresql://postgres@127.0.0.1:PORT/hpstudy, uri: http://127.0.0.1:PORT

PostgreSQL must be installed (its server binaries: initdb, postgres); `.ci/run` installs it.
Without it `postgres_server` raises `PostgresNotFound`. PostgreSQL refuses to run as root, so
as root the cluster runs as the `postgres` system user (else `nobody`) in a private temporary
folder, removed on exit; the log is still written into `folder`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

SUPERUSER = "postgres"  # the cluster's superuser (trust authentication: no password)
START_TIMEOUT_S = 90.0


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries (initdb, postgres) on this machine."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def postgres_bindir() -> Path | None:
    """The folder with PostgreSQL's server binaries: `pg_config --bindir`, the newest
    /usr/lib/postgresql/*/bin (Debian, Ubuntu), or where `initdb` is on PATH; None if none."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            candidates.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", Path(path).parent.name))

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                           key=version, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run PostgreSQL as when we are root (None when not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists "
                       "to run PostgreSQL as (it refuses to run as root)")


def _stop(proc: subprocess.Popen, first: signal.Signals, grace_s: float = 15.0) -> None:
    """Send `first` to the process, wait for it, then kill whatever is left of its session."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(first)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    # The process was started in a session of its own: its pid is the process group's id.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def create_database(url: str, name: str) -> str:
    """Create database `name` on the server of `url` (from `postgres_server`); its URL."""
    match = re.fullmatch(r"postgresql://([^@/]+)@([^:/]+):(\d+)/[^/?]+", url)
    if not match:
        raise ValueError(f"not a URL from postgres_server: {url}")
    user, host, port = match.groups()
    bindir = postgres_bindir()
    if bindir is None:
        raise PostgresNotFound("PostgreSQL is not installed")
    done = subprocess.run([str(bindir / "createdb"), "-h", host, "-p", port, "-U", user, name],
                          check=False, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"createdb {name} failed: {(done.stderr or done.stdout).strip()}")
    return f"postgresql://{user}@{host}:{port}/{name}"


@contextlib.contextmanager
def postgres_server(folder: Path, database: str = "hpstudy") -> Iterator[str]:
    """A fresh PostgreSQL cluster: trust authentication, TCP on 127.0.0.1 only (no Unix
    socket), a free port, fsync off; with database `database` created. Yields
    `postgresql://postgres@127.0.0.1:PORT/DATABASE`; stops the server on exit."""
    bindir = postgres_bindir()
    if bindir is None:
        raise PostgresNotFound(
            "PostgreSQL is not installed (no initdb/postgres found via pg_config, "
            "/usr/lib/postgresql/*/bin or PATH); on Debian/Ubuntu: apt-get install postgresql")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "postgres.log"
    user = _run_as()
    private: Path | None = None
    if user is None:
        data = folder / "pgdata"
        as_user: dict = {}
    else:
        # The test's folder may sit below folders only root can enter (/tmp/pytest-of-root is
        # 0700), so the cluster goes into a private folder of its own that the user owns.
        private = Path(tempfile.mkdtemp(prefix="hpstudy-pg-"))
        os.chown(private, user.pw_uid, user.pw_gid)
        data = private / "pgdata"
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    if user is not None:
        env.update(HOME=str(private), USER=user.pw_name, LOGNAME=user.pw_name)
    cwd = private or folder
    proc: subprocess.Popen | None = None
    try:
        with open(log_path, "ab") as log:
            subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                 "--encoding=UTF8", "--no-locale", "--no-sync"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False,
                timeout=120, **as_user).check_returncode()
        for _attempt in range(3):  # a free port may be taken before the server binds it
            port = free_port()
            log = open(log_path, "ab")  # noqa: SIM115 (the server writes to it until stopped)
            try:
                proc = subprocess.Popen(
                    [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                     "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                     "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off", "-c", "max_connections=100"],
                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                    start_new_session=True, **as_user)
            finally:
                log.close()
            if _wait_postgres(proc, bindir, port, log_path):
                break
            _stop(proc, signal.SIGQUIT, 5)
            proc = None
        else:
            raise RuntimeError(f"PostgreSQL did not start; log {log_path}:\n{_tail(log_path)}")
        url = create_database(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres", database)
        yield url
    finally:
        if proc is not None:
            _stop(proc, signal.SIGINT)  # SIGINT: "fast" shutdown, as pg_ctl stop -m fast
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)


def _wait_postgres(proc: subprocess.Popen, bindir: Path, port: int, log_path: Path) -> bool:
    """Wait until the server accepts connections (True) or gave up because its port was taken
    (False); raise if it failed otherwise or took too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if "Address already in use" in _tail(log_path, 10):
                return False
            raise RuntimeError(f"PostgreSQL exited with code {proc.returncode}; "
                               f"log {log_path}:\n{_tail(log_path)}")
        ready = subprocess.run([str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1",
                                "-p", str(port), "-U", SUPERUSER, "-t", "2"],
                               check=False, timeout=30)
        if ready.returncode == 0:
            return True
        time.sleep(0.1)
    _stop(proc, signal.SIGQUIT, 5)
    raise RuntimeError(f"PostgreSQL did not start in {START_TIMEOUT_S:.0f} s; "
                       f"log {log_path}:\n{_tail(log_path)}")


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 at a free port (one worker), runs and models in
    `backend_uri`, artifacts proxied to the folder `artifacts`. Yields its URL once
    /health answers; stops the server and all its processes on exit. Its log is
    `artifacts.parent / "mlflow-server.log"`."""
    artifacts = Path(artifacts).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    log_path = artifacts.parent / "mlflow-server.log"
    port = free_port()
    # No telemetry, and no background job runner (MLflow 3.x starts a huey job runner with
    # several consumer processes by default; nothing here needs it and CI has 2 cores).
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
               "--artifacts-destination", str(artifacts), "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=artifacts.parent, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with code {proc.returncode}; "
                                   f"log {log_path}:\n{_tail(log_path)}")
            with (contextlib.suppress(OSError),
                  urllib.request.urlopen(f"{url}/health", timeout=2) as response):
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer in {START_TIMEOUT_S:.0f} s; "
                                   f"log {log_path}:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield url
    finally:
        # SIGTERM to the CLI process: it forwards it to uvicorn and waits for it.
        _stop(proc, signal.SIGTERM)
