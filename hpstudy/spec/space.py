"""The search space: which hyperparameters exist, their bounds, and how a study file states them.

The six hyperparameters of `PARAMS` live only in [search]. Any other searchable key is
a [train] or [model] key that the study file's `config` module offers as a rule (see
`config.searchable`): a [search] entry for it replaces the value there.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hpstudy.errors import ConfigError
from hpstudy.spec.tables import check_type, require

Number = int | float
Value = int | float | str  # a string only among a rule's `words`


@dataclass(frozen=True)
class ParamRule:
    """What one searchable hyperparameter is: its type, its bounds, its meaning."""

    kind: type  # int, float or str
    minimum: float = -math.inf  # smallest allowed value
    maximum: float = math.inf  # largest allowed value (exclusive when `open_max`)
    open_min: bool = False  # True: the minimum itself is not allowed
    open_max: bool = False
    default: Number | None = None  # used when the study file leaves it out; None: required
    meaning: str = ""
    words: tuple[str, ...] = ()  # the allowed strings, when kind is str

    def allows(self, v: Value) -> bool:
        """Whether `v` lies within the bounds (or among the words)."""
        if self.kind is str:
            return v in self.words
        above = v > self.minimum if self.open_min else v >= self.minimum
        below = v < self.maximum if self.open_max else v <= self.maximum
        return above and below

    def bounds(self) -> str:
        """The bounds as words, e.g. 'a number in [0, 1)'."""
        if self.kind is str:
            return "one of " + ", ".join(repr(w) for w in self.words)
        if self.minimum == -math.inf and self.maximum == math.inf:
            return "an integer" if self.kind is int else "a number"
        lo, hi = ("(" if self.open_min else "["), (")" if self.open_max else "]")
        what = "an integer" if self.kind is int else "a number"
        return f"{what} in {lo}{self.minimum:g}, {self.maximum:g}{hi}"


PARAMS: dict[str, ParamRule] = {
    "lr": ParamRule(float, 0.0, open_min=True, meaning="learning rate"),
    "momentum": ParamRule(float, 0.0, 1.0, open_max=True, default=0.0,
                          meaning="SGD and RMSprop momentum; Adam's beta1"),
    "width": ParamRule(int, 1, default=64, meaning="size of a layer: see `hpstudy list`"),
    "depth": ParamRule(int, 0, default=1, meaning="number of layers: see `hpstudy list`"),
    "weight_decay": ParamRule(float, 0.0, default=0.0, meaning="L2 penalty"),
    "dropout": ParamRule(float, 0.0, 1.0, open_max=True, default=0.0,
                         meaning="drop probability, where the architecture has dropout"),
}


def rule_for(hint: Any, meaning: str = "") -> ParamRule:
    """The rule of a [train] or [model] key, from its type hint; its dataclass checks the rest."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # `int | None`: searched, it is an int
        return rule_for(next(a for a in args if a is not type(None)), meaning)
    if origin is Literal:
        return ParamRule(str, words=tuple(args), meaning=meaning)
    if hint not in (int, float, str):
        raise TypeError(f"no search rule for {hint!r}")  # a bug in a dataclass, not user input
    return ParamRule(hint, meaning=meaning)


@dataclass(frozen=True)
class Param:
    """One hyperparameter: a fixed value, a range (`low`..`high`) or a list of `choices`."""

    name: str
    value: Number | None = None  # fixed
    low: Number | None = None
    high: Number | None = None
    log: bool = False  # sample the range on a log scale
    step: Number | None = None  # grid step inside the range
    choices: tuple[Value, ...] | None = None
    kind: type = float  # int, float or str: how Optuna suggests it

    @property
    def searched(self) -> bool:
        """Whether Optuna chooses this value (as opposed to it being fixed)."""
        return self.value is None

    def first(self) -> Value:
        """The fixed value, else the first choice, else the low end (a valid placeholder)."""
        if self.value is not None:
            return self.value
        return self.choices[0] if self.choices is not None else self.low  # type: ignore

    def candidates(self) -> tuple[Value, ...]:
        """Every value to check against the rest of the study: the choices, or both ends."""
        if self.value is not None:
            return (self.value,)
        return self.choices if self.choices is not None else (self.low, self.high)  # type: ignore

    def admits(self, value: Value) -> bool:
        """Whether a trial of this search may take `value` (one of the choices, or in range)."""
        if self.value is not None:
            return value == self.value
        if self.choices is not None:
            return value in self.choices
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (self.kind is int and not float(value).is_integer()):
            return False
        return self.low <= value <= self.high  # type: ignore[operator]

    def extremes(self) -> tuple[Number, Number]:
        """The smallest and largest value this parameter can take."""
        if self.value is not None:
            return self.value, self.value
        if self.choices is not None:
            return min(self.choices), max(self.choices)
        return self.low, self.high  # type: ignore[return-value]


def parse_param(name: str, spec: Any, rule: ParamRule | None = None) -> Param:
    """A Param from a study file entry: a number (or word), {low, high, log, step} or {choices}."""
    rule = rule or PARAMS[name]
    kind = {int: "an integer", float: "a number", str: "a string"}[rule.kind]

    def number(v: Any, key: str) -> Value:
        v = check_type(v, rule.kind, key)
        require(rule.allows(v), key, rule.bounds(), v)
        return v

    if not isinstance(spec, dict):
        return Param(name, value=number(spec, name), kind=rule.kind)
    keys = set(spec)
    if "choices" in keys:
        require(keys == {"choices"}, name, "either {choices = [...]} or {low, high}",
                f"both: {sorted(keys)}", "Keep one of the two forms.")
        choices = spec["choices"]
        require(isinstance(choices, list) and len(choices) > 0, f"{name}.choices",
                f"a non-empty list of {kind.split(' ', 1)[1]}s", choices)
        values = tuple(number(c, f"{name}.choices") for c in choices)
        require(len(set(values)) == len(values), f"{name}.choices", "distinct values", choices)
        return Param(name, choices=values, kind=rule.kind)
    words = ", ".join(f'"{w}"' for w in rule.words)
    require(rule.kind is not str, name, f"a word or {{choices = [...]}} ({rule.bounds()})",
            "a range", f"Write e.g. {name} = {{ choices = [{words}] }}.")
    require(keys >= {"low", "high"} and keys <= {"low", "high", "log", "step"}, name,
            "a table with low and high (and optionally log, step), or with choices",
            "{" + ", ".join(sorted(keys)) + "}")
    low, high = number(spec["low"], f"{name}.low"), number(spec["high"], f"{name}.high")
    require(low < high, name, "low < high (a non-empty range)", f"low = {low}, high = {high}",
            "Swap them if inverted; to fix the value, write a plain number instead.")
    log = check_type(spec.get("log", False), bool, f"{name}.log")
    require(not log or low > 0, f"{name}.low", "a value above 0 on a log scale", low)
    step = spec.get("step")
    if step is not None:
        step = check_type(step, rule.kind, f"{name}.step")
        require(not log, f"{name}.step", "no step on a log scale", step, "Drop step or log.")
        require(0 < step <= high - low, f"{name}.step", f"a step in (0, {high - low:g}]", step)
    return Param(name, low=low, high=high, log=log, step=step, kind=rule.kind)


def parse_search(table: Mapping[str, Any], extra: Mapping[str, ParamRule] | None = None,
                 refused: Mapping[str, str] | None = None) -> dict[str, Param]:
    """The [search] table as Params, with defaults filled in for what it leaves out.

    `extra` are the searchable [train] and [model] keys; `refused` says, for keys a
    study has but cannot search (e.g. epochs), why not and where they belong instead.
    """
    rules = dict(PARAMS) | dict(extra or {})
    search = {}
    for key, spec in table.items():
        searchable(key, rules, refused or {})
        try:
            search[key] = parse_param(key, spec, rules[key])
        except ConfigError as error:
            raise error.within("search") from None
    for key, rule in PARAMS.items():
        if key not in search:
            require(rule.default is not None, f"search.{key}", f"{rule.meaning}: {rule.bounds()}",
                    "nothing (missing)", f"Add e.g. '{key} = {{ low = ..., high = ... }}'.")
            search[key] = Param(key, value=rule.default, kind=rule.kind)
    return search


def searchable(key: str, rules: Mapping[str, ParamRule], refused: Mapping[str, str]) -> None:
    """A ConfigError for `search.KEY` unless KEY has a rule; it lists the searchable keys."""
    if key in rules:
        return
    close = difflib.get_close_matches(key, list(rules), n=1)
    fix = refused.get(key) or (f"Did you mean '{close[0]}'?" if close else "Remove it.")
    given = "a key that cannot be searched" if key in refused else "an unknown key"
    raise ConfigError(f"search.{key}", f"one of the searchable keys {', '.join(rules)}",
                      f"'{key}' ({given})", fix)


def on_edge(param: Param, value: Value) -> bool:
    """Whether a best `value` sits at the edge of its searched range: widen the range."""
    if not param.searched or param.kind is str:
        return False
    if param.choices is not None:
        return len(param.choices) > 2 and value in (min(param.choices), max(param.choices))
    scale = math.log if param.log else float
    low, high, v = scale(param.low), scale(param.high), scale(value)
    margin = EDGE_SHARE * (high - low)
    return v - low <= margin or high - v <= margin


def edges(search: Mapping[str, Param], params: Mapping[str, Value],
          complete: int) -> list[tuple[str, Value]]:
    """The (name, value) of each of a best trial's `params` that sits on its range's edge;
    none before EDGE_MIN_TRIALS trials have completed (the best of a few is chance)."""
    if complete < EDGE_MIN_TRIALS:
        return []
    return [(name, value) for name, value in params.items()
            if name in search and on_edge(search[name], value)]


EDGE_MIN_TRIALS = 10  # completed trials before the best one's edges mean anything
EDGE_SHARE = 0.03  # within 3% of the range's span (in log space for log ranges) counts as edge
