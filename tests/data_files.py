"""Tiny but real data files in every layout the loaders accept, written into a test's folder."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

IDX_UBYTE = 0x08


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An IDX file of unsigned bytes (gzipped when the name ends in .gz), as MNIST ships them."""
    header = bytes([0, 0, IDX_UBYTE, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def digit_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` 28x28 images whose brightness encodes their label 0..9 (learnable), and labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 40, (count, 28, 28)) + (labels * 20)[:, None, None]
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_mnist(folder: Path, train: int = 120, test: int = 40, gz: bool = True,
                torchvision_layout: bool = False) -> Path:
    """The four MNIST IDX files: directly in `folder`, or under MNIST/raw/ (torchvision)."""
    where = folder / "MNIST" / "raw" if torchvision_layout else folder
    suffix = ".gz" if gz else ""
    for prefix, count, seed in (("train", train, 0), ("t10k", test, 1)):
        images, labels = digit_images(count, seed)
        write_idx(where / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(where / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


def colour_images(count: int, seed: int, side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """`count` RGB images [N, 3, side, side] whose colour encodes their label 0..9, and labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 60, (count, 3, side, side)) + (labels * 20)[:, None, None, None]
    return images.astype(np.uint8), labels


def write_cifar_batches(folder: Path, per_batch: int = 20, test: int = 30) -> Path:
    """torchvision's `cifar-10-batches-py/`: five training batches and a test batch, pickled."""
    where = folder / "cifar-10-batches-py"
    where.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        images, labels = colour_images(test if name == "test_batch" else per_batch, seed)
        with (where / name).open("wb") as fh:
            pickle.dump({"data": images.reshape(len(images), -1), "labels": labels.tolist()}, fh)
    return folder


def write_image_folders(root: Path, classes: tuple[str, ...] = ("cat", "dog", "frog"),
                        per_class: int = 6, side: int = 32, suffix: str = ".png",
                        seed: int = 0) -> Path:
    """`root/<class>/NNNN.png|jpg`: real encoded images, colour by class."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (3, side, side)) + 60 * label
            image = Image.fromarray(pixels.astype(np.uint8).transpose(1, 2, 0))
            image.save(root / name / f"{i:04d}{suffix}", quality=95)
    return root


def write_everything(folder: Path) -> Path:
    """One data folder every dataset can load from: MNIST's IDX files and CIFAR-10's batches."""
    write_mnist(folder)
    write_cifar_batches(folder)
    return folder
