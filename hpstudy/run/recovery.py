"""After a crash: dead workers' trials are failed and retried, and MLflow is made to agree.

Run at every `optimize`/`worker` start and when a call ends. A trial whose worker died on
this machine is found at once (its record names the process); one from another machine
when its heartbeat has been silent for the grace period (Optuna's `fail_stale_trials`).
Either way it is failed and queued once more with the same parameters. Then every MLflow
run still RUNNING whose trial or call is over is ended as Optuna says it ended.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from hpstudy import storage
from hpstudy.errors import DiskFull
from hpstudy.search.record import (
    COMMAND_TAG,
    COMPLETE,
    FAILED,
    FIGURES_ERROR_TAG,
    PRUNED,
    REASON_TAG,
    RUN_FAILED,
    RUN_FINISHED,
    RUN_KILLED,
    STATE_TAG,
    TRIAL_TAG,
    Process,
    TrialRecord,
)
from hpstudy.search.study import retry_once
from hpstudy.tracking.runs import Tracker

RUN_END = {TrialState.COMPLETE: (RUN_FINISHED, COMPLETE), TrialState.PRUNED: (RUN_KILLED, PRUNED),
           TrialState.FAIL: (RUN_FAILED, FAILED)}  # Optuna's end state -> MLflow status, state tag
LOST = "its worker stopped (killed, crashed or lost) before the trial ended"
UNRECORDED = "it ended without its reason recorded (see its call's parent run)"
NO_FIGURES = "never written: the run was closed by a later call (its figures were not drawn)"


@dataclass
class Repairs:
    """What a reconciliation changed."""

    failed_trials: list[int] = field(default_factory=list)  # dead workers' trials, now FAIL
    ended_runs: list[str] = field(default_factory=list)  # MLflow runs ended here

    def __bool__(self) -> bool:
        return bool(self.failed_trials or self.ended_runs)


def fail_trial(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Fail a RUNNING trial with `reason` and queue its retry; False if it ended meanwhile."""
    storage = study._storage  # the RDBStorage `open_study` made; its methods are public
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number)
    record = TrialRecord.of(trial)
    try:
        if record is not None:
            failed = record.but(state=FAILED, fail_reason=reason)
            for key, value in failed.changes(trial.user_attrs).items():
                storage.set_trial_user_attr(trial_id, key, value)
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False  # another worker got there first
    retry_once(study, storage.get_trial(trial_id))
    return True


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Fail (and retry) every RUNNING trial whose worker is known to be dead."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        record = TrialRecord.of(trial)
        if record is not None and record.process.is_dead():
            host, pid = record.process.host, record.process.pid
            if fail_trial(study, trial, f"{LOST} (pid {pid} on {host})"):
                failed.append(trial.number)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        optuna.storages.fail_stale_trials(study)  # other machines': after the grace period
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    return failed + sorted(after - before)


def end_orphan_runs(study: optuna.Study, tracker: Tracker, reason: str = "") -> list[str]:
    """End every RUNNING MLflow run whose trial has ended, or whose call's process is dead.

    A trial run ended here never had its figures drawn, and is tagged so. `reason` is given
    to a failed trial that recorded none (else: lost, if its process is gone).
    """
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    ended = []
    for run in tracker.running_runs():
        tags = run.data.tags
        if TRIAL_TAG in tags:
            trial = trials.get(int(tags[TRIAL_TAG]))
            if trial is None or trial.state not in RUN_END:
                continue  # still running (or waiting): its worker owns the run
            status, state = RUN_END[trial.state]
            record = TrialRecord.of(trial)
            why = (record.fail_reason if record and record.fail_reason else reason or (
                LOST if record is None or record.process.is_dead() else UNRECORDED))
            tracker.end_run(run.info.run_id, status, {STATE_TAG: state, FIGURES_ERROR_TAG:
                                                      NO_FIGURES} | (
                {REASON_TAG: why} if status != RUN_FINISHED else {}))
        elif COMMAND_TAG in tags:
            process = Process.from_tags(tags)
            if process is None or not process.is_dead():
                continue  # a call on another machine, or one still running here
            tracker.end_run(run.info.run_id, RUN_FAILED, {
                REASON_TAG: f"the `hpstudy {tags[COMMAND_TAG]}` process ({process.pid} on "
                            f"{process.host}) ended without closing this run"})
        else:
            continue
        ended.append(run.info.run_id)
    return ended


def reconcile(study: optuna.Study, tracker: Tracker) -> Repairs:
    """Make Optuna and MLflow agree after any crash: see the module's docstring."""
    return Repairs(fail_dead_trials(study), end_orphan_runs(study, tracker))


def retry_interrupted(study: optuna.Study, process: Process) -> list[int]:
    """Queue once more the trials this process was running when it was interrupted."""
    trials = study.get_trials(deepcopy=False)
    queued = {n for t in trials for n in t.system_attrs.get("retry_history", [])}  # retried
    retried = []
    for trial in trials:
        record = TrialRecord.of(trial)
        if (trial.state == TrialState.FAIL and record is not None and record.process == process
                and record.fail_reason.startswith(("interrupted", "disk full"))
                and trial.number not in queued):
            retry_once(study, trial)
            retried.append(trial.number)
    return retried


def close_after_full_disk(study: optuna.Study, tracker: Tracker, reason: str,
                          run_id: str | None = None) -> None:
    """What a call stopped by a full disk can still close, each step as far as it goes.

    This process's RUNNING trials fail with `reason` (and are queued again), trial runs whose
    trial ended are closed, and the call's run `run_id` ends FAILED. A step that meets the
    full disk is left to the next start's `reconcile`.
    """
    this, own = Process.this(), []
    with contextlib.suppress(Exception):
        own = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if (record := TrialRecord.of(t)) is not None and record.process == this]
    steps = [*(lambda t=t: fail_trial(study, t, reason) for t in own),
             lambda: retry_interrupted(study, this),
             lambda: end_orphan_runs(study, tracker, reason)]
    if run_id is not None:
        steps.append(lambda: tracker.end_run(run_id, RUN_FAILED, {REASON_TAG: reason}))
    for step in steps:
        with contextlib.suppress(Exception):  # the disk may still be full: the next start ends it
            step()


def end_call(study: optuna.Study, tracker: Tracker, storage_url: str, run_id: str | None,
             status: str, error: BaseException | None) -> None:
    """End a call: its run `run_id` (None: a worker's run is its parent's) with `status`, and
    reconcile unless it finished; after a full disk (`error`, or a write here), close as much
    as the disk lets, then raise the DiskFull."""
    def full_disk(error: BaseException) -> DiskFull | None:
        return storage.disk_full(error, storage_url, tracker.uri, study.study_name)

    full = full_disk(error) if error is not None else None
    if full is None:
        try:
            if run_id is not None:
                tracker.end_run(run_id, status)
                if status != RUN_FINISHED:
                    reconcile(study, tracker)
            return
        except Exception as failure:
            if (full := full_disk(failure)) is None:
                raise
    close_after_full_disk(study, tracker, full.reason, run_id)
    raise full from None
