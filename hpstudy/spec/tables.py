"""Strict TOML tables: map a table onto a dataclass, refusing unknown keys and wrong types."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from hpstudy.errors import ConfigError


def build(cls: type, table: Mapping[str, Any], section: str = "") -> Any:
    """A `cls` dataclass from a TOML table; unknown keys, missing keys and wrong types raise."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    prefix = f"{section}." if section else ""
    for key in table:
        known_key(key, names, section)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(prefix + f.name, _describe(hints[f.name]), "nothing (missing)",
                                  f"Add '{f.name} = ...' to [{section}]." if section else "")
            continue
        values[f.name] = check_type(table[f.name], hints[f.name], prefix + f.name)
    try:
        return cls(**values)
    except ConfigError as error:
        raise error.within(section) from None


def check_type(value: Any, hint: Any, key: str) -> Any:
    """`value` if it fits the type `hint` (ints widen to floats), else a ConfigError for `key`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # `X | None`: TOML has no null, so check X
        kinds = [a for a in args if a is not type(None)]
        for kind in kinds[:-1]:  # `bool | Literal["auto"]`: the first that fits
            with contextlib.suppress(ConfigError):
                return check_type(value, kind, key)
        try:
            return check_type(value, kinds[-1], key)
        except ConfigError:
            raise ConfigError(key, _describe(hint), value) from None
    if origin is Literal:
        return one_of(value, args, key)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }
    if hint in ok:
        if not ok[hint]:
            raise ConfigError(key, _describe(hint), f"{value!r} ({type(value).__name__})")
        return float(value) if hint is float else value
    if hint is Any or origin in (dict, Mapping, list) or hint in (dict, list):
        return value
    raise TypeError(f"no check for {hint!r} at {key}")  # a bug in a dataclass, not user input


def _describe(hint: Any) -> str:
    """A type hint as words for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args) if len(args) > 1 else repr(args[0])
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, "a table")


def require(ok: bool, key: str, expected: str, given: object, fix: str = "") -> None:
    """Raise a ConfigError for `key` unless `ok`."""
    if not ok:
        raise ConfigError(key, expected, given, fix)


def one_of(value: Any, known: Iterable[Any], key: str) -> Any:
    """`value` if it is among `known`, else a ConfigError listing them with the closest match."""
    known = list(known)
    if value in known:
        return value
    close = difflib.get_close_matches(str(value), [str(k) for k in known], n=1)
    raise ConfigError(key, "one of " + ", ".join(str(k) for k in known), value,
                      f"Did you mean '{close[0]}'?" if close else "")


def known_key(key: str, known: Iterable[str], section: str) -> None:
    """Raise a ConfigError naming `section` unless `key` is one of its `known` keys."""
    known = list(known)
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        raise ConfigError(section or "top level", f"one of the keys {', '.join(known)}",
                          f"an unknown key '{key}'",
                          f"Did you mean '{close[0]}'?" if close else "Remove it.")
