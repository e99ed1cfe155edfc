"""Optuna: samplers and pruners by name, the persistent study that `optimize` continues, and
the callback that stops it after too many failed trials in a row."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna

from hpstudy import storage
from hpstudy.errors import ConfigError, UserError
from hpstudy.search.record import CODE_ATTR, TrialRecord
from hpstudy.spec.tables import known_key

if TYPE_CHECKING:
    from hpstudy.spec.study_file import PluginConfig, StudyConfig

SAMPLERS: dict[str, type] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "brute_force": optuna.samplers.BruteForceSampler,  # every choice once, then the study stops
}
PRUNERS: dict[str, type] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "none": optuna.pruners.NopPruner,
}


PLUGINS = {"sampler": SAMPLERS, "pruner": PRUNERS}


def options_of(section: str, name: str) -> list[str]:
    """The keys a [sampler] or [pruner] table may hold for the class `name` names."""
    return ["name", *_keywords(PLUGINS[section][name])]


def _keywords(cls: type) -> list[str]:
    """The keyword arguments an Optuna class accepts."""
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [n for n, p in inspect.signature(cls).parameters.items() if p.kind in kinds]


def make(registry: Mapping[str, type], plugin: PluginConfig, seed_offset: int = 0) -> Any:
    """The sampler or pruner `plugin` names; a seed, if given, is moved on by `seed_offset`."""
    options = dict(plugin.options)
    if "seed" in options:
        options["seed"] += seed_offset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return registry[plugin.name](**options)


def check_plugin(registry: Mapping[str, type], plugin: PluginConfig, section: str) -> None:
    """Raise a ConfigError unless the Optuna class accepts these options."""
    cls = registry[plugin.name]
    for key in plugin.options:
        known_key(key, ["name", *_keywords(cls)], section)
    try:
        make(registry, plugin)
    except (TypeError, ValueError) as error:
        raise ConfigError(section, f"options that {cls.__name__} accepts", plugin.options,
                          f"Optuna says: {error}") from None


def retry_once(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue a failed trial again with the same parameters, unless it is a retry already."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, trial)


def open_study(config: StudyConfig, storage_url: str, worker: int = 0) -> optuna.Study:
    """The study named after the study file, created on first use and continued after.

    A seeded sampler is reseeded with the number of trials already in the study (plus the
    worker's index, so parallel workers do not draw the same points), so a continued study
    does not replay the random start of the first call, and the same sequence of calls
    still gives the same trials. A trial whose worker stops sending heartbeats is failed
    and queued once more (`retry_once`).
    """
    store = storage.optuna_storage(storage_url, on_stale=retry_once)
    study = optuna.create_study(storage=store, study_name=config.name, direction="minimize",
                                load_if_exists=True, pruner=make(PRUNERS, config.pruner))
    study.sampler = make(SAMPLERS, config.sampler, seed_offset=len(study.trials) + worker)
    if study.metric_names is None:  # optuna-dashboard's name for the objective
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([config.metric])
    check_code(study, config)
    for point in config.enqueue:  # [[enqueue]]: each point once per study, before the sampler's
        study.enqueue_trial(point, skip_if_exists=True)
    return study


def check_code(study: optuna.Study, config: StudyConfig) -> None:
    """A UserError if this call runs other user code than the study's first call ran.

    The first call records the code's identity (import path, file hash, package version)
    on the study; a later call or worker whose code differs would mix results of two
    programs in one study, so it is refused.
    """
    mine = config.code_identity()
    if not mine:
        return
    recorded = study.user_attrs.get(CODE_ATTR)
    if recorded is None:
        study.set_user_attr(CODE_ATTR, mine)
        return
    changed = sorted(k for k in mine.keys() | recorded.keys() if mine.get(k) != recorded.get(k))
    if changed:
        details = "; ".join(f"{k}: the study's {recorded.get(k)!r}, here {mine.get(k)!r}"
                            for k in changed)
        raise UserError(f"study '{study.study_name}' was run with other code than this call "
                        f"has ({details}). Run the same code on every machine of a study, or "
                        "start a new study for the new code (a study file of another name).")


def load_existing(name: str, storage_url: str) -> optuna.Study:
    """A study that `optimize` has created before; a UserError if there is none."""
    if storage.sqlite_file(storage_url) and not storage.sqlite_file(storage_url).exists():
        names: list[str] = []
    else:
        names = optuna.get_all_study_names(storage_url)
    if name not in names:
        raise UserError(f"no Optuna study '{name}' in {storage_url} (it has: "
                        f"{', '.join(names) or 'none'}). Run `hpstudy optimize --study {name}` "
                        "first, or pass the --storage it used.")
    return optuna.load_study(study_name=name,
                             storage=storage.optuna_storage(storage_url, on_stale=retry_once))


class FailureGuard:
    """An Optuna callback that stops the study after `limit` failed trials in a row."""

    def __init__(self, limit: int):
        self.limit, self.count, self.message = limit, 0, ""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Count this process's consecutive failures; stop the study at the limit."""
        if trial.state != optuna.trial.TrialState.FAIL:
            self.count = 0
            return
        self.count += 1
        if self.count >= self.limit:
            record = TrialRecord.of(trial)
            self.message = (f"stopped after {self.count} failed trials in a row (the last, trial "
                            f"{trial.number}: {record.fail_reason if record else 'no reason'}). "
                            "Fix the cause, or raise `max_failures` in the study file.")
            study.stop()
