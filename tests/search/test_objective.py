"""Trials end in MLflow as they end in Optuna: finished, pruned = killed, failed."""

from __future__ import annotations

import statistics

import optuna
import pytest
import torch
from conftest import run_study

from hpstudy.run.optimize import load_data
from hpstudy.search.objective import (
    CURVES_PNG,
    WEIGHTS_PNG,
    Objective,
    build_network,
    hyperparameters,
    recipe,
)
from hpstudy.search.record import REASON_TAG, STATE_TAG, TrialRecord
from hpstudy.spec.study_file import load_study
from hpstudy.tracking.artifacts import load_weights
from hpstudy.tracking.runs import Tracker

pytestmark = pytest.mark.slow  # real processes, servers or whole studies


@pytest.fixture
def setup(write_study, stores):
    """An objective over the tiny study, its lr range wide enough to diverge."""
    wide = {"low = 0.01, high = 0.3": "low = 0.01, high = 1e9"}
    config = load_study(str(write_study(replace=wide)))
    tracker = Tracker(stores.tracking_uri, config.name)
    parent = tracker.start_run("parent")
    cpu = torch.device("cpu")
    return tracker, Objective(config, load_data(config), tracker, parent, cpu)


SANE = {"lr": 0.1, "momentum": 0.5, "width": 16, "depth": 1}


def run_of(tracker: Tracker, trial: optuna.trial.FrozenTrial):
    return tracker.client.get_run(TrialRecord.of(trial).run_id)


def artifacts(tracker: Tracker, run) -> set[str]:
    return {a.path for a in tracker.client.list_artifacts(run.info.run_id)}


def test_a_pruned_trial_is_a_killed_run_with_its_curves_but_no_model(setup):
    tracker, objective = setup
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # prunes all
    study.enqueue_trial(SANE)
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    run = run_of(tracker, trial)
    assert run.info.status == "KILLED"
    assert {CURVES_PNG, WEIGHTS_PNG} <= artifacts(tracker, run)
    assert TrialRecord.of(trial).weights_uri == ""
    assert "weights.pt" not in artifacts(tracker, run)
    assert run.data.tags[STATE_TAG] == "pruned"
    assert [m.step for m in tracker.client.get_metric_history(run.info.run_id, "val_loss")] == [1]


def test_a_diverged_trial_is_pruned_tagged_and_keeps_its_last_epoch(setup):
    tracker, objective = setup
    study = optuna.create_study()
    study.enqueue_trial({"lr": 0.3, "momentum": 0.9, "width": 32, "depth": 2})
    study.enqueue_trial({"lr": 0.01, "momentum": 0.0, "width": 16, "depth": 1})
    study.enqueue_trial({"lr": 1e9, "momentum": 0.9, "width": 32, "depth": 2})
    study.optimize(objective, n_trials=3)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]  # never selectable; TPE sees it as bad
    diverged = study.trials[2]
    record = TrialRecord.of(diverged)
    assert record.state == "diverged" and "non-finite" in record.fail_reason
    run = run_of(tracker, diverged)
    assert run.info.status == "KILLED"
    assert run.data.tags[STATE_TAG] == "diverged" and "non-finite" in run.data.tags[REASON_TAG]
    history = tracker.client.get_metric_history(run.info.run_id, "train_loss")
    assert history[-1].step == int(record.fail_reason.rsplit(" ", 1)[1])  # the diverging epoch
    assert CURVES_PNG in artifacts(tracker, run)
    assert run_of(tracker, study.trials[0]).info.status == "FINISHED"


def test_a_trial_that_raises_fails_alone_with_its_reason(write_study, stores):
    huge = {"width = { choices = [16, 32] }": "width = { choices = [16, 2000000] }"}
    config = load_study(str(write_study(replace=huge)))
    tracker = Tracker(stores.tracking_uri, config.name)
    objective = Objective(config, load_data(config), tracker, tracker.start_run("parent"),
                          torch.device("cpu"))
    study = optuna.create_study()
    study.enqueue_trial(SANE | {"width": 2_000_000, "depth": 2})  # 16 TB of weights
    study.enqueue_trial(SANE)
    study.optimize(objective, n_trials=2, catch=(Exception,))
    failed, done = study.trials
    assert failed.state == optuna.trial.TrialState.FAIL
    assert done.state == optuna.trial.TrialState.COMPLETE
    run = run_of(tracker, failed)
    assert run.info.status == "FAILED" and run.data.tags[STATE_TAG] == "failed"
    assert "allocate" in run.data.tags[REASON_TAG]
    assert TrialRecord.of(failed).fail_reason == run.data.tags[REASON_TAG]


def test_a_crash_inside_training_fails_its_run_and_reaches_the_caller(setup):
    tracker, objective = setup
    objective.device = torch.device("meta")  # tensors without data: training cannot finish
    study = optuna.create_study()
    study.enqueue_trial(SANE)
    with pytest.raises((NotImplementedError, RuntimeError)):
        study.optimize(objective, n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert run_of(tracker, study.trials[0]).info.status == "FAILED"


def test_searched_train_and_model_keys_reach_training_and_the_trial_run(write_study, stores):
    searched = {"batch_size": "{choices=[32, 128]}", "optimizer": '{choices=["sgd", "adam"]}',
                "schedule": '{choices=["cosine", "one-cycle"]}',
                "activation": '{choices=["relu", "tanh"]}'}
    config = load_study(str(write_study()), ["train.epochs=2", "sampler.name=random",
                                             *(f"search.{k}={v}" for k, v in searched.items())])
    outcome = run_study(config, stores, trials=3, device="cpu")
    tracker = Tracker(stores.tracking_uri, config.name)
    data = load_data(config)
    for trial in outcome.study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        params = run_of(tracker, trial).data.params
        assert {k: params[k] for k in searched} == {k: str(trial.params[k]) for k in searched}
        assert params["epochs"] == "2" and "model.activation" not in params
        hp = hyperparameters(config, trial.params)
        how = recipe(config, hp)
        assert (how.batch_size, how.optimizer, how.schedule) == tuple(
            trial.params[k] for k in ("batch_size", "optimizer", "schedule"))
        tanh = any(isinstance(m, torch.nn.Tanh) for m in build_network(config, data, hp).modules())
        assert tanh == (trial.params["activation"] == "tanh")


def one_trial(write_study, stores, settings: list[str]) -> tuple[Tracker, optuna.trial.FrozenTrial]:
    """The tiny study with `settings`, one trial of SANE values (dropout 0.2: random draws)."""
    config = load_study(str(write_study()), ["search.dropout=0.2", *settings])
    tracker = Tracker(stores.tracking_uri, config.name)
    objective = Objective(config, load_data(config), tracker, tracker.start_run("parent"),
                          torch.device("cpu"))
    study = optuna.create_study()
    study.enqueue_trial(SANE)
    study.optimize(objective, n_trials=1)
    return tracker, study.trials[0]


def logged(tracker: Tracker, trial: optuna.trial.FrozenTrial, name: str) -> list[float]:
    history = tracker.client.get_metric_history(TrialRecord.of(trial).run_id, name)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def test_seeds_report_the_mean_over_seeds_and_keep_the_best_seeds_weights(write_study, stores):
    tracker, trial = one_trial(write_study, stores, ["train.seeds=3", "train.seed=4"])
    alone = [one_trial(write_study, stores, [f"train.seed={seed}"])[1] for seed in (4, 5, 6)]
    per_epoch = [[t.intermediate_values[epoch] for t in alone] for epoch in (1, 2, 3)]
    assert list(trial.intermediate_values.values()) == pytest.approx(
        [statistics.fmean(seeds) for seeds in per_epoch], rel=1e-12)  # what Optuna prunes on
    assert trial.value == trial.intermediate_values[3]
    assert logged(tracker, trial, "val_loss") == list(trial.intermediate_values.values())
    assert logged(tracker, trial, "val_loss_std") == pytest.approx(
        [statistics.stdev(seeds) for seeds in per_epoch], rel=1e-9)
    finals = [t.value for t in alone]
    assert logged(tracker, trial, "seed_val_loss") == finals  # step i: seed 4 + i
    assert len(set(finals)) == 3
    best = alone[finals.index(min(finals))]
    saved = load_weights(TrialRecord.of(trial).weights_uri, tracker.uri)
    expected = load_weights(TrialRecord.of(best).weights_uri, tracker.uri)
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k]) for k in expected)
    assert run_of(tracker, trial).data.params["seeds"] == "3"
