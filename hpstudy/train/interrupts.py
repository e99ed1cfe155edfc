"""Ctrl-C and SIGTERM stop a study between database writes, never inside one.

An interrupt raised inside an SQLAlchemy call can leave a SQLite write lock held by a
half-finished transaction, and every later write of the process (the one that would
record the trial as interrupted) then waits and fails: "database is locked". So the
first signal interrupts at once only inside `with immediate():` (the training loops wrap
their epochs in it, and nothing in there writes); anywhere else it is held until the next
`checkpoint()` (the next epoch, trial or selection) or the next `immediate()` block.
A second signal interrupts at once, wherever it lands, except inside `with critical():`
(registering a champion), where every signal waits for the block's end.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

_pending = False  # a first signal arrived and has not been raised yet
_depth = 0  # how many `immediate()` blocks the running code is inside
_critical = 0  # how many `critical()` blocks: there, even a second signal waits


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


@contextlib.contextmanager
def immediate() -> Iterator[None]:
    """Inside: code that writes nothing (training), where a signal interrupts at once.

    A signal held from before is raised on entry: the block is a safe place to stop.
    """
    global _depth
    checkpoint()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Inside: writes that must finish together (a model version and its alias); every signal,
    even a second one, is held until the block ends, then raised there."""
    global _critical
    _critical += 1
    try:
        yield
    finally:
        _critical -= 1
    checkpoint()


def _handler(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _critical > 0:
        _pending = True
        return
    if _pending or _depth > 0:
        _pending = False
        raise KeyboardInterrupt
    _pending = True
