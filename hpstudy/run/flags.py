"""A call's flags that can be checked without torch: the device's spelling and --jobs.

The CLI checks them before it imports torch and MLflow (which take seconds); `plan`
checks them again for callers from Python.
"""

from __future__ import annotations

import re

from hpstudy.errors import UserError

DEVICES = "auto, cpu, cuda or cuda:N (e.g. cuda:0)"


def check_device_name(name: str) -> None:
    """A UserError unless `name` is spelled as a device hpstudy can train on."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise UserError(f"--device {name}: not a device; expected {DEVICES}.")


def check_jobs(jobs: int) -> None:
    """A UserError unless `jobs` is a usable number of worker processes."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: expected an integer >= 1.")
