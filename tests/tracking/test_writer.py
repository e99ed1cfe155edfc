"""The background writer: figures drawn beside training, nothing lost, failures reported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from hpstudy.report import trial_figures as plots
from hpstudy.search.objective import CURVES_PNG, WEIGHTS_PNG
from hpstudy.search.record import FIGURES_ERROR_TAG, TrialRecord
from hpstudy.tracking.runs import RunEnd, Tracker
from hpstudy.tracking.writer import Writer
from hpstudy.train.loop import EpochMetrics

pytestmark = pytest.mark.slow  # real processes, servers or whole studies

HISTORY = [EpochMetrics(e, 1 / e, 0.5, 1.1 / e, 0.4, 0.1) for e in (1, 2)]


def test_jobs_are_written_and_a_failing_figure_is_reported_not_lost(stores):
    tracker = Tracker(stores.tracking_uri, "writer")
    good, bad = tracker.start_run("good"), tracker.start_run("bad")
    writer = Writer()
    writer.submit(RunEnd(stores.tracking_uri, good, "FINISHED", {"hpstudy.state": "complete"},
                         ((CURVES_PNG, plots.curves, (HISTORY, "good")),)))
    writer.submit(RunEnd(stores.tracking_uri, bad, "FINISHED", {}, (
        (CURVES_PNG, plots.curves, (HISTORY, "bad")),
        (WEIGHTS_PNG, plots.layer_weights, (np.zeros(3), False, (3,), "1-D: cannot be drawn")))))
    failures = writer.close()
    assert len(failures) == 1 and bad in failures[0] and WEIGHTS_PNG in failures[0]
    for run_id in (good, bad):  # both ended as asked, with the figure that could be drawn
        run = tracker.client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert CURVES_PNG in {a.path for a in tracker.client.list_artifacts(run_id)}
    assert WEIGHTS_PNG in tracker.client.get_run(bad).data.tags[FIGURES_ERROR_TAG]


def test_jobs_queued_at_the_end_are_spread_over_a_second_writer_and_all_written(stores):
    tracker = Tracker(stores.tracking_uri, "writer")
    runs = [tracker.start_run(f"run {i}") for i in range(6)]
    writer = Writer(processes=2)
    for run_id in runs:  # all at once, as the members of a vectorised group end
        writer.submit(RunEnd(stores.tracking_uri, run_id, "FINISHED", {"hpstudy.state": "complete"},
                             ((CURVES_PNG, plots.curves, (HISTORY, run_id)),)))
    assert writer.processes == 1  # while trials train, one process writes
    assert writer.close() == []
    assert writer.processes == 2  # the study waited: a second took half the queue
    for run_id in runs:
        assert tracker.client.get_run(run_id).info.status == "FINISHED"
        assert CURVES_PNG in {a.path for a in tracker.client.list_artifacts(run_id)}


def test_a_writer_killed_mid_job_neither_hangs_the_study_nor_loses_the_queued_jobs(stores):
    tracker = Tracker(stores.tracking_uri, "writer")
    first, *runs = [tracker.start_run(f"run {i}") for i in range(4)]
    writer = Writer(processes=1)

    def end(run_id):
        writer.submit(RunEnd(stores.tracking_uri, run_id, "FINISHED", {},
                             ((CURVES_PNG, plots.curves, (HISTORY, run_id)),)))

    end(first)
    deadline = time.monotonic() + 120
    while tracker.client.get_run(first).info.status != "FINISHED":  # the writer is up
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for run_id in runs:
        end(run_id)
    child = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "hpstudy.tracking.writer"],
                           capture_output=True, text=True, check=True).stdout.split()
    os.kill(int(child[0]), signal.SIGKILL)  # while it draws the next job
    failures = writer.close()  # returns: no waiting on a dead process
    finished = [r for r in runs if tracker.client.get_run(r).info.status == "FINISHED"]
    assert len(finished) >= 2  # only the job inside the dead process can be lost: the
    assert all(CURVES_PNG in {a.path for a in tracker.client.list_artifacts(r)}  # queued
               for r in finished)  # ones were written by the study's own process
    lost = len(runs) - len(finished)  # and a lost one is reported, never silently dropped
    assert failures == ([f"{lost} run(s): the writer process ended before writing them"]
                        if lost else [])


def figures_of_every_ended_trial(folder, name: str) -> None:
    """Every trial that ended has its run ended and its figures (the writer lost nothing)."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/mlruns/optuna.db")
    client = MlflowClient(f"sqlite:///{folder}/mlruns/mlflow.db")
    ended = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert ended
    for trial in ended:
        run_id = TrialRecord.of(trial).run_id
        assert client.get_run(run_id).info.status in ("FINISHED", "KILLED")
        assert {CURVES_PNG, WEIGHTS_PNG} <= {a.path for a in client.list_artifacts(run_id)}


def test_nothing_is_lost_when_a_trial_fails(tmp_path, write_study):
    path = write_study(replace={"width = { choices = [16, 32] }":
                                "width = { choices = [16, 2000000, 32] }"})
    done = subprocess.run([sys.executable, "-m", "hpstudy", "optimize", "--study", str(path),
                           "--set", "sampler.name=brute_force", "--set", "search.depth=2",
                           "--set", "search.lr=0.1", "--set", "search.momentum=0.5"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    figures_of_every_ended_trial(tmp_path, "tiny")


def test_nothing_is_lost_when_the_study_is_interrupted(tmp_path, write_study):
    path = write_study(replace={"trials = 3": "trials = 200"})
    process = subprocess.Popen([sys.executable, "-m", "hpstudy", "optimize", "--study",
                                str(path)], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    storage = f"sqlite:///{tmp_path}/mlruns/optuna.db"
    while time.monotonic() < deadline:  # until a few trials have ended
        time.sleep(0.5)
        try:
            trials = optuna.load_study(study_name="tiny", storage=storage).trials
        except Exception:  # not created yet
            continue
        if sum(t.state == TrialState.COMPLETE for t in trials) >= 3:
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    figures_of_every_ended_trial(tmp_path, "tiny")


def test_killing_the_writer_during_a_study_loses_no_trial_and_leaves_no_run_open(
        tmp_path, write_study):
    path = write_study(replace={"trials = 3": "trials = 12"})
    process = subprocess.Popen([sys.executable, "-m", "hpstudy", "optimize", "--study",
                                str(path)], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    killed, deadline = None, time.monotonic() + 180
    while killed is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)  # the writer process starts with the first trial's end
        found = subprocess.run(["pgrep", "-P", str(process.pid), "-f", "hpstudy.tracking.writer"],
                               capture_output=True, text=True).stdout.split()
        if found:
            killed = int(found[0])
            os.kill(killed, signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert killed is not None, "the writer never started"
    assert process.returncode == 0, err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/mlruns/optuna.db")
    assert len(study.trials) == 12  # every trial ran and was told
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}  # none left RUNNING
    assert "Champion" in out

