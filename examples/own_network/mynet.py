"""A network of your own for hpstudy: its signature is the study's [model] keys.

hpstudy passes `input_shape` (one input, e.g. (1, 8, 8)) and `num_outputs` (classes), and
every other parameter from the study file's [model] table or a trial's [search] values.
Its inputs arrive standardised (hpstudy's normalisation layer runs first).
"""

from typing import Literal

from torch import nn


class SmallCNN(nn.Module):
    """Two conv layers and a linear head; `channels` and `act` are searched in study.toml."""

    def __init__(self, input_shape: tuple, num_outputs: int, channels: int = 8,
                 act: Literal["relu", "tanh"] = "relu", dropout: float = 0.0):
        super().__init__()
        activation = nn.ReLU if act == "relu" else nn.Tanh
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], channels, 3, padding=1), activation(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), activation(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(8 * channels, num_outputs))

    def forward(self, x):
        return self.head(self.features(x))
