"""What the weight-path probe costs an epoch: the same training with and without it.

A benchmark, not a test (tests/report/test_probes.py checks the picture). For the digits
MLP at several widths (and report 004's MNIST MLP with --data-dir) it trains the same
seeded network with `train.fit` alone and with a `WeightPathProbe` watching (snapshots a
few times an epoch), alternately A B B A, and reports the epoch time of each (median
over the pairs) and their ratio (the issue's bound: at most 1.05). The PCA at the end of a
trial (when the figure is prepared) is reported apart.

    python bench/probe_cost.py                          # digits, widths 32 128 512
    python bench/probe_cost.py --data-dir DIR/mnist     # + MNIST, 784-128-128-10
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from provenance import machine, versions

from hpstudy import data as datasets
from hpstudy.data.digits import DigitsOptions
from hpstudy.data.mnist import MnistOptions
from hpstudy.models import MLPOptions, build_model
from hpstudy.report.probes import WeightPathProbe
from hpstudy.spec.study_file import ModelConfig
from hpstudy.train.loop import Recipe, fit


def epoch_seconds(data: datasets.Dataset, width: int, depth: int, recipe: Recipe,
                  device: torch.device, watched: bool) -> tuple[float, float]:
    """Seconds an epoch (the whole `fit`, validation and the probe's epoch ends included)
    and the probe's end-of-trial seconds (the PCA)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("mlp", MLPOptions()), data, {"width": width,
                                                                  "depth": depth})
    probe = WeightPathProbe(recipe.epochs)
    if watched:
        probe.watch(model, -(-len(data.train) // recipe.batch_size))
    started = time.perf_counter()
    fit(model, data, recipe, device, lambda m: probe.observe(model, m.epoch))
    trained = time.perf_counter()
    probe.figures("")
    return (trained - started) / recipe.epochs, time.perf_counter() - trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=6, help="A B rounds (default 6)")
    parser.add_argument("--data-dir", type=Path, help="MNIST's IDX files: add its MLP")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(
        f"bench/results/probe_cost-{datetime.date.today()}.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    cases = [("digits", datasets.load("digits", DigitsOptions()), w, 1, 32)
             for w in args.widths]
    if args.data_dir:
        mnist = datasets.load("mnist", MnistOptions(), data_dir=args.data_dir)
        cases.append(("mnist", mnist, 128, 2, 32))
    rows = []
    print(f"{'data':>7} {'width':>6} {'depth':>6} {'plain s/epoch':>14} {'probed s/epoch':>15} "
          f"{'ratio':>6} {'PCA s':>6}")
    for name, data, width, depth, batch in cases:
        recipe = Recipe(args.epochs, batch, "sgd", 0.05, 0.9, 0.0, 0)
        epoch_seconds(data, width, depth, recipe, device, True)  # warm-up, not counted
        plain, probed, ends = [], [], []
        for pair in range(args.pairs):
            for watched in (False, True) if pair % 2 == 0 else (True, False):  # A B, B A, ...
                seconds, end = epoch_seconds(data, width, depth, recipe, device, watched)
                (probed if watched else plain).append(seconds)
                ends += [end] if watched else []
        row = {"data": name, "width": width, "depth": depth, "batch_size": batch,
               "epochs": args.epochs, "plain_epoch_s": statistics.median(plain),
               "probed_epoch_s": statistics.median(probed), "end_of_trial_s": max(ends)}
        row["ratio"] = row["probed_epoch_s"] / row["plain_epoch_s"]
        rows.append(row)
        print(f"{name:>7} {width:>6} {depth:>6} {row['plain_epoch_s']:>14.4f} "
              f"{row['probed_epoch_s']:>15.4f} {row['ratio']:>6.3f} {row['end_of_trial_s']:>6.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "bench": "probe_cost", "date": str(datetime.date.today()), "device": str(device),
        "machine": machine(), "versions": versions(), "torch_threads": torch.get_num_threads(),
        "command": " ".join(["python", "bench/probe_cost.py", *(  # no machine path in it
            "DIR" if args.data_dir and a == str(args.data_dir) else a for a in sys.argv[1:])]),
        "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
