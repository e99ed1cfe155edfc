"""Where results live, and the stores behind them: checked before use, created once, shared.

Defaults: everything under `mlruns/` in the working directory, two SQLite files that many
worker processes on one machine share. Elsewhere: Optuna's RDB storage on PostgreSQL and an
`mlflow server`. Every URL is checked before anything is written, so a typo costs nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import sqlite3
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from hpstudy.errors import DiskFull, UserError

if TYPE_CHECKING:
    import optuna

HOME = Path("mlruns")  # the local tracking home; its contents are git-ignored
DEFAULT_TRACKING_URI = f"sqlite:///{HOME}/mlflow.db"  # MLflow runs, metrics, model registry
DEFAULT_STORAGE = f"sqlite:///{HOME}/optuna.db"  # Optuna studies and trials

HEARTBEAT_INTERVAL = 10  # seconds between a running trial's heartbeats (Optuna RDB storage)
GRACE_PERIOD = 60  # seconds without a heartbeat after which another machine's trial is dead
SQLITE_TIMEOUT = 60  # seconds a writer waits for SQLite's lock before giving up
CONNECT_TIMEOUT = 10  # seconds to reach a database or tracking server when checking it
DATABASES = ("sqlite", "postgresql", "mysql")  # SQLAlchemy dialects Optuna's storage runs on
NO_SPACE = ("database or disk is full", "no space left on device", "disk quota exceeded",
            "could not extend file")  # how SQLite, the OS (ENOSPC, EDQUOT) and PostgreSQL say it
DRIVER_HINT = {"postgresql": "pip install 'hpstudy[postgres]' (psycopg)",
               "mysql": "pip install pymysql, and write mysql+pymysql://"}


def runs_link(tracking_uri: str, experiment_id: str, ui_port: int = 5000) -> str:
    """The MLflow UI page of the study's runs, best validation loss first (MLflow 3 opens its
    GenAI overview at the bare experiment link, and nests trial runs under their call's run
    unless the table is sorted by something other than date), and, for a local store, the
    command that starts the UI."""
    page = (f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            "&orderByKey=metrics.%60val_loss%60&orderByAsc=true")
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/{page}"
    port = "" if ui_port == 5000 else f" --port {ui_port}"
    return (f"http://127.0.0.1:{ui_port}/{page}  (after `mlflow ui --backend-store-uri "
            f"{tracking_uri}{port}`)")


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, or None for any other URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or parsed.path in ("", "/", "/:memory:"):
        return None
    return Path(parsed.path[1:])  # sqlite:///rel/x.db -> rel/x.db; sqlite:////abs/x.db -> /abs/x.db


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Artifacts of a sqlite-tracked experiment go beside the database; a server picks its own."""
    path = sqlite_file(tracking_uri)
    if path is None:
        return None
    return (path.parent / "artifacts" / experiment).resolve().as_uri()


# ------------------------------------------------------------------------------- checks


def check_storage(url: str, flag: str = "--storage", create: bool = False) -> None:
    """A UserError unless `url` is an Optuna storage we can open; writes nothing."""
    scheme = urlparse(url).scheme.split("+")[0]
    if "://" not in url or scheme not in DATABASES:
        raise UserError(f"{flag} {url}: expected a database URL (sqlite:///PATH.db, "
                        f"postgresql://USER:PASSWORD@HOST/DB or mysql+pymysql://...), given "
                        f"{'no scheme' if '://' not in url else f'the scheme {scheme!r}'}. "
                        f"For a file, write sqlite:///{url.split('://')[-1]}.")
    _check_driver(url, flag, scheme)
    if scheme == "sqlite":
        _check_sqlite(url, flag, create)
    else:
        _check_connects(url, flag)


def check_tracking(uri: str, create: bool = False) -> None:
    """A UserError unless `uri` is an MLflow tracking store we can use; writes nothing."""
    flag, scheme = "--tracking-uri", urlparse(uri).scheme
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=CONNECT_TIMEOUT):
                return
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise UserError(f"{flag} {uri}: no MLflow tracking server answers there "
                            f"({getattr(error, 'reason', error)}). Start one (`mlflow server "
                            "...`, see README 'Scaling out') or fix the address.") from None
    if scheme.split("+")[0] not in DATABASES:
        raise UserError(f"{flag} {uri}: expected sqlite:///PATH.db, http(s)://HOST:PORT of an "
                        "`mlflow server`, or a postgresql:// database, given "
                        f"{'no scheme' if not scheme else f'the scheme {scheme!r}'}.")
    check_storage(uri, flag, create)
    path = sqlite_file(uri)
    if path is not None:  # artifacts go beside the database: that folder must be writable too
        _check_writable(path.parent / "artifacts", flag, uri)


def _check_driver(url: str, flag: str, scheme: str) -> None:
    """A UserError if SQLAlchemy has no dialect or no installed driver for `url`."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise UserError(f"{flag} {url}: not a database URL SQLAlchemy understands "
                        f"({error}).") from None
    except ImportError as error:
        hint = DRIVER_HINT.get(scheme, "pip install the driver")
        raise UserError(f"{flag} {url}: the {scheme} driver is not installed ({error}). "
                        f"Install it: {hint}.") from None


def _check_sqlite(url: str, flag: str, create: bool) -> None:
    """The database file's folder exists (or may be made) and is writable; the file is SQLite."""
    path = sqlite_file(url)
    if path is None:
        raise UserError(f"{flag} {url}: an in-memory database keeps nothing; give a file, "
                        "e.g. sqlite:///mlruns/optuna.db.")
    if not path.parent.is_dir() and not create and path.parent.resolve() != HOME.resolve():
        raise UserError(f"{flag} {url}: the folder {path.parent} does not exist. Fix the path, "
                        "or pass --create to start a new store there.")
    _check_writable(path.parent, flag, url)
    if path.is_file() and path.stat().st_size:
        try:  # through SQLite, never open(): closing a file descriptor of a database drops
            # every lock this process's SQLite connections hold on it (POSIX advisory locks)
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                    timeout=1)) as db:
                db.execute("PRAGMA schema_version")
        except sqlite3.DatabaseError as error:  # busy or locked by a live writer: the store
            if getattr(error, "sqlite_errorname", "") == "SQLITE_NOTADB":  # waits for it itself
                raise UserError(f"{flag} {url}: {path} exists but is not an SQLite database. "
                                "Point at another file.") from None
        if not os.access(path, os.W_OK):
            raise UserError(f"{flag} {url}: {path} is read-only for this user. Fix its "
                            "permissions or point at another file.")


def _check_writable(folder: Path, flag: str, url: str) -> None:
    """A UserError unless `folder`, or the nearest folder above it that exists, is writable."""
    existing = folder.resolve()
    while not existing.exists():
        existing = existing.parent
    try:  # a real probe: permissions, read-only mounts, and root in /proc alike
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UserError(f"{flag} {url}: cannot write in {existing} (needed for {folder}): "
                        f"{error.strerror}. Fix its permissions, or point the store somewhere "
                        "writable.") from None


def _check_connects(url: str, flag: str) -> None:
    """A UserError unless the database server at `url` accepts a connection."""
    import sqlalchemy

    args = {"connect_timeout": CONNECT_TIMEOUT} if url.startswith("postgresql") else {}
    engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as error:
        first = str(error.orig if hasattr(error, "orig") else error).strip().splitlines()[0]
        raise UserError(f"{flag} {url}: cannot connect ({first}). Check the host, port, "
                        "user and database, and that the server is running.") from None
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------- full disks


def full_store(error: BaseException | str) -> str:
    """Which store a full disk stopped: "optuna", "mlflow" or "artifacts"; "" if none did.

    `error` is an exception (its causes are looked at too) or a failure's text from the
    figure writer ("run ID: OSError: [Errno 28] No space left on device: ...").
    """
    chain: list[BaseException] = []
    while isinstance(error, BaseException) and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    text = " ".join(str(e) for e in chain or [error]).lower()
    if not (any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in chain)
            or any(words in text for words in NO_SPACE)):
        return ""
    libraries = {type(e).__module__.split(".")[0] for e in chain}
    if "optuna" in libraries:
        return "optuna"
    if "mlflow" in libraries or "mlflowexception" in text or "disk is full" in text:
        return "mlflow"  # (the Optuna store's errors come wrapped in Optuna's)
    return "artifacts"


@contextlib.contextmanager
def stops_on_full_disk(storage_url: str, tracking_uri: str, experiment: str) -> Iterator[None]:
    """Inside, a full disk met anywhere (either store, the artifact folder) is a DiskFull."""
    try:
        yield
    except Exception as error:
        if (full := disk_full(error, storage_url, tracking_uri, experiment)) is None:
            raise
        raise full from None


def disk_full(error: BaseException | str, storage_url: str, tracking_uri: str,
              experiment: str) -> DiskFull | None:
    """`error` as a DiskFull naming the store, its folder, the space left and the fix; or None."""
    if isinstance(error, DiskFull):
        return error
    kind = full_store(error)
    if not kind:
        return None
    artifacts = artifact_location(tracking_uri, experiment)
    place, file = {"optuna": (f"the Optuna store {storage_url}", sqlite_file(storage_url)),
                   "mlflow": (f"the MLflow store {tracking_uri}", sqlite_file(tracking_uri)),
                   "artifacts": ("the artifact folder", artifacts and Path(
                       urlparse(artifacts).path, "any"))}[kind]
    if not file:  # a database or tracking server: its own disk is full
        return DiskFull(f"{place} says its disk is full. Free space on that server, then run the "
                        "same command: finished trials are kept.", f"disk full: {place}")
    where = _existing(file.parent)
    free = shutil.disk_usage(where).free
    return DiskFull(
        f"{place} cannot be written: {where} has {free / 2**20:.1f} MB free. Free space there "
        "(or give --storage and --tracking-uri on a larger disk), then run the same command: "
        "finished trials are kept, and the one that was cut off runs again.",
        f"disk full: {place} ({where})")


def _existing(folder: Path) -> Path:
    """`folder`, or the nearest folder above it that exists."""
    folder = folder.resolve()
    while not folder.exists():
        folder = folder.parent
    return folder


# ------------------------------------------------------------------------------- creation


@contextlib.contextmanager
def creation_lock(uri: str) -> Iterator[None]:
    """Hold a machine-wide lock beside a sqlite file (nothing for servers) while creating it.

    Two processes creating the same fresh database race on its schema ("table already
    exists"); one at a time, the second finds it made.
    """
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def share_sqlite(uri: str) -> None:
    """Put a sqlite database in WAL mode: readers never block the one writer (it persists)."""
    path = sqlite_file(uri)
    if path is not None:
        with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_TIMEOUT)) as db:
            db.execute("PRAGMA journal_mode=WAL")


def optuna_storage(url: str, on_stale: Callable | None = None) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at `url` with heartbeats, its tables made safely on first use.

    A trial whose worker stops beating for GRACE_PERIOD seconds is failed by the next
    worker that starts a trial, and `on_stale(study, trial)` is called for it.
    """
    import optuna

    engine = {"connect_args": {"timeout": SQLITE_TIMEOUT}} if sqlite_file(url) else {
        "pool_pre_ping": True}
    for attempt in range(3):  # a server database has no file to lock: retry a lost race
        try:
            with creation_lock(url):
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=GRACE_PERIOD, heartbeat_stale_trial_callback=on_stale)
                share_sqlite(url)
            return storage
        except Exception:  # a lost race shows as an IntegrityError, or as
            # Optuna's RuntimeError/AssertionError on a schema another process has made but
            # not yet stamped; making the tables is idempotent, so try again (the URL itself
            # was checked before)
            if attempt == 2:
                raise
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")
