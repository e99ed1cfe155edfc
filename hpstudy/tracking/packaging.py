"""A trained network as an MLflow model: its requirements, signature and input example."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Schema

if TYPE_CHECKING:  # torch is imported where a network is handled: the figure writer needs none
    pass


def requirements() -> list[str]:
    """What a logged model needs to run, pinned to what trained it."""
    import PIL
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
            f"pillow=={PIL.__version__}", f"numpy=={np.__version__}"]


def signature(image: bool, classify: bool) -> ModelSignature:
    """Inputs: one image (or feature list) per row; outputs: class, name, probabilities."""
    from hpstudy.serve import predictor

    inputs = Schema([ColSpec(AnyType(), predictor.IMAGE_FIELD if image else
                             predictor.FEATURE_FIELD)])
    if not classify:
        return ModelSignature(inputs, Schema([ColSpec(Array(DataType.double), "prediction")]))
    return ModelSignature(inputs, Schema([
        ColSpec(DataType.long, "class_index"), ColSpec(DataType.string, "class_name"),
        ColSpec(Array(DataType.double), "probabilities")]))


def input_example(one: np.ndarray, image: bool) -> pd.DataFrame:
    """One input as a user sends it: a base64 PNG, or a list of numbers."""
    from hpstudy.serve import predictor

    if not image:
        return pd.DataFrame({predictor.FEATURE_FIELD: [one.astype(float).tolist()]})
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(one[0] if one.shape[0] == 1 else one.transpose(1, 2, 0)).save(png, "PNG")
    return pd.DataFrame({predictor.IMAGE_FIELD: [base64.b64encode(png.getvalue()).decode()]})


