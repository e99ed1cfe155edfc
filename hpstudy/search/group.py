"""Vectorised trials in a study: K trials of one architecture asked, trained as one, told apart.

With `train.vectorize = K`, the first trial of a group is sampled freely; the other K-1
are queued with its values of every searched key but the learning rate, momentum and
weight decay (width and depth, and a searched batch size or [model] key), and sampled
for those three, so all K have the same network shape and see the same batches.
`batched.train_group` trains them together (one at a time above MAX_PARAMS, where
batching stops paying); each is still
its own Optuna trial (ask/tell), its own pruning decision, its own MLflow run, metrics,
figures and weights, written by the same `Objective` steps as a trial trained alone.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from hpstudy.models import count_parameters
from hpstudy.search.objective import (
    EpochLog,
    Objective,
    describe_error,
    hyperparameters,
    prunes,
    recipe,
    suggest,
)
from hpstudy.search.record import COMPLETE, DIVERGED, FAILED, PRUNED, TrialRecord
from hpstudy.train import interrupts
from hpstudy.train.batched import Stack, train_group, why_not
from hpstudy.train.loop import EpochMetrics, diverged, loss_limit

OWN = ("lr", "momentum", "weight_decay")  # what each member of a group picks; it shares the rest
MAX_PARAMS = 100_000  # above this a batched step is memory-bound and slower (bench/vectorized.py:
# 8 digits MLPs of width 128, 26k parameters, 2.7x faster as one; of width 512, 300k, 2x
# slower): a group of larger networks trains one member at a time
TOLD = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED, DIVERGED: TrialState.PRUNED,
        FAILED: TrialState.FAIL}


class Member:
    """One trial of a group: its Optuna trial, record, epochs, and how it ended."""

    def __init__(self, trial: optuna.Trial, record: TrialRecord, log: EpochLog):
        self.trial, self.record, self.log = trial, record, log
        self.state, self.reason = "", ""
        self.network: Callable[[], torch.nn.Module] | None = None  # its trained network

    def stop(self, state: str, reason: str) -> bool:
        """End this member's training as `state`; True (for `train_group`)."""
        self.state, self.reason = state, reason
        return True


def ask_group(study: optuna.Study, objective: Objective, size: int
              ) -> tuple[list[optuna.Trial], list[dict]]:
    """`size` trials sharing the first one's values but for OWN, and each one's values."""
    first = study.ask()
    values = [suggest(first, objective.config.search)]
    shape = {name: value for name, value in values[0].items() if name not in OWN}
    trials = [first]
    for _ in range(size - 1):
        study.enqueue_trial(shape)  # the rest of each member is sampled as usual
        trials.append(study.ask())
        values.append(suggest(trials[-1], objective.config.search))
    return trials, values


def run_group(study: optuna.Study, objective: Objective, size: int) -> list[FrozenTrial]:
    """Ask, train together and tell `size` trials; the told trials."""
    interrupts.checkpoint()
    trials, values = ask_group(study, objective, size)
    members = [Member(trial, *objective.begin(trial)) for trial in trials]
    config, tracker = objective.config, objective.tracker
    hps = [hyperparameters(config, v) for v in values]
    recipes = [recipe(config, hp) for hp in hps]
    try:
        model = objective.seeded_network(hps[0])  # every member starts from these weights
        n_params = count_parameters(model)
        batches = [list(range(size))] if n_params <= MAX_PARAMS else [[i] for i in range(size)]
        for member, value in zip(members, values, strict=True):
            tracker.log_params(member.record.run_id, value | {
                "n_params": n_params, "vectorized": len(batches[0])})
        reason = why_not(model, recipes)
        if reason:
            raise ValueError(f"these trials cannot be vectorised: {reason}")
        limit = loss_limit(objective.data.train)
        for batch in batches:
            stack = Stack(model, len(batch), objective.device)
            for position, index in enumerate(batch):
                members[index].network = functools.partial(stack.member, position)
            train_group(stack, objective.data, [recipes[i] for i in batch], objective.device,
                        lambda position, metrics, batch=batch: _on_epoch(
                            members[batch[position]], metrics, limit))
    except BaseException as error:  # every member still training fails with the reason
        for member in members:
            if not member.state:
                member.stop(FAILED, describe_error(error))
        if not isinstance(error, Exception):
            _finish(study, objective, members)
            raise
    return _finish(study, objective, members)


def _on_epoch(member: Member, metrics: EpochMetrics, limit: float) -> bool:
    """Log a member's epoch, report it, and say whether it stops (diverged or pruned)."""
    interrupts.checkpoint()  # a signal that came during a write stops the group here
    member.log.add(metrics)
    trial = member.trial
    if why := diverged(metrics, limit):
        trial.report(float("inf"), metrics.epoch)  # TPE learns this region is bad
        return member.stop(DIVERGED, why)
    trial.report(metrics.val_loss, metrics.epoch)
    if prunes(trial) and trial.should_prune():
        return member.stop(PRUNED, f"pruned after epoch {metrics.epoch}: validation loss "
                                   f"{metrics.val_loss:.4g} is worse than the median")
    return False


def _finish(study: optuna.Study, objective: Objective, members: Sequence[Member]
            ) -> list[FrozenTrial]:
    """End every member's run as it ended, then tell Optuna."""
    told = []
    for member in members:
        state = member.state or COMPLETE
        network = member.network() if member.network is not None else None
        objective.end(member.trial, member.record, state, member.reason, member.log, network)
        value = member.log.history[-1].val_loss if state == COMPLETE else None
        told.append(study.tell(member.trial, value, state=TOLD[state]))
    objective.release()
    return told


def optimize_grouped(study: optuna.Study, objective: Objective, size: int,
                     n_trials: int | None, timeout: float | None,
                     callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]],
                     stopped: Callable[[], bool]) -> None:
    """`study.optimize`, a group of `size` trials at a time (the last may be smaller)."""
    started, done = time.monotonic(), 0
    while (n_trials is None or done < n_trials) and not stopped() and (
            timeout is None or time.monotonic() - started < timeout):
        count = size if n_trials is None else min(size, n_trials - done)
        for trial in run_group(study, objective, count):
            for callback in callbacks:
                callback(study, trial)
        done += count
