"""The search space: the three ways to state a parameter, and the edge-of-range hint."""

from __future__ import annotations

import pytest

from hpstudy.errors import ConfigError
from hpstudy.space import on_edge, parse_param, parse_search


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
