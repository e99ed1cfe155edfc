"""Study files: find `studies/NAME.toml`, parse it and validate it into a StudyConfig.

A study file is data only. Each table maps onto a dataclass; an unknown key, a wrong
type or an impossible value is a `ConfigError` that names the file and the key.

[search] may name any key of `searchable`: the six of `space.PARAMS`, the [train] keys
of TRAIN_SEARCHABLE and the [model] keys of the study's architecture. For a [train] or
[model] key, a number (or word) in [search] replaces the value there; a range or
choices makes each trial pick its own (`StudyConfig.train_for`, `models.build_model`).
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hpstudy.data import DATASETS, dataset
from hpstudy.errors import ConfigError, UserError
from hpstudy.models import MODELS, architecture
from hpstudy.spec import user_code
from hpstudy.spec.finding import find_study
from hpstudy.spec.overrides import PLUGIN_SECTIONS, apply_override, parse_point, switch_plugin
from hpstudy.spec.space import PARAMS, Param, ParamRule, Value, parse_search, rule_for
from hpstudy.spec.step_keys import check_step_keys, check_vectorized_step
from hpstudy.spec.tables import build, check_type, one_of, require


@dataclass(frozen=True)
class DataConfig:
    """[data]: which dataset and its options (see `hpstudy list`)."""

    name: str
    options: Any  # the dataset's own options dataclass


@dataclass(frozen=True)
class ModelConfig:
    """[model]: which architecture and its options."""

    architecture: str
    options: Any  # the architecture's own options dataclass


@dataclass(frozen=True)
class TrainConfig:
    """[train]: the settings every trial shares."""

    epochs: int  # passes over the training split
    batch_size: int  # examples per optimizer step
    optimizer: Literal["sgd", "adam", "rmsprop"] = "sgd"
    schedule: Literal["constant", "step", "cosine", "one-cycle"] = "constant"  # learning rate
    # over training, stepped every batch (train.make_scheduler): lr stays; x0.1 at each third
    # of the epochs; cosine down to 0; one-cycle up to lr and back down
    seed: int = 0  # weight init and shuffling: the same parameters give the same result
    vectorize: int = 1  # trials of one width and depth trained together as one batched network
    seeds: int = 1  # each trial trains seed, seed+1, ...: reports the mean, keeps the best seed
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # the step's arithmetic: bf16 = autocast
    # (weights and loss stay fp32); auto = bf16 on a CUDA device that has it, fp32 on the CPU
    channels_last: Literal["auto"] | bool = "auto"  # conv nets' memory format (no effect on
    # others); auto = on for a conv net on CUDA, off on the CPU
    compile: bool = False  # torch.compile the network; its first epoch pays the compiling
    cuda_graph: bool = False  # the whole step captured as one CUDA graph (CUDA, constant lr)

    def __post_init__(self) -> None:
        check_step_keys(self)
        require(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        require(self.seeds >= 1, "seeds", "an integer >= 1 (1: one seed per trial)", self.seeds)
        require(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        require(self.vectorize >= 1, "vectorize", "an integer >= 1 (1: one trial at a time)",
                self.vectorize)


@dataclass(frozen=True)
class PluginConfig:
    """[sampler] or [pruner]: an Optuna class by name, with its keyword arguments."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyConfig:
    """A whole study file, validated."""

    name: str  # the file's stem; also the Optuna study, MLflow experiment and model name
    path: Path
    description: str
    trials: int  # trials per `optimize` call unless --trials says otherwise
    metric: Literal["val_loss"]
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    search: dict[str, Param]
    sampler: PluginConfig
    pruner: PluginConfig
    max_failures: int = 5  # failed trials in a row that stop an `optimize` call
    champion_floor: Literal["chance", "none"] = "chance"  # a champion beats a constant predictor
    max_val_loss: float | None = None  # and, if set, has a validation loss below this
    keep_models: int = 3  # completed trials whose trained weights are kept: the best k (0: all)
    overrides: tuple[str, ...] = ()  # the `--set KEY=VALUE` applied on top of the file
    enqueue: tuple[dict[str, Value], ...] = ()  # [[enqueue]]: points tried before the sampler's
    notes: tuple[str, ...] = ()  # what loading changed beyond what was asked, for the user

    def user_code(self) -> dict[str, str]:
        """The import paths of the user's code this study runs ([data] name, [model]
        architecture), by section: empty for built-in data and networks."""
        named = {"data": self.data.name, "model": self.model.architecture}
        return {section: name for section, name in named.items() if user_code.is_import_path(name)}

    def code_identity(self) -> dict[str, str]:
        """Which user code this is, flattened for logging: path, SHA-256 and package version."""
        return {f"{section}.code.{k}": v for section, path in self.user_code().items()
                for k, v in user_code.code_identity(path).items()}

    def searched(self) -> set[str]:
        """The keys each trial picks for itself."""
        return {k for k, p in self.search.items() if p.searched}

    def fixed_params(self) -> dict[str, Any]:
        """Every setting a trial does not search, flattened for logging."""
        searched = self.searched()  # logged as the trial's own params, never twice
        flat: dict[str, Any] = {"dataset": self.data.name, "architecture": self.model.architecture}
        flat.update({f"data.{k}": v for k, v in dataclasses.asdict(self.data.options).items()
                     if not (k == "augment" and v == "none")})  # as logged before it existed
        flat.update({f"model.{k}": v for k, v in dataclasses.asdict(self.model.options).items()
                     if k not in searched})
        flat.update({k: v for k, v in dataclasses.asdict(self.train).items() if k not in searched
                     and (k not in UNLOGGED or UNLOGGED[k] != v)})  # see UNLOGGED
        flat.update({k: p.value for k, p in self.search.items() if not p.searched})
        flat.update(self.code_identity())  # provenance of the user's network and data
        return flat

    def train_for(self, hp: dict[str, Any]) -> TrainConfig:
        """[train] as a trial with values `hp` trains: its searched [train] keys replaced."""
        return dataclasses.replace(self.train, **{k: hp[k] for k in TRAIN_SEARCHABLE if k in hp})


@dataclass(frozen=True)
class _TopLevel:
    description: str = ""  # one line shown by `hpstudy list`
    trials: int = 20
    metric: Literal["val_loss"] = "val_loss"
    max_failures: int = 5
    champion_floor: Literal["chance", "none"] = "chance"
    max_val_loss: float | None = None
    keep_models: int = 3
    data: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    sampler: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=dict)
    enqueue: list = field(default_factory=list)

    def __post_init__(self) -> None:
        require(self.trials >= 1, "trials", "an integer >= 1", self.trials)
        require(self.max_failures >= 1, "max_failures", "an integer >= 1", self.max_failures)
        require(self.max_val_loss is None or self.max_val_loss > 0, "max_val_loss",
                "a number > 0", self.max_val_loss)
        require(self.keep_models >= 0, "keep_models",
                "an integer >= 0 (the best k trials keep their weights; 0 keeps every one)",
                self.keep_models)
        for section in ("data", "model", "train", "search"):
            require(bool(getattr(self, section)), section, f"a [{section}] table", "nothing",
                    f"Add a [{section}] table.")


def load_study(name_or_path: str, overrides: Sequence[str] = (),
               enqueue: Sequence[str] = ()) -> StudyConfig:
    """Find, parse and validate a study file, with `--set KEY=VALUE` overrides applied and
    `--enqueue KEY=VALUE,...` points added to its [[enqueue]].

    Any mistake is a ConfigError naming the file (and the overrides, if any).
    """
    path = find_study(name_or_path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML: {error}. Fix the syntax there.") from None
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        raise UserError(f"{path}, line {line}: byte {error.object[error.start]:#04x} is not "
                        "UTF-8 (TOML files are UTF-8). Save the file as UTF-8 or remove the "
                        "character.") from None
    named = {section: raw.get(section, {}).get("name") for section in PLUGIN_SECTIONS}
    for override in overrides:
        apply_override(raw, override)
    notes = tuple(note for section in PLUGIN_SECTIONS if (note := switch_plugin(
        raw, section, named[section], overrides)))
    for point in enqueue:
        raw.setdefault("enqueue", []).append(parse_point(point))
    where = f"{path} (with --set {' '.join(overrides)})" if overrides else str(path)
    try:
        return dataclasses.replace(_parse(raw, path), overrides=tuple(overrides), notes=notes)
    except ConfigError as error:
        raise error.within(path=where) from None


def _enqueued(entries: Sequence[Any], search: Mapping[str, Param]) -> tuple[dict, ...]:
    """[[enqueue]] checked: every key a searched parameter, every value one it may take."""
    searched = sorted(k for k, p in search.items() if p.searched)
    points = []
    for i, entry in enumerate(entries):
        where = f"enqueue[{i}]"
        require(isinstance(entry, dict) and bool(entry), where,
                f"a table of searched parameters ({', '.join(searched)})", entry)
        for key, value in entry.items():
            if key not in searched:
                one_of(key, searched, f"{where}.{key}")  # names the closest searched key
            require(search[key].admits(value), f"{where}.{key}",
                    f"a value the search may take ({_span(search[key])})", value)
        points.append(dict(entry))
    return tuple(points)


def _span(param: Param) -> str:
    if param.choices is not None:
        return "one of " + ", ".join(repr(c) for c in param.choices)
    return f"{param.low} to {param.high}"


def _parse(raw: Mapping[str, Any], path: Path) -> StudyConfig:
    """A StudyConfig from the parsed TOML document."""
    from hpstudy.search.study import PRUNERS, SAMPLERS, check_plugin  # Optuna: only to check a file

    top = build(_TopLevel, raw)
    data = _with_options(top.data, "data", "name", DATASETS, dataset)
    model = _with_options(top.model, "model", "architecture", MODELS, architecture)
    arch = architecture(model.architecture)
    search = parse_search(_flat_search(top.search), searchable(model.architecture),
                          _refused(data, model.architecture))
    derived = arch.derives(model.options)
    for name in ("width", "depth", "dropout"):
        require(name in arch.uses or not search[name].searched, f"search.{name}",
                f"a fixed value ('{model.architecture}' has no {name})", "a range",
                f"Remove search.{name} or pick an architecture that uses it.")
        require(name not in derived or not search[name].searched, f"search.{name}",
                f"a fixed value ({derived.get(name)})", "a range",
                f"Remove search.{name}, or the model option that derives it.")
    train = build(TrainConfig, top.train | _placed(search, TRAIN_SEARCHABLE), "train")
    model = ModelConfig(model.architecture, _replaced(model.options, "model",
                                                      _placed(search, arch.option_keys())))
    _check_candidates(search, train, model)
    search = {k: p for k, p in search.items() if k in PARAMS or p.searched}  # the rest: placed
    optimizer = search.get("optimizer")
    require(train.optimizer != "adam" or optimizer is not None or not search["momentum"].searched,
            "search.momentum",
            "no momentum search with train.optimizer = 'adam' (Adam has no momentum setting)",
            "a range", "Remove search.momentum or use sgd or rmsprop.")
    if train.vectorize > 1:
        _check_vectorize(model.architecture, train, search)
    sampler = _plugin(top.sampler, "sampler", "tpe", SAMPLERS)
    pruner = _plugin(top.pruner, "pruner", "median", PRUNERS)
    check_plugin(SAMPLERS, sampler, "sampler")
    check_plugin(PRUNERS, pruner, "pruner")
    return StudyConfig(
        name=path.stem, path=path, description=top.description, trials=top.trials,
        metric=top.metric, data=data, model=model, train=train,
        search=search, sampler=sampler, pruner=pruner, max_failures=top.max_failures,
        champion_floor=top.champion_floor, max_val_loss=top.max_val_loss,
        keep_models=top.keep_models, enqueue=_enqueued(top.enqueue, search))


# ------------------------------------------------------------------ the open search space

TRAIN_SEARCHABLE = ("batch_size", "optimizer", "schedule")  # the rest is shared by all trials
UNLOGGED = {"seeds": 1, "precision": "auto", "channels_last": "auto", "compile": False,
            "cuda_graph": False}  # [train] keys logged only when not at these (later) defaults:
# a run logged before they existed is reproduced (run.reproduce) from the same params
TRAIN_MEANING = {"batch_size": "examples per optimizer step", "optimizer": "the optimizer",
                 "schedule": "the learning rate over training"}
SHARED = {"epochs": "every trial trains as many epochs (the pruner counts them)",
          "seed": "every trial starts from the same seed (same parameters, same result)",
          "vectorize": "it says how trials are trained, not how they differ",
          **dict.fromkeys(("precision", "channels_last", "compile", "cuda_graph"),
                          "it says how a step runs, not what a trial learns"),
          "seeds": "every trial is trained over as many seeds (it says how a trial is measured)"}


def searchable(name: str) -> dict[str, ParamRule]:
    """The [train] and [model] keys that [search] may name, beside those of space.PARAMS."""
    hints = typing.get_type_hints(TrainConfig)
    rules = {k: dataclasses.replace(rule_for(hints[k], TRAIN_MEANING[k]), minimum=1)
             if k == "batch_size" else rule_for(hints[k], TRAIN_MEANING[k])
             for k in TRAIN_SEARCHABLE}
    arch = architecture(name)
    hints = typing.get_type_hints(arch.options)
    rules |= {k: rule_for(hints[k], f"[model] {k} of '{name}'")
              for k in arch.option_keys() if hints[k] is not bool}  # a switch: set, not searched
    return rules


def _refused(data: DataConfig, name: str) -> dict[str, str]:
    """For keys a study has but cannot search: why not, and what to do instead."""
    refused = {k: f"It belongs in [train]: {why}. Set train.{k} there."
               for k, why in SHARED.items()}
    refused |= {k: f"It is a [data] key: every trial of a study trains on the same data. Set "
                   f"data.{k} there." for k in (f.name for f in dataclasses.fields(data.options))}
    takes = architecture(name).takes()
    refused |= {k: f"'{name}' does not take it (it takes "
                   f"{', '.join(takes) or 'no model keys'})."
                for arch in MODELS.values() for k in arch.takes() if k not in takes}
    return refused


def _flat_search(table: Mapping[str, Any]) -> dict[str, Any]:
    """[search] with `train.KEY`, `model.KEY` and `data.KEY` entries named by KEY alone."""
    flat: dict[str, Any] = {}
    for key, spec in table.items():
        if key in ("train", "model", "data") and isinstance(spec, dict):
            flat.update(spec)
        else:
            flat[key] = spec
    return flat


def _placed(search: Mapping[str, Param], keys: Sequence[str]) -> dict[str, Value]:
    """The [search] values of `keys` to place in [train] or [model]: fixed, or a first candidate."""
    return {k: search[k].first() for k in keys if k in search}


def _replaced(options: Any, section: str, values: Mapping[str, Any]) -> Any:
    """A [train] or [model] dataclass with `values` in place, checked by its own rules."""
    try:
        return dataclasses.replace(options, **values)
    except ConfigError as error:
        raise error.within(section) from None


def _check_candidates(search: Mapping[str, Param], train: TrainConfig, model: ModelConfig
                      ) -> None:
    """A ConfigError unless every value a trial may pick is a valid [train] and [model]."""
    model_keys = architecture(model.architecture).option_keys()
    for base, keys in ((train, TRAIN_SEARCHABLE), (model.options, model_keys)):
        searched = [k for k in keys if k in search and search[k].searched]
        for values in itertools.product(*(search[k].candidates() for k in searched)):
            try:
                dataclasses.replace(base, **dict(zip(searched, values, strict=True)))
            except ConfigError as error:
                given = ", ".join(f"{k} = {v!r}" for k, v in zip(searched, values, strict=True))
                raise ConfigError(f"search.{error.key}", error.expected, f"a search that can pick "
                                  f"{given}", error.fix or "Narrow the search.") from None


VECTORIZED = ("mlp", "linear")  # fully connected: hpstudy.train.batched trains K of them as one


def _check_vectorize(architecture: str, train: TrainConfig, search: dict[str, Param]) -> None:
    """A ConfigError unless `train.vectorize` can apply: SGD at a constant learning rate, a
    fully connected net, no dropout. A group shares every other searched key (group.py)."""
    check_vectorized_step(train)
    fix = "Set train.vectorize = 1, or"
    require(train.seeds == 1, "train.vectorize", f"1 with train.seeds = {train.seeds} (a "
            "vectorised group trains one seed per trial)", train.vectorize,
            f"{fix} set train.seeds = 1.")
    require(architecture in VECTORIZED, "train.vectorize", f"1 for '{architecture}' (vectorised "
            f"trials need {' or '.join(VECTORIZED)})", train.vectorize,
            f"{fix} use a fully connected architecture.")
    optimizers = search["optimizer"].candidates() if "optimizer" in search else (train.optimizer,)
    require(set(optimizers) == {"sgd"}, "train.vectorize", "1 with adam or rmsprop (vectorised "
            "trials use SGD)", train.vectorize, f"{fix} use optimizer = 'sgd' (not searched).")
    schedules = search["schedule"].candidates() if "schedule" in search else (train.schedule,)
    require(set(schedules) == {"constant"}, "train.vectorize", "1 with a learning-rate "
            "schedule (vectorised trials keep lr constant)", train.vectorize,
            f"{fix} use schedule = 'constant' (not searched).")
    dropout = search["dropout"]
    require(not dropout.searched and not dropout.value, "train.vectorize", "1 with dropout "
            "(vectorised trials must compute what separate trials do)", train.vectorize,
            f"{fix} remove search.dropout.")


def _with_options(table: Mapping[str, Any], section: str, key: str, registry: Mapping,
                  lookup: Callable[[str], Any]) -> Any:
    """[data] or [model]: the entry named by `key` (built in, or user code by import path),
    its options validated by its class."""
    known = f"one of {', '.join(registry)}, or your own as 'package.module:name'"
    require(key in table, f"{section}.{key}", known, "nothing (missing)")
    name = check_type(table[key], str, f"{section}.{key}")
    if not user_code.is_import_path(name):
        one_of(name, registry, f"{section}.{key}")
    entry = lookup(name)
    for shape in getattr(entry, "uses", ()):  # width, depth, dropout: hpstudy's own keys
        require(shape not in table, f"{section}.{shape}", f"{shape} in [search], where "
                "hpstudy's own keys are set or searched", f"{shape} in [{section}]",
                f"Move it: [search] {shape} = {table.get(shape)!r} fixes it, a range or choices "
                "search it.")
    options = build(entry.options, {k: v for k, v in table.items() if k != key}, section)
    cls = DataConfig if section == "data" else ModelConfig
    return cls(name, options)


def _plugin(table: Mapping[str, Any], section: str, default: str, registry: Mapping
            ) -> PluginConfig:
    """[sampler] or [pruner]: a known name and the keyword arguments for its Optuna class."""
    name = check_type(table.get("name", default), str, f"{section}.name")
    one_of(name, registry, f"{section}.name")
    return PluginConfig(name, {k: v for k, v in table.items() if k != "name"})
