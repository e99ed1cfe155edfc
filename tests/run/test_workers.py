"""Never lose a trial: real worker processes, real kills, real concurrent starts, real servers.

Every test drives `hpstudy` as a user would (a subprocess per command) against real
stores: SQLite files in tmp_path, or a PostgreSQL cluster and an `mlflow server` started
on loopback by tests/servers.py.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from servers import create_database, mlflow_server, postgres_server

from hpstudy.run.workers import devices, shares
from hpstudy.search.objective import CONFUSION_PNG, CURVES_PNG, WEIGHTS_PNG
from hpstudy.search.record import (
    FIGURES_ERROR_TAG,
    REASON_TAG,
    STATE_TAG,
    TRIAL_TAG,
    TrialRecord,
)

pytestmark = pytest.mark.slow  # real processes, servers or whole studies

FAST = ["--set", "train.epochs=2", "--set", "search.width={choices=[16, 32]}",
        "--set", "search.depth=1"]  # a digits trial in about a second


def hpstudy(*args: str, cwd: Path, **popen) -> subprocess.Popen:
    """Start `hpstudy ARGS` in `cwd`, as a user would from a shell."""
    return subprocess.Popen([sys.executable, "-m", "hpstudy", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    """Wait for a command; its exit code, stdout and stderr."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def finish_all(processes: list[subprocess.Popen], codes: list[int]) -> list[tuple[int, str, str]]:
    """Wait for several commands; fail showing every one's whole output unless all exit `codes`."""
    results = [finish(p) for p in processes]
    if [code for code, _, _ in results] != codes:
        pytest.fail(f"exit codes {[c for c, _, _ in results]} != {codes}\n" + "\n".join(
            f"--- command {i}: exit {code}\nstdout:\n{out}\nstderr:\n{err}"
            for i, (code, out, err) in enumerate(results)), pytrace=False)
    return results


def stores_in(folder: Path, name: str = "digits_mlp") -> tuple[optuna.Study, MlflowClient, str]:
    """A study, the MLflow client and the study's experiment id, from a folder's mlruns/."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/mlruns/optuna.db")
    client = MlflowClient(f"sqlite:///{folder}/mlruns/mlflow.db")
    return study, client, client.get_experiment_by_name(name).experiment_id


def check_consistent(study: optuna.Study, client: MlflowClient, experiment: str) -> None:
    """Nothing RUNNING anywhere; exactly one MLflow run per trial attempt, ended as its trial."""
    assert not study.get_trials(states=(TrialState.RUNNING,))
    runs = client.search_runs([experiment], max_results=5000)
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    trial_runs = [r for r in runs if TRIAL_TAG in r.data.tags]
    ran = [t for t in study.trials if t.state != TrialState.WAITING]
    assert sorted(int(r.data.tags[TRIAL_TAG]) for r in trial_runs) == [t.number for t in ran]
    status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED",
              TrialState.FAIL: "FAILED"}
    by_number = {int(r.data.tags[TRIAL_TAG]): r for r in trial_runs}
    for trial in ran:
        assert by_number[trial.number].info.status == status[trial.state], trial.number


def test_workers_share_trials_and_gpus_round_robin():
    assert shares(10, 4) == [3, 3, 2, 2] and shares(None, 2) == [None, None]
    assert devices("auto", 5, 2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert devices("auto", 2, 0) == ["cpu", "cpu"] and devices("cuda:1", 2, 2) == ["cuda:1"] * 2


def test_jobs_and_simultaneous_starts_on_the_default_stores(tmp_path):
    """`--jobs 4`, then 4 `optimize` processes started at once on fresh stores: all exit 0."""
    jobs, together = tmp_path / "jobs", tmp_path / "together"
    jobs.mkdir(), together.mkdir()
    code, out, err = finish(hpstudy("optimize", "--study", "digits_mlp", "--trials", "8",
                                     "--jobs", "4", *FAST, cwd=jobs))
    assert code == 0, err
    assert "8 trials of mlp on digits, 2 epochs each, 4 worker processes" in out
    study, client, experiment = stores_in(jobs)
    assert len(study.trials) == 8 and out.count("  done  ") == 8
    check_consistent(study, client, experiment)
    parents = client.search_runs([experiment], "tags.`hpstudy.command` = 'optimize'")
    assert len(parents) == 1  # the workers' trials nest under the one `optimize` call
    assert {r.data.tags["mlflow.parentRunId"] for r in client.search_runs(
        [experiment], f"tags.`{TRIAL_TAG}` != ''")} == {parents[0].info.run_id}

    starts = [hpstudy("optimize", "--study", "digits_mlp", "--trials", "3", *FAST, cwd=together)
              for _ in range(4)]
    finish_all(starts, [0, 0, 0, 0])
    study, client, experiment = stores_in(together)
    assert len(study.trials) == 12
    assert len({t.number for t in study.trials}) == 12
    check_consistent(study, client, experiment)
    champion = client.get_model_version_by_alias("digits_mlp", "champion")
    assert len(client.search_model_versions("name = 'digits_mlp'")) >= 1
    assert champion.run_id == TrialRecord.of(study.best_trial).run_id


def start_and_wait_for_epoch(folder: Path) -> tuple[subprocess.Popen, optuna.trial.FrozenTrial]:
    """Start a slow 1-trial study and wait until its trial has reported an epoch."""
    process = hpstudy("optimize", "--study", "digits_mlp", "--trials", "1",
                      "--set", "train.epochs=400", "--set", "search.width=16",
                      "--set", "search.depth=1", cwd=folder)
    storage = f"sqlite:///{folder}/mlruns/optuna.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            running = optuna.load_study(study_name="digits_mlp", storage=storage).get_trials(
                states=(TrialState.RUNNING,))
        except (KeyError, Exception):  # the store is still being made
            continue
        if running and running[0].intermediate_values and TrialRecord.of(running[0]):
            return process, running[0]
    process.kill()
    raise AssertionError("the trial never reported an epoch")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_killed_worker_loses_nothing_and_its_trial_is_retried(tmp_path, how):
    process, victim = start_and_wait_for_epoch(tmp_path)
    process.send_signal(how)
    code, _, err = finish(process)
    assert code == (-signal.SIGKILL if how == signal.SIGKILL else 130), err
    if how == signal.SIGTERM:
        assert "interrupted" in err and "Traceback" not in err

    # an immediate re-run on the same machine: no wait for the heartbeat's grace period
    started = time.monotonic()
    code, out, err = finish(hpstudy("optimize", "--study", "digits_mlp", "--trials", "1",
                                    "--set", "train.epochs=3", "--set", "search.width=16",
                                    "--set", "search.depth=1", cwd=tmp_path))
    assert code == 0, err
    assert time.monotonic() - started < 60
    study, client, experiment = stores_in(tmp_path)
    killed, retry = study.trials[victim.number], study.trials[victim.number + 1]
    assert killed.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert TrialRecord.of(retry).retry_of == killed.number and TrialRecord.of(retry).attempt == 2
    run = client.get_run(TrialRecord.of(killed).run_id)
    assert run.info.status == "FAILED" and run.data.tags[STATE_TAG] == "failed"
    assert run.data.tags[REASON_TAG]  # why: the worker died, or it was interrupted
    if how == signal.SIGKILL:
        assert "Recovered from an earlier crash" in out
    check_consistent(study, client, experiment)
    assert client.get_model_version_by_alias("digits_mlp", "champion").run_id == \
        TrialRecord.of(retry).run_id


@pytest.mark.parametrize("phase", ["Selecting the champion", "Drawing the study's views"])
def test_a_signal_after_the_last_trial_exits_130_with_the_command_that_finishes(tmp_path,
                                                                                phase):
    process = hpstudy("optimize", "--study", "digits_mlp", "--trials", "2", *FAST, cwd=tmp_path,
                      env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in process.stdout:  # the line said once the trials are over
        if line.startswith(phase):
            process.send_signal(signal.SIGTERM)
            if phase.startswith("Selecting"):  # a second one, as an impatient user sends it,
                time.sleep(0.3)  # waits too: a version is never left without its alias
                process.send_signal(signal.SIGTERM)
            break
    code, _, err = finish(process)
    assert code == 130, err
    registry = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert [m.name for m in registry.search_registered_models()] in ([], ["digits_mlp"])  # no lock
    versions = registry.search_model_versions("name = 'digits_mlp'")
    assert all(registry.get_model_version(v.name, v.version).aliases for v in versions)
    finishing = ("hpstudy optimize --study digits_mlp --set train.epochs=2 --set "
                 "'search.width={choices=[16, 32]}' --set search.depth=1 --trials 0")
    assert "interrupted while" in err and finishing in err and "Traceback" not in err
    study, client, experiment = stores_in(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2  # both kept
    check_consistent(study, client, experiment)  # nothing RUNNING
    for trial in study.trials:  # and no figure lost: the writer finished before the signal
        run_id = TrialRecord.of(trial).run_id  # was acted on
        assert {CURVES_PNG, WEIGHTS_PNG, CONFUSION_PNG} <= {
            a.path for a in client.list_artifacts(run_id)}, trial.number
        assert FIGURES_ERROR_TAG not in client.get_run(run_id).data.tags
    code, out, err = finish(hpstudy(*shlex.split(finishing)[1:], cwd=tmp_path))
    assert code == 0 and "Champion" in out, err
    study, client, experiment = stores_in(tmp_path)
    assert len(study.trials) == 2  # no new trial: the job finished
    assert len(client.search_model_versions("name = 'digits_mlp'")) == 1  # registered once
    champion = client.get_model_version_by_alias("digits_mlp", "champion")
    assert champion.run_id == TrialRecord.of(study.best_trial).run_id
    check_consistent(study, client, experiment)


def test_one_impossible_width_fails_alone(tmp_path, write_study):
    path = write_study(replace={"width = { choices = [16, 32] }":
                                "width = { choices = [16, 2000000] }"})
    code, out, err = finish(hpstudy(
        "optimize", "--study", str(path), "--trials", "4", "--set", "search.depth=2",
        "--set", "search.lr=0.1", "--set", "search.momentum=0.5",
        "--set", "sampler.name=brute_force", cwd=tmp_path))  # every width, so both are tried
    assert code == 0, err
    study, client, experiment = stores_in(tmp_path, "tiny")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all(t.params["width"] == 2_000_000 for t in failed)
    assert any(t.state == TrialState.COMPLETE for t in study.trials)
    run = client.get_run(TrialRecord.of(failed[0]).run_id)
    assert run.info.status == "FAILED" and "allocate" in run.data.tags[REASON_TAG]
    assert "Champion: trial" in out
    check_consistent(study, client, experiment)


def test_four_concurrent_selects_register_once(tmp_path):
    code, out, err = finish(hpstudy("optimize", "--study", "digits_mlp", "--trials", "3", *FAST,
                                    "--set", "max_val_loss=0.0001", cwd=tmp_path))
    assert code == 3 and "No champion" in out, err  # nothing qualified: nothing registered
    selects = [hpstudy("select", "--study", "digits_mlp", *FAST, cwd=tmp_path) for _ in range(4)]
    results = finish_all(selects, [0, 0, 0, 0])
    _, client, _ = stores_in(tmp_path)
    assert len(client.search_model_versions("name = 'digits_mlp'")) == 1
    assert all("version 1" in out for _, out, _ in results)
    assert sum("test accuracy" in out for _, out, _ in results) == 1  # the test set, once
    assert not client.search_registered_models("name LIKE '%lock%'")


@pytest.mark.parametrize(("flags", "message"), [
    (["--storage", "mlruns/optuna.db"], "--storage mlruns/optuna.db: expected a database URL"),
    (["--storage", "sqlite:///mlrun/optuna.db"], "the folder mlrun does not exist"),
    (["--storage", "mysql://u@127.0.0.1/x"], "the mysql driver is not installed"),
    (["--storage", "postgresql://u@127.0.0.1:9/x"], "cannot connect"),
    (["--tracking-uri", "http://127.0.0.1:9"], "no MLflow tracking server answers there"),
    (["--tracking-uri", "sqlite:////proc/hpstudy/mlflow.db", "--create"], "cannot write in"),
    (["--tracking-uri", "file:///tmp/x"], "expected sqlite:///PATH.db, http(s)"),
    (["--device", "gpu"], "--device gpu: not a device"),
    (["--jobs", "0"], "--jobs 0: expected an integer >= 1"),
], ids=["no-scheme", "mistyped-folder", "no-driver", "no-server", "no-tracking-server",
        "unwritable", "unknown-scheme", "bad-device", "no-jobs"])
def test_bad_stores_and_devices_exit_2_and_create_nothing(tmp_path, flags, message):
    code, out, err = finish(hpstudy("optimize", "--study", "digits_mlp", *flags, cwd=tmp_path))
    assert code == 2 and message in err, err
    assert "Traceback" not in err and out == ""
    assert list(tmp_path.iterdir()) == []  # no mlruns/, no database, no study


def test_many_machines_on_postgresql_and_an_mlflow_server(tmp_path):
    """4 workers in 2 working folders ("machines") complete one 60-trial study."""
    with postgres_server(tmp_path / "pg") as url:
        optuna_url, mlflow_url = create_database(url, "optuna"), create_database(url, "mlflow")
        with mlflow_server(mlflow_url, tmp_path / "artifacts") as server:
            stores = ["--storage", optuna_url, "--tracking-uri", server]
            machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
            calls = []
            for machine in machines:
                machine.mkdir()
                calls.append(hpstudy("optimize", "--study", "digits_mlp", "--trials", "30",
                                     "--jobs", "2", *FAST, *stores, cwd=machine))
            finish_all(calls, [0, 0])
            study = optuna.load_study(study_name="digits_mlp", storage=optuna_url)
            assert sorted(t.number for t in study.trials) == list(range(60))
            client = MlflowClient(server)
            experiment = client.get_experiment_by_name("digits_mlp").experiment_id
            check_consistent(study, client, experiment)
            assert len(client.search_runs([experiment], f"tags.`{TRIAL_TAG}` != ''",
                                          max_results=1000)) == 60
            champion = client.get_model_version_by_alias("digits_mlp", "champion")
            assert champion.run_id == TrialRecord.of(study.best_trial).run_id
            assert all(not any(machine.iterdir()) for machine in machines)  # nothing local
