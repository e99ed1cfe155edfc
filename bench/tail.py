"""How long the quick start goes on after its last trial: each phase of the tail, timed.

A benchmark, not a test. It runs the README's quick start (`hpstudy optimize --study
digits_mlp`, 20 trials) in a fresh folder, reads its output line by line as it comes, and
notes when the last trial's line, "Selecting the champion", "Drawing the study's views",
the closing summary and the process's exit arrive; then times `hpstudy report` and
`hpstudy trials` on the finished study. With `--against DIR` (another checkout
of hpstudy, e.g. `git worktree add DIR <commit>`) that version runs too, alternately A B
A B, so the two are measured side by side on the same machine in one run.

    python bench/tail.py                       # this checkout, 3 runs
    python bench/tail.py --against DIR --runs 2
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import machine, versions, write_result

HERE = Path(__file__).resolve().parent.parent
MARKS = {"selecting": "Selecting the champion", "drawing": "Drawing the study's views",
         "summary": "Study 'digits_mlp':"}


def one_run(checkout: Path, trials: int) -> dict[str, float]:
    """Seconds from the start to each mark, in a fresh folder, for hpstudy at `checkout`."""
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(checkout)}
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "hpstudy", "optimize", "--study", "digits_mlp",
             "--trials", str(trials)], cwd=folder, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        seen: dict[str, float] = {}
        for line in process.stdout:
            now = time.perf_counter() - started
            if line.startswith("trial "):
                seen["last_trial"] = now
            for mark, text in MARKS.items():
                if line.startswith(text):
                    seen.setdefault(mark, now)
        if process.wait() != 0:
            raise SystemExit(f"{checkout}: optimize exited {process.returncode}")
        seen["exit"] = time.perf_counter() - started
        for command in ("report", "trials"):  # what people run next, on the finished study
            begun = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hpstudy", command, "--study", "digits_mlp"],
                           cwd=folder, env=env, check=True, capture_output=True)
            seen[f"{command}_s"] = time.perf_counter() - begun
    return seen | {"tail": seen["exit"] - seen["last_trial"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--against", type=Path, help="another checkout, run side by side")
    parser.add_argument("--out", type=Path, default=Path(
        f"bench/results/tail-{datetime.date.today()}.json"))
    args = parser.parse_args()
    sides = {"this": HERE} | ({"against": args.against.resolve()} if args.against else {})
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for index in range(args.runs):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))  # A B, B A, ...
        for side in order:
            runs[side].append(one_run(sides[side], args.trials))
            row = runs[side][-1]
            print(f"{side:>8} run {index + 1}: whole {row['exit']:.1f} s, after the last trial "
                  f"{row['tail']:.2f} s")
    result = {"bench": "tail", "date": str(datetime.date.today()), "machine": machine(),
              "versions": versions(), "load_average": os.getloadavg(),
              "against_commit": subprocess.run(
                  ["git", "-C", str(args.against), "rev-parse", "HEAD"], capture_output=True,
                  text=True).stdout.strip() if args.against else None,
              "command": "python bench/tail.py" + (" --against DIR" if args.against else "")
              + f" --runs {args.runs} --trials {args.trials}",
              "sides": {side: {"runs": rows,
                               "median_tail_s": statistics.median(r["tail"] for r in rows),
                               "median_whole_s": statistics.median(r["exit"] for r in rows),
                               "median_report_s": statistics.median(r["report_s"] for r in rows),
                               "median_trials_s": statistics.median(r["trials_s"] for r in rows)}
                        for side, rows in runs.items()}}
    for side, summary in result["sides"].items():
        print(f"{side:>8}: median whole {summary['median_whole_s']:.1f} s, tail "
              f"{summary['median_tail_s']:.2f} s, report {summary['median_report_s']:.2f} s, "
              f"trials {summary['median_trials_s']:.2f} s")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
