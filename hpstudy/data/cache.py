"""Decoded images kept on disk, so a folder of JPEGs is decoded once, not on every run.

A cache file is keyed by the source folder and the decoding options, and stores a
fingerprint of every source file (name, size, modification time): a changed, added or
removed file makes the next load decode again. Files are written to a temporary name
and renamed, so a cache is never seen half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from hpstudy.data.locate import cache_dir

FORMAT = 1  # bump when the arrays a cache holds change meaning: old caches are then ignored


def fingerprint(root: Path, names: Iterable[str], *options: object) -> str:
    """A digest of the files' names (relative to `root`), sizes and modification times."""
    digest = hashlib.sha256(repr((FORMAT, *options)).encode())
    for name in names:
        status = os.stat(root / name)
        digest.update(f"{name}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_file(kind: str, root: Path, *options: object) -> Path:
    """Where the cache of `root` decoded with `options` lives."""
    key = hashlib.sha256(repr((str(root.resolve()), *options)).encode()).hexdigest()[:16]
    return cache_dir() / "decoded" / f"{kind}-{key}.npz"


def cached(path: Path, stamp: str, make: Callable[[], dict[str, np.ndarray]]
           ) -> dict[str, np.ndarray]:
    """The arrays stored at `path` if their fingerprint is `stamp`; else `make()`, then store."""
    stored = read(path, stamp)
    if stored is not None:
        return stored
    arrays = make()
    with contextlib.suppress(OSError):  # an unwritable cache only makes the next run slower
        write(path, arrays | {"fingerprint": np.array(stamp)})
    return arrays


def read(path: Path, stamp: str) -> dict[str, np.ndarray] | None:
    """The arrays in the cache file, or None if it is missing, stale or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["fingerprint"]) != stamp:
                return None
            return {name: stored[name] for name in stored.files if name != "fingerprint"}
    except (OSError, KeyError, ValueError):
        return None


def write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Store `arrays` at `path` atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as fh:
            np.savez(fh, **arrays)  # uncompressed: loads in about 0.4 s for CIFAR-10's 50,000
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
