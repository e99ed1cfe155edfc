"""Changes to a study file for one call, from the command line: `--set KEY=VALUE` (and
what switching a sampler or pruner's class implies) and `--enqueue KEY=VALUE,...`."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from typing import Any

from hpstudy.errors import UserError

PLUGIN_SECTIONS = ("sampler", "pruner")


def switch_plugin(raw: dict[str, Any], section: str, was: str | None,
                   overrides: Sequence[str]) -> str:
    """After `--set sampler.name=...` (or pruner): drop the file's options of the old class
    that the new one does not take (those given with --set stay); what was dropped, or ''."""
    from hpstudy.search.study import PLUGINS, options_of  # Optuna: only when switching

    table = raw.get(section)
    name = table.get("name") if isinstance(table, dict) else None
    if name == was or name not in PLUGINS[section]:
        return ""  # not switched, or an unknown name (its own error follows)
    given = {o.partition("=")[0].strip().removeprefix(f"{section}.") for o in overrides}
    dropped = [key for key in table if key not in given and key not in options_of(section, name)]
    for key in dropped:
        del table[key]
    return (f"--set {section}.name={name}: the file's [{section}] {', '.join(dropped)} "
            f"dropped ({was or 'the default'}'s options, not {name}'s)") if dropped else ""


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `table.key=value` in the parsed study file; the value is read as TOML (or a string)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {override}: expected KEY=VALUE, e.g. --set train.epochs=1 or "
                        "--set 'search.lr={low=0.01, high=0.1, log=true}'.")
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word: `--set data.name=digits`
    *tables, last = key.strip().split(".")
    node = raw
    for table in tables:
        node = node.setdefault(table, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {override}: '{table}' is a value, not a table.")
    node[last] = value


def parse_point(text: str) -> dict[str, Any]:
    """`--enqueue lr=0.1,width=64` as {"lr": 0.1, "width": 64}; values read as TOML."""
    point: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--enqueue {text}: expected KEY=VALUE,KEY=VALUE,..., e.g. "
                            "--enqueue lr=0.1,width=64.")
        try:
            point[key.strip()] = tomllib.loads(f"value = {value}")["value"]
        except tomllib.TOMLDecodeError:
            point[key.strip()] = value.strip()
    return point
