"""MLflow: one experiment per study, runs by id, models registered once per source."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mlflow.entities import LoggedModelStatus

from hpstudy.models import DataShape, MLPOptions, build_model
from hpstudy.spec.study_file import ModelConfig
from hpstudy.tracking.artifacts import load_network, load_predictor
from hpstudy.tracking.runs import Tracker


@pytest.mark.slow
def test_an_experiment_is_created_once_with_artifacts_beside_the_database(stores, tmp_path):
    first = Tracker(stores.tracking_uri, "study_a")
    again = Tracker(stores.tracking_uri, "study_a")
    assert first.experiment_id == again.experiment_id
    location = first.client.get_experiment(first.experiment_id).artifact_location
    assert location == (tmp_path / "artifacts" / "study_a").as_uri()


@pytest.mark.slow
def test_a_deleted_experiment_is_restored(stores):
    tracker = Tracker(stores.tracking_uri, "study_b")
    tracker.client.delete_experiment(tracker.experiment_id)
    again = Tracker(stores.tracking_uri, "study_b")
    assert again.client.get_experiment(again.experiment_id).lifecycle_stage == "active"


@pytest.mark.slow
def test_a_logged_model_has_a_signature_loads_and_registers_once(stores):
    tracker = Tracker(stores.tracking_uri, "study_c")
    run_id = tracker.start_run("trial-0", params={"lr": 0.1})
    torch.manual_seed(0)
    model = build_model(ModelConfig("mlp", MLPOptions()), DataShape((1, 8, 8), 10, (0.3,), (0.4,)),
                        {"width": 8, "depth": 1})
    example = np.zeros((2, 1, 8, 8), dtype=np.uint8)
    uri = tracker.log_model(run_id, model, example, classes=[str(c) for c in range(10)], step=3)
    tracker.end_run(run_id)
    assert tracker.client.get_run(run_id).data.tags["model_uri"] == uri
    batch = torch.randint(0, 255, (5, 1, 8, 8), dtype=torch.uint8)
    with torch.no_grad():  # the exported network computes what the trained one did
        torch.testing.assert_close(load_network(uri, stores.tracking_uri)(batch),
                                   model.eval()(batch))
    served = load_predictor(uri, stores.tracking_uri)
    assert served.metadata.get_input_schema().input_names() == ["image"]
    assert served.metadata.get_output_schema().input_names() == [
        "class_index", "class_name", "probabilities"]
    assert served.input_example is not None  # a base64 PNG, as a client sends it
    logged = tracker.client.search_logged_models([tracker.experiment_id])  # the Models tab's
    assert [f"models:/{m.model_id}" for m in logged] == [uri]
    assert (logged[0].source_run_id, logged[0].name, logged[0].status) == (
        run_id, "trial-0", LoggedModelStatus.READY)
    assert logged[0].params["lr"] == "0.1"
    outputs = tracker.client.get_run(run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(logged[0].model_id, 3)]
    first = tracker.register("study_c", uri, run_id, {"trial": 0})
    assert tracker.register("study_c", uri, run_id, {"trial": 0}) == first == "1"
    tracker.set_alias("study_c", "champion", first)
    version = tracker.version_by_alias("study_c", "champion")
    assert (str(version.version), version.source) == ("1", uri)  # from the LoggedModel
    model = tracker.client.get_logged_model(logged[0].model_id)
    assert json.loads(model.tags["mlflow.modelVersions"]) == [{"name": "study_c", "version": 1}]
    served = load_predictor("models:/study_c@champion", stores.tracking_uri)
    assert served.metadata.model_id == logged[0].model_id
    assert tracker.version_by_alias("study_c", "previous") is None


@pytest.mark.slow
def test_model_metrics_are_linked_to_the_model_and_the_dataset(stores):
    from hpstudy.data import Split
    from hpstudy.tracking.packaging import dataset_input

    tracker = Tracker(stores.tracking_uri, "study_d")
    run_id = tracker.start_run("trial-0")
    split = Split(torch.zeros(6, 1, 8, 8, dtype=torch.uint8), torch.arange(6) % 2)
    tracker.log_data(run_id, [dataset_input("digits", "train", split, "digits")])
    model = build_model(ModelConfig("mlp", MLPOptions()), DataShape((1, 8, 8), 2, (0.3,), (0.4,)),
                        {"width": 4, "depth": 1})
    uri = tracker.log_model(run_id, model, np.zeros((2, 1, 8, 8), dtype=np.uint8), ["a", "b"], 1)
    test = dataset_input("digits", "test", split.take([0, 1]), "digits")
    tracker.log_model_metrics(run_id, uri, {"test_loss": 0.25, "test_acc": 0.5}, test)
    tracker.end_run(run_id)
    inputs = tracker.client.get_run(run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest, i.tags[0].value) for i in inputs] == [
        ("digits", split.digest(), "training"), ("digits", split.take([0, 1]).digest(), "testing")]
    assert split.digest() != split.take([0, 1]).digest()
    model = tracker.client.get_logged_model(uri.removeprefix("models:/"))
    linked = {m.key: (m.value, m.dataset_name, m.dataset_digest) for m in model.metrics}
    assert linked == {"test_loss": (0.25, "digits", test.dataset.digest),
                      "test_acc": (0.5, "digits", test.dataset.digest)}


def test_an_epochs_warm_up_is_logged_only_when_the_step_had_one(stores):
    from hpstudy.train.loop import EpochMetrics

    tracker = Tracker(stores.tracking_uri, "study_warmup")
    run_id = tracker.start_run("trial-0")
    tracker.log_epochs(run_id, [EpochMetrics(1, 1.0, 0.5, 1.1, 0.4, 3.0, warmup_seconds=2.5),
                                EpochMetrics(2, 0.9, 0.6, 1.0, 0.5, 0.4)])
    history = tracker.client.get_metric_history(run_id, "warmup_seconds")
    assert [(m.step, m.value) for m in history] == [(1, 2.5)]  # compiling or capturing
