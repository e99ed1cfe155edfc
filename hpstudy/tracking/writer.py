"""Beside training: trials' figures are drawn and their runs closed in background processes.

Drawing and writing a trial's three matplotlib figures takes about 0.5 s on a CPU, as long
as a small trial trains. A process of its own (not a thread: drawing holds the GIL that a
small network's training loop needs) does it while the next trial trains: `python -m
hpstudy.tracking.writer`, fed pickled `RunEnd` jobs on its stdin, answering on its stdout. (A
`multiprocessing` pool would re-run the caller's `__main__` script in the child.) Where
jobs are queued when the study waits for them (vectorised groups end 8 at once), more start.

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
from collections.abc import Callable
from typing import BinaryIO

from hpstudy.tracking.runs import RunEnd, write_run_end

BACKLOG = 2  # queued jobs a process must have to be worth starting (its imports cost ~2 s)
MAX_PROCESSES = 4  # writer processes at most (each holds MLflow and matplotlib in memory)


class Writer:
    """Writes `RunEnd` jobs (figures, tags, status) to MLflow in background processes.

    One process while trials train: the other cores train (a second writer beside them
    slowed a 20-trial digits study from 21.9 s to 27.2 s, bench/cpu_speed.py). When the
    study waits for the writer (`flush`: nothing trains) and jobs are queued (a vectorised
    group's trials end at once), they are spread over more processes, up to `processes`
    (default: the cores, at most MAX_PROCESSES).
    """

    def __init__(self, processes: int | None = None, first: RunEnd | None = None) -> None:
        self._limit = processes or min(MAX_PROCESSES, os.cpu_count() or 1)
        self._channels: list[_Channel] = []  # one started on first use; more at a flush
        self._done = threading.Condition()
        self._answers: list[tuple[str, str]] = []  # (run id, error or '') as they come back
        self._submitted = 0
        self._started = 0
        if first is not None:  # a job to begin with (a call's early views)
            self.submit(first)

    @property
    def processes(self) -> int:
        """How many writer processes this writer has started."""
        return self._started

    def submit(self, job: RunEnd) -> None:
        """Queue a run's end: its figures are drawn and written, then it is closed."""
        self._submitted += 1
        try:
            data = pickle.dumps(job)
        except (pickle.PicklingError, AttributeError, TypeError):
            self._answer(job.run_id, _write(job))  # a job that cannot travel: write it here
            return
        if not self._channels:
            self._start()
        self._channels[0].put(job, data)

    def flush(self) -> list[str]:
        """Wait for every job submitted so far; one line per failure (the run and why)."""
        self._spread()
        with self._done:
            while len(self._answers) < self._submitted:
                if not self._done.wait(timeout=1.0) and not any(
                        c.busy() for c in self._channels):
                    break  # a writer died mid-job: report the missing answers below
            answers, self._answers = self._answers, []
        missing = self._submitted - len(answers)
        self._submitted = 0
        failures = [f"run {run_id}: {error}" for run_id, error in answers if error]
        return failures + ([f"{missing} run(s): the writer process ended before writing them"]
                           if missing else [])

    def close(self) -> list[str]:
        """Flush, then stop the processes; the failures."""
        failures = self.flush()
        for channel in self._channels:
            channel.stop()
        self._channels = []
        return failures

    def _spread(self) -> None:
        """Queued jobs over more processes, one more for every BACKLOG of them."""
        queued = [job for channel in self._channels for job in channel.take_queued()]
        while (len(self._channels) < self._limit
               and len(queued) >= BACKLOG * (len(self._channels) + 1)):
            self._start()
        for job, data in queued:  # to a live process with the fewest jobs
            min(self._channels, key=lambda c: (not c.alive(), c.outstanding)).put(job, data)

    def _start(self) -> None:
        self._channels.append(_Channel(self._answer))
        self._started += 1

    def _answer(self, run_id: str, error: str) -> None:
        with self._done:
            self._answers.append((run_id, error))
            self._done.notify_all()


class _Channel:
    """One writer process, a thread that feeds it jobs and one that collects its answers."""

    def __init__(self, answer: Callable[[str, str], None]) -> None:
        self._answer, self._outstanding, self._lock = answer, 0, threading.Lock()
        self._queue: queue.Queue = queue.Queue()  # jobs for the feeder; None ends it
        self._idle = threading.Semaphore(1)  # one job in the process at a time: the rest
        self._dead = False  # stay queued, where `take_queued` can still move them
        self._in_process = 0  # jobs written to the process and not answered (lost if it dies)
        self._process = subprocess.Popen(
            [sys.executable, "-m", __spec__.name], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, start_new_session=True)  # Ctrl-C is the parent's to handle
        self._reader = threading.Thread(target=self._read, args=(self._process.stdout,),
                                        daemon=True)
        self._feeder = threading.Thread(target=self._feed, args=(self._process.stdin,),
                                        daemon=True)
        self._reader.start()
        self._feeder.start()

    @property
    def outstanding(self) -> int:
        """Jobs given to this process and not yet answered."""
        return self._outstanding

    def put(self, job: RunEnd, data: bytes) -> None:
        """Queue a pickled job for this process."""
        with self._lock:
            self._outstanding += 1
        self._queue.put((job, data))  # the feeder thread writes it to the pipe

    def take_queued(self) -> list[tuple[RunEnd, bytes]]:
        """The jobs not yet fed to the process, taken back."""
        taken = []
        with contextlib.suppress(queue.Empty):
            while True:
                taken.append(self._queue.get_nowait())
        with self._lock:
            self._outstanding -= len(taken)
        return taken

    def alive(self) -> bool:
        return self._process.poll() is None

    def busy(self) -> bool:
        """Whether jobs given to this channel will still be answered: any while the process
        lives; once it has died, those its feeder now writes itself."""
        with self._lock:
            return self._outstanding > (self._in_process if self._dead else 0)

    def stop(self) -> None:
        """End the process once it has written what it was given."""
        self._queue.put(None)
        self._feeder.join()
        self._process.wait()
        self._reader.join()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()

    def _feed(self, jobs: BinaryIO) -> None:
        """Write queued jobs into the pipe, each once the last is answered (blocking here,
        not in the training loop)."""
        while True:
            if not self._dead:
                self._idle.acquire()
            if (item := self._queue.get()) is None:
                break
            job, data = item
            try:
                with self._lock:
                    self._in_process += 1
                jobs.write(data)
                jobs.flush()
            except OSError:  # the writer died: write it from this thread instead
                with self._lock:
                    self._in_process -= 1
                self._done(job.run_id, _write(job))
        with contextlib.suppress(OSError):
            jobs.close()

    def _read(self, answers: BinaryIO) -> None:
        """Collect (run id, error) answers until the process ends."""
        while True:
            try:
                run_id, error = pickle.load(answers)
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            with self._lock:
                self._in_process -= 1
            self._done(run_id, error)
            self._idle.release()
        self._dead = True  # the process ended: the feeder writes what is left itself
        self._idle.release()

    def _done(self, run_id: str, error: str) -> None:
        with self._lock:
            self._outstanding -= 1
        self._answer(run_id, error)


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
    from hpstudy.tracking.artifacts import quiet

    quiet()
    answers_out = os.fdopen(os.dup(1), "wb")  # answers get the real stdout; anything a
    os.dup2(2, 1)  # library prints goes to stderr instead of into the answers
    serve(sys.stdin.buffer, answers_out)
    answers_out.flush()  # every job is written and answered: skip the interpreter's teardown
    os._exit(0)  # of MLflow, matplotlib and torch (2.2 s, which `Writer.close` waited for)
