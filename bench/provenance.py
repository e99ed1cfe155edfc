"""What every benchmark result records beside its numbers: the machine, the versions, and
strict JSON. Shared by the scripts in bench/ (imported as a sibling module)."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch


def machine() -> dict[str, Any]:
    """The CPU, cores, GPU and thread settings this run had."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
             if line.startswith("model name")]
    return {"cpu": names[0] if names else platform.processor() or "unknown",
            "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU",
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "platform": platform.platform()}


def versions(libraries: tuple[str, ...] = ("torch", "optuna", "mlflow")) -> dict[str, Any]:
    """Python, `libraries` and hpstudy; hpstudy's commit and whether its package was edited
    (uncommitted changes in what was measured)."""
    found: dict[str, Any] = {"python": platform.python_version()}
    for name in (*libraries, "hpstudy"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
    try:
        found["hpstudy_commit"] = subprocess.run([*git, "rev-parse", "HEAD"], check=True,
                                                 capture_output=True, text=True).stdout.strip()
        found["hpstudy_edited"] = bool(subprocess.run(
            [*git, "status", "--porcelain", "hpstudy"], check=True, capture_output=True,
            text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        found["hpstudy_commit"] = None
    return found


def finite(value: Any) -> Any:
    """`value` for strict JSON: NaN and infinities become null, other objects their text."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value if value is None or isinstance(value, bool | int | str) else str(value)


def write_result(path: Path, result: dict[str, Any]) -> None:
    """A benchmark's result as strict JSON at `path` (its folder made), and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite(result), indent=2) + "\n")
    print(f"wrote {path}")
