"""Seed results: the studies of the seed reports run to the end on real data, one after another.

The measurements behind the README's "Reproducing the reports" (a benchmark, not a test).
For each study named it runs the real command line, `hpstudy optimize --study NAME
--data-dir DIR [--trials N] [--set KEY=VALUE ...]`, in a fresh temporary folder, times it,
then reads the stores it left (Optuna's `mlruns/optuna.db`, MLflow's `mlruns/mlflow.db`):
trials by end state, epochs trained in all, the best trial's validation loss and accuracy,
and the champion's test metrics (the tags of `models:/NAME@champion`). The JSON is
rewritten after every study, so the studies done so far survive an interrupted run.

    .venv/bin/python bench/seed_results.py --data-dir /work/shared/data/mnist xor_mlp functions_mlp
    .venv/bin/python bench/seed_results.py --data-dir DIR mlp_mnist --trials mlp_mnist=10 \\
        --set mlp_mnist=train.epochs=10        # a reduction, written into the study's entry

Reductions (`--trials NAME=N`, `--timeout NAME=S`, `--set NAME=KEY=VALUE`) and
`--jobs NAME=N` (trial processes; on a GPU several share it) apply to one study each and
are recorded with the study file's own trials and epochs, so a row can say what was cut.
Calls on the same day add to the same JSON; a study named again replaces its entry.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from provenance import finite  # bench/provenance.py

from hpstudy.search.record import TrialRecord
from hpstudy.spec.finding import find_study
from hpstudy.tracking.artifacts import registered_version

RESULTS = Path(__file__).parent / "results"  # default home of the JSON, one file per day


def device() -> str:
    """The GPU if torch sees one (hpstudy's `--device auto` trains there), else the CPU."""
    import torch

    if torch.cuda.is_available():
        return (f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()} "
                f"(CUDA {torch.version.cuda}), {os.cpu_count()} CPU cores")
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} cores (no GPU)"


def per_study(pairs: list[str], flag: str) -> dict[str, list[str]]:
    """`NAME=VALUE` flags grouped by study name."""
    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not value:
            sys.exit(f"seed_results: {flag} expects NAME=VALUE, got {pair!r}")
        grouped.setdefault(name, []).append(value)
    return grouped


def planned(study: str) -> dict[str, Any]:
    """The study file's own trials and epochs, before any reduction."""
    path = find_study(study)
    table = tomllib.loads(path.read_text())
    return {"file": str(path), "trials": table.get("trials"),
            "epochs": table.get("train", {}).get("epochs")}


def read_stores(study: str, folder: Path) -> dict[str, Any]:
    """What the run left: trials by state, epochs trained, the best trial, the champion."""
    # absolute URLs: MLflow caches a store by its URI, and a relative one would still
    # point at the first study's folder
    store = f"sqlite:///{folder.resolve()}/mlruns/"
    trials = optuna.load_study(study_name=study, storage=store + "optuna.db").get_trials(
        deepcopy=False)
    champion = registered_version(store + "mlflow.db", study, "champion")
    records = {t.number: TrialRecord.of(t) for t in trials}
    states = Counter(records[t.number].state if records[t.number] else t.state.name.lower()
                     for t in trials)  # hpstudy's own: complete, pruned, diverged, failed
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(done, key=lambda t: t.value) if done else None
    best_record = records.get(best.number) if best else None
    tags = champion.tags if champion else {}
    return {
        "trials_run": len(trials), "states": dict(states),
        "epochs_trained": sum(len(t.intermediate_values) for t in trials),
        "train_seconds": round(sum(r.train_seconds for r in records.values() if r), 1),
        "best_trial": best.number if best else None,
        "best_params": best.params if best else None,
        "best_val_loss": best.value if best else None,
        "best_val_acc": best_record.val_acc if best_record else None,  # its last epoch's
        "champion": {"version": champion.version, "trial": tags.get("trial"),
                     "val_loss": _number(tags.get("val_loss")),
                     "test_loss": _number(tags.get("test_loss")),
                     "test_acc": _number(tags.get("test_acc"))} if champion else None,
    }


def _number(text: str | None) -> float | None:
    """A tag's value as a number (None when absent or NaN, as for regression accuracy)."""
    if text is None:
        return None
    value = float(text)
    return None if math.isnan(value) else value


def portable(text: str, data_dir: str) -> str:
    """`text` with this machine's data folder written as DIR/<its name>, and the checkout
    (where the study files were found) as DIR: results travel, machine paths do not."""
    text = text.replace(str(Path(data_dir)), f"DIR/{Path(data_dir).name}")
    return text.replace(str(Path(__file__).resolve().parent.parent), "DIR")


def run_study(study: str, data_dir: str, extra: list[str], limit: float | None) -> dict[str, Any]:
    """One `hpstudy optimize` in a fresh folder: its command, wall time and results."""
    command = [sys.executable, "-m", "hpstudy", "optimize", "--study", study,
               "--data-dir", data_dir, *extra]
    shown = portable("hpstudy optimize " + shlex.join(command[4:]), data_dir)
    entry: dict[str, Any] = {"study": study, "command": shown, "planned": planned(study),
                             "started": _now(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix=f"seed-{study}-") as folder:
        start = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True,
                                  timeout=limit, check=False)
            entry["exit_code"], out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as stopped:
            entry["exit_code"], out, err = "timeout", _text(stopped.stdout), _text(stopped.stderr)
        entry["wall_seconds"] = round(time.perf_counter() - start, 1)
        entry["load_after"] = os.getloadavg()
        entry["summary"] = [portable(line, data_dir) for line in out.splitlines()
                            if line.startswith(("Study ", "Champion", "Note", "trial "))][-60:]
        if entry["exit_code"] not in (0, 3):
            entry["stderr_tail"] = err[-3000:]
        try:
            entry.update(read_stores(study, Path(folder)))
        except Exception as error:  # a study that left no store is still a row
            entry["store_error"] = f"{type(error).__name__}: {error}"
    return entry


def _text(raw: bytes | str | None) -> str:
    """Output captured before a timeout, as text."""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw or ""


def _now() -> str:
    """The current UTC time, to the second."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def code_version() -> dict[str, str]:
    """Which hpstudy ran: the imported package's folder and its commit (a git checkout's
    HEAD and whether it had local changes, or the COMMIT file of a `git archive` copy)."""
    import hpstudy

    root = Path(hpstudy.__file__).resolve().parent.parent

    def git(*words: str) -> str:
        return subprocess.run(["git", *words], cwd=root, capture_output=True, text=True,
                              check=False).stdout.strip()

    if (root / "COMMIT").is_file():  # a snapshot: git archive COMMIT | tar -x -C DIR
        return {"commit": (root / "COMMIT").read_text().strip()}
    return {"commit": git("rev-parse", "HEAD"),
            "local_changes": git("status", "--porcelain", "--", "hpstudy", "studies")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", metavar="NAME", help="studies, run in this order")
    parser.add_argument("--data-dir", required=True, metavar="DIR",
                        help="folder with the datasets' files (MNIST's IDX files)")
    parser.add_argument("--trials", action="append", default=[], metavar="NAME=N",
                        help="fewer trials for one study (a reduction; repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=KEY=VALUE",
                        help="a study-file override for one study, e.g. "
                             "mlp_mnist=train.epochs=10 (repeatable)")
    parser.add_argument("--timeout", action="append", default=[], metavar="NAME=S",
                        help="hpstudy's own --timeout for one study: no trial starts after S "
                             "seconds, the study is still selected (a reduction)")
    parser.add_argument("--jobs", action="append", default=[], metavar="NAME=N",
                        help="hpstudy's --jobs for one study: N trial processes (on a GPU, "
                             "several share it)")
    parser.add_argument("--limit", type=float, metavar="S",
                        help="stop a study's command after S seconds (recorded as 'timeout')")
    parser.add_argument("--out", type=Path, help="the JSON (default: "
                        "bench/results/seed_results-DATE.json)")
    args = parser.parse_args()
    trials, sets = per_study(args.trials, "--trials"), per_study(args.set, "--set")
    timeouts = per_study(args.timeout, "--timeout")
    jobs = per_study(args.jobs, "--jobs")
    today = datetime.date.today().isoformat()
    out = args.out or RESULTS / f"seed_results-{today}.json"
    command = portable(shlex.join([Path(sys.executable).name, *sys.argv]), args.data_dir)
    result: dict[str, Any] = {"bench": "seed_results", "date": today, "device": device(),
                              "commands": [], "studies": []}
    if out.exists():  # the day's earlier calls: kept, but for the studies named again
        result = json.loads(out.read_text())
        result["studies"] = [s for s in result["studies"] if s["study"] not in args.studies]
    result["commands"].append({"command": command, "code": code_version(), "started": _now()})
    for study in args.studies:
        extra = [f"--trials={n}" for n in trials.get(study, [])[-1:]]
        extra += [f"--timeout={s}" for s in timeouts.get(study, [])[-1:]]
        extra += [f"--jobs={n}" for n in jobs.get(study, [])[-1:]]
        extra += [f"--set={value}" for value in sets.get(study, [])]
        entry = run_study(study, args.data_dir, extra, args.limit) | {
            "bench_command": command, "device": result["device"]}
        result["studies"].append(entry)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(finite(result), indent=2, allow_nan=False) + "\n")
        champion = entry.get("champion") or {}
        print(f"{study:<22} exit {entry['exit_code']}  {entry['wall_seconds']:8.1f} s  "
              f"{entry.get('trials_run')} trials {entry.get('states')}  "
              f"{entry.get('epochs_trained')} epochs  best val_loss {entry.get('best_val_loss')}  "
              f"test_acc {champion.get('test_acc')}", flush=True)
    print(f"written {out}")


if __name__ == "__main__":
    main()
