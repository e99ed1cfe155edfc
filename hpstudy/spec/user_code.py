"""A network of the user's own, named by import path: `[model] architecture = "pkg.mod:Name"`.

The callable (an `nn.Module` class or a function returning one) is the schema: hpstudy
passes it `input_shape` (one input, e.g. `(1, 28, 28)`) and `num_outputs` when its
signature has them, `width`, `depth` and `dropout` (hpstudy's own searchable keys) when it
has those, and every other parameter from the study's `[model]` table or a trial's
`[search]` values. Those parameters, with their type hints (`int`, `float`, `bool`, `str`,
`Literal[...]`) and defaults, are the study's [model] keys, checked like the built-in
architectures' options.

A study file that names an import path runs that code, as a Python script would. Modules
are imported from the working directory first, then `PYTHONPATH` and installed packages.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import re
import sys
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from hpstudy.errors import ConfigError

IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")  # package.module:name
CONTEXT = ("input_shape", "num_outputs")  # what hpstudy passes, when the signature asks
SHAPE_KEYS = ("width", "depth", "dropout")  # hpstudy's own searchable keys (space.PARAMS)
TYPES = (int, float, bool, str)  # the hints a [model] or [data] key may have, and Literal


def is_import_path(name: str) -> bool:
    """Whether `name` names user code (`package.module:name`) rather than a built-in."""
    return bool(IMPORT_PATH.fullmatch(name))


def resolve(path: str, key: str) -> Callable[..., Any]:
    """The callable at `path` ("package.module:name"); a ConfigError for `key` if there is none."""
    module_name, _, attribute = path.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as `python -m` does: the working directory first
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or module_name
        raise ConfigError(key, "an importable module", path, f"No module named '{missing}' "
                          "(looked in the working directory, PYTHONPATH and installed "
                          "packages). Run from the folder that holds it, add that folder to "
                          "PYTHONPATH, or pip install its package.") from None
    except Exception as error:  # the user's module itself raises on import
        raise ConfigError(key, "a module that imports", path,
                          f"Importing '{module_name}' raised {one_line(error)}.") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = sorted(n for n in dir(module) if not n.startswith("_"))
            raise ConfigError(key, f"a name defined in '{module_name}'", path,
                              f"'{module_name}' has no '{attribute}' (it has: "
                              f"{', '.join(names[:12]) or 'nothing public'}).")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(key, "a class or function", f"{path} ({type(target).__name__})",
                          "Name an nn.Module class or a function that returns the object.")
    return target


def options_class(target: Callable[..., Any], path: str, section: str,
                  skip: tuple[str, ...]) -> type:
    """A frozen dataclass of `target`'s parameters (but `skip`): the [section] keys it takes."""
    signature = inspect.signature(target)
    hints = _hints(target)
    fields = []
    for name, parameter in signature.parameters.items():
        if name in skip or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise ConfigError(f"{section}.{name}", "a parameter that can be passed by name",
                              f"a positional-only parameter of {path}", "Drop the '/'.")
        default = parameter.default
        hint = hints.get(name, type(default) if default is not parameter.empty else None)
        if not _supported(hint):
            raise ConfigError(f"{section}.{name}", "a parameter hinted int, float, bool, str or "
                              "Literal[...]", f"{_hint_name(hint)} in {path}",
                              "Give it one of those type hints (and a default).")
        field = (dataclasses.field() if default is parameter.empty
                 else dataclasses.field(default=default))
        fields.append((name, hint, field))
    fields.sort(key=lambda f: f[2].default is dataclasses.MISSING, reverse=True)  # required 1st
    return dataclasses.make_dataclass(f"{path.rpartition(':')[2]}Options", fields, frozen=True)


def code_identity(path: str) -> dict[str, str]:
    """Which code `path` is: its import path, its file's SHA-256 and its package's version."""
    module_name = path.partition(":")[0]
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    file = getattr(module, "__file__", None)
    digest = hashlib.sha256(Path(file).read_bytes()).hexdigest() if file else "unknown"
    top = module_name.split(".")[0]
    try:
        dists = importlib.metadata.packages_distributions().get(top, [])
        version = importlib.metadata.version(dists[0]) if dists else ""
    except importlib.metadata.PackageNotFoundError:
        version = ""
    return {"path": path, "sha256": digest, "version": version or "not installed"}


def call(target: Callable[..., Any], values: Mapping[str, Any], path: str, key: str) -> Any:
    """`target(**values)` with what its signature takes; a ConfigError if it raises."""
    accepted = inspect.signature(target).parameters
    try:
        return target(**{k: v for k, v in values.items() if k in accepted})
    except Exception as error:
        given = ", ".join(f"{k}={v!r}" for k, v in values.items() if k in accepted)
        raise ConfigError(key, f"{path} to accept the study's values", given or "no arguments",
                          f"Calling it raised {one_line(error)}.") from None


@functools.cache
def _hints(target: Callable[..., Any]) -> dict[str, Any]:
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except Exception:  # hints that name what cannot be imported: read the defaults instead
        return {}


def _supported(hint: Any) -> bool:
    return hint in TYPES or typing.get_origin(hint) is Literal


def _hint_name(hint: Any) -> str:
    return "no type hint and no default" if hint is None else getattr(hint, "__name__", str(hint))


def one_line(error: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    prose = [line for line in lines if not line[0].isspace()
             and not line.startswith(("def ", "class ", "#", "File "))]  # not code or a trace
    first = (prose or lines or [""])[0].strip()
    if len(first) > 200:
        first = first[:197] + "..."
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
