"""Beside training: trials' figures are drawn and their runs closed in a background process.

Drawing and writing a trial's two matplotlib figures takes about 0.3 s on a CPU, as long
as a small trial trains. A process of its own (not a thread: drawing holds the GIL that a
small network's training loop needs) does it while the next trial trains: `python -m
hpstudy.writer`, fed pickled `RunEnd` jobs on its stdin, answering on its stdout. (A
`multiprocessing` pool would re-run the caller's `__main__` script in the child.)

`flush` waits for everything submitted and returns the failures, which the study reports
before it ends. A crash loses only figures still queued: the trial (in Optuna), its
metrics and its weights are written before a job is submitted, and
`recovery.reconcile` closes the run.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from typing import BinaryIO

from hpstudy.tracking import RunEnd, write_run_end


class Writer:
    """Writes `RunEnd` jobs (figures, tags, status) to MLflow in one background process."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None  # started on first use
        self._reader: threading.Thread | None = None
        self._done = threading.Condition()
        self._answers: list[tuple[str, str]] = []  # (run id, error or '') as they come back
        self._submitted = 0
        self._queue: queue.Queue = queue.Queue()  # jobs for the feeder; None ends it
        self._feeder: threading.Thread | None = None

    def submit(self, job: RunEnd) -> None:
        """Queue a run's end: its figures are drawn and written, then it is closed."""
        self._submitted += 1
        if self._process is None:
            self._start()
        try:
            self._queue.put((job, pickle.dumps(job)))  # the feeder thread writes it to the pipe
        except (pickle.PicklingError, AttributeError, TypeError):
            self._answer(job.run_id, _write(job))  # a job that cannot travel: write it here

    def flush(self) -> list[str]:
        """Wait for every job submitted so far; one line per failure (the run and why)."""
        with self._done:
            while len(self._answers) < self._submitted:
                if not self._done.wait(timeout=1.0) and not self._alive():
                    break  # the writer died mid-job: report the missing answers below
            answers, self._answers = self._answers, []
        missing = self._submitted - len(answers)
        self._submitted = 0
        failures = [f"run {run_id}: {error}" for run_id, error in answers if error]
        return failures + ([f"{missing} run(s): the writer process ended before writing them"]
                           if missing else [])

    def close(self) -> list[str]:
        """Flush, then stop the process; the failures."""
        failures = self.flush()
        if self._process is not None:
            self._queue.put(None)
            self._feeder.join()
            self._process.wait()
            self._reader.join()
            self._process = None
        return failures

    def _start(self) -> None:
        """The writer process, and a thread that collects its answers."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hpstudy.writer"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, start_new_session=True)  # Ctrl-C is the parent's to handle
        self._reader = threading.Thread(target=self._read, args=(self._process.stdout,),
                                        daemon=True)
        self._feeder = threading.Thread(target=self._feed, args=(self._process.stdin,),
                                        daemon=True)
        self._reader.start()
        self._feeder.start()

    def _feed(self, jobs: BinaryIO) -> None:
        """Write queued jobs into the pipe (blocking here, not in the training loop)."""
        while (item := self._queue.get()) is not None:
            job, data = item
            try:
                jobs.write(data)
                jobs.flush()
            except OSError:  # the writer died: write it from this thread instead
                self._answer(job.run_id, _write(job))
        with contextlib.suppress(OSError):
            jobs.close()

    def _read(self, answers: BinaryIO) -> None:
        """Collect (run id, error) answers until the process ends."""
        while True:
            try:
                run_id, error = pickle.load(answers)
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            self._answer(run_id, error)
        with self._done:
            self._done.notify_all()

    def _answer(self, run_id: str, error: str) -> None:
        with self._done:
            self._answers.append((run_id, error))
            self._done.notify_all()

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None


def _write(job: RunEnd) -> str:
    """Write one job; '' or why it failed."""
    try:
        write_run_end(job)
        return ""
    except Exception as error:
        return f"{type(error).__name__}: {error}"


def serve(jobs: BinaryIO, answers: BinaryIO) -> None:
    """The writer process: write each job from `jobs`, answer each on `answers`, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish what was given; the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            job = pickle.load(jobs)
        except EOFError:
            return
        pickle.dump((job.run_id, _write(job)), answers)
        answers.flush()


if __name__ == "__main__":
    from hpstudy.tracking import quiet

    quiet()
    answers_out = os.fdopen(os.dup(1), "wb")  # answers get the real stdout; anything a
    os.dup2(2, 1)  # library prints goes to stderr instead of into the answers
    serve(sys.stdin.buffer, answers_out)
