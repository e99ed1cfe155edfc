"""Selection: the champion is the best trial by validation loss and predicts as logged."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hpstudy import data as datasets
from hpstudy.errors import NoChampion, UserError
from hpstudy.run.optimize import select_only
from hpstudy.run.select import best_trial, floor
from hpstudy.search.record import TrialRecord


def test_champion_alias_points_at_the_lowest_validation_loss(finished_study):
    config, stores, _, second = finished_study
    client = MlflowClient(stores.tracking_uri)
    experiment = client.get_experiment_by_name(config.name)
    children = [r for r in client.search_runs([experiment.experiment_id])
                if "mlflow.parentRunId" in r.data.tags]
    lowest = min(children, key=lambda r: r.data.metrics["val_loss"])  # what a user sorts by
    champion = client.get_model_version_by_alias(config.name, "champion")
    assert champion.run_id == lowest.info.run_id
    assert champion.tags["trial"] == lowest.data.params["trial"]
    assert champion.tags["study"] == config.name
    assert float(champion.tags["val_loss"]) == pytest.approx(lowest.data.metrics["val_loss"])
    assert champion.tags["run_id"] == lowest.info.run_id
    assert second.selection.version == str(champion.version)


def test_optuna_dashboard_reads_the_metric_name_and_the_champion_from_the_study(finished_study):
    import optuna

    config, stores, _, second = finished_study
    study = optuna.load_study(study_name=config.name, storage=stores.storage)  # as it reads it
    assert study.metric_names == ["val_loss"]
    champion = study.user_attrs["hpstudy.champion"]
    assert champion["model"] == f"models:/{config.name}@champion"
    assert champion["version"] == second.selection.version
    registered = MlflowClient(stores.tracking_uri).get_model_version_by_alias(config.name,
                                                                              "champion")
    assert str(champion["trial"]) == registered.tags["trial"]
    assert champion["test_acc"] == pytest.approx(float(registered.tags["test_acc"]))
    experiment = MlflowClient(stores.tracking_uri).get_experiment_by_name(config.name)
    assert f"#/experiments/{experiment.experiment_id}/runs?" in champion["mlflow_runs"]
    for trial in study.trials:  # each trial's outcome as its own attribute, not inside a blob
        assert trial.user_attrs["hpstudy.state"] == TrialRecord.of(trial).state


def test_loading_the_champion_reproduces_the_logged_test_accuracy(finished_study):
    config, stores, first, _ = finished_study
    mlflow.set_tracking_uri(stores.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{config.name}@champion")
    test = datasets.load(config.data.name, config.data.options).test
    grey = test.x.numpy()[:, 0]  # images as people have them: H x W, uint8
    predicted = model.predict({"image": list(grey)})
    accuracy = float(np.mean(predicted["class_index"].to_numpy() == test.y.numpy()))
    champion = MlflowClient(stores.tracking_uri).get_model_version_by_alias(config.name,
                                                                          "champion")
    assert accuracy == pytest.approx(float(champion.tags["test_acc"]), abs=1e-6)
    assert accuracy == pytest.approx(first.selection.test_acc)  # the call that made it champion
    assert accuracy > 0.8


def test_select_alone_keeps_the_same_champion_version(finished_study):
    config, stores, _, second = finished_study
    again = select_only(config, stores)
    assert not again.decision.moves and "champion already" in again.decision.reason
    assert (again.decision.trial, again.version) == (second.selection.decision.trial,
                                                     second.selection.version)
    versions = MlflowClient(stores.tracking_uri).search_model_versions(f"name = '{config.name}'")
    assert len(versions) == len({v.source for v in versions})  # no duplicate registrations


def test_select_without_a_study_says_to_optimize_first(write_study, stores):
    from hpstudy.spec.study_file import load_study

    with pytest.raises(UserError, match="Run `hpstudy optimize --study tiny` first"):
        select_only(load_study(str(write_study())), stores)


def done(number: int, value: float, val_acc: float, weights_uri: str):
    """A completed trial with hpstudy's record, as the objective leaves it."""
    import optuna

    from hpstudy.search.record import Process, TrialRecord

    record = TrialRecord(number, 1, Process("h", 1, 0), state="complete",
                         weights_uri=weights_uri,
                         val_acc=val_acc)
    return optuna.trial.create_trial(value=value, user_attrs=record.attrs())


def test_best_trial_skips_failed_and_non_finite_trials():
    import optuna

    study = optuna.create_study()
    study.add_trial(done(0, math.inf, 0.9, "a"))
    study.add_trial(done(1, 0.5, 0.9, "b"))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    assert TrialRecord.of(best_trial(study)).weights_uri == "b"


def test_a_champion_must_beat_a_constant_predictor():
    import optuna
    import torch

    from hpstudy.data import Split

    val = Split(torch.zeros(10, 2), torch.tensor([0] * 5 + [1] * 3 + [2] * 2))  # 50/30/20
    rule = floor(val)
    assert rule.min_val_acc == 0.5
    assert rule.max_val_loss == pytest.approx(1.0297, abs=1e-4)  # the class frequencies' entropy
    study = optuna.create_study()
    study.add_trial(done(0, 47.0, 0.9, "exploded"))  # a loss worse than guessing
    study.add_trial(done(1, 0.9, 0.5, "chance"))  # no better than the most frequent class
    with pytest.raises(NoChampion, match="beats a constant predictor"):
        best_trial(study, rule)
    study.add_trial(done(2, 0.95, 0.6, "fine"))
    assert TrialRecord.of(best_trial(study, rule)).weights_uri == "fine"
    assert floor(val, "none").admits(47.0, 0.1)
    assert not floor(val, "chance", max_val_loss=0.5).admits(0.9, 0.9)
    regression = floor(Split(torch.zeros(4, 1), torch.tensor([[0.0], [1.0], [0.0], [1.0]])))
    assert regression.max_val_loss == pytest.approx(0.25) and math.isnan(regression.min_val_acc)


@pytest.mark.slow
def test_the_gate_keeps_a_better_champion_and_moves_for_a_better_model(write_study, tmp_path):
    """Three fresh studies into one registry: good, then worse (kept), then better (moves)."""
    from conftest import run_study

    from hpstudy.run.optimize import Stores
    from hpstudy.spec.study_file import load_study

    path = str(write_study())
    tracking = f"sqlite:///{tmp_path}/mlflow.db"

    def run(storage: str, *overrides: str):
        config = load_study(path, overrides)
        return run_study(config, Stores(f"sqlite:///{tmp_path}/{storage}", tracking),
                         trials=1, device="cpu")

    client = MlflowClient(tracking)
    first = run("a.db")
    assert first.selection.decision.moves and first.selection.version == "1"

    worse = run("b.db", "search.lr=0.001", "search.momentum=0.0", "train.epochs=1",
                "champion_floor=none")  # worse, yet kept as a candidate
    assert not worse.selection.decision.moves
    assert "not better than the champion" in worse.selection.decision.reason
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == "1"
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("tiny", "previous")

    config = load_study(path, ["search.lr=0.1", "search.momentum=0.9", "train.epochs=12"])
    stores = Stores(f"sqlite:///{tmp_path}/c.db", tracking)
    optimize_calls = len(client.search_runs([client.get_experiment_by_name("tiny")
                                             .experiment_id]))
    better = run_study(config, stores, trials=1, device="cpu")
    assert better.selection.decision.moves, better.selection.decision.reason
    assert better.selection.decision.current_version == "1"
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == \
        better.selection.version == "2"
    assert str(client.get_model_version_by_alias("tiny", "previous").version) == "1"
    assert len(client.search_runs([client.get_experiment_by_name("tiny").experiment_id])) == \
        optimize_calls + 2  # one parent and one trial run


def test_dry_run_says_what_would_change_and_writes_nothing(finished_study):
    config, stores, _, _ = finished_study
    client = MlflowClient(stores.tracking_uri)
    experiment = client.get_experiment_by_name(config.name).experiment_id
    runs_before = len(client.search_runs([experiment]))
    decision = select_only(config, stores, dry_run=True)
    assert not decision.moves and decision.current_version is not None
    assert len(client.search_runs([experiment])) == runs_before


@pytest.mark.slow
def test_only_the_best_k_trials_keep_their_weights_and_the_champion_still_serves(write_study,
                                                                                stores):
    from conftest import run_study
    from optuna.trial import TrialState

    from hpstudy.run.select import keep_best_models
    from hpstudy.spec.study_file import load_study
    from hpstudy.tracking.artifacts import load_predictor
    from hpstudy.tracking.runs import DELETED_TAG, Tracker

    config = load_study(str(write_study()), ["keep_models=2", "trials=6"])
    outcome = run_study(config, stores, device="cpu")
    done = sorted((t for t in outcome.study.trials if t.state == TrialState.COMPLETE),
                  key=lambda t: t.value)
    assert len(done) == 6 and sorted(outcome.cleanup.trials) == sorted(
        t.number for t in done[2:])
    assert outcome.cleanup.freed_bytes > 0
    client = MlflowClient(stores.tracking_uri)
    for rank, trial in enumerate(done):
        run_id = TrialRecord.of(trial).run_id
        files = {a.path for a in client.list_artifacts(run_id)}
        assert ("weights.pt" in files) == (rank < 2), (rank, files)
        assert "curves.png" in files  # pictures always stay
        assert (DELETED_TAG in client.get_run(run_id).data.tags) == (rank >= 2)
    tracker = Tracker(stores.tracking_uri, config.name)
    again = keep_best_models(outcome.study, tracker, 2)
    assert again.trials == [] and again.freed_bytes == 0  # nothing left to delete
    model = load_predictor(f"models:/{config.name}@champion", stores.tracking_uri)
    image = datasets.load("digits", config.data.options).test.x[0, 0].numpy()
    assert len(model.predict({"image": [image.tolist()]})) == 1
