"""A trained network as an MLflow model (requirements, signature, input example, the pyfunc
folder) and a dataset split as an MLflow dataset (what a run's Dataset column shows)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Dataset as MlflowDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.models import Model, ModelSignature
from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Schema
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from hpstudy.models import export
from hpstudy.tracking.artifacts import NETWORK_FILE, predictor_code

if TYPE_CHECKING:  # torch is imported where a network is handled: the figure writer needs none
    import torch

    from hpstudy.data import Split

CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}  # split -> MLflow's word


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


def save_network(folder: Path, network: torch.nn.Module, example: np.ndarray,
                 classes: Sequence[str], model: Model) -> None:
    """Write `network` (on the CPU, in eval mode) into `folder` as a servable pyfunc.

    `example` is a small batch of training-format inputs (uint8 images or float
    features); the first one becomes the input example. `model` carries the MLmodel
    file's ids (the LoggedModel it is saved for).
    """
    import torch

    image = example.ndim == 4 and example.dtype == np.uint8  # else numbers, as features
    exported = folder.parent / NETWORK_FILE
    torch.export.save(export(network, example), exported)
    mlflow.pyfunc.save_model(
        folder, python_model=predictor_code(), artifacts={"network": str(exported)},
        mlflow_model=model,
        model_config={"input_shape": list(example.shape[1:]), "classes": list(classes),
                      "images": image},
        signature=signature(image, bool(classes)), input_example=input_example(example[0], image),
        pip_requirements=requirements())


def dataset_input(name: str, part: str, split: Split, source: str) -> DatasetInput:
    """Split `part` (train, val or test) of dataset `name` as an MLflow dataset input: its
    content digest, its size and shape as the profile, and MLflow's context tag."""
    profile = {"num_rows": len(split), "input_shape": list(split.x.shape[1:]),
               "targets": str(split.y.dtype).removeprefix("torch.")}
    dataset = MlflowDataset(name=name, digest=split.digest(), source_type="hpstudy",
                            source=json.dumps({"dataset": source, "split": part}),
                            profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS[part])])
