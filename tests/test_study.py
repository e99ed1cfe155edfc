"""Optuna wiring: samplers and pruners by name, a study that continues without replaying."""

from __future__ import annotations

import optuna
import pytest

from hpstudy.config import PluginConfig, load_study
from hpstudy.errors import ConfigError, UserError
from hpstudy.study import PRUNERS, SAMPLERS, check_plugin, load_existing, make, open_study


def test_samplers_and_pruners_are_built_by_name_with_their_options():
    sampler = make(SAMPLERS, PluginConfig("tpe", {"seed": 3, "n_startup_trials": 4}))
    assert isinstance(sampler, optuna.samplers.TPESampler)
    pruner = make(PRUNERS, PluginConfig("median", {"n_warmup_steps": 2}))
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    assert isinstance(make(PRUNERS, PluginConfig("none")), optuna.pruners.NopPruner)


def test_bad_options_are_config_errors_that_quote_optuna():
    with pytest.raises(ConfigError, match="unknown key 'warmup'"):
        check_plugin(PRUNERS, PluginConfig("median", {"warmup": 2}), "pruner")
    with pytest.raises(ConfigError, match="Optuna says"):
        check_plugin(PRUNERS, PluginConfig("median", {"n_warmup_steps": -1}), "pruner")


def test_open_study_creates_then_continues_with_a_moved_seed(write_study, stores):
    config = load_study(str(write_study()))

    def suggest_once() -> float:
        study = open_study(config, stores.storage)
        trial = study.ask()
        value = trial.suggest_float("x", 0, 1)
        study.tell(trial, value)
        return value

    first, second = suggest_once(), suggest_once()
    assert first != second  # the second call does not replay the first call's random start
    assert len(optuna.load_study(study_name="tiny", storage=stores.storage).trials) == 2


def test_load_existing_names_the_command_to_run(stores):
    with pytest.raises(UserError, match="no Optuna study 'nope'"):
        load_existing("nope", stores.storage)
