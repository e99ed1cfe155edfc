"""Every shipped study runs: one trial of one epoch on a tiny slice of generated data."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from conftest import run_study

from hpstudy.run.optimize import Stores
from hpstudy.spec.finding import BUNDLED_STUDIES_DIR
from hpstudy.spec.study_file import load_study

pytestmark = pytest.mark.slow  # real processes, servers or whole studies

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
@pytest.fixture(scope="module")
def shared_stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    """One pair of stores for all studies (each is its own Optuna study and MLflow experiment)."""
    folder = tmp_path_factory.mktemp("studies")
    return Stores(f"sqlite:///{folder}/optuna.db", f"sqlite:///{folder}/mlflow.db")


def test_the_seed_reports_page_and_the_shipped_studies_name_the_same_studies():
    """docs/seed-reports.md lists a study per seed experiment: each is shipped, none missing."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "seed-reports.md").read_text()
    table = page[page.index("| study | what | report |"):page.index("For example")]
    named = {name for cell in re.findall(r"^\| ([^|]+) \|", table, flags=re.M)
             for name in re.findall(r"`(\w+)`", cell)}
    assert named == {path.stem for path in SHIPPED}


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
