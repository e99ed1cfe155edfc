"""Optuna wiring: samplers and pruners by name, a study that continues without replaying."""

from __future__ import annotations

import optuna
import pytest

from hpstudy.errors import ConfigError, UserError
from hpstudy.search.study import PRUNERS, SAMPLERS, check_plugin, load_existing, make, open_study
from hpstudy.spec.study_file import PluginConfig, load_study


def suggestions(sampler: optuna.samplers.BaseSampler, n: int = 6) -> list[float]:
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1) ** 2, n_trials=n)
    return [t.params["x"] for t in study.trials]


def test_a_sampler_by_name_gets_its_options():
    made = make(SAMPLERS, PluginConfig("tpe", {"seed": 3, "n_startup_trials": 2}))
    same = optuna.samplers.TPESampler(seed=3, n_startup_trials=2)
    assert suggestions(made) == suggestions(same)  # the seed and the startup both reached it
    assert suggestions(made) != suggestions(optuna.samplers.TPESampler(seed=3))


def test_a_pruner_by_name_gets_its_options():
    pruner = make(PRUNERS, PluginConfig("median", {"n_startup_trials": 1, "n_warmup_steps": 2}))
    study = optuna.create_study(pruner=pruner)
    good = study.ask()
    for step in range(5):
        good.report(0.1, step)
    study.tell(good, 0.1)
    bad = study.ask()
    verdicts = []
    for step in range(5):
        bad.report(1.0, step)
        verdicts.append(bad.should_prune())
    assert verdicts == [False, False, True, True, True]  # no pruning in the 2 warm-up steps
    assert not make(PRUNERS, PluginConfig("none")).prune(study, study.trials[-1])


def test_bad_options_are_config_errors_that_quote_optuna():
    with pytest.raises(ConfigError, match="unknown key 'warmup'"):
        check_plugin(PRUNERS, PluginConfig("median", {"warmup": 2}), "pruner")
    with pytest.raises(ConfigError, match="Optuna says"):
        check_plugin(PRUNERS, PluginConfig("median", {"n_warmup_steps": -1}), "pruner")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")  # ask/tell
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
