"""Study files: every shipped one loads; every kind of mistake names the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpstudy.errors import ConfigError, UserError
from hpstudy.spec.finding import BUNDLED_STUDIES_DIR, find_study
from hpstudy.spec.study_file import TrainConfig, load_study

SHIPPED = sorted(BUNDLED_STUDIES_DIR.glob("*.toml"))


def test_there_are_shipped_studies():
    assert {"digits_mlp", "digits_cnn"} <= {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_study_validates_and_comments_every_key(path: Path):
    config = load_study(str(path))
    assert config.name == path.stem
    assert config.description
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if "=" in line.split("#")[0]:
            assert "#" in line, f"{path.name}:{number} has a key without a comment: {line}"


def test_a_study_is_found_by_name_or_by_path(write_study):
    assert find_study("digits_mlp").stem == "digits_mlp"
    path = write_study()
    assert load_study(str(path)).name == "tiny"


def test_the_tiny_study_parses_to_the_values_it_states(write_study):
    config = load_study(str(write_study()))
    assert config.train.epochs == 3 and config.train.optimizer == "sgd"
    assert config.search["lr"].log and config.search["lr"].low == 0.01
    assert config.search["width"].choices == (16, 32)
    assert not config.search["weight_decay"].searched  # left out: fixed at its default
    assert config.sampler.name == "tpe" and config.sampler.options == {"seed": 0}


def test_missing_study_lists_the_known_ones():
    with pytest.raises(UserError, match=r"no such study file.*digits_mlp"):
        find_study("digits_mpl")


def error_for(write_study, replace: dict[str, str]) -> ConfigError:
    path = write_study(replace=replace)
    with pytest.raises(ConfigError) as caught:
        load_study(str(path))
    assert str(path) in str(caught.value)  # every message names the file
    return caught.value


def test_typo_in_a_key_suggests_the_right_one(write_study):
    error = error_for(write_study, {"epochs = 3": "epoch = 3"})
    assert error.key == "train"
    assert "unknown key 'epoch'" in str(error) and "Did you mean 'epochs'?" in str(error)


def test_wrong_type_says_expected_and_given(write_study):
    error = error_for(write_study, {"epochs = 3": 'epochs = "three"'})
    assert error.key == "train.epochs"
    assert "expected an integer" in str(error) and "'three' (str)" in str(error)


def test_inverted_range_is_refused(write_study):
    error = error_for(write_study, {"low = 0.01, high = 0.3": "low = 0.3, high = 0.01"})
    assert error.key == "search.lr"
    assert "low < high" in str(error) and "Swap them" in str(error)


def test_empty_range_is_refused(write_study):
    error = error_for(write_study, {"low = 1, high = 2": "low = 2, high = 2"})
    assert error.key == "search.depth" and "non-empty range" in str(error)


def test_log_range_must_be_positive(write_study):
    error = error_for(write_study, {"low = 0.01, high = 0.3": "low = 0.0, high = 0.3"})
    assert error.key == "search.lr.low"


def test_out_of_bounds_momentum_is_refused(write_study):
    error = error_for(write_study, {"high = 0.9 }": "high = 1.5 }"})
    assert error.key == "search.momentum.high" and "[0, 1)" in str(error)


def test_unknown_architecture_lists_the_choices(write_study):
    error = error_for(write_study, {'architecture = "mlp"': 'architecture = "mpl"'})
    assert error.key == "model.architecture"
    assert "one of mlp, cnn" in str(error) and "Did you mean 'mlp'?" in str(error)


def test_unknown_dataset_is_refused(write_study):
    error = error_for(write_study, {'name = "digits"': 'name = "digitz"'})
    assert error.key == "data.name" and "Did you mean 'digits'?" in str(error)


def test_dataset_options_are_checked_by_the_dataset(write_study):
    error = error_for(write_study, {"val_fraction = 0.2": "val_fraction = 0.8"})
    assert error.key == "data.val_fraction"


def test_unknown_search_parameter_is_refused(write_study):
    error = error_for(write_study, {"[search]": "[search]\nlearning_rate = 0.1"})
    assert error.key == "search.learning_rate" and "'learning_rate' (an unknown key)" in str(error)
    assert "searchable keys lr, momentum, width" in str(error)


def test_adam_with_a_momentum_search_is_refused(write_study):
    error = error_for(write_study, {'optimizer = "sgd"': 'optimizer = "adam"'})
    assert error.key == "search.momentum"


def test_sampler_options_are_checked_against_optuna(write_study):
    error = error_for(write_study, {"seed = 0\n\n[pruner]": "seed = 0\nn_startup = 3\n\n[pruner]"})
    assert error.key == "sampler" and "n_startup_trials" in str(error)


def test_invalid_toml_names_the_file(write_study):
    path = write_study(replace={"trials = 3": "trials = "})
    with pytest.raises(UserError, match=r"tiny.toml: not valid TOML"):
        load_study(str(path))


def test_a_byte_that_is_not_utf8_names_the_file_line_and_byte(write_study):
    path = write_study()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]) + b"# caf\xe9 au lait\n" + b"".join(lines[2:]))
    with pytest.raises(UserError, match=r"tiny.toml, line 3: byte 0xe9 is not UTF-8"):
        load_study(str(path))


def test_empty_choices_say_what_a_list_holds(write_study):
    path = write_study(replace={"width = { choices = [16, 32] }": "width = { choices = [] }"})
    with pytest.raises(ConfigError, match="expected a non-empty list of integers"):
        load_study(str(path))


def test_switching_the_sampler_or_pruner_with_set_drops_the_old_classes_options(write_study):
    path = write_study(replace={
        'name = "tpe"\nseed = 0': 'name = "tpe"\nseed = 0\nn_startup_trials = 4',
        '[pruner]\nname = "none"': '[pruner]\nname = "median"\nn_startup_trials = 5\n'
                                   'n_warmup_steps = 1'})
    config = load_study(str(path), ["pruner.name=none", "sampler.name=random"])
    assert (config.pruner.name, config.pruner.options) == ("none", {})
    assert config.sampler.name == "random" and "n_startup_trials" not in config.sampler.options
    assert config.sampler.options["seed"] == 0  # RandomSampler takes it: kept
    assert any("[pruner] n_startup_trials" in note and "median's options" in note
               for note in config.notes)
    kept = load_study(str(path), ["pruner.name=percentile", "pruner.percentile=25.0"])
    assert kept.pruner.options["percentile"] == 25.0  # given with --set: stays
    assert kept.pruner.options["n_warmup_steps"] == 1  # PercentilePruner takes it too
    assert load_study(str(path)).notes == ()
    with pytest.raises(ConfigError, match="n_startup_trials"):  # the file's own: still checked
        load_study(str(path), ["pruner.name=none", "pruner.n_startup_trials=3"])


def test_set_overrides_keys_and_is_validated_like_the_file(write_study):
    path = write_study()
    config = load_study(str(path), ["train.epochs=1", "search.width={choices=[8]}",
                                    "data.name=digits"])
    assert config.train.epochs == 1 and config.search["width"].choices == (8,)
    assert config.overrides == ("train.epochs=1", "search.width={choices=[8]}", "data.name=digits")
    with pytest.raises(ConfigError, match=r"with --set train.epochs=0\): train.epochs"):
        load_study(str(path), ["train.epochs=0"])
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        load_study(str(path), ["train.epochs"])


def test_a_width_search_under_a_parameter_budget_is_refused(write_study):
    budget = 'architecture = "mlp"\nparam_budget = 800'
    error = error_for(write_study, {'architecture = "mlp"': budget})
    assert error.key == "search.width"
    assert "model.param_budget = 800 sets the width for each depth" in str(error)


def test_searching_what_an_architecture_does_not_use_is_refused(write_study):
    error = error_for(write_study, {'architecture = "mlp"': 'architecture = "linear"'})
    assert error.key == "search.width" and "'linear' has no width" in str(error)


OPEN = ["search.batch_size={choices=[32, 128]}", 'search.optimizer={choices=["sgd", "adam"]}',
        'search.schedule={choices=["constant", "one-cycle"]}',
        'search.activation={choices=["relu", "tanh"]}']


def test_train_and_model_keys_may_be_searched_and_are_logged_once(write_study):
    config = load_study(str(write_study()), OPEN)
    assert config.search["optimizer"].choices == ("sgd", "adam")
    assert config.search["batch_size"].kind is int
    fixed = config.fixed_params()
    assert not {"batch_size", "optimizer", "schedule", "model.activation"} & fixed.keys()
    assert fixed["epochs"] == 3 and fixed["model.param_budget"] is None
    hp = {"batch_size": 128, "optimizer": "adam", "schedule": "one-cycle", "lr": 0.1}
    assert config.train_for(hp) == TrainConfig(epochs=3, batch_size=128, optimizer="adam",
                                               schedule="one-cycle", seed=0)


def test_a_number_or_word_in_search_fixes_a_train_or_model_key(write_study):
    config = load_study(str(write_study()), ["search.batch_size=16", 'search.schedule="step"',
                                             'search.model.activation="tanh"'])
    assert config.train.batch_size == 16 and config.train.schedule == "step"
    assert config.model.options.activation == "tanh"
    assert {"batch_size", "schedule", "activation"}.isdisjoint(config.search)
    assert config.fixed_params()["model.activation"] == "tanh"


@pytest.mark.parametrize(("setting", "key", "message"), [
    ("search.epochs=2", "search.epochs", "'epochs' (a key that cannot be searched). It belongs in"
                                         " [train]"),
    ("search.train.vectorize=2", "search.vectorize", "Set train.vectorize there"),
    ("search.val_fraction=0.3", "search.val_fraction", "It is a [data] key"),
    ("search.kernel_size=3", "search.kernel_size", "'mlp' does not take it (it takes width, "
                                                   "depth, dropout, activation, param_budget)"),
    ("search.optimizer={low=1, high=2}", "search.optimizer", "Write e.g. optimizer = { choices"),
    ('search.schedule={choices=["cosine", "linear"]}', "search.schedule.choices",
     "expected one of 'constant', 'step', 'cosine', 'one-cycle', given linear"),
    ("search.batch_size={low=0, high=8}", "search.batch_size.low", "an integer in [1, inf]"),
])
def test_a_key_that_cannot_be_searched_is_refused_with_the_searchable_ones(
        write_study, setting, key, message):
    path = write_study()
    with pytest.raises(ConfigError) as caught:
        load_study(str(path), [setting])
    assert caught.value.key == key and message in str(caught.value)
    if "searchable" in caught.value.expected:
        assert "lr, momentum, width, depth, weight_decay, dropout, batch_size, optimizer, " \
               "schedule, activation, param_budget" in str(caught.value)


def test_every_value_a_model_search_can_pick_is_checked_by_the_architecture(write_study):
    error = error_for(write_study, {'architecture = "mlp"': 'architecture = "cnn"\nkernel_size = 3',
                                    "depth = { low = 1, high = 2 }": "depth = 1\n"
                                    "padding = { low = 0, high = 3 }"})
    assert error.key == "search.padding" and "kernel_size = 3" in error.expected
    assert "a search that can pick padding = 3" in str(error)


@pytest.mark.parametrize("setting", ["search.epochs=2", "search.train.vectorize=2",
                                     "search.learning_rate=0.1"])
def test_the_cli_exits_2_naming_an_unsearchable_key(write_study, tmp_path, setting):
    path = write_study()
    done = subprocess.run([sys.executable, "-m", "hpstudy", "optimize", "--study", str(path),
                           "--set", setting], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    key = setting.split("=")[0].replace("train.", "")
    assert f"{key}: expected one of the searchable keys lr, momentum" in done.stderr
    assert "batch_size, optimizer, schedule" in done.stderr and "Traceback" not in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # nothing written


def test_seeds_default_to_one_and_are_logged_only_when_several(write_study):
    path = write_study()
    assert load_study(str(path)).train.seeds == 1
    assert "seeds" not in load_study(str(path)).fixed_params()  # one seed logs as it always did
    assert load_study(str(path), ["train.seeds=5"]).fixed_params()["seeds"] == 5


@pytest.mark.parametrize(("settings", "key", "message"), [
    (["train.seeds=0"], "train.seeds", "an integer >= 1"),
    (["search.seeds=3"], "search.seeds", "It belongs in [train]"),
    (["train.seeds=3", "train.vectorize=2"], "train.vectorize", "1 with train.seeds = 3"),
])
def test_impossible_seeds_are_refused(write_study, settings, key, message):
    with pytest.raises(ConfigError) as caught:
        load_study(str(write_study()), settings)
    assert caught.value.key == key and message in str(caught.value)
