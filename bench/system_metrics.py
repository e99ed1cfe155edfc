"""What MLflow's system metrics cost a call: CPU seconds of its monitor thread per sample.

A benchmark, not a test. Every `optimize`/`worker` parent run has MLflow's
`SystemMetricsMonitor` beside it (hpstudy.tracking.runs, one sample every SYSTEM_EVERY
seconds). Here a run in a fresh SQLite store is watched for `--seconds` while this process
only sleeps, once with the monitor (sampling every `--every` seconds) and once without,
alternately A B B A; the CPU time the process used in each is the monitor's cost. The
share of one core it takes at hpstudy's interval is reported beside it.

    python bench/system_metrics.py                  # 4 pairs of 20 s, a sample a second
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from provenance import machine, versions, write_result

from hpstudy.tracking.artifacts import quiet
from hpstudy.tracking.runs import SYSTEM_EVERY


def cpu_seconds(client: MlflowClient, experiment: str, seconds: float, every: float,
                watched: bool) -> tuple[float, int]:
    """CPU seconds this process used over `seconds` of sleep, and the samples logged."""
    run_id = client.create_run(experiment).info.run_id
    monitor = SystemMetricsMonitor(run_id, every, tracking_uri=client.tracking_uri) if (
        watched) else None
    started = time.process_time()
    if monitor:
        monitor.start()
    time.sleep(seconds)
    if monitor:
        monitor.finish()
    used = time.process_time() - started
    samples = len(client.get_metric_history(run_id, "system/cpu_utilization_percentage"))
    client.set_terminated(run_id)
    return used, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each side of a pair")
    parser.add_argument("--every", type=float, default=1.0, help="sampling interval (s)")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path(
        f"bench/results/system_metrics-{datetime.date.today()}.json"))
    args = parser.parse_args()
    quiet()
    with tempfile.TemporaryDirectory() as folder:
        client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
        experiment = client.create_experiment("bench", artifact_location=f"{folder}/artifacts")
        cpu_seconds(client, experiment, 2.0, args.every, True)  # warm-up: imports, tables
        plain, watched, samples = [], [], []
        for pair in range(args.pairs):
            for on in (False, True) if pair % 2 == 0 else (True, False):  # A B, B A, ...
                used, logged = cpu_seconds(client, experiment, args.seconds, args.every, on)
                (watched if on else plain).append(used)
                samples += [logged] if on else []
    per_sample = (statistics.median(watched) - statistics.median(plain)) / statistics.median(
        samples)
    result = {
        "bench": "system_metrics", "date": str(datetime.date.today()), "machine": machine(),
        "versions": versions(("mlflow", "psutil")),
        "command": "python bench/system_metrics.py" + "".join(
            f" --{k} {v}" for k, v in (("seconds", args.seconds), ("every", args.every),
                                       ("pairs", args.pairs))),
        "cpu_s_without": plain, "cpu_s_with": watched, "samples": samples,
        "cpu_ms_per_sample": 1000 * per_sample,
        "core_share_at_hpstudy_interval": per_sample / SYSTEM_EVERY,
        "hpstudy_interval_s": SYSTEM_EVERY}
    print(f"monitor: {1000 * per_sample:.1f} ms CPU a sample; at one sample every "
          f"{SYSTEM_EVERY:g} s that is {100 * per_sample / SYSTEM_EVERY:.2f}% of one core")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
