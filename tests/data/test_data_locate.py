"""Where data is looked for: --data-dir, then $HPSTUDY_DATA_DIR, then the download folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpstudy.data.locate import DataDir, cache_dir, data_dir, download, missing
from hpstudy.errors import UserError


def test_the_flag_wins_then_the_environment_then_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSTUDY_DATA_DIR", str(tmp_path / "env"))
    assert data_dir(tmp_path / "flag") == DataDir(tmp_path / "flag", "--data-dir")
    assert data_dir(None) == DataDir(tmp_path / "env", "$HPSTUDY_DATA_DIR")
    monkeypatch.delenv("HPSTUDY_DATA_DIR")
    default = data_dir(None)
    assert default.path == cache_dir() / "downloads" and default.may_download


def test_only_the_default_folder_is_downloaded_into(tmp_path):
    assert not data_dir(tmp_path).may_download


def test_the_missing_message_says_what_where_and_how(tmp_path):
    error = missing("mnist", DataDir(tmp_path, "--data-dir"), ["a/b", "c"])
    assert str(error).startswith(f"mnist: no data found in {tmp_path} (from --data-dir). ")
    assert "--data-dir DIR (or the environment variable HPSTUDY_DATA_DIR=DIR)" in str(error)
    assert "\n  - DIR/a/b\n  - DIR/c" in str(error)


def test_a_failed_download_becomes_a_user_error_with_the_reason(tmp_path):
    def offline(root: str) -> None:
        raise OSError(f"no network to fetch into {Path(root).name}")

    where = DataDir(tmp_path / "downloads", "default")
    with pytest.raises(UserError, match=r"downloading it failed \(no network to fetch into "
                                        r"downloads\)\. Give a folder"):
        download("cifar10", where, ["x"], offline)
