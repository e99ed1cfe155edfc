"""Whole operations: `optimize` (data -> study -> trials -> selection) and `select` alone.

Everything that can be wrong with the input (the study file, the data, the search space
against the data) is checked before any store is opened, so bad input writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch

from hpstudy import data as datasets
from hpstudy.config import StudyConfig
from hpstudy.errors import ConfigError, UserError
from hpstudy.models import build_model
from hpstudy.objective import Objective
from hpstudy.select import Decision, Selection, best_trial, decide, select
from hpstudy.storage import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from hpstudy.study import load_existing, open_study
from hpstudy.tracking import FAILED, FINISHED, KILLED, Tracker
from hpstudy.train import Diverged, describe_device, pick_device

TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


@dataclass(frozen=True)
class Stores:
    """Where the Optuna study and the MLflow runs are kept."""

    storage: str = DEFAULT_STORAGE
    tracking_uri: str = DEFAULT_TRACKING_URI


@dataclass(frozen=True)
class Outcome:
    """What `optimize` leaves behind."""

    study: optuna.Study
    run_id: str  # the MLflow parent run of this call
    selection: Selection | None  # None when no trial has completed yet
    no_selection_reason: str = ""


def load_data(config: StudyConfig, data_dir: str | None = None) -> datasets.Dataset:
    """The study's dataset (files from `data_dir`), after checking the search space fits it."""
    try:
        data = datasets.load(config.data.name, config.data.options, data_dir)
    except ConfigError as error:  # an option the data contradicts, e.g. a subset too large
        raise error.within(path=str(config.path)) from None
    check_model_fits(config, data)
    return data


def check_model_fits(config: StudyConfig, data: datasets.Dataset) -> None:
    """A ConfigError unless every model the search can ask for builds for this data.

    Built on the meta device (shapes only). A model that fails only at the deepest depth
    is a `search.depth` problem; one that fails even at the shallowest, the architecture's.
    """
    def build(width: int, depth: int) -> None:
        with torch.device("meta"):
            build_model(config.model.architecture, config.model.options, data.input_shape,
                        data.num_outputs, data.mean, data.std, width, depth)

    (low, high), path = config.search["depth"].extremes(), str(config.path)
    for width in config.search["width"].extremes():
        try:
            build(width, low)
        except ValueError as error:
            raise ConfigError("model", f"an architecture and options that fit "
                              f"{data.input_shape} inputs", config.model.architecture,
                              str(error), path) from None
        try:
            build(width, high)
        except ValueError as error:
            raise ConfigError("search.depth", f"a depth that fits {data.input_shape} inputs",
                              high, str(error), path) from None


def resolve_device(name: str) -> torch.device:
    """The training device for `--device`, refusing CUDA where there is none."""
    device = pick_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is visible here. Use --device cpu "
                        "or auto.")
    return device


def optimize(config: StudyConfig, stores: Stores, trials: int | None = None,
             timeout: float | None = None, device: str = "auto",
             on_trial: TrialCallback | None = None, data_dir: str | None = None,
             data: datasets.Dataset | None = None) -> Outcome:
    """Run trials of the study (continuing it if it exists), then select the champion.

    `data`, if given, is what `load_data(config, data_dir)` returned (the CLI loads it
    first, to report bad input before it shows any progress).
    """
    torch_device = resolve_device(device)
    if data is None:
        data = load_data(config, data_dir)  # every input check happens before the first write
    study = open_study(config, stores.storage)
    tracker = Tracker(stores.tracking_uri, config.name)
    first = len(study.trials)
    run_id = tracker.start_run(
        f"optimize from trial {first}",
        params=config.fixed_params() | {"trials": trials or config.trials, "timeout_s": timeout,
                                        "device": describe_device(torch_device),
                                        "overrides": " ".join(config.overrides)},
        tags={"optuna.study": config.name, "hpstudy.command": "optimize",
              "optuna.storage": stores.storage})
    tracker.log_text(run_id, config.path.read_text(), f"study/{config.path.name}")
    status = FAILED
    try:
        on_device = data.for_training(torch_device)  # once per call, not once per trial
        study.optimize(Objective(config, on_device, tracker, run_id, torch_device),
                       n_trials=trials or config.trials, timeout=timeout, catch=(Diverged,),
                       callbacks=[on_trial] if on_trial else None)
        try:
            selection, reason = select(study, data, tracker, run_id), ""
        except UserError as error:
            selection, reason = None, str(error)
        status = FINISHED
    except KeyboardInterrupt:
        status = KILLED
        raise
    finally:
        tracker.end_run(run_id, status)
    return Outcome(study, run_id, selection, reason)


def select_only(config: StudyConfig, stores: Stores, dry_run: bool = False,
                data_dir: str | None = None) -> Selection | Decision:
    """`hpstudy select`: choose again among all trials so far, in a run of its own.

    With `dry_run`, only say what would change: no run, no registration, no test set.
    """
    data = load_data(config, data_dir)
    study = load_existing(config.name, stores.storage)
    best_trial(study)  # fails early, before a run is created, when there is nothing to select
    tracker = Tracker(stores.tracking_uri, config.name)
    if dry_run:
        return decide(study, data, tracker)
    run_id = tracker.start_run("select", tags={"optuna.study": config.name,
                                               "hpstudy.command": "select"})
    status = FAILED
    try:
        selection = select(study, data, tracker, run_id)
        status = FINISHED
    finally:
        tracker.end_run(run_id, status)
    return selection
