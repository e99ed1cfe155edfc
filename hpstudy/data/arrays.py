"""Data of the user's own: a function by import path, an `.npz` file or a `.csv` file.

`[data] name = "package.module:name"` names a function returning a dict with `"train"` and
`"test"` pairs `(inputs, targets)` (numpy arrays or torch tensors), optionally `"val"` (else
`val_fraction` of train is held out, stratified for classes) and `"classes"` (names).
Integer targets mean classification, float targets regression (MSE). Any other `[data]`
key is passed to the function by name, checked against its signature; `split_seed`,
`val_fraction`, `subset` and `random_labels` are hpstudy's own.

`name = "npz"` reads `x_train`, `y_train`, `x_test`, `y_test` (optionally `x_val`, `y_val`,
`classes`) from `path`; `name = "csv"` reads a table whose `target` column is the label
and whose other columns are features, holding out `test_fraction` for the test set.
A relative `path` is looked for in `--data-dir` (or `$HPSTUDY_DATA_DIR`), then here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpstudy.data.base import Dataset, Split, from_splits, holdout
from hpstudy.data.locate import DATA_DIR_ENV, data_dir
from hpstudy.data.variants import DataOptions
from hpstudy.errors import ConfigError, UserError
from hpstudy.spec import user_code
from hpstudy.spec.tables import require

RETURNS = ("a dict {'train': (inputs, targets), 'test': (inputs, targets)} (optionally 'val' "
           "and 'classes')")


@dataclass(frozen=True, kw_only=True)
class ArraysOptions(DataOptions):
    """[data] keys hpstudy keeps for itself when the arrays are the user's."""

    val_fraction: float = 0.2  # share of train held out for validation when there is no 'val'

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.val_fraction < 1, "val_fraction", "a fraction strictly between 0 and 1",
                self.val_fraction)


@dataclass(frozen=True, kw_only=True)
class NpzOptions(ArraysOptions):
    """[data] keys of `npz`."""

    path: str  # the .npz file: x_train, y_train, x_test, y_test (x_val, y_val, classes)


@dataclass(frozen=True, kw_only=True)
class CsvOptions(ArraysOptions):
    """[data] keys of `csv`."""

    path: str  # the .csv file, one example per row, a header row naming the columns
    target: str  # the column holding the label (integers: classes) or the value to fit
    test_fraction: float = 0.2  # share of the rows held out for the test set

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.test_fraction < 1, "test_fraction",
                "a fraction strictly between 0 and 1", self.test_fraction)


@dataclass(frozen=True)
class UserData:
    """A data function by import path, as the dataset registry knows datasets."""

    load: Callable[[Any, str | Path | None], Dataset]
    options: type
    description: str


@functools.cache
def user_dataset(path: str) -> UserData:
    """The data function at `path`: its signature (beside hpstudy's own keys) is the schema."""
    target = user_code.resolve(path, "data.name")
    own = (*tuple(f.name for f in dataclasses.fields(ArraysOptions)), "data_dir")
    fields = user_code.options_class(target, path, "data", own)
    options = dataclasses.make_dataclass(fields.__name__, [
        (f.name, f.type, f) for f in dataclasses.fields(fields)],
        bases=(ArraysOptions,), frozen=True, kw_only=True)

    def load(chosen: Any, given_dir: str | Path | None = None) -> Dataset:
        values = {f.name: getattr(chosen, f.name) for f in dataclasses.fields(fields)}
        if given_dir is not None:
            values["data_dir"] = str(given_dir)
        returned = user_code.call(target, values, path, "data.name")
        return from_parts(returned, chosen, f"{path} returned")

    return UserData(load, options, f"your function {path}")


def load_npz(options: NpzOptions, given_dir: str | Path | None = None) -> Dataset:
    """The arrays of an .npz file as a Dataset."""
    file = _find(options.path, given_dir)
    try:
        with np.load(file, allow_pickle=False) as arrays:
            parts: dict[str, Any] = dict(arrays.items())
    except (OSError, ValueError) as error:
        raise UserError(f"data.path: {file} is not a readable .npz file ({error}). Write it "
                        "with numpy.savez(path, x_train=..., y_train=..., x_test=..., "
                        "y_test=...).") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in parts]
    if missing:
        raise ConfigError("data.path", "an .npz file with x_train, y_train, x_test and y_test",
                          f"{file} without {', '.join(missing)} (it has "
                          f"{', '.join(sorted(parts)) or 'nothing'})")
    returned: dict[str, Any] = {s: (parts[f"x_{s}"], parts[f"y_{s}"]) for s in ("train", "test")}
    if "x_val" in parts and "y_val" in parts:
        returned["val"] = (parts["x_val"], parts["y_val"])
    if "classes" in parts:
        returned["classes"] = [str(c) for c in parts["classes"]]
    return from_parts(returned, options, str(file))


def load_csv(options: CsvOptions, given_dir: str | Path | None = None) -> Dataset:
    """The rows of a .csv file as a Dataset: `target` is the label, the rest the features."""
    import pandas as pd

    file = _find(options.path, given_dir)
    try:
        table = pd.read_csv(file)
    except (OSError, ValueError) as error:
        raise UserError(f"data.path: {file} is not a readable .csv file ({error}).") from None
    if options.target not in table.columns:
        raise ConfigError("data.target", f"a column of {file}", repr(options.target),
                          f"Its columns: {', '.join(map(str, table.columns))}.")
    features = table.drop(columns=[options.target])
    text = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if text:
        raise ConfigError("data.path", "numeric feature columns", f"{file} with non-numeric "
                          f"columns {', '.join(map(str, text))}", "Encode or drop them first.")
    x = features.to_numpy(np.float32)
    y = table[options.target].to_numpy()
    keep, held = holdout(y, round(options.test_fraction * len(y)), options.split_seed)
    return from_parts({"train": (x[keep], y[keep]), "test": (x[held], y[held])}, options,
                      str(file))


def from_parts(returned: Any, options: ArraysOptions, source: str) -> Dataset:
    """A Dataset from {'train': (x, y), 'test': (x, y), 'val'?, 'classes'?}; checked."""
    if not isinstance(returned, Mapping) or not {"train", "test"} <= set(returned):
        given = (f"a dict with keys {', '.join(map(str, returned))}"
                 if isinstance(returned, Mapping) else type(returned).__name__)
        raise ConfigError("data.name", RETURNS, f"{source} {given}")
    splits = {name: _pair(returned[name], name, source)
              for name in ("train", "val", "test") if name in returned}
    classify = np.issubdtype(splits["train"][1].dtype, np.integer)
    for name, (_, y) in splits.items():
        if np.issubdtype(y.dtype, np.integer) != classify:
            raise ConfigError("data.name", "integer targets in every split (classes) or float "
                              "targets in every split (regression)",
                              f"{source} {y.dtype} targets in '{name}' and "
                              f"{splits['train'][1].dtype} in 'train'")
    classes: tuple[str, ...] = ()
    if classify:
        count = max(int(y.max()) for _, y in splits.values() if len(y)) + 1
        classes = tuple(str(c) for c in returned.get("classes", range(count)))
        for name, (_, y) in splits.items():
            if len(y) and (y.min() < 0 or y.max() >= len(classes)):
                raise ConfigError("data.name", f"labels 0..{len(classes) - 1} (one per class)",
                                  f"{source} labels {y.min()}..{y.max()} in '{name}'",
                                  "Number the classes from 0, or give 'classes' their names.")
    if "val" not in splits:
        x, y = splits["train"]
        keep, held = holdout(y, max(1, round(options.val_fraction * len(y))), options.split_seed)
        splits["train"], splits["val"] = (x[keep], y[keep]), (x[held], y[held])
    train, val, test = (_split(*splits[n], classify) for n in ("train", "val", "test"))
    shapes = {name: tuple(s.x.shape[1:]) for name, s in (("train", train), ("val", val),
                                                          ("test", test))}
    if len(set(shapes.values())) > 1:
        raise ConfigError("data.name", "inputs of one shape in every split", f"{source} {shapes}")
    return from_splits(train, val, test, classes)


def _pair(value: Any, name: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """`(inputs, targets)` as numpy arrays of equal length, finite inputs."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ConfigError("data.name", f"'{name}' as a pair (inputs, targets)",
                          f"{source} {type(value).__name__} for '{name}'")
    x, y = (np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for v in value)
    if len(x) != len(y):
        raise ConfigError("data.name", f"as many targets as inputs in '{name}'",
                          f"{source} {len(x)} inputs and {len(y)} targets")
    if len(x) == 0 and name == "train":
        raise ConfigError("data.name", "at least one training example", f"{source} none")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise ConfigError("data.name", f"finite inputs in '{name}'",
                          f"{source} {int((~np.isfinite(x)).sum())} NaN or infinite values",
                          "Fill or drop them first.")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ConfigError("data.name", f"integer or float targets in '{name}'",
                          f"{source} {y.dtype} targets")
    return x, y


def _split(x: np.ndarray, y: np.ndarray, classify: bool) -> Split:
    """Tensors as hpstudy keeps them: uint8 images [N, C, H, W] or float features."""
    import torch

    if x.dtype == np.uint8 and x.ndim == 3:
        x = x[:, None]  # grey images [N, H, W]: one channel
    elif x.dtype != np.uint8:
        x = x.astype(np.float32)
    y = y.astype(np.int64) if classify else y.astype(np.float32).reshape(len(y), -1)
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))


def _find(path: str, given_dir: str | Path | None) -> Path:
    """`path` as given, else under --data-dir / $HPSTUDY_DATA_DIR; a UserError if neither."""
    candidates = [Path(path).expanduser()]
    if not candidates[0].is_absolute() and (given_dir or _env_dir()):
        candidates.insert(0, data_dir(given_dir).path / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(f"data.path: no file {path} (looked in {', '.join(map(str, candidates))}). "
                    f"Give the file's path, or the folder holding it with --data-dir DIR (or "
                    f"{DATA_DIR_ENV}=DIR).")


def _env_dir() -> bool:
    return bool(os.environ.get(DATA_DIR_ENV))
