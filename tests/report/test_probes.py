"""Task pictures drawn from the network during training: xor (report 002), functions (003)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_study
from mlflow import MlflowClient

from hpstudy.report.probes import FIT_PNG, XOR_PNG, snapshot_epochs
from hpstudy.search.record import TrialRecord
from hpstudy.spec.study_file import load_study

pytestmark = pytest.mark.slow  # real processes, servers or whole studies


def test_snapshots_are_a_quarter_half_and_the_end():
    assert snapshot_epochs(30, first=True) == [1, 7, 15, 30]
    assert snapshot_epochs(2, first=False) == [1, 2]


@pytest.mark.parametrize(("study", "picture"), [("xor_mlp", XOR_PNG),
                                                ("functions_mlp", FIT_PNG)])
def test_the_task_picture_is_in_each_trials_run(stores, tmp_path, study, picture):
    config = load_study(study, ["train.epochs=4", "data.points=200"] if study.startswith(
        "functions") else ["train.epochs=4"])
    outcome = run_study(config, stores, trials=1, device="cpu")
    run_id = TrialRecord.of(outcome.study.trials[0]).run_id
    client = MlflowClient(stores.tracking_uri)
    path = Path(client.download_artifacts(run_id, picture, str(tmp_path)))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    assert "hpstudy.figures_error" not in client.get_run(run_id).data.tags
