"""CPU speed: hpstudy's studies against the plain way, side by side in one process.

The benchmark of the issue "Speed on every device" (a benchmark, not a test). For each
case it runs, one after the other on the same data, with the library-default torch threads:

  1. the peer (bench/peer.py): an Optuna study (TPESampler(seed=0), no pruning) with the
     MLflow docs' nested run per trial in a sqlite store, a per-sample DataLoader, and per
     trial its params, the metrics of every epoch, a curves PNG and `mlflow.pytorch.log_model`;
  2. hpstudy: `optimize(plan(...))` of the bundled study with its pruner off, on the same
     parameters as the peer's trials (enqueued; `--own-params` lets it sample its own);
  3. a bare loop over the same tensors (no validation, no logging) for every network shape
     the trials trained: the floor for seconds per epoch.

Cases: `digits_mlp`, the README quick start (20 trials x 20 epochs, batch 32), and
`mnist_mlp_004`, report 004's 784-100-10 MLP on MNIST (`mlp_mnist` with width 100 and
depth 1 fixed, no dropout; 3 trials x 5 epochs, batch 32). Run from the repository root:

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/cpu_speed.py --data-dir /work/shared/data/mnist
    .venv/bin/python bench/cpu_speed.py --quick --data-dir DIR --out /tmp/cpu_speed.json  # runs?

It prints a table per case and writes every number, the machine, the versions, the
command line and the order of the runs to --out (default bench/results/cpu_speed-DATE.json).
Measure on a quiet machine: the JSON keeps the load average before and after each run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from mlflow import MlflowClient
from peer import EVAL_BATCH, Setup, Space, StudyResult, run_study  # bench/peer.py: the plain way
from provenance import finite, machine, versions  # bench/provenance.py
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from hpstudy.data import Dataset
from hpstudy.errors import UserError
from hpstudy.models import build_model
from hpstudy.run.optimize import Outcome, Stores, load_data, optimize, plan
from hpstudy.search.record import TrialRecord
from hpstudy.spec.study_file import StudyConfig, load_study
from hpstudy.tracking.artifacts import quiet
from hpstudy.train.loop import evaluate

RESULTS = Path(__file__).parent / "results"  # default home of the JSON, one file per day
BARE_SECONDS = 1.0  # time each bare-loop shape for at least this long (0.2 with --quick)
BUSY_LOAD = 0.5  # a 1-minute load average above this at start: warn that the machine is busy
PARTS = ("train", "validate", "metrics", "figures", "model", "run")  # where trial time goes


@dataclass(frozen=True)
class Case:
    """One comparison: a bundled study, made to fit the plain objective's search space."""

    study: str  # the file in studies/
    trials: int
    epochs: int
    batch_size: int
    fixed: tuple[str, ...]  # more --set overrides (both sides train what they leave)
    quick_subset: int | None  # training examples under --quick (None: all)
    what: str
    hpstudy_first: bool = False  # hpstudy samples its own trials and the peer runs the same


CASES = {
    "digits_mlp": Case("digits_mlp", 20, 20, 32, (), None,
                       "the README quick start on the bundled 8x8 digits"),
    "mnist_mlp_004": Case("mlp_mnist", 3, 5, 32,
                          ("search.width=100", "search.depth=1", "search.dropout=0.0"), 2000,
                          "report 004's 784-100-10 MLP on MNIST, SGD, batch 32"),
    "digits_mlp_vectorized": Case(
        "digits_mlp", 24, 20, 32, ("train.vectorize=8", "search.width={choices=[16, 32, 64, 128]}"),
        None, "the quick start's small networks (widths 16 to 128) with train.vectorize=8: "
        "hpstudy samples 3 groups of 8 trials that share width and depth; the peer then trains "
        "the same 24 trials one by one",
        hpstudy_first=True),
}
QUICK_TRIALS, QUICK_EPOCHS = 2, 2  # --quick: enough to see that everything runs


# ------------------------------------------------------------------------- the machine


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (writers, requirement probes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# ------------------------------------------------------------------------- the cases


def case_config(case: Case, trials: int, epochs: int, quick: bool) -> StudyConfig:
    """The bundled study with its pruner off and the case's epochs, batch and fixed values."""
    overrides = ['pruner={name="none"}', f"train.epochs={epochs}",
                 f"train.batch_size={case.batch_size}", f"trials={trials}", *case.fixed]
    if quick and case.quick_subset:
        overrides.append(f"data.subset={case.quick_subset}")
    return load_study(case.study, overrides)


def peer_space(name: str, config: StudyConfig) -> Space:
    """The study's search space as the plain objective writes it; it must be one it can."""
    search = config.search

    def span(key: str) -> tuple[Any, Any]:
        p = search[key]
        return (p.value, p.value) if p.value is not None else (p.low, p.high)

    problems = [f"{key} = {search[key].value}" for key in ("weight_decay", "dropout")
                if search[key].value != 0]
    problems += ["lr not log-uniform"] if search["lr"].value is None and not search["lr"].log \
        else []
    problems += ["width a range, not choices"] if search["width"].low is not None else []
    problems += [f"optimizer {config.train.optimizer}"] if config.train.optimizer != "sgd" else []
    if problems:
        raise SystemExit(f"case {name}: the plain objective searches lr (log), momentum, width "
                         f"(choices) and depth with SGD and nothing else; the study has "
                         f"{', '.join(problems)}.")
    width = search["width"]
    return Space(lr=span("lr"), momentum=span("momentum"),
                 width=(width.value,) if width.value is not None else tuple(width.choices),
                 depth=span("depth"))


def network(config: StudyConfig, data: Dataset, width: int, depth: int) -> torch.nn.Module:
    """The trial's network, built by hpstudy for both sides: the same work per step."""
    return build_model(config.model, data, {"width": width, "depth": depth})


def peer_setup(config: StudyConfig, data: Dataset, pip_requirements: list[str] | None
               ) -> Setup:
    """What the peer trains: the same tensors, network, epochs, batch and seed."""
    return Setup(config.name, peer_space(config.name, config),
                 lambda width, depth: network(config, data, width, depth),
                 TensorDataset(data.train.x, data.train.y), TensorDataset(data.val.x, data.val.y),
                 config.train.epochs, config.train.batch_size, config.train.seed,
                 pip_requirements=pip_requirements)


# ------------------------------------------------------------------------- the two sides


def side_row(trial: optuna.trial.FrozenTrial, wall: float, epochs: list[float],
             parts: dict[str, float | None], state: str) -> dict[str, Any]:
    """One trial of either side, in the same fields."""
    excess = epochs[0] - statistics.median(epochs[1:]) if len(epochs) >= 3 else None
    return {"trial": trial.number, "params": trial.params, "state": state,
            "epochs": len(epochs), "epoch_seconds": epochs, "wall": wall,
            "epochs_s": sum(epochs), "first_epoch_excess": excess} | {
            part: parts.get(part) for part in PARTS}


def peer_rows(result: StudyResult) -> list[dict[str, Any]]:
    """The peer's trials: Optuna's duration (its nested run's start and end inside)."""
    rows = []
    for trial in result.study.trials:
        spent = result.timings[trial.number]
        parts = {part: getattr(spent, part) for part in PARTS}
        rows.append(side_row(trial, trial.duration.total_seconds(),
                             spent.epoch_seconds, parts, trial.state.name.lower()))
    return rows


def hpstudy_rows(outcome: Outcome, tracking_uri: str) -> list[dict[str, Any]]:
    """hpstudy's trials: Optuna's duration, its record's timings, MLflow's epoch_seconds."""
    client, rows = MlflowClient(tracking_uri), []
    for trial in outcome.study.trials:
        if trial.duration is None:
            continue  # never ran
        record = TrialRecord.fields_of(trial)
        timings = record.get("timings") or {}
        run_id = record.get("run_id")
        history = client.get_metric_history(run_id, "epoch_seconds") if run_id else []
        epochs = [m.value for m in sorted(history, key=lambda m: m.step)]
        if not epochs and timings:
            epochs = [timings.get("train", 0.0) + timings.get("validate", 0.0)]
        parts = {part: timings.get(part) for part in PARTS if part != "run"}
        row = side_row(trial, trial.duration.total_seconds(), epochs, parts,
                       record.get("state") or trial.state.name.lower())
        rows.append(row | {"train_seconds": record.get("train_seconds"),
                           "logging_seconds": record.get("logging_seconds")})
    return rows


def phases(trials: list[optuna.trial.FrozenTrial], began: datetime.datetime,
           ended: datetime.datetime, last_extra: float = 0.0) -> dict[str, float | None]:
    """Seconds of a study before its first trial started and after its last one ended."""
    ran = [t for t in trials if t.datetime_start and t.datetime_complete]
    if not ran:
        return {"before_first_trial": None, "after_last_trial": None}
    first, last = min(t.datetime_start for t in ran), max(t.datetime_complete for t in ran)
    return {"before_first_trial": (first - began).total_seconds(),
            "after_last_trial": (ended - last).total_seconds() - last_extra}


def run_peer(config: StudyConfig, data: Dataset, trials: int, folder: Path,
             pip_requirements: list[str] | None = None, enqueue: Sequence[dict] = ()
             ) -> dict[str, Any]:
    """The plain study (TPE chooses its parameters, or runs `enqueue`), timed; its rows."""
    load, cpu = os.getloadavg()[0], cpu_seconds()
    result = run_study(peer_setup(config, data, pip_requirements), trials, folder, enqueue)
    rows = peer_rows(result)
    return {"study_wall": result.seconds, "cpu_seconds": cpu_seconds() - cpu,
            "load_before": load, "load_after": os.getloadavg()[0],
            "optuna_storage": "in memory (Optuna's default)", "rows": rows} | phases(
            result.study.trials, result.began, result.ended)


def champion_trial(outcome: Outcome) -> int | None:
    """The trial selection registered, where the Outcome says (its shape is still changing)."""
    decision = getattr(outcome.selection, "decision", outcome.selection)
    return getattr(decision, "trial", None)


def run_hpstudy(config: StudyConfig, data: Dataset, trials: int, folder: Path,
                enqueue: list[dict]) -> dict[str, Any]:
    """hpstudy's optimize on fresh stores in `folder`, timed; `enqueue` runs those first.

    The Optuna study is created (untimed) only to enqueue the peer's parameters; without
    them, hpstudy creates it inside the timed call as a user's first run does.
    """
    stores = Stores(storage=f"sqlite:///{folder}/optuna.db",
                    tracking_uri=f"sqlite:///{folder}/mlflow.db")
    if enqueue:
        study = optuna.create_study(storage=stores.storage, study_name=config.name,
                                    direction="minimize")
        for params in enqueue:
            study.enqueue_trial(params)
    load, cpu = os.getloadavg()[0], cpu_seconds()
    began, started = datetime.datetime.now(), time.perf_counter()
    outcome = optimize(plan(config, stores, trials=trials, device="cpu", data=data))
    wall, ended = time.perf_counter() - started, datetime.datetime.now()
    return phases(outcome.study.trials, began, ended) | {
            "study_wall": wall, "cpu_seconds": cpu_seconds() - cpu, "load_before": load,
            "load_after": os.getloadavg()[0], "optuna_storage": stores.storage,
            "selection": getattr(outcome, "selection_seconds", None),
            "champion_trial": champion_trial(outcome),
            "no_selection_reason": outcome.no_selection_reason,
            "rows": hpstudy_rows(outcome, stores.tracking_uri)}


# ------------------------------------------------------------------------- the bare loop


def bare_shape(model: torch.nn.Module, data: Dataset, batch: int, most_epochs: int,
               seconds: float) -> dict[str, float]:
    """Best seconds per epoch of the barest loop over the tensors, and per validation pass.

    Best of several (at least two epochs where the case has two): a floor, so load from
    elsewhere on the machine shows up as overhead, never as a faster floor.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    order, x, y = torch.Generator().manual_seed(0), data.train.x, data.train.y
    epochs: list[float] = []
    while len(epochs) < min(2, most_epochs) or (sum(epochs) < seconds
                                                 and len(epochs) < most_epochs):
        started = time.perf_counter()
        model.train()
        for index in torch.randperm(len(y), generator=order).split(batch):
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        epochs.append(time.perf_counter() - started)
    model.eval()
    passes: list[float] = []
    while len(passes) < 3 or (sum(passes) < seconds / 4 and len(passes) < 50):
        started = time.perf_counter()
        evaluate(model, data.val)  # hpstudy's own evaluation, big batches
        passes.append(time.perf_counter() - started)
    return {"train": min(epochs), "validate": min(passes), "train_mean": statistics.fmean(epochs),
            "validate_mean": statistics.fmean(passes), "epochs_timed": len(epochs)}


def shape_of(row: dict[str, Any], space: Space) -> tuple[int, int]:
    """A trial's (width, depth): its own where searched, the study's where fixed."""
    return row["params"].get("width", space.width[0]), row["params"].get("depth", space.depth[0])


def bare_reference(config: StudyConfig, data: Dataset, rows: list[dict], seconds: float
                   ) -> dict[tuple[int, int], dict[str, float]]:
    """The bare loop, once for every (width, depth) that any trial trained."""
    space, shapes = peer_space(config.name, config), {}
    for row in rows:
        shape = shape_of(row, space)
        if shape not in shapes:
            torch.manual_seed(config.train.seed)
            shapes[shape] = bare_shape(network(config, data, *shape), data,
                                       config.train.batch_size, config.train.epochs, seconds)
    return shapes


def bare_for(rows: list[dict], shapes: dict[tuple[int, int], dict[str, float]], space: Space
             ) -> dict[str, float]:
    """What the bare loop needs for the epochs these trials trained: train, validate."""
    spent = {"train": 0.0, "validate": 0.0}
    for row in rows:
        for part in spent:
            spent[part] += row["epochs"] * shapes[shape_of(row, space)][part]
    return spent


# ------------------------------------------------------------------------- summaries


def total(rows: list[dict], key: str) -> float | None:
    """The sum of a per-trial number over trials, or None where no trial has it."""
    values = [row[key] for row in rows if row.get(key) is not None]
    return sum(values) if values else None


def summary(side: dict[str, Any], bare: dict[str, float]) -> dict[str, Any]:
    """Totals, rates and shares of one side's study; `bare`: the bare loop for its epochs."""
    rows, wall = side["rows"], side["study_wall"]
    floor = bare["train"] + bare["validate"]
    epochs = sum(r["epochs"] for r in rows)
    epochs_s, trial_wall = total(rows, "epochs_s") or 0.0, total(rows, "wall") or 0.0
    parts = {part: total(rows, part) for part in PARTS}
    beside = sum(v for k, v in parts.items() if v is not None and k not in ("train", "validate"))
    return {"trials": len(rows), "epochs_trained": epochs, "study_wall": wall,
            "trials_per_hour": 3600 * len(rows) / wall,
            "seconds_per_epoch": epochs_s / epochs if epochs else None,
            "trial_wall": trial_wall, "epochs_s": epochs_s,
            "first_epoch_excess": total(rows, "first_epoch_excess"),
            "logging_seconds": total(rows, "logging_seconds")} | parts | {
            "rest_of_trials": trial_wall - epochs_s - beside,
            "outside_trials": wall - trial_wall, "selection": side.get("selection"),
            "before_first_trial": side["before_first_trial"],
            "after_last_trial": side["after_last_trial"],
            "between_trials": None if side["after_last_trial"] is None else
            wall - trial_wall - side["before_first_trial"] - side["after_last_trial"],
            "not_epochs_share_of_trial_wall": 1 - epochs_s / trial_wall if trial_wall else None,
            "not_epochs_share_of_study_wall": 1 - epochs_s / wall,
            "bare_train": bare["train"], "bare_validate": bare["validate"],
            "bare_s_per_epoch": floor / epochs if epochs else None,
            "epochs_over_bare": epochs_s / floor if floor else None,
            "not_bare_share_of_study_wall": 1 - floor / wall,
            "cpu_seconds": side["cpu_seconds"],
            "states": {s: sum(r["state"] == s for r in rows) for s in {r["state"] for r in rows}}}


def same_params(peer: list[dict], ours: list[dict]) -> int:
    """How many trials trained the same parameters on both sides (in order)."""
    return sum(a["params"] == b["params"] for a, b in zip(peer, ours, strict=False))


SECONDS_ROWS = (  # label, summary key, note: where each side's wall time went
    ("study wall", "study_wall", ""),
    ("  trials (their wall)", "trial_wall", ""),
    ("    epochs (train + validate)", "epochs_s", ""),
    ("      first epochs over the median", "first_epoch_excess",
     "a trial's first epoch beyond its median epoch"),
    ("      train", "train", ""),
    ("      validate", "validate", ""),
    ("    metrics", "metrics", ""),
    ("    figures", "figures", "hpstudy: handing them to its writer process"),
    ("    model", "model", "hpstudy: its weights; packaging is in selection"),
    ("    nested run (start, params, end)", "run", "the peer: mlflow.start_run(nested=True)"),
    ("    rest of the trials", "rest_of_trials", ""),
    ("  outside trials", "outside_trials", ""),
    ("    before the first trial", "before_first_trial", "stores, study, parent run"),
    ("    between trials", "between_trials", "sampler, Optuna's storage"),
    ("    after the last trial", "after_last_trial", "hpstudy: writer, selection, run ends"),
    ("      selection", "selection", "choose, test, package, register"),
)


def table(name: str, result: dict[str, Any]) -> str:
    """One case as a fixed-column table: totals and per trial, the peer beside hpstudy."""
    s, p, h = result["settings"], result["peer"], result["hpstudy"]

    def cell(value: float | None, fmt: str = ".2f", suffix: str = "") -> str:
        return f"{'-':>10}" if value is None else f"{value:>{10 - len(suffix)}{fmt}}{suffix}"

    def both(key: str, fmt: str = ".2f", suffix: str = "", scale: float = 1.0) -> str:
        return "".join(cell(None if v is None else scale * v, fmt, suffix)
                       for v in (p.get(key), h.get(key)))

    def seconds(label: str, key: str, note: str) -> str:
        per_trial = [None if side.get(key) is None else side[key] / max(side["trials"], 1)
                     for side in (p, h)]
        return (f"{label:<34}{both(key)}{cell(per_trial[0], '.3f')}{cell(per_trial[1], '.3f')}"
                f"  {note}").rstrip()

    return "\n".join([
        f"{name}: {s['what']}",
        f"  {s['trials']} trials x {s['epochs']} epochs, batch {s['batch_size']}, "
        f"{s['train_examples']:,} train / {s['val_examples']:,} val examples; "
        f"{s['torch_threads']} torch threads; run order {' -> '.join(s['order'])}; "
        f"{result['same_params']} of {s['trials']} trials with the same parameters",
        f"{'':<34}{'peer':>10}{'hpstudy':>10}{'peer':>10}{'hpstudy':>10}",
        f"{'seconds':<34}{'total':>10}{'total':>10}{'/ trial':>10}{'/ trial':>10}",
        *(seconds(*row) for row in SECONDS_ROWS),
        f"{'trials per hour':<34}{both('trials_per_hour', '.0f')}  hpstudy / peer = "
        f"{h['trials_per_hour'] / p['trials_per_hour']:.2f}x",
        f"{'epochs trained':<34}{both('epochs_trained', '.0f')}",
        f"{'seconds per epoch (train + val)':<34}{both('seconds_per_epoch', '.4f')}",
        f"{'  the bare loop (best), same epochs':<34}{both('bare_s_per_epoch', '.4f')}",
        f"{'  epochs / bare loop':<34}{both('epochs_over_bare', '.2f', 'x')}",
        f"{'not epochs, % of trial wall':<34}"
        f"{both('not_epochs_share_of_trial_wall', '.1f', '%', 100)}  target for hpstudy: <= 10%",
        f"{'not epochs, % of study wall':<34}"
        f"{both('not_epochs_share_of_study_wall', '.1f', '%', 100)}",
        f"{'not the bare loop, % of study wall':<34}"
        f"{both('not_bare_share_of_study_wall', '.1f', '%', 100)}",
        f"{'CPU seconds (with child processes)':<34}{both('cpu_seconds', '.1f')}",
        f"trial states: peer {p['states']}, hpstudy {h['states']}"])


# ------------------------------------------------------------------------- main


def requirements(args: argparse.Namespace) -> list[str] | None:
    """The peer's `pip_requirements` for log_model: None lets MLflow infer them."""
    pinned = [f"torch=={importlib.metadata.version('torch')}"]
    return pinned if args.peer_requirements == "pinned" else None


def run_case(name: str, case: Case, config: StudyConfig, data: Dataset, args: argparse.Namespace
             ) -> dict[str, Any]:
    """Peer, then hpstudy on the peer's parameters, then the bare loop; all numbers.

    A case that vectorises runs hpstudy first (its groups share width and depth, which the
    peer's TPE would not sample) and the peer then on hpstudy's parameters.
    """
    trials = config.trials
    with tempfile.TemporaryDirectory(prefix="cpu_speed-") as folder:
        Path(folder, "peer").mkdir()
        Path(folder, "hpstudy").mkdir()
        if case.hpstudy_first:
            ours = run_hpstudy(config, data, trials, Path(folder, "hpstudy"), [])
            enqueue = [r["params"] for r in ours["rows"]]
            peer = run_peer(config, data, trials, Path(folder, "peer"), requirements(args),
                            enqueue)
        else:
            peer = run_peer(config, data, trials, Path(folder, "peer"), requirements(args))
            enqueue = [] if args.own_params else [r["params"] for r in peer["rows"]]
            ours = run_hpstudy(config, data, trials, Path(folder, "hpstudy"), enqueue)
    shapes = bare_reference(config, data, peer["rows"] + ours["rows"],
                            0.2 if args.quick else BARE_SECONDS)
    space = peer_space(config.name, config)
    settings = {"what": case.what, "study": case.study, "overrides": list(config.overrides),
                "trials": trials, "epochs": config.train.epochs,
                "batch_size": config.train.batch_size, "train_examples": len(data.train),
                "val_examples": len(data.val), "torch_threads": torch.get_num_threads(),
                "order": ["hpstudy", "peer", "bare"] if case.hpstudy_first
                else ["peer", "hpstudy", "bare"],
                "params": "the peer runs hpstudy's parameters (enqueued)" if case.hpstudy_first
                else "hpstudy runs the peer's TPE parameters (enqueued)" if enqueue
                else "each side samples its own (TPE, seed 0)",
                "overlapping_trials": "hpstudy trains each group of 8 as one: its trials' "
                "walls and epochs overlap, so per-trial sums count a group's time 8 times"
                if case.hpstudy_first else None,
                "peer_eval_batch": EVAL_BATCH,
                "peer_pip_requirements": requirements(args) or "inferred by MLflow per model"}
    sides = {"peer": summary(peer, bare_for(peer["rows"], shapes, space)),
             "hpstudy": summary(ours, bare_for(ours["rows"], shapes, space))}
    return {"settings": settings, "same_params": same_params(peer["rows"], ours["rows"]),
            "trials_per_hour_ratio": sides["hpstudy"]["trials_per_hour"]
            / sides["peer"]["trials_per_hour"]} | sides | {
            "bare_loop": [{"width": w, "depth": d} | v for (w, d), v in shapes.items()],
            "trials": {"peer": peer["rows"], "hpstudy": ours["rows"]},
            "hpstudy_selection": {k: ours[k] for k in ("champion_trial", "no_selection_reason")},
            "load_average": {side: [r["load_before"], r["load_after"]]
                             for side, r in (("peer", peer), ("hpstudy", ours))}}


def warm_up(data: dict[str, tuple[StudyConfig, Dataset]], pip: list[str] | None
            ) -> dict[str, float]:
    """One tiny study of each side first, so neither pays the process's first imports."""
    config, dataset = next(iter(data.values()))
    tiny = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=1))
    spent = {}
    with tempfile.TemporaryDirectory(prefix="cpu_speed-warm-") as folder:
        for side in ("peer", "hpstudy"):
            Path(folder, side).mkdir()
            started = time.perf_counter()
            if side == "peer":
                run_peer(tiny, dataset, 1, Path(folder, side), pip)
            else:
                run_hpstudy(tiny, dataset, 1, Path(folder, side), [])
            spent[side] = time.perf_counter() - started
    return spent


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from {', '.join(CASES)} (default: all)")
    parser.add_argument("--trials", type=int, help="trials per case (default: the case's)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the case's)")
    parser.add_argument("--data-dir", default=os.environ.get("HPSTUDY_DATA_DIR"),
                        help="MNIST's IDX files, e.g. /work/shared/data/mnist "
                             "(default: $HPSTUDY_DATA_DIR)")
    parser.add_argument("--out", type=Path, help="JSON file (default: "
                        "bench/results/cpu_speed-DATE.json)")
    parser.add_argument("--peer-requirements", choices=("inferred", "pinned"),
                        default="inferred", help="the peer's log_model: MLflow infers pip "
                        "requirements per model (its default, seconds each) or gets torch's")
    parser.add_argument("--own-params", action="store_true",
                        help="let hpstudy sample its own trials instead of the peer's")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_TRIALS} trials x {QUICK_EPOCHS} epochs, MNIST subset: "
                             "checks that it runs")
    args = parser.parse_args()
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown or not args.cases:
        parser.error(f"--cases {','.join(unknown)}: expected some of {', '.join(CASES)}")
    return args


def main() -> None:
    """Load every case's data first (bad input fails before any measurement), then run."""
    args = parse_args()
    now = datetime.datetime.now(datetime.UTC)
    out = args.out or RESULTS / f"cpu_speed-{now:%Y-%m-%d}.json"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet()
    loaded: dict[str, tuple[StudyConfig, Dataset]] = {}
    for name in args.cases:
        case = CASES[name]
        trials = args.trials or (QUICK_TRIALS if args.quick else case.trials)
        epochs = args.epochs or (QUICK_EPOCHS if args.quick else case.epochs)
        try:
            config = case_config(case, trials, epochs, args.quick)
            peer_space(name, config)
            started = time.perf_counter()
            loaded[name] = (config, load_data(config, args.data_dir))
        except UserError as error:
            raise SystemExit(f"case {name}: {error}\n(MNIST cases read --data-dir DIR; or run "
                             "--cases digits_mlp)") from None
        print(f"{name}: data loaded in {time.perf_counter() - started:.1f} s", flush=True)
    results: dict[str, Any] = {
        "benchmark": "cpu_speed", "command": shlex.join(sys.orig_argv),
        "date_utc": now.isoformat(timespec="seconds"), "device": machine(),
        "versions": versions(("torch", "optuna", "optuna-integration", "mlflow")),
        "load_average_at_start": os.getloadavg(),
        "order": "per case: peer, then hpstudy (hpstudy first where it vectorises), then the "
                 "bare loop; cases one after another; nothing runs concurrently",
        "quick": args.quick}
    if os.getloadavg()[0] > BUSY_LOAD:
        print(f"warning: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: "
              "something else is running; torch's threads slow down a lot beside it, so "
              "these numbers will not be clean", flush=True)
    results["warm_up_seconds"] = warm_up(loaded, requirements(args))
    results["cases"] = {}
    for name, (config, data) in loaded.items():
        results["cases"][name] = run_case(name, CASES[name], config, data, args)
        print("\n" + table(name, results["cases"][name]), flush=True)
    results["load_average_at_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(finite(results), indent=1, allow_nan=False))
    print(f"\nwrote {out}")



if __name__ == "__main__":
    main()
