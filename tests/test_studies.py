"""Every shipped study runs: one trial of one epoch on a tiny slice of generated data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import run_study

from hpstudy.config import BUNDLED_STUDIES_DIR, load_study
from hpstudy.runner import Stores

SHIPPED = sorted(BUNDLED_STUDIES_DIR.glob("*.toml"))
TINY = {  # --set overrides that shrink each dataset to the files tests/data_files.py writes
    "digits": [],
    "mnist": ["data.val_size=20"],
    "cifar10": ["data.val_size=20"],
    "mnist_sum": ["data.val_size=20", "data.train_pairs=40", "data.val_pairs=10",
                  "data.test_pairs=10"],
    "xor": ["data.repeat=2"],
    "functions": ["data.points=64", "data.val_points=16", "data.test_points=16"],
}
REPORTS = {"linear_mnist", "mlp_mnist", "cnn_mnist", "bn_cnn_mnist", "mlp_cifar", "cnn_cifar",
           "cnn_mnist_sum", "lenet5_mnist_sum", "xor_mlp", "functions_mlp", "mnist_small_data",
           "mnist_random_labels", "width_generalization"}


@pytest.fixture(scope="module")
def shared_stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    """One pair of stores for all studies (each is its own Optuna study and MLflow experiment)."""
    folder = tmp_path_factory.mktemp("studies")
    return Stores(f"sqlite:///{folder}/optuna.db", f"sqlite:///{folder}/mlflow.db")


def test_every_study_of_the_seed_reports_is_shipped():
    assert {path.stem for path in SHIPPED} >= REPORTS


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_each_study_runs_one_trial_of_one_epoch(path: Path, data_dir: Path, shared_stores):
    config = load_study(str(path))
    overrides = ["train.epochs=1", "champion_floor=none", *TINY[config.data.name]]
    if getattr(config.data.options, "subset", None):
        overrides.append("data.subset=30")
    config = load_study(str(path), overrides)
    outcome = run_study(config, shared_stores, trials=1, device="cpu", data_dir=str(data_dir))
    assert len(outcome.study.trials) == 1
    assert outcome.selection is not None, outcome.no_selection_reason
    assert math.isfinite(outcome.selection.test_loss)
