"""The step keys in a study file (precision, channels_last, compile, cuda_graph) and
[data] augment: defaults, and every bad value or combination named with its fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hpstudy.errors import ConfigError
from hpstudy.spec.study_file import load_study


def test_the_defaults_pick_per_device_and_change_nothing_on_the_cpu(write_study):
    config = load_study(str(write_study()))
    train = config.train
    assert (train.precision, train.channels_last, train.compile, train.cuda_graph) == (
        "auto", "auto", False, False)
    assert config.data.options.augment == "none"
    logged = config.fixed_params()  # at their defaults: logged as before the keys existed
    assert not {"precision", "channels_last", "compile", "cuda_graph", "data.augment"} & set(logged)
    changed = load_study(str(write_study()), ["train.precision=bf16", "data.augment=flip_crop"])
    assert changed.fixed_params()["precision"] == "bf16"
    assert changed.fixed_params()["data.augment"] == "flip_crop"


@pytest.mark.parametrize(("settings", "key", "message"), [
    (["train.precision=fp16"], "train.precision", "expected one of auto, fp32, bf16"),
    (["train.channels_last=yes"], "train.channels_last", "expected 'auto' or true or false"),
    (["train.compile=1"], "train.compile", "expected true or false, given 1"),
    (["train.cuda_graph=true", "train.compile=true"], "train.cuda_graph",
     "false with compile = true"),
    (["train.cuda_graph=true", "train.schedule=cosine"], "train.cuda_graph",
     "false with schedule = 'cosine'"),
    (["train.cuda_graph=true", "search.schedule={choices=['constant', 'step']}"],
     "search.cuda_graph", "a search that can pick schedule = 'step'"),
    (["train.compile=true", "train.vectorize=2"], "train.compile",
     "false with train.vectorize = 2"),
    (["search.precision=bf16"], "search.precision", "It belongs in [train]"),
    (["data.augment=rotate"], "data.augment", "expected one of none, flip_crop"),
])
def test_a_bad_step_key_or_augment_names_the_key(write_study, settings, key, message):
    with pytest.raises(ConfigError) as caught:
        load_study(str(write_study()), settings)
    assert caught.value.key == key and message in str(caught.value)


@pytest.mark.parametrize(("setting", "message"), [
    ("train.precision=fp16", "train.precision: expected one of auto, fp32, bf16, given fp16"),
    ("train.channels_last=2", "train.channels_last: expected 'auto' or true or false, given 2"),
    ("train.compile=yes", "train.compile: expected true or false, given 'yes' (str)"),
    ("train.cuda_graph=true", "train.cuda_graph: expected false on the CPU"),
    ("data.augment=flip", "data.augment: expected one of none, flip_crop, given flip"),
])
def test_the_cli_exits_2_naming_a_bad_step_key(write_study, tmp_path, setting, message):
    path = write_study()
    done = subprocess.run([sys.executable, "-m", "hpstudy", "optimize", "--study", str(path),
                           "--device", "cpu", "--set", setting], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert str(path) in done.stderr  # the file, the key, what was expected, what was given
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # nothing written
