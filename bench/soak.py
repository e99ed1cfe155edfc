"""Soak: 8 workers on one study for hundreds of trials, on each kind of store.

A benchmark, not a test (tests/run/test_workers.py runs 4 workers for 60 trials). It
starts 8 `hpstudy worker` processes at once on fresh stores, as `optimize --jobs 8` does
(same environment: OMP_NUM_THREADS = cores / 8, at least 1), each writing its stderr to a
log of its own, sharing `--trials` of a 1-epoch digits study; then it reads both stores:

- lock errors: lines of the workers' logs, and failed trials' reasons, that say "locked";
- duplicate trials (a trial number twice, or two MLflow runs for one attempt) and lost ones
  (planned but not finished);
- what is left RUNNING: Optuna trials and MLflow runs;
- per-trial store overhead near trial 1, 100 and 500: a trial's wall time (Optuna's start
  to complete) minus its training and validation time, and a worker's cycle (one trial's
  end to its next one's) minus the same; the median over 20 trials around each point;
- the peak resident memory of each worker (and its figure writers: the kernel's maxrss).

    python bench/soak.py                              # both stores, 500 trials each
    python bench/soak.py --store sqlite --trials 200  # one store, fewer trials

The PostgreSQL cluster and the `mlflow server` are started on loopback (tests/servers.py)
and stopped after. Results go to bench/results/soak-DATE.json (one key per store).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState
from provenance import finite, machine, versions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the loopback servers the tests use
from servers import create_database, mlflow_server, postgres_server  # noqa: E402

from hpstudy.run.workers import shares, threads_each  # noqa: E402
from hpstudy.search.record import TRIAL_TAG, TrialRecord  # noqa: E402

STUDY = "digits_mlp"
SETTINGS = ["--set", "train.epochs=1"]  # a 1-epoch digits trial: the stores dominate
POINTS = (1, 100, 500)  # trial numbers whose overhead is reported (20 trials around each)
LOCKED = re.compile(r"database is locked|lock timeout|deadlock", re.I)


def start_workers(folder: Path, jobs: int, trials: int, stores: list[str]) -> list:
    """`jobs` `hpstudy worker` processes, started together; (process, log path) each."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads_each(jobs)), PYTHONUNBUFFERED="1")
    started = []
    for index, share in enumerate(shares(trials, jobs)):
        log = folder / f"worker-{index}.log"
        with log.open("w") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "hpstudy", "worker", "--study", STUDY, "--trials",
                 str(share), "--worker-index", str(index), "--quiet", *SETTINGS, *stores],
                cwd=folder, stdout=subprocess.DEVNULL, stderr=err, env=env)
        started.append((process, log))
    return started


def wait_all(started: list) -> list[dict]:
    """Wait for every worker; its exit code, peak memory (MB) and lock lines."""
    results = []
    for index, (process, log) in enumerate(started):
        _, status, usage = os.wait4(process.pid, 0)  # its rusage: maxrss of it and its writers
        process.returncode = os.waitstatus_to_exitcode(status)
        text = log.read_text(errors="replace")
        results.append({"worker": index, "exit_code": process.returncode,
                        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                        "lock_lines": sum(bool(LOCKED.search(ln)) for ln in text.splitlines()),
                        "last_line": (text.strip().splitlines() or [""])[-1][:300]})
    return results


def overhead(trials: list[optuna.trial.FrozenTrial]) -> dict[str, dict[str, float | None]]:
    """Median store overhead (s) per trial near each of POINTS: in the trial, and per cycle."""
    finished = [t for t in trials if t.datetime_complete and TrialRecord.of(t)]
    inside, cycle = {}, {}
    by_worker: dict[int, list] = {}
    for t in finished:
        record = TrialRecord.of(t)
        inside[t.number] = ((t.datetime_complete - t.datetime_start).total_seconds()
                            - record.train_seconds)
        by_worker.setdefault(record.process.pid, []).append(t)
    for own in by_worker.values():
        own.sort(key=lambda t: t.datetime_start)
        for before, t in itertools.pairwise(own):
            cycle[t.number] = ((t.datetime_complete - before.datetime_complete).total_seconds()
                               - TrialRecord.of(t).train_seconds)
    last = max((t.number for t in finished), default=0)
    out = {}
    for point in POINTS:
        centre = min(point, last)
        window = range(max(0, centre - 10), min(centre + 10, last + 1))
        out[f"trial_{point}"] = {
            "trials": f"{window.start}-{window.stop - 1}",
            "in_trial_s": _median([inside[n] for n in window if n in inside]),
            "cycle_s": _median([cycle[n] for n in window if n in cycle])}
    return out


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def check(storage: str, tracking_uri: str, trials: int) -> dict:
    """What the stores hold after the soak: counts, duplicates, losses, RUNNING, locks."""
    study = optuna.load_study(study_name=STUDY, storage=storage)
    all_trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in all_trials]
    states = {s.name: sum(t.state == s for t in all_trials) for s in TrialState}
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(STUDY).experiment_id
    runs = client.search_runs([experiment], max_results=50000)
    per_trial: dict[int, int] = {}
    for run in runs:
        if TRIAL_TAG in run.data.tags:
            number = int(run.data.tags[TRIAL_TAG])
            per_trial[number] = per_trial.get(number, 0) + 1
    reasons = [r.fail_reason for t in all_trials if (r := TrialRecord.of(t)) and r.fail_reason]
    finished = states["COMPLETE"] + states["PRUNED"] + states["FAIL"]
    return {
        "optuna_trials": len(all_trials), "states": states,
        "duplicate_trial_numbers": len(numbers) - len(set(numbers)),
        "trials_with_several_runs": sum(n > 1 for n in per_trial.values()),
        "trials_without_a_run": sum(t.number not in per_trial for t in all_trials
                                    if t.state != TrialState.WAITING),
        "lost_trials": trials - finished,
        "optuna_running": states["RUNNING"],
        "mlflow_runs": len(runs),
        "mlflow_running": sum(r.info.status == "RUNNING" for r in runs),
        "lock_errors_in_trials": sum(bool(LOCKED.search(r)) for r in reasons),
        "fail_reasons": sorted(set(reasons))[:10],
        "overhead": overhead(all_trials),
    }


def soak(kind: str, jobs: int, trials: int, folder: Path) -> dict:
    """One soak on `kind` ("sqlite" or "postgresql") in `folder`."""
    if kind == "sqlite":
        home = folder / "work" / "mlruns"  # the default stores of the workers' folder
        return _soak(folder, jobs, trials, [], f"sqlite:///{home}/optuna.db",
                     f"sqlite:///{home}/mlflow.db")
    with postgres_server(folder / "pg") as url:
        optuna_url, mlflow_url = create_database(url, "optuna"), create_database(url, "mlflow")
        with mlflow_server(mlflow_url, folder / "artifacts") as server:
            return _soak(folder, jobs, trials, ["--storage", optuna_url, "--tracking-uri",
                                                server], optuna_url, server)


def _soak(folder: Path, jobs: int, trials: int, stores: list[str], storage: str,
          tracking_uri: str) -> dict:
    (folder / "work").mkdir()
    started = time.perf_counter()
    workers = wait_all(start_workers(folder / "work", jobs, trials, stores))
    seconds = time.perf_counter() - started
    found = check(storage, tracking_uri, trials)
    return {"wall_s": round(seconds, 1), "trials_per_s": round(trials / seconds, 2),
            "lock_lines_in_worker_logs": sum(w["lock_lines"] for w in workers),
            **found, "workers": workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--jobs", type=int, default=8, help="worker processes")
    parser.add_argument("--trials", type=int, default=500, help="trials in all, per store")
    parser.add_argument("--note", default="", help="recorded as is, e.g. why trials were cut")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    today = datetime.date.today().isoformat()
    path = args.out / f"soak-{today}.json"
    result = json.loads(path.read_text()) if path.exists() else {
        "bench": "soak", "date": today, "stores": {}}
    result |= {"device": machine(), "versions": versions(),
               "study": f"{STUDY} {' '.join(SETTINGS)}"}
    for kind in ("sqlite", "postgresql") if args.store == "both" else (args.store,):
        with tempfile.TemporaryDirectory(prefix=f"soak-{kind}-") as folder:
            found = soak(kind, args.jobs, args.trials, Path(folder))
        command = f"python bench/soak.py --store {kind} --jobs {args.jobs} --trials {args.trials}"
        result["stores"][kind] = {"command": command, "date": today, "jobs": args.jobs,
                                  "trials": args.trials, "note": args.note, **found}
        print(json.dumps({k: found[k] for k in ("wall_s", "lost_trials", "optuna_running",
                                                  "mlflow_running", "lock_lines_in_worker_logs",
                                                  "overhead")}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite(result), indent=2) + "\n"
    for machine_path in (str(ROOT), tempfile.gettempdir()):  # never a machine path
        text = text.replace(machine_path, "DIR")
    path.write_text(text)
    print(f"written {path}")


if __name__ == "__main__":
    main()
