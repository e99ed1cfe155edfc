"""GPU speed: hpstudy's path against the plain per-sample DataLoader way, in one process.

The benchmark of the GPU-speed issue (a benchmark, not a test). On the GPU machine, with
CIFAR-10 as JPEG class folders (`DIR/train/<class>/*.jpg`, `DIR/test/<class>/*.jpg`):

    pip install -e '.[bench]'
    python bench/gpu_speed.py --data-dir DIR --seconds 180 --out bench.json

For the report-001 CNN (conv 64, 128; FC 512, 512; 2,703,242 parameters) it prints:
  1. seconds per epoch of 50,000 images at batch 64 and 512: the per-sample DataLoader
     loop (PIL decode, ToTensor, Normalize in --workers processes) against hpstudy's loop
     (uint8 tensors held on the device, sliced into batches there), the latter for each
     way of running its step (STEPS: eager fp32, bf16 + channels_last, CUDA graph,
     torch.compile), with the warm-up each pays in its first epoch;
  2. final validation accuracy of both loops for the same parameters (the speed must
     not be bought with correctness);
  3. trials per hour of `cnn_cifar` at 10 epochs a trial with hpstudy's full logging,
     against a plain Optuna study (TPE, optuna-integration's MLflowCallback, DataLoader);
     the shipped study as it is (precision and channels_last 'auto', flip_crop), changed
     by `--set KEY=VALUE` (e.g. `--set train.cuda_graph=true`);
  4. GPU utilisation during each study (nvidia-smi every 0.5 s), and the share of trial
     time hpstudy spent logging (the `logging_seconds` it records per trial).
On a CPU, `--device cpu --limit 2000 --seconds 30 --accuracy-epochs 1` checks that it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import optuna
import torch
from peer import plain_epoch, plain_validate  # bench/peer.py: the plain loops, shared
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from hpstudy.data import load as load_dataset
from hpstudy.models import DataShape, build_model
from hpstudy.run.optimize import Stores, optimize, plan
from hpstudy.search.record import TrialRecord
from hpstudy.spec.finding import BUNDLED_STUDIES_DIR
from hpstudy.spec.study_file import load_study
from hpstudy.tracking.artifacts import quiet
from hpstudy.train.loop import Recipe, fit, pick_device

EPOCH_IMAGES = 50_000  # the issue's unit: one pass over CIFAR-10's training images
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # CIFAR-10, [0, 1] units
STUDY_EPOCHS = 10  # epochs per trial in both studies


def report_001_cnn(mean: tuple[float, ...], std: tuple[float, ...]) -> torch.nn.Module:
    """The CNN of report 001, through hpstudy's own builder (as `cnn_cifar` defines it)."""
    config = load_study("cnn_cifar")
    return build_model(config.model, DataShape((3, 32, 32), 10, mean, std),
                       {"width": 64, "depth": 2})


# ------------------------------------------------------------------------- the plain way


def plain_loaders(root: Path, batch: int, workers: int, limit: int | None,
                  device: torch.device) -> tuple[DataLoader, DataLoader]:
    """Per-sample loaders over the JPEG folders: train, and 5,000 held-out for validation."""
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    everything = datasets.ImageFolder(str(root / "train"), transform=tf)
    order = torch.randperm(len(everything), generator=torch.Generator().manual_seed(0)).tolist()
    val, train = order[:5000], order[5000:]
    if limit:
        val, train = val[:limit // 10], train[:limit]
    common = {"num_workers": workers, "pin_memory": device.type == "cuda",
              "persistent_workers": workers > 0}
    return (DataLoader(Subset(everything, train), batch_size=batch, shuffle=True, **common),
            DataLoader(Subset(everything, val), batch_size=1024, **common))


# ------------------------------------------------------------------------- hpstudy's way


def hpstudy_data(args: argparse.Namespace):
    """CIFAR-10 as hpstudy holds it (uint8 tensors, decoded once and cached)."""
    config = load_study("cnn_cifar", [f"data.subset={args.limit}"] if args.limit else [])
    return load_dataset("cifar10", config.data.options, args.data_dir)


STEPS = {  # how hpstudy's step runs (the [train] keys of hpstudy.train.step), each timed
    "eager fp32": {"precision": "fp32", "channels_last": False},
    "bf16 + channels_last": {"precision": "bf16", "channels_last": True},  # cnn_cifar's auto
    "cuda_graph fp32": {"precision": "fp32", "channels_last": False, "cuda_graph": True},
    "cuda_graph bf16 + channels_last": {"precision": "bf16", "channels_last": True,
                                        "cuda_graph": True},
    "compile bf16 + channels_last": {"precision": "bf16", "channels_last": True,
                                     "compile": True},
}


def hpstudy_epoch(data, batch: int, device: torch.device, **step) -> tuple[float, float]:
    """Seconds per 50,000 training images of hpstudy's loop with the step keys `step`
    (second epoch), and the first epoch's warm-up seconds (compiling or capturing)."""
    torch.manual_seed(0)
    model = report_001_cnn(data.mean, data.std)
    tiny_val = dataclasses.replace(data, val=data.val.take(torch.arange(min(256, len(data.val)))))
    history = fit(model, tiny_val, Recipe(2, batch, "sgd", 0.01, 0.9, **step), device)
    return history[-1].seconds * EPOCH_IMAGES / len(data.train), history[0].warmup_seconds


def step_epochs(data, batch: int, device: torch.device) -> dict[str, dict[str, float]]:
    """`hpstudy_epoch` for every STEPS variant this device can run (CUDA graphs: CUDA only)."""
    timed = {}
    for name, step in STEPS.items():
        if step.get("cuda_graph") and device.type != "cuda":
            continue
        seconds, warmup = hpstudy_epoch(data, batch, device, **step)
        timed[name] = {"s_per_epoch": seconds, "warmup_s": warmup}
        print(f"  hpstudy {name:<32} {seconds:7.3f} s/epoch (warm-up {warmup:.1f} s)",
              flush=True)
    return timed


# ------------------------------------------------------------------------- studies


class GpuUtilisation(threading.Thread):
    """Samples nvidia-smi's GPU utilisation every half second until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits"], capture_output=True,
                                     text=True, timeout=5, check=True).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                return  # no NVIDIA GPU here

    def mean(self) -> float | None:
        """Mean utilisation in percent, or None without samples."""
        self.done.set()
        self.join()
        return statistics.fmean(self.samples) if self.samples else None


def hpstudy_study(args: argparse.Namespace, folder: Path) -> dict:
    """`cnn_cifar` at 10 epochs a trial, no pruning, full logging, for --seconds.

    Like the plain study it searches only lr and momentum, for report 001's fixed shape.
    """
    original = (BUNDLED_STUDIES_DIR / "cnn_cifar.toml").read_text()
    path = folder / "cnn_cifar.toml"  # the shipped study, its pruner off: every trial runs
    path.write_text(original.split("[pruner]")[0] + '[pruner]\nname = "none"  # no pruning\n')
    overrides = [f"train.epochs={STUDY_EPOCHS}", "search.width=64", "search.dropout=0.0",
                 "search.weight_decay=0.0"]  # report 001's shape, as the plain study trains
    overrides += [f"data.subset={args.limit}"] if args.limit else []
    config = load_study(str(path), overrides + args.set)
    gpu = GpuUtilisation()
    gpu.start()
    started = time.perf_counter()
    outcome = optimize(plan(config, Stores(f"sqlite:///{folder}/optuna.db",
                                           f"sqlite:///{folder}/mlflow.db"),
                            trials=None, timeout=args.seconds, device=args.device,
                            data_dir=args.data_dir))
    elapsed = time.perf_counter() - started
    done = [t for t in outcome.study.trials if t.duration]
    logging = sum(TrialRecord.fields_of(t).get("logging_seconds", 0.0) for t in done)
    return {"trials": len(done), "seconds": elapsed, "trials_per_hour": 3600 * len(done) / elapsed,
            "gpu_utilisation": gpu.mean(),
            "logging_share": logging / sum(t.duration.total_seconds() for t in done)}


def plain_study(args: argparse.Namespace, folder: Path, device: torch.device) -> dict:
    """A plain Optuna study: TPE, MLflowCallback, the DataLoader, 10 epochs, for --seconds."""
    from optuna_integration.mlflow import MLflowCallback

    train, val = plain_loaders(args.data_dir, 64, args.workers, args.limit, device)

    def objective(trial: optuna.Trial) -> float:
        torch.manual_seed(0)
        model = report_001_cnn((0.0,) * 3, (1.0,) * 3).to(device)  # the loader normalises
        optimizer = torch.optim.SGD(model.parameters(),
                                    lr=trial.suggest_float("lr", 1e-3, 0.2, log=True),
                                    momentum=trial.suggest_float("momentum", 0.0, 0.95))
        for _ in range(STUDY_EPOCHS):
            plain_epoch(model, train, optimizer, device)
        return plain_validate(model, val, device)[0]

    callback = MLflowCallback(tracking_uri=f"sqlite:///{folder}/plain.db", metric_name="val_loss")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    gpu = GpuUtilisation()
    gpu.start()
    started = time.perf_counter()
    study.optimize(objective, timeout=args.seconds, callbacks=[callback])
    elapsed = time.perf_counter() - started
    return {"trials": len(study.trials), "seconds": elapsed,
            "trials_per_hour": 3600 * len(study.trials) / elapsed, "gpu_utilisation": gpu.mean()}


# ------------------------------------------------------------------------- main


def same_accuracy(args: argparse.Namespace, data, device: torch.device) -> dict:
    """Final validation accuracy of both loops after the same training (lr 0.02, momentum 0.9)."""
    train, val = plain_loaders(args.data_dir, 64, args.workers, args.limit, device)
    torch.manual_seed(0)
    model = report_001_cnn((0.0,) * 3, (1.0,) * 3).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for _ in range(args.accuracy_epochs):
        plain_epoch(model, train, optimizer, device)
    plain = plain_validate(model, val, device)[1]
    torch.manual_seed(0)
    model = report_001_cnn(data.mean, data.std)
    ours = fit(model, data, Recipe(args.accuracy_epochs, 64, "sgd", 0.02, 0.9), device)[-1]
    return {"epochs": args.accuracy_epochs, "plain_val_acc": plain, "hpstudy_val_acc": ours.val_acc}


def main() -> None:
    """Run every measurement and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="CIFAR-10 as train/<class>/*.jpg and test/<class>/*.jpg")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader processes (plain)")
    parser.add_argument("--seconds", type=float, default=180, help="wall time of each study")
    parser.add_argument("--accuracy-epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, help="train on this many images (smoke runs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a study-file override for hpstudy's study, e.g. "
                             "train.cuda_graph=true (repeatable)")
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    device = pick_device(args.device)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet()
    results: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
                     else "cpu", "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
                     "study_overrides": args.set}
    data = hpstudy_data(args)
    for batch in (64, 512):
        train, _ = plain_loaders(args.data_dir, batch, args.workers, args.limit, device)
        model = report_001_cnn((0.0,) * 3, (1.0,) * 3).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        plain_epoch(model, train, optimizer, device)  # warm-up: workers, cuDNN autotuning
        plain = plain_epoch(model, train, optimizer, device) * EPOCH_IMAGES / len(train.dataset)
        print(f"batch {batch:>3}: plain {plain:7.3f} s/epoch", flush=True)
        steps = step_epochs(data, batch, device)
        results[f"batch_{batch}"] = {"plain_s_per_epoch": plain, "hpstudy_s_per_epoch": steps[
            "eager fp32"]["s_per_epoch"], "hpstudy_steps": steps}
    results["accuracy"] = same_accuracy(args, data, device)
    print(f"val accuracy after {args.accuracy_epochs} epochs: plain "
          f"{results['accuracy']['plain_val_acc']:.3f}  hpstudy "
          f"{results['accuracy']['hpstudy_val_acc']:.3f}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        results["hpstudy_study"] = hpstudy_study(args, Path(folder))
        results["plain_study"] = plain_study(args, Path(folder), device)
    for name in ("hpstudy_study", "plain_study"):
        r = results[name]
        gpu = "n/a" if r["gpu_utilisation"] is None else f"{r['gpu_utilisation']:.0f}%"
        share = f", logging {100 * r['logging_share']:.1f}% of trial time" if "logging_share" \
            in r else ""
        print(f"{name:<14} {r['trials']:>4} trials in {r['seconds']:6.0f} s = "
              f"{r['trials_per_hour']:7.0f} trials/hour, GPU {gpu}{share}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
