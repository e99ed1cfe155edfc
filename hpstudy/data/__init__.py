"""Datasets as tensors: fixed train/validation/test splits that move to the device whole.

Every dataset is loaded into memory once (images as uint8), so that training can index
batches on the training device instead of going through a per-sample DataLoader. Files
are looked for in `--data-dir`, `$HPSTUDY_DATA_DIR` or a default download folder
(`hpstudy.data.locate`).

Importing this package (the registry and every dataset's options) imports no torch,
torchvision or scikit-learn: the dataset modules import them in the functions that load,
so `hpstudy list` and study-file checks answer at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpstudy.data.arrays import CsvOptions, NpzOptions, load_csv, load_npz, user_dataset
from hpstudy.data.base import Dataset, Split
from hpstudy.data.cifar10 import Cifar10Options, load_cifar10
from hpstudy.data.digits import DigitsOptions, load_digits
from hpstudy.data.functions import FunctionsOptions, load_functions
from hpstudy.data.imagefolder import ImageFolderOptions, load_imagefolder
from hpstudy.data.mnist import MnistOptions, load_mnist
from hpstudy.data.mnist_sum import MnistSumOptions, load_mnist_sum
from hpstudy.data.variants import DataOptions, apply_variants
from hpstudy.data.xor import XorOptions, load_xor
from hpstudy.spec import user_code

__all__ = ["DATASETS", "DataOptions", "Dataset", "DatasetSpec", "Split", "dataset", "load"]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as the registry knows it: how to load it and which options it takes."""

    load: Callable[[Any, str | Path | None], Dataset]  # (options, --data-dir or None)
    options: type  # dataclass of the [data] keys beside `name` (a DataOptions)
    description: str


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(load_digits, DigitsOptions,
                          "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 "
                          "classes); no download"),
    "mnist": DatasetSpec(load_mnist, MnistOptions,
                         "MNIST 28x28 digits: 50,000 train / 10,000 validation / 10,000 test; "
                         "IDX files (gzipped or not) or torchvision's layout"),
    "cifar10": DatasetSpec(load_cifar10, Cifar10Options,
                           "CIFAR-10 32x32 colour images, 10 classes: 45,000 / 5,000 / 10,000; "
                           "torchvision's batches or train/ and test/ class folders"),
    "imagefolder": DatasetSpec(load_imagefolder, ImageFolderOptions,
                               "any class-per-folder tree of JPEG/PNG images, resized to "
                               "image_size; decoded once, then cached"),
    "mnist_sum": DatasetSpec(load_mnist_sum, MnistSumOptions,
                             "two MNIST digits side by side (28x56), label = their sum (19 "
                             "classes); pairs drawn within each MNIST split"),
    "xor": DatasetSpec(load_xor, XorOptions,
                       "the four XOR points, 2 classes (report 002); no download"),
    "functions": DatasetSpec(load_functions, FunctionsOptions,
                             "1-D regression of sin(5 pi x)/(5 pi x), sign(sin(5 pi x)) or the "
                             "sigmoid (report 003), MSE loss; no download"),
    "npz": DatasetSpec(load_npz, NpzOptions,
                       "your arrays in an .npz file (path): x_train, y_train, x_test, y_test, "
                       "optionally x_val, y_val, classes"),
    "csv": DatasetSpec(load_csv, CsvOptions,
                       "your table in a .csv file (path): the target column is the label "
                       "(integers: classes) or the value to fit, the others are features"),
}


def dataset(name: str) -> DatasetSpec:
    """The dataset `name`: a built-in one, or a user's data function by import path."""
    if name in DATASETS:
        return DATASETS[name]
    if user_code.is_import_path(name):
        spec = user_dataset(name)
        return DatasetSpec(spec.load, spec.options, spec.description)
    raise KeyError(name)


def load(name: str, options: DataOptions, data_dir: str | Path | None = None) -> Dataset:
    """The dataset `name` with its validated options; files from `data_dir` if given."""
    return apply_variants(dataset(name).load(options, data_dir), options)
