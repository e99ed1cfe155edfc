"""Where study files are found: `--study NAME` in the working directory's studies/, then
among those hpstudy ships (the package `hpstudy.studies`); or a path to a .toml file."""

from __future__ import annotations

import difflib
import importlib.util
import tomllib
from pathlib import Path

from hpstudy.errors import UserError


def shipped_studies() -> Path:
    """The folder of the studies hpstudy ships: the package `hpstudy.studies`, which is the
    checkout's top-level `studies/` (pyproject.toml maps it), in a wheel as in an editable
    install."""
    spec = importlib.util.find_spec("hpstudy.studies")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("hpstudy is installed without its studies (hpstudy.studies)")
    return Path(next(iter(spec.submodule_search_locations)))


STUDIES_DIR = Path("studies")  # looked up relative to the working directory first
BUNDLED_STUDIES_DIR = shipped_studies()  # then the ones shipped in the package


def find_study(name_or_path: str) -> Path:
    """The study file for `--study`: a path, or NAME looked up as studies/NAME.toml."""
    given = Path(name_or_path)
    if given.suffix and given.is_file():
        return given
    for folder in (STUDIES_DIR, BUNDLED_STUDIES_DIR):
        candidate = folder / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in (STUDIES_DIR, BUNDLED_STUDIES_DIR) for p in d.glob("*.toml")})
    close = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UserError(
        f"--study {name_or_path}: no such study file (looked for {STUDIES_DIR / name_or_path}.toml"
        f" and {BUNDLED_STUDIES_DIR / name_or_path}.toml).{hint}"
        f" Known studies: {', '.join(known) or 'none'}; or give a path to a .toml file.")


def list_studies() -> list[tuple[str, str]]:
    """(name, description) of every study file that `--study NAME` can find."""
    found: dict[str, str] = {}
    for folder in (BUNDLED_STUDIES_DIR, STUDIES_DIR):  # the working directory's win
        for path in sorted(folder.glob("*.toml")):
            try:
                with path.open("rb") as fh:
                    found[path.stem] = str(tomllib.load(fh).get("description", ""))
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
                found[path.stem] = f"(unreadable: {error})"
    return sorted(found.items())
