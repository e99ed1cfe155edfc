"""`imagefolder`: any class-per-folder tree of images, decoded once and cached as uint8 arrays.

Layouts: `root/<class>/*.jpg|png` (the test set is then held out of it) or
`root/train/<class>/*` with `root/test/<class>/*`, which is what torchvision's
ImageFolder reads and what CIFAR-10 as JPEGs unpacks to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from hpstudy.data import cache
from hpstudy.data.base import Dataset, Split, from_splits, holdout, with_test_set
from hpstudy.data.locate import data_dir, missing
from hpstudy.data.variants import DataOptions
from hpstudy.errors import UserError
from hpstudy.spec.tables import require

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what Pillow decodes everywhere
LAYOUTS = ("<class>/*.jpg|png (the test set is held out of it)",
           "train/<class>/*.jpg|png and test/<class>/*.jpg|png")


@dataclass(frozen=True, kw_only=True)
class ImageFolderOptions(DataOptions):
    """[data] keys of `imagefolder`."""

    folder: str = ""  # the image tree, relative to --data-dir (or absolute); "" is the data dir
    image_size: int  # side in pixels: every image is resized to image_size x image_size
    channels: Literal[1, 3]  # 1: converted to greyscale, 3: to RGB
    val_fraction: float = 0.1  # share of the non-test images held out for validation
    test_fraction: float = 0.2  # share held out for testing when there is no test/ folder

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.image_size >= 1, "image_size", "an integer >= 1 (pixels)", self.image_size)
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            require(0 < value < 1, key, "a fraction strictly between 0 and 1", value)


def class_folders(root: Path) -> tuple[tuple[str, ...], list[str], np.ndarray]:
    """Class names (sorted folder names), image files relative to `root`, and their labels."""
    classes, files, labels = [], [], []
    for folder in sorted(e.name for e in _entries(root) if _is_class_folder(e)):
        images = sorted(e.name for e in _entries(root / folder) if _is_image(e))
        if images:
            labels += [len(classes)] * len(images)
            classes.append(folder)
            files += [f"{folder}/{name}" for name in images]
    return tuple(classes), files, np.array(labels, dtype=np.int64)


def has_class_folders(root: Path) -> bool:
    """Whether `root` is a folder with at least one class folder holding an image."""
    return root.is_dir() and any(
        _is_class_folder(folder) and any(_is_image(e) for e in _entries(Path(folder.path)))
        for folder in _entries(root))


def _entries(folder: Path) -> list[os.DirEntry]:
    """What `folder` holds; scandir is what keeps listing 60,000 files well under a second."""
    with os.scandir(folder) as entries:
        return list(entries)


def _is_class_folder(entry: os.DirEntry) -> bool:
    """A visible subfolder."""
    return entry.is_dir() and not entry.name.startswith(".")


def _is_image(entry: os.DirEntry) -> bool:
    """A file with an image suffix."""
    return entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES


def read_class_folders(root: Path, image_size: int, channels: int
                       ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images uint8 [N, C, S, S], labels and class names under `root`, through the cache."""
    classes, files, labels = class_folders(root)
    stamp = cache.fingerprint(root, files, classes, image_size, channels)
    arrays = cache.cached(cache.cache_file("imagefolder", root, image_size, channels), stamp,
                          lambda: {"images": decode_all(root, files, image_size, channels)})
    return arrays["images"], labels, classes


def decode_all(root: Path, files: list[str], image_size: int, channels: int) -> np.ndarray:
    """Every file decoded, converted to `channels` and resized: uint8 [N, C, S, S]."""
    images = np.empty((len(files), channels, image_size, image_size), dtype=np.uint8)
    for i, name in enumerate(files):  # one core decodes CIFAR-10's 60,000 JPEGs in about 5 s
        images[i] = decode(root / name, image_size, channels).numpy()
    return images


def decode(path: Path, image_size: int, channels: int) -> torch.Tensor:
    """One image as uint8 [C, S, S]; a UserError naming the file if it cannot be decoded."""
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = opened
            if image.mode.startswith("I"):  # 16-bit (or 32-bit) grey PNGs: the top 8 bits
                image = Image.fromarray((np.asarray(image, np.uint32) >> 8).clip(0, 255)
                                        .astype(np.uint8))
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
            pixels = np.array(image)  # a writable copy: torch shares its memory
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise UserError(f"{path}: not a readable image ({error}). Remove or replace it.") from None
    return torch.from_numpy(np.ascontiguousarray(
        pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)))


def read_train_test(root: Path, image_size: int, channels: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """The `train/<class>` and `test/<class>` layout: train and test images, labels, classes."""
    train_x, train_y, classes = read_class_folders(root / "train", image_size, channels)
    test_x, test_y, test_classes = read_class_folders(root / "test", image_size, channels)
    if test_classes != classes:
        raise UserError(f"{root}: train/ has classes {', '.join(classes)} but test/ has "
                        f"{', '.join(test_classes)}. Give both the same class folders.")
    return train_x, train_y, test_x, test_y, classes


def load_imagefolder(options: ImageFolderOptions, given_dir: str | Path | None) -> Dataset:
    """The image tree at `folder` under the data dir, in either layout."""
    import torch

    where = data_dir(given_dir)
    root = where.path / options.folder
    size, channels, seed = options.image_size, options.channels, options.split_seed
    if has_class_folders(root / "train") and has_class_folders(root / "test"):
        train_x, train_y, test_x, test_y, classes = read_train_test(root, size, channels)
        val_size = round(options.val_fraction * len(train_y))
        return with_test_set(train_x, train_y, test_x, test_y, val_size, seed, classes)
    if not root.is_dir() or not has_class_folders(root):
        raise missing(f"imagefolder (folder = {options.folder!r})", where,
                      [f"{options.folder}/{layout}" if options.folder else layout
                       for layout in LAYOUTS])
    images, labels, classes = read_class_folders(root, size, channels)
    everything = Split(torch.from_numpy(images), torch.from_numpy(labels))
    rest, test = holdout(labels, round(options.test_fraction * len(labels)), seed)
    train, val = holdout(labels[rest], round(options.val_fraction * len(rest)), seed)
    return from_splits(everything.take(rest[train]), everything.take(rest[val]),
                       everything.take(test), classes)
