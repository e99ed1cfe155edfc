"""A user's network and data by import path: every mistake is exit 2, one message, no trace."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from user_package import write_package, write_study

from hpstudy.cli import main
from hpstudy.data import load
from hpstudy.data.arrays import NpzOptions
from hpstudy.errors import ConfigError, UserError
from hpstudy.spec.study_file import load_study

EXTRA = '''
import torch

NOT_CALLABLE = 3


def broken(input_shape: tuple, num_outputs: int):
    raise ValueError("no network for you")


def not_a_network(num_outputs: int):
    return 3


def wrong_outputs(input_shape: tuple, num_outputs: int):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))


class Branchy(nn.Module):
    def __init__(self, num_outputs: int):
        super().__init__()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, num_outputs))

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.export refuses it
            return self.head(x)
        return -self.head(x)


def needs_k(input_shape: tuple, num_outputs: int, k: int):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_outputs))


def odd_hint(num_outputs: int, layers: list = ()):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_outputs))


def not_a_dict():
    return [1, 2]


def short_targets():
    x = np.zeros((10, 1, 8, 8), np.uint8)
    return {"train": (x, np.zeros(9, np.int64)), "test": (x, np.zeros(10, np.int64))}


def with_nan():
    x = np.zeros((10, 4), np.float32)
    x[3, 1] = np.nan
    y = np.arange(10) % 2
    return {"train": (x, y), "test": (x, y)}


def too_many_labels():
    x = np.zeros((10, 4), np.float32)
    return {"train": (x, np.arange(10) % 3), "test": (x, np.arange(10) % 3), "classes": ["a", "b"]}
'''


@pytest.fixture
def package(tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)  # user code is imported from the working directory, first
    return write_package(tmp_path, EXTRA)


def optimize(path: Path, tmp_path: Path) -> int:
    return main(["optimize", "--study", str(path), "--storage", f"sqlite:///{tmp_path}/o.db",
                 "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])


def nothing_written(tmp_path: Path) -> bool:
    return not (tmp_path / "o.db").exists() and not (tmp_path / "m.db").exists()


NET = '"{m}:SmallCNN"'
DATA = '"{m}:stripes"'


@pytest.mark.parametrize(("old", "new", "message"), [
    (NET, '"no_such_module:Net"', "model.architecture: expected an importable module, given "
     "no_such_module:Net. No module named 'no_such_module'"),
    (NET, '"{m}:Missing"', "expected a name defined in"),
    (NET, '"{m}:NOT_CALLABLE"', "expected a class or function, given {m}:NOT_CALLABLE (int)"),
    (NET, '"{m}:broken"', "Calling it raised ValueError: no network for you"),
    (NET, '"{m}:not_a_network"', "expected a callable that returns an nn.Module, given "
     "{m}:not_a_network returning int"),
    (NET, '"{m}:wrong_outputs"', "expected outputs shaped (2, 3) for a batch of 2 (3 = "
     "num_outputs), given {m}:wrong_outputs giving (2, 5)"),
    (NET, '"{m}:Branchy"', "expected a network torch.export can export"),
    (NET, '"{m}:needs_k"', "model.k: expected an integer, given nothing (missing)"),
    (NET, '"{m}:odd_hint"', "model.layers: expected a parameter hinted int, float, bool, str"),
    (NET + "\n", NET + "\nchanels = 4\n", "model: expected one of the keys channels, act"),
    (NET + "\n", NET + '\nact = "gelu"\n', "model.act: expected one of relu, tanh, given gelu. "
     "Did you mean 'relu'?"),
    (NET + "\n", NET + '\nchannels = "eight"\n', "model.channels: expected an integer"),
    (DATA + "\nn = 240", '"{m}:not_a_dict"',
     "data.name: expected a dict {'train': (inputs, targets)"),
    (DATA + "\nn = 240", '"{m}:short_targets"', "expected as many targets as inputs in 'train', "
     "given {m}:short_targets returned 10 inputs and 9 targets"),
    (DATA + "\nn = 240", '"{m}:with_nan"', "expected finite inputs in 'train', given "
     "{m}:with_nan returned 1 NaN or infinite values"),
    (DATA + "\nn = 240", '"{m}:too_many_labels"', "expected labels 0..1 (one per class)"),
    (DATA + "\nn = 240", DATA + "\nn = 240\nsize = 3", "data: expected one of the keys"),
], ids=["no-module", "no-name", "not-callable", "raises", "not-a-module", "wrong-outputs",
        "not-exportable", "required-key-missing", "unsupported-hint", "unknown-key",
        "literal-choice", "wrong-type", "data-not-a-dict", "data-lengths", "data-nan",
        "data-labels", "data-unknown-key"])
def test_each_mistake_in_user_code_is_exit_2_with_one_message_and_nothing_written(
        package, tmp_path, capsys, old, new, message):
    replace = {old.replace("{m}", package): new.replace("{m}", package)}
    if old == NET and "SmallCNN" not in new:  # another network: it has no channels, no act
        replace['channels = { choices = [4, 8] }\nact = { choices = ["relu", "tanh"] }\n'] = ""
    path = write_study(tmp_path, package, **replace)
    assert optimize(path, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hpstudy: error: {path}: ") or err.startswith("hpstudy: error: ")
    assert message.replace("{m}", package) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert nothing_written(tmp_path)


def test_the_signature_is_the_schema_searched_like_a_built_in_key(package, tmp_path):
    config = load_study(str(write_study(tmp_path, package)))
    assert config.searched() == {"lr", "channels", "act"}
    assert config.search["act"].choices == ("relu", "tanh")
    assert config.data.options.n == 240 and config.data.options.val_fraction == 0.2
    identity = config.code_identity()
    assert identity["model.code.path"] == f"{package}:SmallCNN"
    assert len(identity["model.code.sha256"]) == 64
    assert identity["data.code.path"].endswith(":stripes")


def test_list_study_shows_the_keys_a_user_network_takes(package, tmp_path, capsys):
    assert main(["list", "--study", str(write_study(tmp_path, package))]) == 0
    out = capsys.readouterr().out
    assert f"[model] {package}:SmallCNN:" in out
    assert "channels" in out and "'relu' | 'tanh'" in out and "Searched: act, channels, lr" in out


@pytest.mark.parametrize(("point", "message"), [
    ("lr = 0.05\nchanels = 8", "enqueue[0].chanels: expected one of act, channels, lr"),
    ("lr = 5.0", "enqueue[0].lr: expected a value the search may take (0.02 to 0.3)"),
    ('act = "gelu"', "enqueue[0].act: expected a value the search may take (one of 'relu', "
     "'tanh')"),
])
def test_an_enqueued_point_outside_the_search_is_refused(package, tmp_path, point, message):
    path = write_study(tmp_path, package)
    path.write_text(path.read_text() + f"\n[[enqueue]]\n{point}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_study(str(path))


def test_the_npz_loader_reads_train_test_and_splits_validation_off(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "mine.npz", x_train=x[:80], y_train=y[:80], x_test=x[80:],
             y_test=y[80:], classes=np.array(["neg", "pos"]))
    data = load("npz", NpzOptions(path="mine.npz", val_fraction=0.25), tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (60, 20, 20)
    assert data.classes == ("neg", "pos") and data.input_shape == (5,)
    assert data.train.x.dtype.is_floating_point and data.task == "classification"


def test_a_missing_npz_file_names_where_it_looked(tmp_path):
    with pytest.raises(UserError, match=r"data.path: no file gone\.npz"):
        load("npz", NpzOptions(path="gone.npz"), tmp_path)
