"""The decoded-image cache: keyed by source and options, stale when a file changes, never torn."""

from __future__ import annotations

import numpy as np
import pytest

from hpstudy.data import cache


class Unpicklable:
    """An object whose pickling fails half way through writing a cache file."""

    def __reduce__(self):
        raise RuntimeError("disk full")


def test_a_stored_array_comes_back_only_with_its_fingerprint(tmp_path):
    path = tmp_path / "c.npz"
    made = cache.cached(path, "stamp-1", lambda: {"images": np.arange(6, dtype=np.uint8)})
    assert cache.read(path, "stamp-1")["images"].tolist() == made["images"].tolist()
    assert cache.read(path, "stamp-2") is None  # a changed source: decode again


def test_a_failed_write_leaves_neither_a_cache_nor_a_temporary_file(tmp_path):
    path = tmp_path / "c.npz"
    with pytest.raises(RuntimeError, match="disk full"):
        cache.write(path, {"images": np.array([Unpicklable()], dtype=object)})
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_cache_is_ignored_and_rewritten(tmp_path):
    path = tmp_path / "c.npz"
    path.write_bytes(b"half a file")
    assert cache.read(path, "stamp") is None
    cache.cached(path, "stamp", lambda: {"images": np.zeros(3, dtype=np.uint8)})
    assert cache.read(path, "stamp")["images"].tolist() == [0, 0, 0]


def test_the_fingerprint_follows_names_sizes_times_and_options(tmp_path):
    (tmp_path / "a.png").write_bytes(b"12345")
    before = cache.fingerprint(tmp_path, ["a.png"], 32, 3)
    assert cache.fingerprint(tmp_path, ["a.png"], 32, 3) == before
    assert cache.fingerprint(tmp_path, ["a.png"], 16, 3) != before
    (tmp_path / "a.png").write_bytes(b"123456")
    assert cache.fingerprint(tmp_path, ["a.png"], 32, 3) != before
