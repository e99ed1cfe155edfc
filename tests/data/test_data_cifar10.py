"""CIFAR-10 from torchvision's pickled batches or from train/ and test/ image folders."""

from __future__ import annotations

import shutil

import pytest
import torch
from data_files import colour_images, write_cifar_batches, write_image_folders

from hpstudy.data import load
from hpstudy.data.cifar10 import CLASSES, Cifar10Options
from hpstudy.errors import UserError

TINY = Cifar10Options(val_size=20)


def test_torchvision_batches_load_with_the_cifar_classes(tmp_path):
    data = load("cifar10", TINY, write_cifar_batches(tmp_path, per_batch=20, test=30))
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 30)
    assert data.input_shape == (3, 32, 32) and data.train.x.dtype == torch.uint8
    assert data.classes == CLASSES
    images, labels = colour_images(30, seed=5)  # the test batch as written
    assert torch.equal(data.test.x, torch.from_numpy(images))
    assert data.test.y.tolist() == labels.tolist()


def test_batches_directly_in_the_data_dir_load_too(tmp_path):
    write_cifar_batches(tmp_path / "nested")
    shutil.copytree(tmp_path / "nested" / "cifar-10-batches-py", tmp_path / "flat")
    assert len(load("cifar10", TINY, tmp_path / "flat").test) == 30


def test_train_and_test_image_folders_load_with_folder_names_as_classes(tmp_path):
    write_image_folders(tmp_path / "train", per_class=10)
    write_image_folders(tmp_path / "test", per_class=4, seed=1)
    data = load("cifar10", Cifar10Options(val_size=6), tmp_path)
    assert data.classes == ("cat", "dog", "frog")
    assert (len(data.train), len(data.val), len(data.test)) == (24, 6, 12)
    assert data.input_shape == (3, 32, 32)
    assert torch.bincount(data.val.y).tolist() == [2, 2, 2]


def test_missing_cifar_lists_the_three_layouts(tmp_path):
    with pytest.raises(UserError) as caught:
        load("cifar10", TINY, tmp_path)
    message = str(caught.value)
    assert "cifar10: no data found" in message and "--data-dir DIR" in message
    assert "cifar-10-batches-py/" in message and "train/<class>/*.jpg|png" in message


def test_a_damaged_batch_is_named(tmp_path):
    write_cifar_batches(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match=r"data_batch_3: not a CIFAR-10 batch"):
        load("cifar10", TINY, tmp_path)
