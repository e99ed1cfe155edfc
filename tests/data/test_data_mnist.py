"""MNIST from IDX files: every layout, a fixed stratified split, clear errors for bad input."""

from __future__ import annotations

import gzip

import pytest
import torch
from data_files import write_mnist

from hpstudy.data import load
from hpstudy.data.mnist import MnistOptions
from hpstudy.errors import ConfigError, UserError

TINY = MnistOptions(val_size=20)


def test_gzipped_idx_files_in_the_folder_load_as_uint8_splits(tmp_path):
    data = load("mnist", TINY, write_mnist(tmp_path, train=120, test=40))
    assert (len(data.train), len(data.val), len(data.test)) == (100, 20, 40)
    assert data.input_shape == (1, 28, 28) and data.train.x.dtype == torch.uint8
    assert data.num_outputs == 10 and data.task == "classification"


@pytest.mark.parametrize(("gz", "torchvision_layout"), [(False, False), (True, True),
                                                        (False, True)])
def test_every_layout_gives_the_same_data(tmp_path, gz, torchvision_layout):
    reference = load("mnist", TINY, write_mnist(tmp_path / "reference"))
    other = load("mnist", TINY, write_mnist(tmp_path / "other", gz=gz,
                                            torchvision_layout=torchvision_layout))
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(reference, part).x, getattr(other, part).x)
        assert torch.equal(getattr(reference, part).y, getattr(other, part).y)


def test_the_split_is_stratified_disjoint_and_follows_its_seed(tmp_path):
    folder = write_mnist(tmp_path)
    first, again = load("mnist", TINY, folder), load("mnist", TINY, folder)
    assert torch.equal(first.val.x, again.val.x)
    assert torch.bincount(first.val.y, minlength=10).tolist() == [2] * 10
    train_rows = {x.numpy().tobytes() for x in first.train.x}
    assert not any(x.numpy().tobytes() in train_rows for x in first.val.x)
    other = load("mnist", MnistOptions(val_size=20, split_seed=1), folder)
    assert not torch.equal(first.val.x, other.val.x)


def test_an_empty_data_dir_says_what_is_missing_and_how_to_provide_it(tmp_path):
    with pytest.raises(UserError) as caught:
        load("mnist", TINY, tmp_path)
    message = str(caught.value)
    assert f"mnist: no data found in {tmp_path} (from --data-dir)" in message
    assert "train-images-idx3-ubyte[.gz]" in message and "MNIST/raw/" in message
    assert "--data-dir DIR" in message and "HPSTUDY_DATA_DIR=DIR" in message


def test_the_environment_variable_names_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSTUDY_DATA_DIR", str(write_mnist(tmp_path / "mnist")))
    assert len(load("mnist", TINY).test) == 40
    monkeypatch.setenv("HPSTUDY_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(UserError, match=r"empty \(from \$HPSTUDY_DATA_DIR\)"):
        load("mnist", TINY)


def test_a_cut_short_file_is_named(tmp_path):
    folder = write_mnist(tmp_path)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-3]))
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte.gz: not an IDX file"):
        load("mnist", TINY, folder)


def test_a_validation_split_larger_than_the_training_images_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"data.val_size: expected fewer than the 120"):
        load("mnist", MnistOptions(), write_mnist(tmp_path))
