"""A user's package written into a temporary folder: a small CNN and a data function."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

NETWORK = '''
from typing import Literal

import numpy as np
from torch import nn


class SmallCNN(nn.Module):
    """A user's CNN: its signature is the study's [model] keys."""

    def __init__(self, input_shape: tuple, num_outputs: int, channels: int = 8,
                 act: Literal["relu", "tanh"] = "relu"):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(input_shape[0], channels, 3, padding=1),
            nn.ReLU() if act == "relu" else nn.Tanh(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(channels * 16, num_outputs))

    def forward(self, x):
        return self.body(x)


def stripes(n: int = 240, seed: int = 0):
    """Random 8x8 images with a bright band whose row says the class: learnable in an epoch."""
    rng = np.random.default_rng(seed)

    def part(m):
        y = rng.integers(0, 3, m)
        x = rng.integers(0, 60, (m, 1, 8, 8)).astype(np.uint8)
        for k in range(3):
            x[y == k, :, 3 * k:3 * k + 2, :] = 250
        return x, y

    return {"train": part(n), "test": part(n // 2), "classes": ["top", "middle", "bottom"]}
'''

STUDY = '''
description = "a user's CNN on a user's data"
trials = 4

[data]
name = "{module}:stripes"
n = 240

[model]
architecture = "{module}:SmallCNN"

[train]
epochs = 2
batch_size = 32

[search]
lr = {{ low = 0.02, high = 0.3, log = true }}
channels = {{ choices = [4, 8] }}
act = {{ choices = ["relu", "tanh"] }}

[sampler]
name = "tpe"
seed = 0

[pruner]
name = "none"
'''

_numbers = itertools.count()


def write_package(folder: Path, extra: str = "") -> str:
    """A module of NETWORK (plus `extra` code) in `folder`, named uniquely; its name."""
    name = f"usernets_{next(_numbers)}_{folder.name.replace('-', '_')}"
    (folder / f"{name}.py").write_text(textwrap.dedent(NETWORK) + textwrap.dedent(extra))
    return name


def write_study(folder: Path, module: str, name: str = "mine", **replace: str) -> Path:
    text = STUDY.format(module=module)
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path
