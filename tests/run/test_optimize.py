"""A whole study against real stores: what a user sees in MLflow and Optuna afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from hpstudy.errors import ConfigError
from hpstudy.run.optimize import load_data
from hpstudy.search.objective import CONFUSION_PNG, CURVES_PNG, SUMMARY_TXT, WEIGHTS_PNG
from hpstudy.search.record import ATTEMPT_TAG, STATE_TAG, TRIAL_TAG, TrialRecord
from hpstudy.spec.study_file import load_study
from hpstudy.tracking.runs import DELETED_TAG


def runs(stores, config):
    client = MlflowClient(stores.tracking_uri)
    experiment = client.get_experiment_by_name(config.name)
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def test_one_parent_run_per_call_and_one_child_per_trial(finished_study):
    config, stores, first, second = finished_study
    _, all_runs = runs(stores, config)
    parents = [r for r in all_runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    assert {r.info.run_id for r in parents} == {first.run_id, second.run_id}
    assert len(children) == 5
    per_parent = {p: sum(c.data.tags["mlflow.parentRunId"] == p for c in children)
                  for p in (first.run_id, second.run_id)}
    assert per_parent == {first.run_id: 3, second.run_id: 2}
    assert all(r.info.status == "FINISHED" for r in all_runs)


def test_each_trial_run_has_params_epoch_metrics_figures_and_a_model(finished_study, tmp_path):
    config, stores, _, second = finished_study
    client, all_runs = runs(stores, config)
    trials = {t.number: t for t in second.study.trials}
    for run in (r for r in all_runs if "mlflow.parentRunId" in r.data.tags):
        trial = trials[int(run.data.params["trial"])]
        params = run.data.params
        for name, value in trial.params.items():  # every suggested parameter, as suggested
            assert params[name] == str(value)
        for name in ("epochs", "batch_size", "optimizer", "dataset", "architecture", "device",
                     "weight_decay", "dropout", "n_params"):  # and the fixed ones
            assert name in params
        assert params["device"] == "cpu"
        for metric in ("train_loss", "train_acc", "val_loss", "val_acc", "grad_norm"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert steps == [1, 2, 3], metric  # one value per epoch, step = epoch
        assert run.data.metrics["val_loss"] == trial.value
        record = TrialRecord.of(trial)
        assert 0 < run.data.metrics["logging_seconds"] == record.logging_seconds
        assert run.data.tags[STATE_TAG] == "complete" and run.data.tags[ATTEMPT_TAG] == "1"
        assert run.data.tags[TRIAL_TAG] == str(trial.number) == run.data.params["trial"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {CURVES_PNG, WEIGHTS_PNG, CONFUSION_PNG, SUMMARY_TXT} <= artifacts
        for name in (CURVES_PNG, WEIGHTS_PNG, CONFUSION_PNG):  # valid PNGs of sensible size
            png = Path(client.download_artifacts(run.info.run_id, name, str(tmp_path)))
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert record.weights_uri == f"runs:/{run.info.run_id}/weights.pt"
        best_three = sorted(t.value for t in trials.values())[:3]  # keep_models = 3
        assert ("weights.pt" in artifacts) == (trial.value in best_three)
        assert (DELETED_TAG in run.data.tags) == (trial.value not in best_three)
        assert set(record.timings) == {"train", "validate", "metrics", "model", "figures"}


def test_running_optimize_twice_continues_one_study(finished_study):
    config, stores, _, second = finished_study
    assert optuna.get_all_study_names(stores.storage) == [config.name]
    study = optuna.load_study(study_name=config.name, storage=stores.storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 5  # no replays
    best = min(study.trials, key=lambda t: t.value)
    assert second.selection.decision.trial == best.number  # it saw trials of both calls


def test_parent_runs_keep_the_study_file_the_decision_and_test_metrics(finished_study):
    config, stores, first, second = finished_study
    client = MlflowClient(stores.tracking_uri)
    moved, kept = client.get_run(first.run_id), client.get_run(second.run_id)
    assert moved.data.tags["champion_moved"] == "True"  # first call: there was no champion
    assert moved.data.metrics["test_acc"] == first.selection.test_acc
    assert moved.data.metrics["test_loss"] == first.selection.test_loss
    assert moved.data.tags["best_trial"] == str(first.selection.decision.trial)
    assert kept.data.tags["champion_moved"] == "False"  # second call: its best was no better
    assert "test_acc" not in kept.data.metrics  # the test set is touched only when it moves
    stored = client.download_artifacts(second.run_id, f"study/{config.path.name}")
    assert Path(stored).read_text() == config.path.read_text()


def test_runs_say_who_ran_what_with_which_versions_as_mlflow_shows_it(finished_study):
    import getpass
    import importlib.metadata

    _, stores, first, _ = finished_study
    client = MlflowClient(stores.tracking_uri)
    parent = client.get_run(first.run_id).data.tags
    assert parent["hpstudy.version.optuna"] == optuna.__version__
    assert parent["hpstudy.version.torch"] == importlib.metadata.version("torch")
    assert {"hpstudy.version.mlflow", "hpstudy.version.hpstudy"} <= set(parent)
    trial = client.get_run(TrialRecord.of(first.study.trials[0]).run_id).data.tags
    for tags in (parent, trial):  # the UI's "Source" and "User" columns
        assert tags["mlflow.user"] == getpass.getuser() and tags["mlflow.source.name"]


def test_the_champion_is_an_mlflow_3_logged_model_with_its_datasets(finished_study):
    config, stores, first, _ = finished_study
    client = MlflowClient(stores.tracking_uri)
    experiment = client.get_experiment_by_name(config.name).experiment_id
    champion = client.get_model_version_by_alias(config.name, "champion")
    logged = client.search_logged_models([experiment])  # what the Models tab lists
    assert champion.source in {f"models:/{m.model_id}" for m in logged}  # not a runs:/ path
    model = client.get_logged_model(champion.source.removeprefix("models:/"))
    assert model.source_run_id == champion.run_id and model.status.name == "READY"
    linked = {(m.key, m.dataset_name) for m in model.metrics}
    assert {("val_loss", "digits"), ("test_loss", "digits"), ("test_acc", "digits")} <= linked
    for trial in first.study.trials:  # every trial run: its training and validation data
        inputs = client.get_run(TrialRecord.of(trial).run_id).inputs.dataset_inputs
        contexts = {i.tags[0].value: i.dataset for i in inputs}
        assert {"training", "validation"} <= set(contexts)
        assert json.loads(contexts["training"].profile)["num_rows"] > 0


def test_a_trial_run_lasts_as_long_as_its_trial_and_the_call_has_system_metrics(finished_study):
    _, stores, first, _ = finished_study
    client = MlflowClient(stores.tracking_uri)
    for trial in first.study.trials:
        run = client.get_run(TrialRecord.of(trial).run_id).info
        lasted = (trial.datetime_complete - trial.datetime_start).total_seconds()
        assert abs((run.end_time - run.start_time) / 1000 - lasted) < 1.0  # not the writer's
    parent = client.get_run(first.run_id).data.metrics
    assert any(key.startswith("system/cpu_utilization") for key in parent), sorted(parent)


def test_an_architecture_that_cannot_fit_the_input_is_named_as_such(write_study):
    lenet_on_8x8 = load_study(str(write_study(replace={
        'architecture = "mlp"': 'architecture = "lenet5"', "width = { choices = [16, 32] }":
        "width = 6", "depth = { low = 1, high = 2 }": "depth = 2"})))
    with pytest.raises(ConfigError, match=r"model: expected an architecture and options that fit"):
        load_data(lenet_on_8x8)


def test_a_timeout_alone_runs_as_many_trials_as_fit(write_study, stores):
    from hpstudy.run.optimize import plan

    config = load_study(str(write_study()))
    assert plan(config, stores, timeout=5).trials is None  # not the study file's 3
    assert plan(config, stores).trials == 3 and plan(config, stores, trials=7).trials == 7


def test_each_call_leaves_the_study_views_table_and_report_on_its_parent_run(finished_study,
                                                                            tmp_path):
    import base64
    import csv

    _, stores, _, second = finished_study
    client = MlflowClient(stores.tracking_uri)
    run = client.get_run(second.run_id)
    files = {a.path for a in client.list_artifacts(second.run_id, "study")}
    for name in ("optimization_history", "intermediate_values", "parallel_coordinate",
                 "param_importances", "slice", "lr_momentum", "size_accuracy", "samples"):
        path = Path(client.download_artifacts(second.run_id, f"study/{name}.png", str(tmp_path)))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert {"study/trials.csv", "study/report.html"} <= files
    table = Path(client.download_artifacts(second.run_id, "study/trials.csv", str(tmp_path)))
    with table.open() as rows:
        assert len(list(csv.DictReader(rows))) == 5
    page = Path(client.download_artifacts(second.run_id, "study/report.html", str(tmp_path)))
    assert page.read_text().count("data:image/png;base64,") >= 8  # every view above
    samples = Path(client.download_artifacts(second.run_id, "study/samples.png", str(tmp_path)))
    assert base64.b64encode(samples.read_bytes()).decode() in page.read_text()  # the writer's
    # picture, drawn while the first trials trained, is the report's: not drawn twice
    best = second.study.best_trial
    assert run.data.params["best.trial"] == str(best.number)
    assert all(run.data.params[f"best.{k}"] == str(v) for k, v in best.params.items())
    assert run.data.tags["hpstudy.edge_warning"] == "none"  # 5 trials: too few to tell (10)
