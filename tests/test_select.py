"""Selection: the champion is the best trial by validation loss and predicts as logged."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from hpstudy import data as datasets
from hpstudy.errors import UserError
from hpstudy.runner import select_only
from hpstudy.select import best_trial


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
    from hpstudy.config import load_study

    with pytest.raises(UserError, match="Run `hpstudy optimize --study tiny` first"):
        select_only(load_study(str(write_study())), stores)


def test_best_trial_skips_failed_and_non_finite_trials():
    import optuna

    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=math.inf, user_attrs={"model_uri": "a"}))
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"model_uri": "b"}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    assert best_trial(study).user_attrs["model_uri"] == "b"
