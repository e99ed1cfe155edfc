"""The search space: which hyperparameters exist, their bounds, and how a study file states them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpstudy.errors import ConfigError
from hpstudy.tables import check_type, known_key, require

Number = int | float


@dataclass(frozen=True)
class ParamRule:
    """What one searchable hyperparameter is: its type, its bounds, its meaning."""

    kind: type  # int or float
    minimum: float  # smallest allowed value
    maximum: float = math.inf  # largest allowed value (exclusive when `open_max`)
    open_min: bool = False  # True: the minimum itself is not allowed
    open_max: bool = False
    default: Number | None = None  # used when the study file leaves it out; None: required
    meaning: str = ""

    def allows(self, v: Number) -> bool:
        """Whether `v` lies within the bounds."""
        above = v > self.minimum if self.open_min else v >= self.minimum
        below = v < self.maximum if self.open_max else v <= self.maximum
        return above and below

    def bounds(self) -> str:
        """The bounds as words, e.g. 'a number in [0, 1)'."""
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


@dataclass(frozen=True)
class Param:
    """One hyperparameter: a fixed value, a range (`low`..`high`) or a list of `choices`."""

    name: str
    value: Number | None = None  # fixed
    low: Number | None = None
    high: Number | None = None
    log: bool = False  # sample the range on a log scale
    step: Number | None = None  # grid step inside the range
    choices: tuple[Number, ...] | None = None

    @property
    def searched(self) -> bool:
        """Whether Optuna chooses this value (as opposed to it being fixed)."""
        return self.value is None

    def extremes(self) -> tuple[Number, Number]:
        """The smallest and largest value this parameter can take."""
        if self.value is not None:
            return self.value, self.value
        if self.choices is not None:
            return min(self.choices), max(self.choices)
        return self.low, self.high  # type: ignore[return-value]


def parse_param(name: str, spec: Any) -> Param:
    """A Param from a study file entry: a number, {low, high, log, step} or {choices}."""
    rule = PARAMS[name]
    kind = "an integer" if rule.kind is int else "a number"

    def number(v: Any, key: str) -> Number:
        v = check_type(v, rule.kind, key)
        require(rule.allows(v), key, rule.bounds(), v)
        return v

    if not isinstance(spec, dict):
        return Param(name, value=number(spec, name))
    keys = set(spec)
    if "choices" in keys:
        require(keys == {"choices"}, name, "either {choices = [...]} or {low, high}",
                f"both: {sorted(keys)}", "Keep one of the two forms.")
        choices = spec["choices"]
        require(isinstance(choices, list) and len(choices) > 0, f"{name}.choices",
                f"a non-empty list of {kind}s", choices)
        values = tuple(number(c, f"{name}.choices") for c in choices)
        require(len(set(values)) == len(values), f"{name}.choices", "distinct values", choices)
        return Param(name, choices=values)
    require(keys >= {"low", "high"} and keys <= {"low", "high", "log", "step"}, name,
            "a table with low and high (and optionally log, step), or with choices",
            "{" + ", ".join(sorted(keys)) + "}")
    low, high = number(spec["low"], f"{name}.low"), number(spec["high"], f"{name}.high")
    require(low < high, name, "low < high (a non-empty range)", f"low = {low}, high = {high}",
            "Swap them if inverted; to fix the value, write a plain number instead." )
    log = check_type(spec.get("log", False), bool, f"{name}.log")
    require(not log or low > 0, f"{name}.low", "a value above 0 on a log scale", low)
    step = spec.get("step")
    if step is not None:
        step = check_type(step, rule.kind, f"{name}.step")
        require(not log, f"{name}.step", "no step on a log scale", step, "Drop step or log.")
        require(0 < step <= high - low, f"{name}.step", f"a step in (0, {high - low:g}]", step)
    return Param(name, low=low, high=high, log=log, step=step)


def parse_search(table: Mapping[str, Any]) -> dict[str, Param]:
    """The [search] table as Params, with defaults filled in for what it leaves out."""
    search = {}
    for key, spec in table.items():
        known_key(key, PARAMS, "search")
        try:
            search[key] = parse_param(key, spec)
        except ConfigError as error:
            raise error.within("search") from None
    for key, rule in PARAMS.items():
        if key not in search:
            require(rule.default is not None, f"search.{key}", f"{rule.meaning}: {rule.bounds()}",
                    "nothing (missing)", f"Add e.g. '{key} = {{ low = ..., high = ... }}'.")
            search[key] = Param(key, value=rule.default)
    return search


def on_edge(param: Param, value: Number) -> bool:
    """Whether a best `value` sits at the edge of its searched range: widen the range."""
    if not param.searched:
        return False
    if param.choices is not None:
        return len(param.choices) > 2 and value in (min(param.choices), max(param.choices))
    scale = math.log if param.log else float
    low, high, v = scale(param.low), scale(param.high), scale(value)
    margin = EDGE_SHARE * (high - low)
    return v - low <= margin or high - v <= margin


EDGE_SHARE = 0.03  # within 3% of the range's span (in log space for log ranges) counts as edge
