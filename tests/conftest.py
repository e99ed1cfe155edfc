"""Shared fixtures: real MLflow and Optuna stores in a temporary folder, tiny study files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hpstudy.run.optimize import Stores

TINY_STUDY = """
description = "a tiny digits study for tests"
trials = 3
metric = "val_loss"

[data]
name = "digits"
val_fraction = 0.2
test_fraction = 0.2
split_seed = 0

[model]
architecture = "mlp"

[train]
epochs = 3
batch_size = 64
optimizer = "sgd"
seed = 0

[search]
lr = { low = 0.01, high = 0.3, log = true }
momentum = { low = 0.0, high = 0.9 }
width = { choices = [16, 32] }
depth = { low = 1, high = 2 }

[sampler]
name = "tpe"
seed = 0

[pruner]
name = "none"
"""


def run_study(config, stores: Stores, **options):
    """`optimize` a study in this process: plan (every check), then run."""
    from hpstudy.run.optimize import optimize, plan

    return optimize(plan(config, stores, **options))


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    """An Optuna storage and an MLflow store, both sqlite files under tmp_path."""
    return Stores(storage=f"sqlite:///{tmp_path}/optuna.db",
                  tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


@pytest.fixture
def write_study(tmp_path: Path):
    """Write a study file named NAME.toml under tmp_path; `replace` edits the tiny study."""

    def write(name: str = "tiny", text: str = TINY_STUDY,
              replace: dict[str, str] | None = None) -> Path:
        for old, new in (replace or {}).items():
            assert old in text, f"test bug: {old!r} is not in the study text"
            text = text.replace(old, new)
        path = tmp_path / f"{name}.toml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory: pytest.TempPathFactory):
    """A tiny real study, optimized twice (3 then 2 trials) into real sqlite stores."""
    from hpstudy.spec.study_file import load_study

    folder = tmp_path_factory.mktemp("finished")
    path = folder / "tiny.toml"
    path.write_text(TINY_STUDY)
    config = load_study(str(path))
    stores = Stores(f"sqlite:///{folder}/optuna.db", f"sqlite:///{folder}/mlflow.db")
    first = run_study(config, stores, trials=3, device="cpu")
    second = run_study(config, stores, trials=2, device="cpu")
    return config, stores, first, second


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the real finished study (`finished_study`) is slow: it runs two calls."""
    for item in items:
        if "finished_study" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def isolated_data_folders(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """No test reads the user's data folder or writes to ~/.cache: both live in a temp folder."""
    monkeypatch.delenv("HPSTUDY_DATA_DIR", raising=False)
    monkeypatch.setenv("HPSTUDY_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of tiny real data: MNIST's four IDX files (gzipped) and CIFAR-10's batches."""
    from data_files import write_everything

    return write_everything(tmp_path_factory.mktemp("data"))
