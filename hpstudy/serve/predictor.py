"""The served model: takes inputs as people have them, returns classes, names, probabilities.

This file is logged with every model as an MLflow "model from code": it must stay
self-contained (torch, numpy, pandas, Pillow and mlflow only; nothing from hpstudy), so a
registered model serves anywhere with `mlflow models serve`, hpstudy installed or not.

Images: one per row of the `image` field, each either
  - a uint8 array, H x W (grey) or H x W x C (C = 1, 3 or 4), as nested lists in JSON, or
  - the bytes of a PNG or JPEG file (base64 text in JSON).
They are converted to the model's channels and resized to its input size (bilinear),
then the network (which holds the training normalisation) is applied.
Feature models (e.g. xor, functions) take a list of numbers per row in the `x` field.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

IMAGE_FIELD, FEATURE_FIELD = "image", "x"
MAX_BATCH = 512  # rows per request
MAX_SIDE = 4096  # pixels per image side
MAX_ENCODED_BYTES = 8 * 2**20  # per PNG or JPEG file
MODES = {1: "L", 3: "RGB"}  # model channels -> Pillow mode


class BadInput(MlflowException):
    """A request the model cannot take; MLflow's server answers it with HTTP 400."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def decode_image(value: Any, row: int) -> np.ndarray:
    """One image as a uint8 array H x W x C from bytes, base64 text, an array or nested lists."""
    if isinstance(value, str):
        if len(value) > MAX_ENCODED_BYTES * 4 // 3 + 4:
            raise BadInput(f"image {row}: encoded image larger than {MAX_ENCODED_BYTES} bytes")
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadInput(f"image {row}: text must be a base64-encoded PNG or JPEG file") from None
    if isinstance(value, bytes | bytearray):
        return _decode_file(bytes(value), row)
    return _check_array(value, row)


def _decode_file(data: bytes, row: int) -> np.ndarray:
    """Pixels of a PNG or JPEG file."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_ENCODED_BYTES:
        raise BadInput(f"image {row}: encoded image larger than {MAX_ENCODED_BYTES} bytes")
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ("PNG", "JPEG"):
            raise BadInput(f"image {row}: expected PNG or JPEG, got {image.format}")
        if max(image.size) > MAX_SIDE:
            raise BadInput(f"image {row}: {image.size[0]}x{image.size[1]} pixels, more than "
                           f"{MAX_SIDE} on a side")
        pixels = np.asarray(image.convert("RGBA" if "A" in image.getbands() else
                                          "L" if image.mode in ("1", "L", "I;16", "I") else "RGB"))
    except Image.DecompressionBombError:  # the header claims billions of pixels
        raise BadInput(f"image {row}: its header claims more pixels than a picture of "
                       f"{MAX_SIDE} on a side has; send a smaller image") from None
    except UnidentifiedImageError:
        raise BadInput(f"image {row}: not a readable PNG or JPEG file (not an image format "
                       "Pillow knows)") from None
    except (OSError, ValueError) as error:
        raise BadInput(f"image {row}: not a readable PNG or JPEG file ({error})") from None
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _check_array(value: Any, row: int) -> np.ndarray:
    """An array of pixel values 0..255, H x W or H x W x C."""
    try:
        array = np.asarray(value)
    except ValueError:
        array = np.asarray([], dtype=object)
    if array.dtype == object:
        raise BadInput(f"image {row}: rows of unequal length or non-numbers; expected an "
                       "H x W or H x W x C array of integers 0..255")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise BadInput(f"image {row}: expected integers 0..255, got {array.dtype} values")
    if array.size and (np.issubdtype(array.dtype, np.floating)
                       and not np.all(np.isfinite(array) & (array == np.round(array)))):
        raise BadInput(f"image {row}: expected integers 0..255, got fractional values (send "
                       "uint8 pixels, not normalised floats)")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise BadInput(f"image {row}: pixel values must lie in 0..255, got "
                       f"{array.min()}..{array.max()}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or min(array.shape[:2]) < 1:
        raise BadInput(f"image {row}: expected shape H x W or H x W x C with C in 1, 3, 4; "
                       f"got {list(np.shape(value))}")
    if max(array.shape[:2]) > MAX_SIDE:
        raise BadInput(f"image {row}: {array.shape[1]}x{array.shape[0]} pixels, more than "
                       f"{MAX_SIDE} on a side")
    return array.astype(np.uint8)


def fit_to(pixels: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
    """Pixels H x W x C converted to the model's channels and size: C' x H' x W' uint8."""
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    if image.mode != MODES[channels]:
        image = image.convert(MODES[channels])
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def rows(model_input: Any, field: str) -> list[Any]:
    """The values of `field`, one per row, from a DataFrame or a dict of lists."""
    if isinstance(model_input, dict):
        model_input = pd.DataFrame({k: list(v) for k, v in model_input.items()})
    if not isinstance(model_input, pd.DataFrame) or field not in model_input.columns:
        given = list(model_input.columns) if isinstance(model_input, pd.DataFrame) else \
            type(model_input).__name__
        raise BadInput(f"missing field '{field}': send {{\"dataframe_records\": "
                       f"[{{\"{field}\": ...}}, ...]}} (given: {given})")
    values = list(model_input[field])
    first = values[0] if len(values) == 1 else None
    if isinstance(first, list | np.ndarray) and len(first) and all(
            isinstance(v, str | bytes) for v in first):  # {"inputs": {field: ["<base64>", ...]}}
        values = list(first)  # reaches us as one row holding the list (pixels are numbers)
    if not values:
        raise BadInput(f"empty batch: send at least one '{field}'")
    if len(values) > MAX_BATCH:
        raise BadInput(f"batch of {len(values)} rows is too large: at most {MAX_BATCH} per "
                       "request")
    return values


class Predictor(PythonModel):
    """An hpstudy model as MLflow serves it."""

    # Inputs are validated here, with messages for people. MLflow reads type hints on
    # `predict` as the input schema (and would then accept only `{"inputs": ...}`), so
    # `predict` has none, and this flag stops MLflow asking for them.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        """Load the exported network and what it was trained on."""
        config = context.model_config
        self.input_shape = tuple(config["input_shape"])
        self.images = config.get("images", len(self.input_shape) == 3)  # uint8 images, or numbers
        self.classes = list(config["classes"])
        self.network = torch.export.load(context.artifacts["network"]).module()

    def predict(self, context, model_input, params=None):  # no hints: see above
        """One output row per input row: class index, name and probabilities (or values)."""
        if self.images:
            values = rows(model_input, IMAGE_FIELD)
            batch = np.stack([fit_to(decode_image(v, i), *self.input_shape)
                              for i, v in enumerate(values)])
        else:
            batch = self._features(rows(model_input, FEATURE_FIELD))
        with torch.no_grad():
            out = self.network(torch.from_numpy(batch))
        if not self.classes:
            return pd.DataFrame({"prediction": out.tolist()})
        probabilities = torch.softmax(out.float(), dim=1)
        index = probabilities.argmax(dim=1).tolist()
        return pd.DataFrame({"class_index": index, "class_name": [self.classes[i] for i in index],
                             "probabilities": probabilities.tolist()})

    def _features(self, values: list[Any]) -> np.ndarray:
        """Rows of numbers (flat, or nested in the input's shape) as a float32 batch."""
        size, shape = int(np.prod(self.input_shape)), list(self.input_shape)
        expected = f"each '{FEATURE_FIELD}' must be {size} numbers (flat, or nested as {shape})"
        try:
            batch = np.asarray([np.asarray(v, dtype=np.float32).reshape(-1) for v in values])
        except (ValueError, TypeError):
            raise BadInput(expected) from None
        if batch.ndim != 2 or batch.shape[1] != size:
            raise BadInput(f"{expected}; got shape {list(batch.shape)}")
        if not np.isfinite(batch).all():
            raise BadInput(f"{expected}; got NaN or infinite values")
        return batch.reshape(len(batch), *self.input_shape)


set_model(Predictor())  # what MLflow loads from this file
