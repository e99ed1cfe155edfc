"""Task pictures that need the network during training: what the seed reports drew by hand.

`xor` (report 002): the decision boundary over the input plane and the four points as the
hidden layer sees them, at a few epochs. `functions` (report 003): the prediction against
the target function, at a few epochs. Every MLP (report 003, Fig 2.1.4/2.1.5): the path of
its weights over training, in the plane of their first two principal components. A probe
looks at the network after the epochs it chose (evaluation mode, no gradient) or, for the
weights, a few times an epoch, and keeps plain arrays; the figures are drawn later, by the
writer, from those arrays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from hpstudy.data import Dataset
from hpstudy.report import trial_figures as plots

XOR_PNG, FIT_PNG, PATHS_PNG = "xor.png", "function_fit.png", "weight_paths.png"
GRID = 81  # points per side of the xor input plane
CURVE = 400  # points along x of the function plot
PER_EPOCH = 4  # weight snapshots an epoch (fewer where training is long) ...
MOST_SNAPSHOTS = 400  # ... so that a trial keeps at most this many
MOST_WEIGHTS = 20_000  # weights followed per panel: a fixed random subset of larger sets


def snapshot_epochs(epochs: int, first: bool) -> list[int]:
    """A few epochs to look at: a quarter, half and all of training (and the first)."""
    chosen = {max(1, epochs // 4), max(1, epochs // 2), epochs} | ({1} if first else set())
    return sorted(chosen)


class Probe:
    """No task picture: the default for every dataset without one."""

    def watch(self, model: nn.Module, steps_per_epoch: int) -> None:
        """Meet the network before its first training step."""

    def observe(self, model: nn.Module, epoch: int) -> None:
        """Look at the network after `epoch` (a probe keeps only what it needs)."""

    def figures(self, title: str) -> tuple[tuple[str, Any, tuple], ...]:
        """(file, draw, args) for the writer."""
        return ()


class XorProbe(Probe):
    """The boundary over [-0.5, 1.5]^2 and the first hidden layer's image of the four points."""

    def __init__(self, data: Dataset, epochs: int):
        self.points, self.labels = data.val.x, data.val.y
        axis = torch.linspace(-0.5, 1.5, GRID)
        self.axis = axis.numpy()
        self.plane = torch.cartesian_prod(axis, axis)[:, [1, 0]]  # row-major: y, then x
        self.epochs = snapshot_epochs(epochs, first=True)
        self.seen: list[tuple[int, np.ndarray, np.ndarray]] = []

    def observe(self, model: nn.Module, epoch: int) -> None:
        if epoch not in self.epochs:
            return
        with _evaluating(model) as device:
            chance = model(self.plane.to(device)).softmax(1)[:, 1].reshape(GRID, GRID)
            hidden = _first_hidden(model, self.points.to(device))
        self.seen.append((epoch, chance.cpu().numpy(), hidden.cpu().numpy()))

    def figures(self, title: str) -> tuple[tuple[str, Any, tuple], ...]:
        if not self.seen:
            return ()
        return ((XOR_PNG, plots.xor_views, (self.seen, self.axis, self.points.cpu().numpy(),
                                            self.labels.cpu().numpy(), title)),)


class FunctionProbe(Probe):
    """The prediction over the input range against the target and the training points."""

    def __init__(self, data: Dataset, epochs: int, target: Any):
        x = data.train.x.cpu()
        self.x = torch.linspace(float(x.min()), float(x.max()), CURVE).unsqueeze(1)
        self.target = target(self.x).numpy()
        self.train = (x.numpy(), data.train.y.cpu().numpy())
        self.epochs = snapshot_epochs(epochs, first=False)
        self.seen: list[tuple[int, np.ndarray]] = []

    def observe(self, model: nn.Module, epoch: int) -> None:
        if epoch in self.epochs:
            with _evaluating(model) as device:
                self.seen.append((epoch, model(self.x.to(device)).cpu().numpy()))

    def figures(self, title: str) -> tuple[tuple[str, Any, tuple], ...]:
        if not self.seen:
            return ()
        return ((FIT_PNG, plots.function_fit, (self.x.numpy(), self.target, self.seen,
                                               self.train, title)),)


class WeightPathProbe(Probe):
    """Snapshots of the whole network's weights and of its first layer's, a few an epoch
    (kept on the network's device until the epoch ends: no extra synchronisation), then
    both paths projected on their first two principal components."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.every, self.steps, self.step = 1, 1, 0
        self.sets: dict[str, tuple[list[torch.Tensor], torch.Tensor | None]] = {}
        self.pending: list[tuple[float, list[torch.Tensor]]] = []
        self.seen: list[tuple[float, list[np.ndarray]]] = []
        self.handle: Any = None

    def watch(self, model: nn.Module, steps_per_epoch: int) -> None:
        self.steps = max(1, steps_per_epoch)
        self.every = max(math.ceil(self.steps / PER_EPOCH),
                         math.ceil(self.steps * self.epochs / MOST_SNAPSHOTS))
        first = next((m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)), None)
        named = {"whole network": [p for p in model.parameters() if p.requires_grad]}
        if first is not None:
            named["first layer"] = [first.weight]
        self.sets = {name: (params, _subset(sum(p.numel() for p in params), params[0].device))
                     for name, params in named.items()}
        self._take(0)
        self.handle = model.register_forward_pre_hook(self._before_step)

    def _before_step(self, model: nn.Module, inputs: Any) -> None:
        if model.training and torch.is_grad_enabled():
            done, self.step = self.step, self.step + 1  # optimizer steps so far
            if done % self.every == 0 and done % self.steps:  # (epoch ends: `observe`)
                self._take(done)

    def _take(self, steps: int) -> None:
        with torch.no_grad():
            flat = [_flat(params, chosen) for params, chosen in self.sets.values()]
        self.pending.append((steps / self.steps, flat))

    def observe(self, model: nn.Module, epoch: int) -> None:
        if self.handle is None:
            return
        self._take(epoch * self.steps)  # the epoch's end, then everything to the host at once
        self.seen += [(at, [v.cpu().numpy() for v in flat]) for at, flat in self.pending]
        self.pending.clear()
        self.step = epoch * self.steps

    def figures(self, title: str) -> tuple[tuple[str, Any, tuple], ...]:
        if self.handle is not None:
            self.handle.remove()
        if len(self.seen) < 3:
            return ()
        from sklearn.decomposition import PCA

        panels = []
        for i, (name, (params, chosen)) in enumerate(self.sets.items()):
            path = np.stack([flat[i] for _, flat in self.seen]).astype(np.float64)
            count = sum(p.numel() for p in params)
            label = (f"{name}: {count:,} weights" if chosen is None else
                     f"{name}: a random {len(chosen):,} of its {count:,} weights")
            components = min(2, *path.shape)
            pca = PCA(n_components=components).fit(path)
            plane = np.zeros((len(path), 2))
            plane[:, :components] = pca.transform(path)
            explained = (*pca.explained_variance_ratio_, 0.0, 0.0)[:2]
            panels.append((label, plane, explained))
        epochs = np.array([at for at, _ in self.seen])
        return ((PATHS_PNG, plots.weight_paths, (panels, epochs, title)),)


class Probes(Probe):
    """Several probes as one."""

    def __init__(self, *probes: Probe):
        self.probes = probes

    def watch(self, model: nn.Module, steps_per_epoch: int) -> None:
        for probe in self.probes:
            probe.watch(model, steps_per_epoch)

    def observe(self, model: nn.Module, epoch: int) -> None:
        for probe in self.probes:
            probe.observe(model, epoch)

    def figures(self, title: str) -> tuple[tuple[str, Any, tuple], ...]:
        return tuple(figure for probe in self.probes for figure in probe.figures(title))


def probe_for(dataset: str, options: Any, data: Dataset, epochs: int,
              architecture: str = "") -> Probe:
    """The probes of a study's dataset and network (none for most)."""
    probes: list[Probe] = []
    if dataset == "xor":
        probes.append(XorProbe(data, epochs))
    if dataset == "functions":
        from hpstudy.data.functions import FUNCTIONS

        probes.append(FunctionProbe(data, epochs, FUNCTIONS[options.function]))
    if architecture == "mlp":
        probes.append(WeightPathProbe(epochs))
    return Probes(*probes)


class _evaluating:
    """Evaluation mode and no gradient while probing; training mode restored after."""

    def __init__(self, model: nn.Module):
        self.model, self.grad = model, torch.no_grad()

    def __enter__(self) -> torch.device:
        self.training = self.model.training
        self.model.eval()
        self.grad.__enter__()
        return next(self.model.parameters()).device

    def __exit__(self, *exc: object) -> None:
        self.grad.__exit__(*exc)
        self.model.train(self.training)


def _subset(count: int, device: torch.device) -> torch.Tensor | None:
    """A fixed random MOST_WEIGHTS of `count` weights (sorted), or None for all of them."""
    if count <= MOST_WEIGHTS:
        return None
    chosen = torch.randperm(count, generator=torch.Generator().manual_seed(0))[:MOST_WEIGHTS]
    return chosen.sort().values.to(device)


def _flat(params: list[torch.Tensor], chosen: torch.Tensor | None) -> torch.Tensor:
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    return flat.clone() if chosen is None else flat[chosen]


def _first_hidden(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of the first activation after the first linear layer (the hidden image)."""
    seen_linear = False
    for layer in model.children():
        x = layer(x)
        seen_linear |= isinstance(layer, nn.Linear)
        if seen_linear and not isinstance(layer, nn.Linear | nn.Flatten | nn.Dropout):
            return x
    return x  # no hidden layer: the output itself
