"""A full disk is bad weather: a real 3 MB filesystem fills under a study, which stops with exit
6 and one message; given space again, the same command finishes and nothing stays RUNNING."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages import RetryFailedTrialCallback
from optuna.trial import TrialState

from hpstudy.errors import DiskFull
from hpstudy.search.record import FIGURES_ERROR_TAG, REASON_TAG, TRIAL_TAG, TrialRecord

pytestmark = pytest.mark.slow  # whole studies in subprocesses

SMALL = ["--set", "train.epochs=1", "--set", "search.width={choices=[16, 32]}",
         "--set", "search.depth=1"]  # small weights: a few trials complete before the disk fills


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MB tmpfs mounted at tmp_path/small (root only), unmounted after."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def optimize(folder: Path, trials: int, jobs: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpstudy", "optimize", "--study", "digits_mlp",
                           "--trials", str(trials), "--jobs", str(jobs), *SMALL], cwd=folder,
                          capture_output=True, text=True, check=False, timeout=1800)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_study_that_fills_its_disk_stops_with_one_message_and_resumes_after(small_disk, jobs):
    full = optimize(small_disk, 60, jobs)
    assert full.returncode == DiskFull.exit_code, full.stderr[-3000:]
    messages = [line for line in full.stderr.splitlines() if line.startswith("hpstudy:")]
    assert len(messages) == 1 and messages[0].startswith("hpstudy: disk full: "), full.stderr
    assert str(small_disk) in messages[0] and "MB free" in messages[0]
    assert "Free space there" in messages[0]
    assert "Traceback" not in full.stderr + full.stdout
    storage = f"sqlite:///{small_disk}/mlruns/optuna.db"
    before = optuna.load_study(study_name="digits_mlp", storage=storage).trials
    completed = {t.number: t.value for t in before if t.state == TrialState.COMPLETE}
    reasons = [r.fail_reason for t in before if (r := TrialRecord.of(t)) and r.fail_reason]
    assert not [r for r in reasons if "worker stopped" in r]  # a live worker is never "lost"
    cut_off = [t.number for t in before if t.state in (TrialState.RUNNING, TrialState.FAIL)]
    assert cut_off and all(r.startswith(("disk full: ", "interrupted")) for r in reasons), reasons
    # (with --jobs, the workers the full one stopped were interrupted)

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = optimize(small_disk, 3, jobs)
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="digits_mlp", storage=storage)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    after = {t.number: t for t in study.trials}
    assert all(after[n].state == TrialState.COMPLETE and after[n].value == value
               for n, value in completed.items())  # every completed trial kept
    assert all(after[n].state == TrialState.FAIL for n in cut_off)
    retried = {r.retry_of for t in study.trials if (r := TrialRecord.of(t))} | {
        RetryFailedTrialCallback.retried_trial_number(t) for t in study.trials}  # (Optuna's
    trained = {n for n in cut_off if after[n].params}  # record, where the trial's could not be
    assert trained <= retried  # written); one cut off before it drew a value has none to retry
    client = MlflowClient(f"sqlite:///{small_disk}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id],
                              max_results=1000)
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    first_call = {t.number for t in before}
    for run in runs:  # a trial run of the full disk's call has its figures, or says it has none
        if TRIAL_TAG in run.data.tags and int(run.data.tags[TRIAL_TAG]) in first_call:
            drawn = {f.path for f in client.list_artifacts(run.info.run_id)}
            assert "curves.png" in drawn or FIGURES_ERROR_TAG in run.data.tags, run.data.tags
            if int(run.data.tags[TRIAL_TAG]) in cut_off:
                assert run.info.status == "FAILED" and run.data.tags[REASON_TAG]



def test_select_on_a_full_disk_stops_with_one_message_and_runs_again_after(small_disk):
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert optimize(small_disk, 2, 1).returncode == 0
    filler = small_disk / "filler"
    with filler.open("wb") as out:  # everything the disk has left
        try:
            while True:
                out.write(b"\0" * 2**16)
                out.flush()
        except OSError:
            pass
    select = [sys.executable, "-m", "hpstudy", "select", "--study", "digits_mlp", *SMALL]
    full = subprocess.run(select, cwd=small_disk, capture_output=True, text=True, timeout=600)
    assert full.returncode == DiskFull.exit_code, full.stderr[-3000:]
    messages = [line for line in full.stderr.splitlines() if line.startswith("hpstudy:")]
    assert len(messages) == 1 and messages[0].startswith("hpstudy: disk full: "), full.stderr
    assert "Traceback" not in full.stderr + full.stdout
    filler.unlink()
    again = subprocess.run(select, cwd=small_disk, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{small_disk}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id])
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
