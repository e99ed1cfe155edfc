"""bf16 autocast against fp32 on one device: the same seeded trials, accuracy and epoch time.

A benchmark, not a test (tests/train/test_step.py checks that bf16 losses follow fp32's).
On digits (scikit-learn's 8x8 images, no download) it trains the digits_mlp and
digits_cnn networks with `train.fit` for --epochs epochs from the same seeds, in fp32
and with `precision = "bf16"` (torch.autocast; fp32 weights and loss), alternating
fp32, bf16, bf16, fp32, ... so that a shared machine's load falls on both alike, and
reports each one's validation and test accuracy (the issue's bound: within 0.5 points)
and seconds per epoch.

    python bench/precision.py                      # CPU, 20 epochs, seeds 0 1 2
    python bench/precision.py --device cuda --seeds 0 1 2 3
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
from provenance import finite, machine, versions  # bench/provenance.py

from hpstudy import data as datasets
from hpstudy.data.digits import DigitsOptions
from hpstudy.models import CNNOptions, MLPOptions, build_model
from hpstudy.spec.study_file import ModelConfig
from hpstudy.train.loop import Recipe, evaluate, fit

NETWORKS = {  # as the shipped digits studies build them, at a width their searches pick
    "mlp": (ModelConfig("mlp", MLPOptions()), {"width": 64, "depth": 1}),
    "cnn": (ModelConfig("cnn", CNNOptions(kernel_size=3, padding=1, fc_width=64, fc_depth=1)),
            {"width": 16, "depth": 2}),
}
PRECISIONS = ("fp32", "bf16")


def trial(data: datasets.Dataset, network: str, precision: str, seed: int, epochs: int,
          device: torch.device) -> dict:
    """One seeded trial: its last validation accuracy, test accuracy and seconds per epoch."""
    model_config, shape = NETWORKS[network]
    torch.manual_seed(seed)
    model = build_model(model_config, data, shape)
    recipe = Recipe(epochs, 32, "sgd", 0.05, momentum=0.9, seed=seed, precision=precision)
    started = time.perf_counter()
    history = fit(model, data, recipe, device)
    seconds = time.perf_counter() - started
    with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
        test_acc = evaluate(model.eval(), data.test.to(device))[1]  # as it was trained
    return {"network": network, "precision": precision, "seed": seed,
            "val_acc": history[-1].val_acc, "val_loss": history[-1].val_loss,
            "test_acc": test_acc, "seconds_per_epoch": seconds / epochs}


def summary(rows: list[dict]) -> list[dict]:
    """Per network and precision: mean accuracies over seeds and the median epoch time."""
    out = []
    for network in NETWORKS:
        for precision in PRECISIONS:
            mine = [r for r in rows if r["network"] == network and r["precision"] == precision]
            if mine:
                out.append({"network": network, "precision": precision, "trials": len(mine),
                            "val_acc": statistics.fmean(r["val_acc"] for r in mine),
                            "test_acc": statistics.fmean(r["test_acc"] for r in mine),
                            "seconds_per_epoch": statistics.median(
                                r["seconds_per_epoch"] for r in mine)})
    return out


def compared(means: list[dict]) -> list[str]:
    """bf16 against fp32, per network: accuracy differences in points, epoch time ratio."""
    lines = []
    for network in dict.fromkeys(m["network"] for m in means):
        fp32, bf16 = (next(m for m in means if m["network"] == network and
                           m["precision"] == p) for p in PRECISIONS)
        lines.append(f"{network}: bf16 - fp32 = {100 * (bf16['val_acc'] - fp32['val_acc']):+.2f}"
                     f" points validation, {100 * (bf16['test_acc'] - fp32['test_acc']):+.2f} "
                     f"test; epoch {bf16['seconds_per_epoch'] / fp32['seconds_per_epoch']:.2f}x "
                     "fp32's time")
    return lines


def command(out: Path) -> str:
    """This run's command line, with DIR for the folder of --out (no machine path)."""
    words = [f"DIR/{out.name}" if word == str(out) and not word.startswith("bench/") else word
             for word in sys.argv[1:]]
    return " ".join(["python", "bench/precision.py", *words])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: "
                        "as `optimize` trains on a 2-core CPU, leaving a core to the writer)")
    parser.add_argument("--out", type=Path, default=Path(
        f"bench/results/precision-{datetime.date.today()}.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    data = datasets.load("digits", DigitsOptions())
    rows = []
    print(f"digits, {args.epochs} epochs, batch 32, SGD, {device}, torch threads "
          f"{torch.get_num_threads()}")
    for network in args.networks:  # the first trials of a process pay for setting up: untimed
        for precision in PRECISIONS:
            trial(data, network, precision, 0, 1, device)
    print(f"{'network':>8} {'precision':>9} {'seed':>5} {'val acc':>8} {'test acc':>9} "
          f"{'s/epoch':>8}")
    for network in args.networks:
        for i, seed in enumerate(args.seeds):
            for precision in PRECISIONS if i % 2 == 0 else PRECISIONS[::-1]:  # A B, B A, ...
                row = trial(data, network, precision, seed, args.epochs, device)
                rows.append(row)
                print(f"{network:>8} {precision:>9} {seed:>5} {row['val_acc']:>8.4f} "
                      f"{row['test_acc']:>9.4f} {row['seconds_per_epoch']:>8.4f}")
    means = summary(rows)
    for line in compared(means):
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(finite({
        "bench": "precision", "date": datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"), "device": str(device), "machine": machine(),
        "versions": versions(("torch",)),
        "command": command(args.out),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "summary": means, "rows": rows}), indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
