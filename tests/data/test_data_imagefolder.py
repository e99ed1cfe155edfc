"""Class-per-folder images: both layouts, resizing and channels, decoding once through the cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from data_files import write_image_folders
from PIL import Image

from hpstudy.data import load
from hpstudy.data.imagefolder import ImageFolderOptions
from hpstudy.data.locate import cache_dir
from hpstudy.errors import ConfigError, UserError


def options(**changes) -> ImageFolderOptions:
    return ImageFolderOptions(**({"image_size": 32, "channels": 3, "val_fraction": 0.2,
                                  "test_fraction": 0.2} | changes))


def test_one_tree_is_split_into_train_validation_and_test(tmp_path):
    write_image_folders(tmp_path / "pets", per_class=10)
    data = load("imagefolder", options(folder="pets"), tmp_path)
    assert data.classes == ("cat", "dog", "frog")
    assert (len(data.train), len(data.val), len(data.test)) == (19, 5, 6)  # 20% of 30, 20% of 24
    assert torch.bincount(data.test.y).tolist() == [2, 2, 2]


def test_pngs_decode_to_their_exact_pixels(tmp_path):
    write_image_folders(tmp_path, per_class=10)
    data = load("imagefolder", options(), tmp_path)
    every = {x.numpy().tobytes() for split in (data.train, data.val, data.test) for x in split.x}
    source = np.asarray(Image.open(tmp_path / "dog" / "0003.png")).transpose(2, 0, 1)
    assert np.ascontiguousarray(source).tobytes() in every


def test_train_and_test_folders_keep_the_given_test_set(tmp_path):
    write_image_folders(tmp_path / "train", per_class=10, suffix=".jpg")
    write_image_folders(tmp_path / "test", per_class=3, suffix=".jpg", seed=1)
    data = load("imagefolder", options(val_fraction=0.1), tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (27, 3, 9)


def test_images_are_resized_and_converted_to_the_declared_shape(tmp_path):
    write_image_folders(tmp_path, per_class=5, side=20, suffix=".jpg")
    data = load("imagefolder", options(image_size=12, channels=1), tmp_path)
    assert data.input_shape == (1, 12, 12) and len(data.mean) == 1


def test_an_unreadable_image_is_named(tmp_path):
    write_image_folders(tmp_path, per_class=5)
    (tmp_path / "cat" / "0002.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"cat/0002.png: not a readable image"):
        load("imagefolder", options(), tmp_path)


def test_a_missing_folder_names_the_folder_and_the_layouts(tmp_path):
    with pytest.raises(UserError) as caught:
        load("imagefolder", options(folder="nowhere"), tmp_path)
    assert "(from --data-dir)" in str(caught.value)
    assert "DIR/nowhere/train/<class>/*.jpg|png" in str(caught.value)


def test_the_second_load_reads_the_cache_and_a_changed_file_invalidates_it(tmp_path):
    write_image_folders(tmp_path, per_class=6)
    first = load("imagefolder", options(), tmp_path)
    assert len(list((cache_dir() / "decoded").glob("imagefolder-*.npz"))) == 1
    path = tmp_path / "cat" / "0000.png"
    status = path.stat()
    path.write_bytes(b"x" * status.st_size)  # undecodable, but the same name, size and time
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    again = load("imagefolder", options(), tmp_path)  # from the cache: nothing is decoded
    assert torch.equal(again.train.x, first.train.x) and torch.equal(again.test.x, first.test.x)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))  # a newer file
    with pytest.raises(UserError, match="not a readable image"):  # so it is decoded again
        load("imagefolder", options(), tmp_path)


def test_fractions_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="val_fraction"):
        options(val_fraction=1.0)
