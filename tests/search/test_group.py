"""Vectorised trials: K trials trained as one batched network compute what K separate ones do."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpstudy.errors import ConfigError
from hpstudy.run.optimize import load_data
from hpstudy.search import group
from hpstudy.search.objective import Objective
from hpstudy.search.record import TrialRecord
from hpstudy.spec.study_file import load_study
from hpstudy.tracking.runs import Tracker

pytestmark = pytest.mark.slow  # real processes, servers or whole studies

MEMBERS = [{"lr": 0.05, "momentum": 0.9, "width": 32, "depth": 2},
           {"lr": 0.2, "momentum": 0.0, "width": 32, "depth": 2},
           {"lr": 1e6, "momentum": 0.9, "width": 32, "depth": 2}]  # this one diverges


def objective_for(write_study, stores, vectorize: int) -> Objective:
    config = load_study(str(write_study(replace={
        "low = 0.01, high = 0.3": "low = 0.01, high = 1e7"})), [f"train.vectorize={vectorize}"])
    tracker = Tracker(stores.tracking_uri, config.name)
    return Objective(config, load_data(config), tracker, tracker.start_run("parent"),
                     torch.device("cpu"))


def losses(tracker: Tracker, trial) -> list[float]:
    history = tracker.client.get_metric_history(TrialRecord.of(trial).run_id, "train_loss")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.mark.parametrize("limit", [100_000, 0], ids=["as-one", "one-by-one-above-the-limit"])
def test_a_group_computes_what_separate_trials_compute(write_study, stores, monkeypatch, limit):
    monkeypatch.setattr(group, "MAX_PARAMS", limit)  # a group of larger networks: one by one
    alone = objective_for(write_study, stores, 1)
    separate = optuna.create_study()
    for params in MEMBERS:
        separate.enqueue_trial(params)
    separate.optimize(alone, n_trials=3)

    grouped = objective_for(write_study, stores, 3)
    together = optuna.create_study()
    for params in MEMBERS:
        together.enqueue_trial(params)
    told = group.run_group(together, grouped, 3)

    assert [t.params for t in told] == [t.params for t in separate.trials]
    assert [t.state for t in told] == [TrialState.COMPLETE, TrialState.COMPLETE,
                                       TrialState.PRUNED]  # the diverged one, as alone
    assert TrialRecord.of(told[2]).state == TrialRecord.of(separate.trials[2]).state == "diverged"
    for one, member in zip(separate.trials, told, strict=True):
        assert member.intermediate_values.keys() == one.intermediate_values.keys()
        for epoch, value in one.intermediate_values.items():  # validation loss, every epoch
            assert member.intermediate_values[epoch] == pytest.approx(value, rel=1e-4, abs=1e-5)
        assert losses(grouped.tracker, member) == pytest.approx(
            losses(alone.tracker, one), rel=1e-4, abs=1e-5, nan_ok=True)  # training, every epoch
    for one, member in zip(separate.trials[:2], told[:2], strict=True):
        assert member.value == pytest.approx(one.value, rel=1e-4)
        run = grouped.tracker.client.get_run(TrialRecord.of(member).run_id)
        assert run.data.params["vectorized"] == ("3" if limit else "1")
        assert run.info.status == "FINISHED"
        assert "weights.pt" in {a.path for a in grouped.tracker.client.list_artifacts(
            run.info.run_id)}


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.optimizer=adam", "search.momentum=0.0"], "1 with adam or rmsprop"),
    (['model.architecture="cnn"'], "1 for 'cnn'"),
    (["search.dropout=0.5"], "1 with dropout"),
    (["train.vectorize=0"], "an integer >= 1"),
    (['search.optimizer={choices=["sgd", "rmsprop"]}'], "1 with adam or rmsprop"),
    (['train.schedule="cosine"'], "1 with a learning-rate schedule"),
    (['search.schedule={choices=["constant", "step"]}'], "1 with a learning-rate schedule"),
])
def test_what_cannot_be_vectorised_is_refused_with_the_fix(write_study, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_study(str(write_study()), ["train.vectorize=4", *overrides])


def test_a_group_shares_every_searched_key_but_lr_momentum_and_weight_decay(write_study, stores):
    config = load_study(str(write_study()), ["train.vectorize=3", "train.epochs=1",
                                             "search.batch_size={choices=[16, 32, 64, 128]}",
                                             'search.activation={choices=["relu", "tanh"]}'])
    tracker = Tracker(stores.tracking_uri, config.name)
    objective = Objective(config, load_data(config), tracker, tracker.start_run("parent"),
                          torch.device("cpu"))
    told = group.run_group(optuna.create_study(sampler=optuna.samplers.RandomSampler(0)),
                           objective, 3)
    assert [t.state for t in told] == [TrialState.COMPLETE] * 3
    shared = {k: told[0].params[k] for k in ("width", "depth", "batch_size", "activation")}
    for trial in told:
        assert {k: trial.params[k] for k in shared} == shared
        params = tracker.client.get_run(TrialRecord.of(trial).run_id).data.params
        assert params["batch_size"] == str(shared["batch_size"]) and params["vectorized"] == "3"
    assert len({t.params["lr"] for t in told}) == 3
