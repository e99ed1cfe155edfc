"""`mnist`: the 70,000 handwritten digits; 50,000/10,000 train/validation as in report 004.

Reads the four IDX files, gzipped or not, directly in the data folder (how MNIST is
shared) or under `MNIST/raw/` (torchvision's layout). With no data folder given, the
files are downloaded with torchvision's `MNIST(download=True)` into the default folder.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpstudy.data.base import Dataset, with_test_set
from hpstudy.data.locate import DataDir, data_dir, download, missing
from hpstudy.data.variants import HeldOutOptions
from hpstudy.errors import UserError

FILES = {  # part -> file name as published; each may also end in .gz
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}
FOLDERS = (".", "MNIST/raw")  # where under the data folder the files may be
LAYOUTS = ("train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
           "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] (the four IDX files)",
           "MNIST/raw/<the same four files> (torchvision's layout)")
IDX_UBYTE = 0x08  # IDX type code of unsigned bytes, the only type MNIST uses
CLASSES = tuple(str(digit) for digit in range(10))


@dataclass(frozen=True, kw_only=True)
class MnistOptions(HeldOutOptions):
    """[data] keys of `mnist`."""

    val_size: int = 10_000  # images of the 60,000 training images held out for validation


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped if its name ends in .gz) as a uint8 array of its stated shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as error:
        raise UserError(f"{path}: cannot be read ({error}). Replace it with the original file.")\
            from None
    dims = raw[3] if len(raw) >= 4 else 0
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    if raw[:3] != bytes([0, 0, IDX_UBYTE]) or len(raw) != 4 + 4 * dims + int(np.prod(shape)):
        raise UserError(f"{path}: not an IDX file of unsigned bytes, or cut short "
                        f"({len(raw)} bytes). Replace it with the original file.")
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find_files(root: Path) -> dict[str, Path] | None:
    """The four MNIST files under `root` in a known layout, or None."""
    for folder in FOLDERS:
        found = {}
        for part, name in FILES.items():
            plain, zipped = root / folder / name, root / folder / f"{name}.gz"
            found[part] = plain if plain.is_file() else zipped
        if all(path.is_file() for path in found.values()):
            return found
    return None


def mnist_files(given_dir: str | Path | None) -> dict[str, Path]:
    """The four files, downloading them into the default folder if none was given."""
    import torchvision

    where: DataDir = data_dir(given_dir)
    found = find_files(where.path)
    if found is None and where.may_download:
        download("mnist", where, LAYOUTS,
                 lambda root: torchvision.datasets.MNIST(root, train=True, download=True))
        found = find_files(where.path)
    if found is None:
        raise missing("mnist", where, LAYOUTS)
    return found


def read_mnist(given_dir: str | Path | None) -> tuple[np.ndarray, ...]:
    """Train images uint8 [60000, 1, 28, 28], train labels, test images, test labels."""
    files = mnist_files(given_dir)
    parts = {part: read_idx(path) for part, path in files.items()}
    for images, labels in (("train_x", "train_y"), ("test_x", "test_y")):
        if parts[images].ndim != 3 or len(parts[images]) != len(parts[labels]):
            raise UserError(f"{files[images]} and {files[labels]}: {parts[images].shape} "
                            f"images but {parts[labels].shape} labels. Replace them with the "
                            "original files.")
    return (parts["train_x"][:, None], parts["train_y"], parts["test_x"][:, None],
            parts["test_y"])


def load_mnist(options: MnistOptions, given_dir: str | Path | None) -> Dataset:
    """MNIST with `val_size` training images held out (stratified, seeded) for validation."""
    train_x, train_y, test_x, test_y = read_mnist(given_dir)
    return with_test_set(train_x, train_y, test_x, test_y, options.val_size, options.split_seed,
                         CLASSES)
