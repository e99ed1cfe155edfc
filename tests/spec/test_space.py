"""The search space: the three ways to state a parameter, and the edge-of-range hint."""

from __future__ import annotations

from typing import Literal

import pytest

from hpstudy.errors import ConfigError
from hpstudy.spec.space import ParamRule, on_edge, parse_param, parse_search, rule_for


def test_a_number_fixes_a_value():
    param = parse_param("momentum", 0.9)
    assert not param.searched and param.value == 0.9 and param.extremes() == (0.9, 0.9)


def test_a_range_and_choices_are_searched():
    lr = parse_param("lr", {"low": 1e-3, "high": 1.0, "log": True})
    assert lr.searched and lr.log and lr.extremes() == (1e-3, 1.0)
    width = parse_param("width", {"choices": [64, 16, 32]})
    assert width.choices == (64, 16, 32) and width.extremes() == (16, 64)


def test_integers_stay_integers():
    with pytest.raises(ConfigError, match="expected an integer"):
        parse_param("width", {"low": 8.5, "high": 64})


def test_no_step_on_a_log_scale():
    with pytest.raises(ConfigError, match="no step on a log scale"):
        parse_param("lr", {"low": 0.01, "high": 1.0, "log": True, "step": 0.1})


def test_choices_must_be_distinct_and_non_empty():
    with pytest.raises(ConfigError, match="distinct"):
        parse_param("width", {"choices": [8, 8]})
    with pytest.raises(ConfigError, match="non-empty"):
        parse_param("width", {"choices": []})


def test_left_out_parameters_take_their_defaults_but_lr_is_required():
    search = parse_search({"lr": 0.1})
    assert search["momentum"].value == 0.0 and search["dropout"].value == 0.0
    with pytest.raises(ConfigError, match=r"search\.lr"):
        parse_search({"momentum": 0.9})


def test_best_values_at_the_edge_are_flagged():
    lr = parse_param("lr", {"low": 1e-4, "high": 1.0, "log": True})
    assert on_edge(lr, 0.99) and on_edge(lr, 1.1e-4) and not on_edge(lr, 0.01)
    width = parse_param("width", {"choices": [8, 16, 32]})
    assert on_edge(width, 32) and not on_edge(width, 16)
    assert not on_edge(parse_param("momentum", 0.9), 0.9)  # fixed values are never flagged


WORDS = ParamRule(str, words=("sgd", "adam", "rmsprop"), meaning="the optimizer")


def test_choices_may_be_words_of_a_rule():
    optimizer = parse_param("optimizer", {"choices": ["sgd", "adam"]}, WORDS)
    assert optimizer.searched and optimizer.choices == ("sgd", "adam") and optimizer.kind is str
    assert parse_param("optimizer", "adam", WORDS).value == "adam"
    with pytest.raises(ConfigError, match="one of 'sgd', 'adam', 'rmsprop', given adagrad"):
        parse_param("optimizer", {"choices": ["sgd", "adagrad"]}, WORDS)
    with pytest.raises(ConfigError, match="given a range"):
        parse_param("optimizer", {"low": 0, "high": 1}, WORDS)
    assert not on_edge(parse_param("optimizer", {"choices": ["sgd", "adam", "rmsprop"]}, WORDS),
                       "sgd")  # words have no edge


def test_rules_come_from_type_hints():
    assert rule_for(Literal["relu", "tanh"]).words == ("relu", "tanh")
    assert rule_for(int | None).kind is int


def test_an_unknown_key_lists_the_searchable_ones_and_says_why_not():
    with pytest.raises(ConfigError, match=r"searchable keys lr, .*, optimizer.*'epochs' \(a key "
                                          r"that cannot be searched\)\. Set train\.epochs"):
        parse_search({"lr": 0.1, "epochs": 3}, {"optimizer": WORDS},
                     {"epochs": "Set train.epochs."})
    with pytest.raises(ConfigError, match=r"'optimiser' \(an unknown key\)\. Did you mean "
                                          r"'optimizer'\?"):
        parse_search({"lr": 0.1, "optimiser": "sgd"}, {"optimizer": WORDS})
