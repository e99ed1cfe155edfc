"""Store size: bytes per trial and per study, keeping every model against the best k only.

A benchmark, not a test (tests/test_select.py checks which weights the budget deletes).
It runs the same digits study twice in fresh folders, once with `keep_models = 0` (every
completed trial keeps its weights) and once with the default `keep_models = 3`, through
the real command line, then measures the MLflow artifacts and the two databases.

    python bench/store_size.py                   # 100 trials of digits_mlp, 3 epochs each
    python bench/store_size.py --trials 20 --study digits_cnn
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path


def size(path: Path) -> int:
    """Bytes of every file under `path` (or of the file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(study: str, trials: int, epochs: int, keep: int, folder: Path) -> dict:
    """One `hpstudy optimize` in `folder`; the sizes it left."""
    command = [sys.executable, "-m", "hpstudy", "optimize", "--study", study, "--trials",
               str(trials), "--set", f"train.epochs={epochs}", "--set", f"keep_models={keep}"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 3):
        sys.exit(f"hpstudy failed:\n{done.stderr[-3000:]}")
    mlruns = folder / "mlruns"
    weights = sum(f.stat().st_size for f in mlruns.rglob("weights.pt"))
    artifacts, databases = size(mlruns / "artifacts"), sum(
        size(mlruns / name) for name in ("mlflow.db", "optuna.db"))
    return {"keep_models": keep, "trials": trials, "weights_files": len(list(
        mlruns.rglob("weights.pt"))), "weights_bytes": weights, "artifact_bytes": artifacts,
        "database_bytes": databases, "total_bytes": artifacts + databases,
        "bytes_per_trial": (artifacts + databases) / trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="digits_mlp")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--keep", type=int, default=3, help="keep_models of the budgeted run")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = []
    for keep in (0, args.keep):
        with tempfile.TemporaryDirectory() as folder:
            rows.append(run(args.study, args.trials, args.epochs, keep, Path(folder)))
        print(f"keep_models={keep:<3} {rows[-1]['weights_files']:>4} weight files  "
              f"{rows[-1]['total_bytes'] / 1e6:8.1f} MB in all  "
              f"{rows[-1]['bytes_per_trial'] / 1e3:8.1f} kB per trial", flush=True)
    today = datetime.date.today().isoformat()
    result = {"bench": "store_size", "date": today, "command": " ".join(sys.argv),
              "device": f"{platform.processor() or platform.machine()} (CPU)",
              "study": args.study, "epochs": args.epochs, "runs": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"store_size-{today}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
