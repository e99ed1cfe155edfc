"""`hpstudy reproduce`: a finished trial, re-run from its MLflow record, matches what it logged."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import TINY_STUDY, run_study
from mlflow import MlflowClient

from hpstudy.errors import UserError
from hpstudy.run.optimize import Stores
from hpstudy.run.reproduce import TOLERANCE, Comparison, reproduce, split_overrides
from hpstudy.spec.study_file import load_study

pytestmark = pytest.mark.slow  # real processes, servers or whole studies

SPACED = "search.lr={low = 0.01, high = 0.3, log = true}"  # an override with spaces in it


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Stores, str]:
    """A tiny digits study of 2 trials x 2 epochs x 2 seeds, dropout searched, run to the end."""
    folder = tmp_path_factory.mktemp("reproduce")
    path = folder / "tiny.toml"
    path.write_text(TINY_STUDY)
    config = load_study(str(path), ["train.epochs=2", "train.seeds=2", SPACED,
                                    "search.dropout={low=0.0, high=0.3}"])
    stores = Stores(f"sqlite:///{folder}/optuna.db", f"sqlite:///{folder}/mlflow.db")
    run_study(config, stores, trials=2, device="cpu")
    return stores, str(folder)


def run_count(stores: Stores) -> int:
    client = MlflowClient(stores.tracking_uri)
    return len(client.search_runs([client.get_experiment_by_name("tiny").experiment_id]))


def test_a_finished_trial_reproduces_its_logged_validation_loss(finished):
    stores, _ = finished
    before = run_count(stores)
    comparison = reproduce("tiny", 1, stores.storage, stores.tracking_uri)
    assert len(comparison.logged) == 2 and comparison.equal()
    assert comparison.max_abs() <= TOLERANCE * max(comparison.logged)
    assert run_count(stores) == before  # nothing written


def test_the_cli_says_reproduced_and_exits_0_or_2_for_a_trial_that_is_not_there(finished):
    stores, folder = finished
    flags = ["--storage", stores.storage, "--tracking-uri", stores.tracking_uri]
    done = subprocess.run([sys.executable, "-m", "hpstudy", "reproduce", "--study", "tiny",
                           "--trial", "0", *flags], cwd=folder, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Reproduced: equal within 1e-06 relative" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "hpstudy", "reproduce", "--study", "tiny",
                              "--trial", "7", *flags], cwd=folder, capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 2
    assert "--trial 7: study 'tiny' has no such trial (its trials: 0 to 1" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_an_unknown_study_is_bad_input(finished):
    stores, _ = finished
    with pytest.raises(UserError, match="no Optuna study 'other'"):
        reproduce("other", 0, stores.storage, stores.tracking_uri)


def test_overrides_joined_by_spaces_are_split_back():
    joined = " ".join(["train.epochs=2", SPACED, 'search.optimizer={choices=["sgd", "adam"]}'])
    assert split_overrides(joined) == ["train.epochs=2", SPACED,
                                       'search.optimizer={choices=["sgd", "adam"]}']
    assert split_overrides("") == []


def test_a_difference_beyond_the_tolerance_is_not_reproduced():
    same = Comparison("tiny", 0, "run", "cpu", "cpu", [0.5, 0.25], [0.5, 0.25 * (1 + 1e-7)])
    assert same.equal()
    other = Comparison("tiny", 0, "run", "cpu", "cpu", [0.5, 0.25], [0.5, 0.26])
    assert not other.equal() and other.max_abs() == pytest.approx(0.01)
    assert not Comparison("tiny", 0, "run", "cpu", "cpu", [0.5, 0.25], [0.5]).equal()


def test_a_one_seed_trial_reproduces_too(write_study, stores):
    run_study(load_study(str(write_study()), ["train.epochs=2"]), stores, trials=1, device="cpu")
    assert reproduce("tiny", 0, stores.storage, stores.tracking_uri).equal()
