"""What a study will cost on this machine, measured before its first trial.

A CPU is tens of times slower than a GPU for convolutional networks, so `optimize` on a
machine without CUDA first times a few training steps of the cheapest and the dearest
network the search can pick, and says what an epoch and the study file's whole plan cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from hpstudy.data import Dataset
from hpstudy.search.objective import build_network, hyperparameters, recipe
from hpstudy.spec.study_file import StudyConfig
from hpstudy.train.loop import seeded, step_seconds

if TYPE_CHECKING:
    from hpstudy.run.optimize import Plan

SHAPES = ("width", "depth")  # what sets a network's cost; the rest is taken at its first value


@dataclass(frozen=True)
class Estimate:
    """Seconds an epoch takes here, for the cheapest and the dearest network; the plan."""

    device: str
    epoch_low: float
    epoch_high: float
    trials: int  # as planned by the study file (or --trials)
    epochs: int  # per trial (times seeds)

    def line(self) -> str:
        """One sentence for people, in the units that fit."""
        span = (_duration(self.epoch_low) if math.isclose(self.epoch_low, self.epoch_high,
                                                          rel_tol=0.2)
                else f"{_duration(self.epoch_low)} to {_duration(self.epoch_high)}")
        total = self.trials * self.epochs
        low, high = total * self.epoch_low, total * self.epoch_high
        plan = _duration(high) if math.isclose(low, high, rel_tol=0.2) else \
            f"{_duration(low)} to {_duration(high)}"
        trials = f"{self.trials} trial{'s' if self.trials != 1 else ''}"
        epochs = f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        return (f"Estimate on {self.device} (measured on a few training steps): one epoch takes "
                f"{span}; the plan of {trials} x {epochs}, about {plan} "
                "(less where trials are pruned). A GPU (--device cuda) is much faster for "
                "convolutional networks.")


def cost_note(plan: Plan) -> str:
    """The estimate's line where a study trains on the CPU (else, or for --trials 0, '')."""
    if plan.torch_device.type != "cpu" or plan.trials == 0:
        return ""
    cost = estimate(plan.config, plan.data, plan.torch_device, plan.trials)
    return cost.line() if cost else ""


def estimate(config: StudyConfig, data: Dataset, device: torch.device,
             trials: int | None) -> Estimate | None:
    """Time the cheapest and the dearest network of the search for a few steps each; None
    where one cannot even be built or stepped here (its trials fail and say why)."""
    try:
        seconds = [_epoch_seconds(config, data, device, end) for end in (0, 1)]
    except Exception:  # an estimate is advice: the trial itself reports the cause
        return None
    return Estimate(f"this {device.type.upper()}", min(seconds), max(seconds),
                    trials if trials is not None else config.trials,
                    config.train.epochs * config.train.seeds)


def _epoch_seconds(config: StudyConfig, data: Dataset, device: torch.device, end: int) -> float:
    """An epoch's seconds for the search's cheapest (`end` 0) or dearest (1) network."""
    hp = hyperparameters(config, {name: param.first() for name, param in
                                  config.search.items() if param.searched})
    hp |= {name: config.search[name].extremes()[end] for name in SHAPES
           if name in config.search and config.search[name].searched}
    with seeded(device, 0):
        network = build_network(config, data, hp)
    how = recipe(config, hp)
    steps = math.ceil(len(data.train) / how.batch_size)
    return step_seconds(network, data, how, device) * steps * 1.1  # + validation


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
