"""The [train] keys of how a step runs (precision, channels_last, compile, cuda_graph): checks.

What each does is `hpstudy.train.step`'s; here, the combinations a study file may not ask
for, refused when the file is read (the device is checked when it is known:
`train.step.check_device`).
"""

from __future__ import annotations

from typing import Any

from hpstudy.spec.tables import require


def check_step_keys(train: Any) -> None:
    """A ConfigError unless a TrainConfig's step keys go together (and with its schedule)."""
    require(not (train.compile and train.cuda_graph), "cuda_graph",
            "false with compile = true (one way of cutting the step's overhead at a time)", True,
            "Set train.compile = false or train.cuda_graph = false.")
    require(not train.cuda_graph or train.schedule == "constant", "cuda_graph",
            f"false with schedule = {train.schedule!r} (a captured step keeps the learning rate "
            "it was captured with)", True,
            "Set train.schedule = 'constant' (not searched), or train.cuda_graph = false.")


def check_vectorized_step(train: Any) -> None:
    """A ConfigError unless a vectorised group can run the step keys (not compiled or captured)."""
    for key in ("compile", "cuda_graph"):
        require(not getattr(train, key), f"train.{key}", f"false with train.vectorize = "
                f"{train.vectorize} (a vectorised group is not a network torch can compile or "
                "capture)", True, f"Set train.{key} = false, or train.vectorize = 1.")
