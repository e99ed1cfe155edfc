"""Re-run one trial from its MLflow record alone and compare it with what it logged.

The record is the trial's run (params: every value it trained with), the study file its
parent run (the `optimize` or `worker` call) logged at `study/NAME.toml` with that call's
`--set` overrides (its `overrides` param), and the data split the study file fixes. The
Optuna storage only says which run is trial N's. Nothing is written to either store.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpstudy import storage
from hpstudy.errors import UserError
from hpstudy.run.optimize import load_data, resolve_device
from hpstudy.search.objective import hyperparameters, seeded_network, train_network, train_seeds
from hpstudy.search.record import STUDY_TAG, TrialRecord
from hpstudy.search.study import load_existing
from hpstudy.spec.space import Value
from hpstudy.spec.study_file import StudyConfig, load_study
from hpstudy.tracking.artifacts import LoggedRun, read_run, read_text
from hpstudy.tracking.runs import PARAM_LIMIT
from hpstudy.train.loop import Diverged, EpochMetrics, leave_a_core, mean_epoch

TOLERANCE = 1e-6  # relative: on the same device a re-run gives the same floats
EXIT_NOT_REPRODUCED = 5  # `hpstudy reproduce`: the re-run's validation loss differs
PARENT_TAG = "mlflow.parentRunId"
OVERRIDE_START = re.compile(r"[A-Za-z_][\w.-]*=")  # `table.key=` begins each --set


@dataclass(frozen=True)
class Comparison:
    """A trial's logged validation loss per epoch against a re-run's."""

    study: str
    trial: int
    run_id: str
    logged_device: str  # the trial run's `device` param
    device: str  # where the re-run trained
    logged: list[float]  # val_loss at epochs 1, 2, ... (the mean over seeds with train.seeds)
    rerun: list[float]

    def differences(self) -> list[float]:
        """|logged - re-run| per epoch (0 where both are the same non-finite value)."""
        pairs = zip(self.logged, self.rerun, strict=False)  # a shorter re-run: `equal` says so
        return [0.0 if _same(a, b) else abs(a - b) for a, b in pairs]

    def max_abs(self) -> float:
        """The largest absolute difference over the epochs both have."""
        return max(self.differences(), default=math.nan)

    def max_rel(self) -> float:
        """The largest difference relative to the logged value."""
        pairs = zip(self.differences(), self.logged, strict=False)
        return max((d / abs(a) if a else d for d, a in pairs), default=math.nan)

    def equal(self) -> bool:
        """Every epoch equal within TOLERANCE (relative), and as many epochs."""
        return len(self.logged) == len(self.rerun) and all(
            _same(a, b) or math.isclose(a, b, rel_tol=TOLERANCE)
            for a, b in zip(self.logged, self.rerun, strict=False))


def _same(a: float, b: float) -> bool:
    """Equal, both NaN included (a diverged epoch logs a non-finite loss)."""
    return a == b or (math.isnan(a) and math.isnan(b))


def reproduce(study: str, trial: int, storage_url: str, tracking_uri: str,
              data_dir: str | None = None, device: str | None = None) -> Comparison:
    """Re-run trial `trial` of `study` on `device` (default: the one it ran on, if here, else
    the CPU) as its record says, for as many epochs as it logged; the comparison."""
    storage.check_storage(storage_url)
    storage.check_tracking(tracking_uri)
    run = read_run(tracking_uri, run_of(study, trial, storage_url), ["val_loss"])
    logged = run.metrics["val_loss"]
    if not logged:
        raise UserError(f"--trial {trial}: its run {run.run_id} logged no epoch; nothing to "
                        "compare.")
    config = rebuild_config(tracking_uri, run)
    hp = hyperparameters(config, trial_values(config, run))
    logged_device = run.params.get("device", "cpu")
    where = resolve_device(device or _here(logged_device.split(" ")[0]))
    leave_a_core(where)  # as many CPU threads as a one-process `optimize` trains on
    data = load_data(config, data_dir).for_training(where)
    epochs = max(logged)
    history = rerun(config, data, hp, where, epochs)
    return Comparison(study, trial, run.run_id, logged_device, str(where),
                      [logged.get(e, math.nan) for e in range(1, epochs + 1)],
                      [m.val_loss for m in history])


def run_of(study: str, trial: int, storage_url: str) -> str:
    """The MLflow run of trial `trial`, as its Optuna record names it."""
    trials = {t.number: t for t in load_existing(study, storage_url).get_trials(deepcopy=False)}
    if trial not in trials:
        known = f"0 to {max(trials)}" if trials else "none"
        raise UserError(f"--trial {trial}: study '{study}' has no such trial (its trials: "
                        f"{known}; `hpstudy trials --study {study}` lists them).")
    record = TrialRecord.of(trials[trial])
    if record is None or not record.run_id:
        raise UserError(f"--trial {trial}: trial {trial} of '{study}' has no MLflow run "
                        f"(state {trials[trial].state.name}); nothing to re-run.")
    return record.run_id


def rebuild_config(tracking_uri: str, run: LoggedRun) -> StudyConfig:
    """The study file as the trial's call ran it: its parent run's copy, with its overrides,
    checked against the params the trial logged."""
    parent = run.tags.get(PARENT_TAG)
    name = run.tags.get(STUDY_TAG, "")
    if not parent or not name:
        raise UserError(f"run {run.run_id} is not an hpstudy trial run (no parent run or study "
                        "tag).")
    text = read_text(tracking_uri, parent, f"study/{name}.toml")
    overrides = split_overrides(read_run(tracking_uri, parent).params.get("overrides", ""))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}.toml"
        path.write_text(text)
        config = load_study(str(path), overrides)
    differ = [f"{k} (logged {run.params.get(k)!r}, the study file gives {str(v)[:PARAM_LIMIT]!r})"
              for k, v in config.fixed_params().items()
              if run.params.get(k) != str(v)[:PARAM_LIMIT]]
    if differ:
        raise UserError(f"run {run.run_id}: its parent run's study file does not give the "
                        f"values the trial logged: {'; '.join(differ)}.")
    return config


def split_overrides(joined: str) -> list[str]:
    """The `--set` overrides of a call, from its space-joined `overrides` param: a word that
    does not start `KEY=`, or comes while a TOML value's brackets or quotes are open,
    belongs to the one before."""
    overrides: list[str] = []
    for word in joined.split(" "):
        if overrides and (_open(overrides[-1]) or not OVERRIDE_START.match(word)):
            overrides[-1] += f" {word}"
        elif word:
            overrides.append(word)
    return overrides


def _open(text: str) -> bool:
    """Whether a TOML value has unclosed brackets, braces or quotes."""
    value = text.partition("=")[2]
    return (value.count("{") > value.count("}") or value.count("[") > value.count("]")
            or value.count('"') % 2 == 1 or value.count("'") % 2 == 1)


def trial_values(config: StudyConfig, run: LoggedRun) -> dict[str, Value]:
    """The trial's searched values, read back from its params with their types."""
    values: dict[str, Value] = {}
    for name, param in config.search.items():
        if not param.searched:
            continue
        if name not in run.params:
            raise UserError(f"run {run.run_id} has no param '{name}': the trial ended before "
                            "its values were logged; nothing to re-run.")
        text = run.params[name]
        if param.choices is not None:
            values[name] = next(c for c in param.choices if str(c) == text)
        else:
            values[name] = param.kind(text)
    return values


def rerun(config: StudyConfig, data: Any, hp: dict[str, Any], device: torch.device,
          epochs: int) -> list[EpochMetrics]:
    """Train as the trial did, for its first `epochs` epochs (the mean over seeds, if several)."""
    history: list[EpochMetrics] = []

    def on_epoch(metrics: EpochMetrics) -> None:
        history.append(metrics)
        if metrics.epoch >= epochs:  # a pruned trial logged fewer epochs than the study's
            raise _Enough

    model = seeded_network(config, data, hp, device, config.train.seed)
    try:
        if config.train.seeds > 1:
            train_seeds(config, data, hp, device, model, lambda seeds: on_epoch(mean_epoch(seeds)))
        else:
            train_network(config, data, hp, device, model, on_epoch)
    except _Enough:
        pass
    except Diverged as error:  # the trial logged its diverging epoch too
        return error.history
    return history


class _Enough(Exception):
    """As many epochs as the trial logged."""


def _here(name: str) -> str:
    """The trial's device if this machine has it, else the CPU."""
    return name if name == "cpu" or torch.cuda.is_available() else "cpu"


def describe(comparison: Comparison) -> str:
    """The comparison as a table per epoch, the largest difference, and the verdict."""
    c = comparison
    lines = [f"Trial {c.trial} of '{c.study}' (run {c.run_id}), logged on {c.logged_device}, "
             f"re-run on {c.device}:", f"{'epoch':>5}  {'logged val_loss':>16}  "
             f"{'re-run':>16}  {'|difference|':>12}"]
    for epoch, (a, b) in enumerate(zip(c.logged, c.rerun, strict=False), 1):
        lines.append(f"{epoch:>5}  {a:>16.10g}  {b:>16.10g}  {abs(a - b):>12.3g}")
    if len(c.logged) != len(c.rerun):
        lines.append(f"The trial logged {len(c.logged)} epochs; the re-run trained "
                     f"{len(c.rerun)}.")
    lines.append(f"Largest difference: {c.max_abs():.3g} (relative {c.max_rel():.3g}).")
    lines.append(f"Reproduced: equal within {TOLERANCE:g} relative." if c.equal() else
                 f"NOT reproduced: differs by more than {TOLERANCE:g} relative"
                 + (" (another device: expect rounding differences)."
                    if c.logged_device.split(" ")[0] != c.device else "."))
    return "\n".join(lines)
