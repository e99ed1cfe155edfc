"""`cifar10`: 60,000 32x32 colour images in 10 classes; 5,000 training images validate.

Reads torchvision's pickled batches (`cifar-10-batches-py/`) or `train/<class>/` and
`test/<class>/` image folders (CIFAR-10 as JPEGs or PNGs, decoded once and cached). With
no data folder given, torchvision's `CIFAR10(download=True)` fetches it into the default folder.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpstudy.data.base import Dataset, with_test_set
from hpstudy.data.imagefolder import has_class_folders, read_train_test
from hpstudy.data.locate import data_dir, download, missing
from hpstudy.data.variants import HeldOutOptions
from hpstudy.errors import UserError

BATCHES = "cifar-10-batches-py"  # torchvision's folder of pickled batches
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")  # label order of the pickled batches (also alphabetical, as folders sort)
SIDE, CHANNELS = 32, 3
LAYOUTS = (f"{BATCHES}/data_batch_1..5 and test_batch (torchvision's layout)",
           "data_batch_1..5 and test_batch (the same batches, directly in DIR)",
           "train/<class>/*.jpg|png and test/<class>/*.jpg|png (image folders)")


@dataclass(frozen=True, kw_only=True)
class Cifar10Options(HeldOutOptions):
    """[data] keys of `cifar10`."""

    val_size: int = 5_000  # images of the 50,000 training images held out for validation


def batches_folder(root: Path) -> Path | None:
    """The folder holding the pickled batches under `root`, or None."""
    for folder in (root / BATCHES, root):
        if all((folder / name).is_file() for name in (*TRAIN_BATCHES, TEST_BATCH)):
            return folder
    return None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: images uint8 [N, 3, 32, 32] and labels."""
    try:
        with path.open("rb") as fh:
            entry = pickle.load(fh, encoding="latin1")  # the batches were pickled by Python 2
        images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, CHANNELS, SIDE, SIDE)
        return images, np.asarray(entry["labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as error:
        raise UserError(f"{path}: not a CIFAR-10 batch ({type(error).__name__}: {error}). "
                        "Replace it with the original file.") from None


def read_batches(folder: Path) -> tuple[np.ndarray, ...]:
    """Train images, train labels, test images, test labels from the pickled batches."""
    train = [read_batch(folder / name) for name in TRAIN_BATCHES]
    test_x, test_y = read_batch(folder / TEST_BATCH)
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
            test_x, test_y)


def read_cifar10(given_dir: str | Path | None) -> tuple[tuple[np.ndarray, ...], tuple[str, ...]]:
    """The four arrays and the class names, from whichever layout is there."""
    import torchvision

    where = data_dir(given_dir)
    if batches_folder(where.path) is None and not has_class_folders(where.path / "train") \
            and where.may_download:
        download("cifar10", where, LAYOUTS,
                 lambda root: torchvision.datasets.CIFAR10(root, train=True, download=True))
    folder = batches_folder(where.path)
    if folder is not None:
        return read_batches(folder), CLASSES
    if has_class_folders(where.path / "train") and has_class_folders(where.path / "test"):
        *arrays, classes = read_train_test(where.path, SIDE, CHANNELS)
        return tuple(arrays), classes
    raise missing("cifar10", where, LAYOUTS)


def load_cifar10(options: Cifar10Options, given_dir: str | Path | None) -> Dataset:
    """CIFAR-10 with `val_size` training images held out (stratified, seeded) for validation."""
    (train_x, train_y, test_x, test_y), classes = read_cifar10(given_dir)
    return with_test_set(train_x, train_y, test_x, test_y, options.val_size, options.split_seed,
                         classes)
