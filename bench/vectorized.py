"""Vectorised trials: K trials trained as one batched network against K trained one by one.

A benchmark, not a test (tests/test_group.py checks that the results are the same). For
the digits MLP at several widths it times, on one device:
  1. one trial alone (`train.fit`),
  2. K trials one after another (`train.fit` K times),
  3. the same K trials as one batched network (`batched.train_group`),
and reports K-trials-as-one against one trial alone (the issue's target: K=8 in at most
2x) and against K one by one.

    python bench/vectorized.py                       # K=8, widths 32 64 128 512, depth 2
    python bench/vectorized.py --k 4 --widths 64 --epochs 10 --device cuda
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

from hpstudy import data as datasets
from hpstudy.data.digits import DigitsOptions
from hpstudy.models import MLPOptions, build_model
from hpstudy.spec.study_file import ModelConfig
from hpstudy.train.batched import Stack, train_group
from hpstudy.train.loop import Recipe, fit


def network(data: datasets.Dataset, width: int, depth: int) -> torch.nn.Module:
    """The digits MLP, seeded as a trial seeds it."""
    torch.manual_seed(0)
    return build_model(ModelConfig("mlp", MLPOptions()), data, {"width": width, "depth": depth})


def seconds(run) -> float:
    """Wall time of `run()`, best of two (the first also warms up)."""
    times = []
    for _ in range(2):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=8, help="trials per group (default 8)")
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 512])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(
        f"bench/results/vectorized-{datetime.date.today()}.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    data = datasets.load("digits", DigitsOptions())
    recipes = [Recipe(args.epochs, args.batch_size, "sgd", lr, 0.5, 0.0, 0)  # none diverges
               for lr in torch.logspace(-3, -1.3, args.k).tolist()]
    rows = []
    print(f"digits MLP, depth {args.depth}, {args.epochs} epochs, batch {args.batch_size}, "
          f"K = {args.k}, {device}, torch threads {torch.get_num_threads()}")
    print(f"{'width':>6} {'1 trial':>9} {'K one by one':>13} {'K as one':>9} "
          f"{'as one / 1 trial':>17} {'speed-up':>9}")
    for width in args.widths:
        one = seconds(lambda w=width: fit(network(data, w, args.depth), data, recipes[0],
                                          device))
        alone = seconds(lambda w=width: [fit(network(data, w, args.depth), data, r, device)
                                         for r in recipes])
        together = seconds(lambda w=width: train_group(
            Stack(network(data, w, args.depth), args.k, device), data, recipes, device,
            lambda member, metrics: False))
        rows.append({"width": width, "one_trial_s": one, "k_one_by_one_s": alone,
                     "k_as_one_s": together, "as_one_over_one_trial": together / one,
                     "speed_up": alone / together})
        print(f"{width:>6} {one:>9.2f} {alone:>13.2f} {together:>9.2f} {together / one:>16.2f}x "
              f"{alone / together:>8.2f}x")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    result = {"benchmark": "vectorized trials", "command": " ".join(sys.orig_argv),
              "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "device": str(device) if device.type != "cpu" else f"{cpu}, no GPU",
              "versions": {"python": platform.python_version(), "torch": torch.__version__},
              "settings": vars(args) | {"out": str(args.out)}, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
