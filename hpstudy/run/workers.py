"""`--jobs N`: N worker processes on one study, placed on the GPUs round robin.

Each worker is `hpstudy worker` in a process of its own (a crash, an out-of-memory kill or
a stuck CUDA context takes one worker, never the study), sharing the study through the
Optuna storage and the MLflow store. The parent only watches: it shows the trials as the
storage sees them end, forwards SIGINT/SIGTERM, and reports a worker that failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpstudy.errors import DiskFull
from hpstudy.train import interrupts

POLL_SECONDS = 0.5  # how often the parent looks for finished trials
STOP_SECONDS = 60  # how long interrupted workers get to close their trials before SIGKILL
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class Worker:
    """One worker process and where its messages go."""

    index: int
    device: str
    process: subprocess.Popen
    log: Path  # its stderr


def devices(name: str, jobs: int, cuda_count: int) -> list[str]:
    """The device of each of `jobs` workers: visible GPUs round robin for auto/cuda, else `name`."""
    if name in ("auto", "cuda") and cuda_count > 0:
        return [f"cuda:{i % cuda_count}" for i in range(jobs)]
    return ["cpu" if name == "auto" else name] * jobs


def shares(trials: int | None, jobs: int) -> list[int | None]:
    """Split `trials` among `jobs` workers (None: each runs until the timeout)."""
    if trials is None:
        return [None] * jobs
    return [trials // jobs + (i < trials % jobs) for i in range(jobs)]


def threads_each(jobs: int) -> int:
    """CPU threads per worker: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // jobs)


def start(args: Sequence[str], jobs: int, trials: int | None, device: str, cuda_count: int,
          folder: Path) -> list[Worker]:
    """Start `jobs` workers: `hpstudy worker ARGS` plus each one's trials, device and index."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads_each(jobs)), PYTHONUNBUFFERED="1")
    workers = []
    for index, (place, share) in enumerate(zip(devices(device, jobs, cuda_count),
                                               shares(trials, jobs), strict=True)):
        if share == 0:
            continue
        log = folder / f"worker-{index}.log"
        command = [sys.executable, "-m", "hpstudy", "worker", *args, "--device", place,
                   "--worker-index", str(index), "--quiet",
                   *(["--trials", str(share)] if share else [])]
        with log.open("w") as err:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                       start_new_session=True)  # the parent forwards Ctrl-C
        workers.append(Worker(index, place, process, log))
    return workers


def watch(workers: list[Worker], study: optuna.Study, first: int,
          on_trial: Callable[[optuna.Study, FrozenTrial], None] | None) -> None:
    """Until every worker exits: call `on_trial` for each trial (numbered >= first) that ends."""
    seen: set[int] = set()

    def report() -> None:
        for trial in study.get_trials(deepcopy=False, states=FINISHED):
            if trial.number >= first and trial.number not in seen:
                seen.add(trial.number)
                if on_trial is not None:
                    on_trial(study, trial)

    while any(w.process.poll() is None for w in workers):
        if any(w.process.poll() == DiskFull.exit_code for w in workers):
            stop(workers)  # a full disk stops every worker at once, not one by one
            break
        report()
        interrupts.checkpoint()
        time.sleep(POLL_SECONDS)
    report()


def stop(workers: list[Worker]) -> None:
    """Interrupt every worker (SIGTERM, handled like Ctrl-C), then kill those that linger."""
    for w in workers:
        if w.process.poll() is None:
            w.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for w in workers:
        try:
            w.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.process.kill()
            w.process.wait()


def problems(workers: list[Worker]) -> list[str]:
    """One line per worker that exited with an error: its code and last message.

    A worker stopped by a full disk raises its DiskFull here instead."""
    lines = []
    for w in workers:
        if w.process.returncode not in (0, None):
            tail = [line for line in w.log.read_text(errors="replace").splitlines() if line]
            last = tail[-1] if tail else "no message"
            if w.process.returncode == DiskFull.exit_code:
                message = last.removeprefix("hpstudy: disk full: ")
                raise DiskFull(message, f"disk full: worker {w.index} stopped: {message}")
            lines.append(f"worker {w.index} ({w.device}) exited with code "
                         f"{w.process.returncode}: {last}")
    return lines


def run(args: Sequence[str], jobs: int, trials: int | None, device: str, cuda_count: int,
        study: optuna.Study, first: int, on_trial: Callable | None) -> list[str]:
    """Run the workers to the end; the problems they reported. Interrupts stop them all."""
    with tempfile.TemporaryDirectory(prefix="hpstudy-workers-") as folder:
        workers = start(args, jobs, trials, device, cuda_count, Path(folder))
        try:
            watch(workers, study, first, on_trial)
        except BaseException:
            stop(workers)
            raise
        return problems(workers)
