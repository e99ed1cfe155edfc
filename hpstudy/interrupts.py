"""Ctrl-C and SIGTERM stop a study between database writes, never inside one.

An interrupt raised inside an SQLAlchemy call can leave a SQLite write lock held by a
half-finished transaction, and every later write of the process (the one that would
record the trial as interrupted) then waits and fails: "database is locked". So the
first signal interrupts at once only while the training loop itself runs; anywhere
else it is held until the next `checkpoint()` (the next epoch, trial or selection).
A second signal interrupts at once, wherever it lands.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

PACKAGE = Path(__file__).resolve().parent
TRAINING = (PACKAGE / "train.py", PACKAGE / "batched.py")  # where an interrupt is always safe
_pending = False


def install() -> None:
    """Handle SIGINT and SIGTERM this way in this process (the CLI calls it once)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def checkpoint() -> None:
    """Raise the interrupt held since a signal arrived, if any: a safe place to stop."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt


def _handler(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _pending or _training(frame):
        _pending = False
        raise KeyboardInterrupt
    _pending = True


def _training(frame: FrameType | None) -> bool:
    """Whether the innermost hpstudy code running is the training loop (or no hpstudy code)."""
    while frame is not None:
        path = Path(frame.f_code.co_filename).resolve()
        if path.parent == PACKAGE:
            return path in TRAINING
        frame = frame.f_back
    return True
