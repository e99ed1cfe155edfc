"""A trial's record in Optuna's store: flat attributes a person can read, one write to start."""

from __future__ import annotations

import dataclasses

import optuna

from hpstudy.search.objective import save
from hpstudy.search.record import ATTR, COMPLETE, FAILED, Process, TrialRecord


def finished(record: TrialRecord) -> TrialRecord:
    return record.but(run_id="r1", state=COMPLETE, val_acc=0.9, n_params=650, train_seconds=1.5,
                      timings={"train": 1.25, "validate": 0.25})


def test_every_field_but_the_identity_is_its_own_attribute(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db")
    trial = study.ask()
    record = TrialRecord(trial=trial.number, attempt=1, process=Process.this())
    save(trial, record)
    assert set(trial.user_attrs) == {ATTR}  # a new trial's first record: one write
    save(trial, finished(record))
    attrs = study.trials[0].user_attrs
    assert attrs["hpstudy.state"] == COMPLETE and attrs["hpstudy.run_id"] == "r1"
    assert attrs["hpstudy.seconds.train"] == 1.25 and attrs["hpstudy.val_acc"] == 0.9
    assert [key for key, value in attrs.items() if isinstance(value, dict)] == [ATTR]
    assert set(attrs[ATTR]) == {"trial", "attempt", "process", "retry_of"}
    assert TrialRecord.of(study.trials[0]) == finished(record)  # and it reads back whole


def test_a_retry_overwrites_what_it_copied_from_the_trial_it_retries(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db")
    original = TrialRecord(trial=5, attempt=1, process=Process("elsewhere", 1, 1))
    study.enqueue_trial({}, user_attrs=finished(original).but(state=FAILED).attrs())  # as Optuna's
    trial = study.ask()  # retry queues it: the old trial's attributes come along
    assert TrialRecord.of(study.trials[0]) is None  # those are not this trial's own
    retry = TrialRecord(trial=trial.number, attempt=2, retry_of=5, process=Process.this())
    save(trial, retry)
    assert TrialRecord.of(study.trials[0]) == retry  # state running, no run, no timings
    assert study.trials[0].user_attrs["hpstudy.run_id"] == ""


def test_a_record_written_whole_by_an_earlier_version_still_reads(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db")
    trial = study.ask()
    record = finished(TrialRecord(trial=trial.number, attempt=1, process=Process("h", 2, 3)))
    trial.set_user_attr(ATTR, dataclasses.asdict(record))  # every field in the one attribute
    assert TrialRecord.of(study.trials[0]) == record
    assert TrialRecord.fields_of(study.trials[0])["timings"] == {"train": 1.25, "validate": 0.25}
