"""What a trial records, named in one place: its Optuna user attribute and its MLflow tags.

Each Optuna trial carries one `TrialRecord`: which process runs it (host, pid), which MLflow
run holds it, how it ended and why, where its time went. Its identity (trial, attempt,
process) is the user attribute `hpstudy`; every other field is a flat user attribute of its
own (`hpstudy.state`, `hpstudy.run_id`, `hpstudy.seconds.train`, ...), which optuna-dashboard
lists one per line. The process identity lets a worker that starts on the same machine see at
once that a trial's worker is dead, without waiting for the heartbeat's grace period.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ATTR = "hpstudy"  # the Optuna user attribute holding a trial's identity; its other fields are
# flat attributes named ATTR + "." + field, and ATTR + ".seconds." + part for its timings
CODE_ATTR = "hpstudy.code"  # the Optuna study's user attribute: the user code its first call ran
CHAMPION_ATTR = "hpstudy.champion"  # the study's user attribute: the registered champion

# MLflow tags on a trial's run (and, for host/pid/command, on a call's parent run); state and
# reason are named alike as the trial's Optuna user attributes
STUDY_TAG = "optuna.study"
TRIAL_TAG = "optuna.trial_number"
ATTEMPT_TAG = "hpstudy.attempt"  # 1, or 2 for the retry of a trial whose worker died
STATE_TAG = "hpstudy.state"  # complete | pruned | diverged | failed
REASON_TAG = "hpstudy.fail_reason"  # why a trial failed, diverged or was pruned
FIGURES_ERROR_TAG = "hpstudy.figures_error"  # a figure that could not be written, and why
COMMAND_TAG = "hpstudy.command"  # optimize | worker | select (parent runs only)
VERSION_TAG = "hpstudy.version"  # + ".optuna" etc.: the libraries a call ran (parent runs only)
HOST_TAG, PID_TAG, STARTED_TAG = "hpstudy.host", "hpstudy.pid", "hpstudy.process_start"

IDENTITY = ("trial", "attempt", "process", "retry_of")  # a record's fields kept in ATTR itself
_NONE = object()  # no such attribute

TIMINGS = ("train", "validate", "metrics", "model", "figures")  # where a trial's time goes;
# "figures" is what submitting them cost here: drawing happens beside the next trial

# a trial's end states, and the MLflow run status each one ends its run with
COMPLETE, PRUNED, DIVERGED, FAILED, RUNNING = "complete", "pruned", "diverged", "failed", "running"
RUN_FINISHED, RUN_KILLED, RUN_FAILED = "FINISHED", "KILLED", "FAILED"  # MLflow run statuses
RUN_STATUS = {COMPLETE: RUN_FINISHED, PRUNED: RUN_KILLED, DIVERGED: RUN_KILLED, FAILED: RUN_FAILED}


@dataclass(frozen=True)
class Process:
    """A process, identified across machines: host, pid, and its start time against pid reuse."""

    host: str
    pid: int
    started: int  # clock ticks after boot (Linux), 0 where unknown

    @classmethod
    def this(cls) -> Process:
        """The calling process."""
        return cls(socket.gethostname(), os.getpid(), _start_ticks(os.getpid()))

    def tags(self) -> dict[str, str]:
        """As MLflow tags."""
        return {HOST_TAG: self.host, PID_TAG: str(self.pid), STARTED_TAG: str(self.started)}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Process | None:
        """From MLflow tags, or None if they do not name a process."""
        if HOST_TAG not in tags or PID_TAG not in tags:
            return None
        return cls(tags[HOST_TAG], int(tags[PID_TAG]), int(tags.get(STARTED_TAG, 0)))

    def is_dead(self) -> bool:
        """True only when this process ran on this machine and is gone (never for other hosts)."""
        if self.host != socket.gethostname():
            return False  # another machine's: the heartbeat's grace period decides
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        now = _start_ticks(self.pid)
        return _is_zombie(self.pid) or bool(self.started and now and now != self.started)


@dataclass(frozen=True)
class TrialRecord:
    """Everything hpstudy keeps about one trial attempt, beside Optuna's params and values."""

    trial: int  # the Optuna trial number (a retry inherits its original's attributes: check it)
    attempt: int  # 1, or 2 for the retry of a trial whose worker died
    process: Process
    retry_of: int | None = None  # the trial number this attempt retries
    run_id: str = ""  # the trial's MLflow run
    state: str = RUNNING
    fail_reason: str = ""
    weights_uri: str = ""  # the trained weights (completed trials only): runs:/RUN/weights.pt
    val_acc: float | None = None  # of the last epoch trained
    n_params: int = 0  # trainable parameters of the trial's network
    train_seconds: float = 0.0  # training and validation, all epochs
    logging_seconds: float = 0.0  # what this trial spent writing to MLflow on the training path
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # TIMINGS, in seconds
    unused: list[str] = dataclasses.field(default_factory=list)  # params its network ignores

    def attrs(self) -> dict[str, Any]:
        """As Optuna user attributes: the identity as one, every other field flat."""
        fields = dataclasses.asdict(self)
        timings = fields.pop("timings")
        flat = {f"{ATTR}.{name}": fields.pop(name) for name in list(fields) if name not in IDENTITY}
        parts = dict.fromkeys(TIMINGS) | timings  # None: not timed (over a copied retry's)
        return {ATTR: fields} | flat | {f"{ATTR}.seconds.{part}": s for part, s in parts.items()}

    def changes(self, current: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes to write over a trial's `current` ones: those that differ, except
        defaults the trial does not hold (a new trial's first record is one write)."""
        defaults = TrialRecord(self.trial, self.attempt, self.process).attrs()
        del defaults[ATTR]  # the identity is always written
        return {key: value for key, value in self.attrs().items() if current.get(key, _NONE)
                != value and not (key not in current and defaults.get(key, _NONE) == value)}

    @classmethod
    def of(cls, trial: Any) -> TrialRecord | None:
        """The record of a (frozen) Optuna trial, or None if it has none of its own yet."""
        attrs = trial.user_attrs
        raw = attrs.get(ATTR)
        if not isinstance(raw, dict) or raw.get("trial") != trial.number:
            return None  # none, or the one a retry copied from the trial it retries
        names = {f.name for f in dataclasses.fields(cls)} - {"process"}
        values = {k: v for k, v in raw.items() if k in names}  # older stores: all in one
        values |= {name: attrs[f"{ATTR}.{name}"] for name in names if f"{ATTR}.{name}" in attrs}
        seconds = {key.removeprefix(f"{ATTR}.seconds."): value for key, value in attrs.items()
                   if key.startswith(f"{ATTR}.seconds.") and value is not None}
        if seconds:
            values["timings"] = seconds
        return cls(**values | {"process": Process(**raw["process"])})

    @classmethod
    def fields_of(cls, trial: Any) -> dict[str, Any]:
        """The record of a trial as plain fields, {} if it has none (for scripts and JSON)."""
        record = cls.of(trial)
        return dataclasses.asdict(record) if record is not None else {}

    def but(self, **changes: Any) -> TrialRecord:
        """A copy with `changes`."""
        return dataclasses.replace(self, **changes)


def _start_ticks(pid: int) -> int:
    """When process `pid` started, in clock ticks after boot; 0 where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name


def _is_zombie(pid: int) -> bool:
    """A process that has exited but not been reaped by its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def state_counts(trials: Sequence[Any]) -> str:
    """How a study's trials ended, in the words every view uses (optimize, trials, report):
    '8 done, 10 pruned, 2 diverged, 0 failed', then any running elsewhere or queued."""
    from optuna.trial import TrialState

    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    diverged = sum((r := TrialRecord.of(t)) is not None and r.state == DIVERGED for t in trials)
    words = [f"{counts[TrialState.COMPLETE]} done", f"{counts[TrialState.PRUNED] - diverged} "
             f"pruned", f"{diverged} diverged", f"{counts[TrialState.FAIL]} failed"]
    for state, word in ((TrialState.RUNNING, "running elsewhere"), (TrialState.WAITING, "queued")):
        words += [f"{counts[state]} {word}"] if counts[state] else []
    return ", ".join(words)
