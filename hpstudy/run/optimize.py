"""Whole operations: `optimize` (plan -> study -> trials -> selection), `worker`, `select`.

`plan` checks everything that can be wrong with the input (the stores, the device, the
study file, the data, the search space against the data) before any store is opened, so
bad input writes nothing; `optimize` and `work` then execute a plan.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from hpstudy import data as datasets
from hpstudy import storage
from hpstudy.errors import ConfigError, DiskFull, NoChampion, UserError
from hpstudy.models import architecture, build_model, check_network
from hpstudy.report.publish import early_views, publish
from hpstudy.run import workers
from hpstudy.run.flags import DEVICES, check_device_name, check_jobs
from hpstudy.run.recovery import Repairs, end_call, reconcile, retry_interrupted
from hpstudy.run.select import (
    Cleanup,
    Decision,
    Floor,
    NetworkOf,
    Selection,
    best_trial,
    decide,
    floor,
    keep_best_models,
    select,
)
from hpstudy.search.group import optimize_grouped
from hpstudy.search.objective import Objective, trained_network
from hpstudy.search.record import (
    COMMAND_TAG,
    RUN_FAILED,
    RUN_FINISHED,
    RUN_KILLED,
    STUDY_TAG,
    VERSION_TAG,
    Process,
)
from hpstudy.search.study import FailureGuard, load_existing, open_study
from hpstudy.spec.study_file import StudyConfig
from hpstudy.storage import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from hpstudy.tracking.runs import RunEnd, Tracker
from hpstudy.tracking.writer import Writer
from hpstudy.train import interrupts
from hpstudy.train.loop import describe_device, leave_a_core, pick_device
from hpstudy.train.step import check_device as check_step_device

TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]
SELECTING = "selecting the champion (testing it once, packaging it for serving)"
PUBLISHING = "drawing the study's views and writing its report"


@dataclass(frozen=True)
class Stores:
    """Where the Optuna study and the MLflow runs are kept."""

    storage: str = DEFAULT_STORAGE
    tracking_uri: str = DEFAULT_TRACKING_URI


@dataclass(frozen=True)
class Outcome:
    """What an `optimize` or `worker` call leaves behind."""

    study: optuna.Study
    run_id: str  # the MLflow parent run of this call
    selection: Selection | None  # None when no trial qualifies (or for a worker)
    no_selection_reason: str = ""
    stopped: str = ""  # why the call stopped early (too many failed trials in a row), or ''
    worker_problems: list[str] = field(default_factory=list)  # workers that exited with an error
    repairs: Repairs | None = None  # what a crashed earlier call left, repaired at start
    first_trial: int = 0  # the study's trial count when this call began
    selection_seconds: float = 0.0  # choosing, testing, packaging and registering
    figure_failures: list[str] = field(default_factory=list)  # the writer's failures
    experiment_id: str = ""  # the study's MLflow experiment
    cleanup: Cleanup | None = None  # weights deleted by the storage budget (`keep_models`)


def load_data(config: StudyConfig, data_dir: str | None = None) -> datasets.Dataset:
    """The study's dataset (files from `data_dir`), after checking the search space fits it."""
    try:
        data = datasets.load(config.data.name, config.data.options, data_dir)
    except ConfigError as error:  # an option the data contradicts, e.g. a subset too large
        raise error.within(path=str(config.path)) from None
    check_model_fits(config, data)
    if architecture(config.model.architecture).source:  # the user's: check before trial 0
        first = {k: p.first() for k, p in config.search.items()}
        try:
            check_network(config.model, data, first)
        except ConfigError as error:
            raise error.within(path=str(config.path)) from None
    return data


def check_model_fits(config: StudyConfig, data: datasets.Dataset) -> None:
    """A ConfigError unless every model the search can ask for builds for this data.

    Built on the meta device (shapes only). A model that fails only at the deepest depth
    is a `search.depth` problem; one that fails even at the shallowest, the architecture's.
    """
    def build(width: int, depth: int) -> None:
        with torch.device("meta"):
            build_model(config.model, data, {"width": width, "depth": depth})

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
    """The training device for `--device`, refusing what does not exist here."""
    check_device_name(name)
    device = pick_device(name)
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: hpstudy trains on cpu or cuda; use {DEVICES}.")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise UserError(f"--device {name}: no CUDA device is visible here. Use --device cpu "
                            "or auto.")
        if (device.index or 0) >= count:
            raise UserError(f"--device {name}: only {count} CUDA device(s) are visible "
                            f"(cuda:0 to cuda:{count - 1}).")
    return device


@dataclass(frozen=True)
class Plan:
    """A checked `optimize` or `worker` call: everything is known good before a store is opened."""

    config: StudyConfig
    stores: Stores
    data: datasets.Dataset
    device: str  # as given (auto, cpu, cuda, cuda:N): `--jobs` places workers from it
    torch_device: torch.device  # where this process trains
    trials: int | None  # None: as many as fit in `timeout`
    timeout: float | None
    jobs: int = 1
    data_dir: str | None = None


def plan(config: StudyConfig, stores: Stores, trials: int | None = None,
         timeout: float | None = None, device: str = "auto", jobs: int = 1,
         data_dir: str | None = None, create: bool = False,
         data: datasets.Dataset | None = None) -> Plan:
    """Check the stores, the device and the data (in that order); a UserError writes nothing.

    Trials default to the study file's `trials`, except with a timeout alone: then as many
    as fit.
    """
    storage.check_storage(stores.storage, create=create)
    storage.check_tracking(stores.tracking_uri, create=create)
    torch_device = resolve_device(device)
    try:
        check_step_device(config.train, torch_device)  # cuda_graph on the CPU: refused here
    except ConfigError as error:
        raise error.within(path=str(config.path)) from None
    check_jobs(jobs)
    if data is None:
        data = load_data(config, data_dir)
    count = trials if trials is not None else (None if timeout else config.trials)
    return Plan(config, stores, data, device, torch_device, count, timeout, jobs, data_dir)


def _parent_tags(plan: Plan, command: str) -> dict[str, Any]:
    """Tags of a call's parent run: the study, the command and the process running it."""
    return {STUDY_TAG: plan.config.name, COMMAND_TAG: command,
            "optuna.storage": plan.stores.storage} | Process.this().tags() | {
        f"{VERSION_TAG}.{name}": importlib.metadata.version(name)
        for name in ("hpstudy", "optuna", "mlflow", "torch")}


def _start_parent(plan: Plan, tracker: Tracker, command: str, study: optuna.Study) -> str:
    """The parent run of an `optimize` or `worker` call, holding the study file; named after
    the first trial it runs (a queued one, if any, else the next new one)."""
    config, trials = plan.config, study.get_trials(deepcopy=False)
    first = min((t.number for t in trials if t.state == optuna.trial.TrialState.WAITING),
                default=len(trials))
    run_id = tracker.start_run(
        f"{command} from trial {first}",
        params=config.fixed_params() | {
            "trials": plan.trials, "timeout_s": plan.timeout, "jobs": plan.jobs,
            "device": plan.device if plan.jobs > 1 else describe_device(plan.torch_device),
            "overrides": " ".join(config.overrides)},
        tags=_parent_tags(plan, command), system_metrics=True)
    tracker.log_text(run_id, config.path.read_text(), f"study/{config.path.name}")
    return run_id


def run_trials(plan: Plan, study: optuna.Study, tracker: Tracker, parent_id: str,
               on_trial: TrialCallback | None = None, early: RunEnd | None = None
               ) -> tuple[str, list[str]]:
    """Run this process's trials; why it stopped early (or ''), and figures that failed.

    A trial that raises fails alone; interrupted trials are queued again before the
    interrupt goes on. The background writer is flushed before this returns, always.
    """
    on_device = plan.data.for_training(plan.torch_device)  # once per call, not once per trial
    leave_a_core(plan.torch_device)
    writer = Writer(first=early)  # drawn beside the first trials
    objective = Objective(plan.config, on_device, tracker, parent_id, plan.torch_device, writer,
                          plan.stores.storage)
    guard = FailureGuard(plan.config.max_failures)
    callbacks = [guard, *([on_trial] if on_trial else [])]
    try:
        if plan.config.train.vectorize > 1:
            optimize_grouped(study, objective, plan.config.train.vectorize, plan.trials,
                             plan.timeout, callbacks, lambda: bool(guard.message))
        else:
            study.optimize(objective, n_trials=plan.trials, timeout=plan.timeout,
                           catch=(Exception,), callbacks=callbacks)
    except KeyboardInterrupt:
        retry_interrupted(study, Process.this())
        raise
    except Exception:
        if objective.full is None:
            raise  # (a full disk met outside a trial is named by `end_call`)
    finally:
        failures = writer.close()
    full = objective.full or next(filter(None, (_disk_full(plan, f) for f in failures)), None)
    if full is not None:
        raise full
    return guard.message, failures


def _disk_full(plan: Plan, error: BaseException | str) -> DiskFull | None:
    """`error` as the DiskFull it is (naming the plan's store or folder), or None."""
    return storage.disk_full(error, plan.stores.storage, plan.stores.tracking_uri,
                             plan.config.name)


def _stops_on_full_disk(operation: Callable[..., Outcome]) -> Callable[..., Outcome]:
    """`operation(plan, ...)`, where a full disk met anywhere (its start too) is a DiskFull."""
    @functools.wraps(operation)
    def guarded(plan: Plan, *args: Any, **kwargs: Any) -> Outcome:
        with storage.stops_on_full_disk(plan.stores.storage, plan.stores.tracking_uri,
                                        plan.config.name):
            return operation(plan, *args, **kwargs)

    return guarded


def _worker_args(plan: Plan, parent_id: str) -> list[str]:
    """The `hpstudy worker` arguments that repeat this call (device, trials, index: per worker)."""
    config, stores = plan.config, plan.stores
    args = ["--study", str(config.path.resolve()), "--storage", stores.storage,
            "--tracking-uri", stores.tracking_uri, "--parent-run", parent_id]
    for override in config.overrides:
        args += ["--set", override]
    if plan.data_dir:
        args += ["--data-dir", plan.data_dir]
    if plan.timeout:
        args += ["--timeout", str(plan.timeout)]
    return args


@_stops_on_full_disk
def optimize(plan: Plan, on_trial: TrialCallback | None = None,
             on_phase: Callable[[str], None] = lambda what: None) -> Outcome:
    """Run trials of the study (continuing it if it exists), then select the champion.

    With `plan.jobs` > 1 the trials run in worker processes. Every start first repairs
    what crashed calls left behind (`recovery.reconcile`); every end, too. `on_phase`
    hears what the call does once the trials are over (selection, the study's views).
    """
    config, stores = plan.config, plan.stores
    study = open_study(config, stores.storage)
    tracker = Tracker(stores.tracking_uri, config.name)
    first = len(study.get_trials(deepcopy=False))
    repairs = reconcile(study, tracker)
    run_id = _start_parent(plan, tracker, "optimize", study)
    status, stopped, problems, failures, cleanup = RUN_FAILED, "", [], [], None
    failed: Exception | None = None  # (not `error`: the `except NoChampion as error` below)
    try:
        if plan.jobs == 1:
            stopped, failures = run_trials(plan, study, tracker, run_id, on_trial, early_views(
                config, plan.data, tracker, run_id) if plan.trials != 0 else None)
        else:
            problems = workers.run(_worker_args(plan, run_id), plan.jobs, plan.trials,
                                   plan.device, torch.cuda.device_count(), study, first, on_trial)
        reconcile(study, tracker)  # a worker that died mid-trial left it to us
        interrupts.checkpoint()  # an interrupt during the last writes stops before selection
        on_phase(SELECTING)
        started = time.perf_counter()
        try:
            selection, reason = select(study, plan.data, tracker, run_id,
                                       _network_of(plan.config, plan.data, tracker),
                                       _floor(plan), config.data.name), ""
        except NoChampion as error:
            selection, reason = None, str(error)
        seconds = time.perf_counter() - started
        cleanup = _keep_best(plan.config, study, tracker, _floor(plan))
        on_phase(PUBLISHING)
        interrupts.checkpoint()  # a signal held through selection (registered whole) stops here
        failures += _publish(plan, study, tracker, run_id)
        status = RUN_FINISHED
    except KeyboardInterrupt:
        status = RUN_KILLED
        raise
    except Exception as failure:
        failed = failure
        raise
    finally:
        end_call(study, tracker, stores.storage, run_id, status, failed)  # a full disk: DiskFull
    interrupts.checkpoint()  # one held through the views: everything is written, still say so
    return Outcome(study, run_id, selection, reason, stopped, problems, repairs, first, seconds,
                   failures, tracker.experiment_id, cleanup)


def _keep_best(config: StudyConfig, study: optuna.Study, tracker: Tracker,
               rule: Floor) -> Cleanup:
    """The storage budget (`keep_models`), one process at a time (the selection lock)."""
    with tracker.registry_lock(study.study_name):
        return keep_best_models(study, tracker, config.keep_models, rule)


def _publish(plan: Plan, study: optuna.Study, tracker: Tracker, run_id: str) -> list[str]:
    """The study's views, table and report on the call's parent run; what failed to write."""
    try:
        return publish(study, plan.config, plan.data, tracker, run_id)
    except Exception as error:  # the trials and the champion are saved: never lose them to a plot
        if _disk_full(plan, error):
            raise  # but a full disk stops the call (`end_call`)
        return [f"study views: {type(error).__name__}: {error}"]


@_stops_on_full_disk
def work(plan: Plan, on_trial: TrialCallback | None = None, parent_id: str | None = None,
         index: int = 0) -> Outcome:
    """`hpstudy worker`: run trials of a study that other processes may share; no selection.

    Under `optimize --jobs`, trials nest under that call's parent run (`parent_id`);
    a worker started on its own has a parent run of its own.
    """
    config, stores = plan.config, plan.stores
    study = open_study(config, stores.storage, worker=index)
    tracker = Tracker(stores.tracking_uri, config.name)
    first = len(study.get_trials(deepcopy=False))
    repairs = reconcile(study, tracker)
    own = parent_id is None
    run_id = _start_parent(plan, tracker, "worker", study) if own else parent_id
    status, error = RUN_FAILED, None
    try:
        stopped, failures = run_trials(plan, study, tracker, run_id, on_trial)
        status = RUN_FINISHED
    except KeyboardInterrupt:
        status = RUN_KILLED
        raise
    except Exception as failure:
        error = failure
        raise
    finally:
        if own or error is not None:
            end_call(study, tracker, stores.storage, run_id if own else None, status, error)
    return Outcome(study, run_id, None, "", stopped, [], repairs, first, 0.0, failures,
                   tracker.experiment_id)


def _network_of(config: StudyConfig, data: datasets.Dataset, tracker: Tracker) -> NetworkOf:
    """How selection gets a completed trial's trained network."""
    return functools.partial(trained_network, config, data, tracking_uri=tracker.uri)


def _floor(plan: Plan) -> Floor:
    """What a champion of this study must beat."""
    return floor(plan.data.val, plan.config.champion_floor, plan.config.max_val_loss)


def select_only(config: StudyConfig, stores: Stores, dry_run: bool = False,
                data_dir: str | None = None) -> Selection | Decision:
    """`hpstudy select`: choose again among all trials so far, in a run of its own.

    With `dry_run`, only say what would change: no run, no registration, no test set.
    """
    storage.check_storage(stores.storage)
    storage.check_tracking(stores.tracking_uri)
    data = load_data(config, data_dir)
    rule = floor(data.val, config.champion_floor, config.max_val_loss)
    study = load_existing(config.name, stores.storage)
    best_trial(study, rule)  # fails early, before a run is created, when nothing qualifies
    with storage.stops_on_full_disk(stores.storage, stores.tracking_uri, config.name):
        tracker = Tracker(stores.tracking_uri, config.name)
        if dry_run:
            return decide(study, data, tracker, _network_of(config, data, tracker), rule)
        run_id = tracker.start_run("select", tags={STUDY_TAG: config.name,
                                                   COMMAND_TAG: "select"} | Process.this().tags())
        status = RUN_FAILED
        try:
            selection = select(study, data, tracker, run_id, _network_of(config, data, tracker),
                               rule, config.data.name)
            _keep_best(config, study, tracker, rule)
            status = RUN_FINISHED
        finally:
            with contextlib.suppress(Exception):  # a full disk: the next start closes it
                tracker.end_run(run_id, status)
        return selection
