"""Where dataset files are: `--data-dir`, `$HPSTUDY_DATA_DIR`, or a folder torchvision downloads to.

A folder the user names is only read. Only the default folder is downloaded into, so a
wrong `--data-dir` fails at once with a message instead of starting a download.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hpstudy.errors import UserError

DATA_DIR_ENV = "HPSTUDY_DATA_DIR"  # a local copy of the data, when --data-dir is not given
CACHE_DIR_ENV = "HPSTUDY_CACHE_DIR"  # downloads and decoded images; default ~/.cache/hpstudy
DEFAULT_CACHE_DIR = Path("~/.cache/hpstudy")
DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, tarfile.TarError)  # no network, bad file


@dataclass(frozen=True)
class DataDir:
    """A folder to look for dataset files in, and who named it."""

    path: Path
    named_by: str  # "--data-dir", "$HPSTUDY_DATA_DIR" or "default"

    @property
    def may_download(self) -> bool:
        """Whether missing files may be downloaded here (only into the default folder)."""
        return self.named_by == "default"

    def __str__(self) -> str:
        if self.may_download:
            return f"{self.path} (the default download folder)"
        return f"{self.path} (from {self.named_by})"


def cache_dir() -> Path:
    """Where hpstudy keeps downloads and decoded images: $HPSTUDY_CACHE_DIR or ~/.cache/hpstudy."""
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser()


def data_dir(given: str | Path | None) -> DataDir:
    """The folder for dataset files: `--data-dir`, else $HPSTUDY_DATA_DIR, else the default."""
    if given:
        return DataDir(Path(given).expanduser(), "--data-dir")
    if os.environ.get(DATA_DIR_ENV):
        return DataDir(Path(os.environ[DATA_DIR_ENV]).expanduser(), f"${DATA_DIR_ENV}")
    return DataDir(cache_dir() / "downloads", "default")


def missing(dataset: str, where: DataDir, layouts: Sequence[str], reason: str = "") -> UserError:
    """The error for data that is not there: what, where we looked, and how to provide it."""
    because = f" and {reason}" if reason else ""
    return UserError(
        f"{dataset}: no data found in {where}{because}. Give a folder holding it with "
        f"--data-dir DIR (or the environment variable {DATA_DIR_ENV}=DIR), in one of these "
        "layouts:\n" + "\n".join(f"  - DIR/{layout}" for layout in layouts))


def download(dataset: str, where: DataDir, layouts: Sequence[str],
             fetch: Callable[[str], object]) -> None:
    """Run torchvision's download `fetch(root)` into the default folder; a UserError if it fails."""
    where.path.mkdir(parents=True, exist_ok=True)
    try:
        fetch(str(where.path))
    except DOWNLOAD_ERRORS as error:
        reason = " ".join(str(error).split())  # torchvision's messages span several lines
        raise missing(dataset, where, layouts, f"downloading it failed ({reason})") from None
