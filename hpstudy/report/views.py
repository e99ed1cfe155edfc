"""Study-level figures and tables: how the search went, drawn from the Optuna study alone.

Optuna's own matplotlib views (history, intermediate values, parallel coordinates,
parameter importances, slices) plus what the seed reports drew by hand: the learning
rate x momentum map of validation loss, a labelled sample of the dataset and, where the
study varies the width, parameter count against accuracy. Each view is a `Figure`
(or None, with the reason, when the study cannot show it yet); nothing here writes.
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from hpstudy.errors import NoChampion
from hpstudy.run.select import best_trial
from hpstudy.search.record import COMPLETE, DIVERGED, TrialRecord
from hpstudy.spec.space import edges
from hpstudy.spec.study_file import StudyConfig

if TYPE_CHECKING:
    import optuna

    from hpstudy.data import Dataset

SAMPLES_PER_CLASS = 8  # images of each class in the dataset's sample grid
SAMPLES_PNG, SAMPLES_CAPTION = "samples.png", "A labelled sample of the training images"
MIN_COMPLETE = 2  # completed trials Optuna's views need to say anything
PNG_DPI = 90


@dataclass(frozen=True)
class View:
    """One study-level figure: its file name, what it shows, and the figure (or why not)."""

    filename: str
    caption: str
    figure: Figure | None
    why_not: str = ""
    drawn: bytes | None = None  # its PNG, drawn and logged already (by the writer: `figure` None)

    @functools.cached_property
    def png(self) -> bytes:
        """The figure as PNG, rendered once (for MLflow and the report alike)."""
        if self.drawn is not None:
            return self.drawn
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=PNG_DPI)
        return buffer.getvalue()


def study_views(study: optuna.Study, config: StudyConfig, data: Dataset | None,
                samples: bytes | None = None) -> list[View]:
    """Every study-level view of `study` as it stands now (`samples`: the PNG of the dataset's
    samples where it is drawn already)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    searched = [k for k, p in config.search.items() if p.searched]
    views = [_optuna_view(name, caption, draw, study, complete)
             for name, caption, draw in _OPTUNA_VIEWS if name != "slice.png" or searched]
    views.append(lr_momentum_map(study.trials, config))
    if any(k in searched for k in ("width", "depth")):
        views.append(size_against_accuracy(study.trials, config.name))
    if samples is not None:
        views.append(View(SAMPLES_PNG, SAMPLES_CAPTION, None, drawn=samples))
    elif has_samples(data):
        views.append(View(SAMPLES_PNG, SAMPLES_CAPTION, samples_figure(
            *sample_images(data), config.name)))
    return views


def has_samples(data: Dataset | None) -> bool:
    """Whether the dataset is labelled images, which the samples view shows."""
    return data is not None and bool(data.classes) and len(data.input_shape) == 3


def _best(study: optuna.Study) -> FrozenTrial | None:
    """Selection's best trial, or None while there is none."""
    try:
        return best_trial(study)
    except NoChampion:
        return None


def best_params(study: optuna.Study) -> dict[str, object]:
    """The best trial's parameters and number, as the parent run's params: selection's pick
    (`select.best_trial`, before its floor), so `best.*` names the trial a champion comes from."""
    best = _best(study)
    if best is None:
        return {}
    return {"best.trial": best.number, "best.val_loss": best.value} | {
        f"best.{k}": v for k, v in best.params.items()}


def edge_warnings(study: optuna.Study, config: StudyConfig) -> list[str]:
    """Searched parameters whose best value lies at the edge of their range: widen it."""
    best = _best(study)
    if best is None:
        return []
    return [f"the best {name} = {value:.4g} lies at the edge of its search range"
            for name, value in edges(config.search, best.params, len(study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE,))))]


# ------------------------------------------------------------------------------- Optuna's views


def _history(study: optuna.Study) -> object:
    from optuna.visualization.matplotlib import plot_optimization_history

    return plot_optimization_history(study, target_name="validation loss")


def _intermediate(study: optuna.Study) -> object:
    from optuna.visualization.matplotlib import plot_intermediate_values

    ax = plot_intermediate_values(_finite_view(study))
    ax.set(xlabel="epoch", ylabel="validation loss (log scale)")
    ax.set_yscale("log")
    return ax


def _parallel(study: optuna.Study) -> object:
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    return plot_parallel_coordinate(study, target_name="validation loss")


def _importances(study: optuna.Study) -> object:
    from optuna.visualization.matplotlib import plot_param_importances

    return plot_param_importances(study, target_name="validation loss")


def _slice(study: optuna.Study) -> object:
    from optuna.visualization.matplotlib import plot_slice

    return plot_slice(study, target_name="validation loss")


OPTUNA_TITLES = {"Optimization History Plot", "Intermediate Values Plot", "Slice Plot",
                 "Parallel Coordinate Plot", "Hyperparameter Importances"}  # its default titles
FEW_FOR_IMPORTANCES = 30  # completed trials below which fANOVA's importances are noisy
INTEGER_X = {"optimization_history.png", "intermediate_values.png"}  # trials, epochs
_OPTUNA_VIEWS: tuple[tuple[str, str, Callable[[optuna.Study], object]], ...] = (
    ("optimization_history.png", "Validation loss of each trial and the best so far",
     _history),
    ("intermediate_values.png", "Validation loss per epoch of every trial (pruned ones stop "
                                "early)", _intermediate),
    ("parallel_coordinate.png", "Each completed trial's parameters, coloured by validation "
                                "loss", _parallel),
    ("param_importances.png", "How much each parameter explains the validation loss (fANOVA)",
     _importances),
    ("slice.png", "Validation loss against each searched parameter", _slice),
)


def _optuna_view(filename: str, caption: str, draw: Callable[[optuna.Study], object],
                 study: optuna.Study, complete: Sequence[FrozenTrial]) -> View:
    """One of Optuna's matplotlib views as a figure of its own, or why it cannot be drawn."""
    import matplotlib.pyplot as plt  # Optuna draws through pyplot; each figure is closed here
    from matplotlib.colors import ListedColormap
    from matplotlib.ticker import MaxNLocator, NullFormatter

    if len(complete) < MIN_COMPLETE:
        return View(filename, caption, None, f"needs {MIN_COMPLETE} completed trials, the "
                                             f"study has {len(complete)}")
    plt.switch_backend("agg")
    # Optuna sets pyplot's style for good (ggplot): the context puts it back after drawing
    with warnings.catch_warnings(), plt.style.context("default"):
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on every matplotlib view
        try:
            drawn = draw(study)
        except (ValueError, RuntimeError) as error:  # e.g. one parameter value only
            plt.close("all")
            return View(filename, caption, None, str(error))
    axes = list(np.atleast_1d(drawn).flat)
    figure = axes[0].figure
    for ax in axes:  # log axes: Optuna labels minor ticks too, and they overlap
        if ax.get_xscale() == "log":
            ax.xaxis.set_minor_formatter(NullFormatter())
        for loc in ("left", "center", "right"):  # the figure's title says it, for people
            if ax.get_title(loc) in OPTUNA_TITLES:
                ax.set_title("", loc=loc)
        if filename in INTEGER_X:  # epochs and trial numbers: no 2.5
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    wide = filename == "parallel_coordinate.png"
    figure.set_size_inches(max(11 if wide else 7, 3.4 * len(axes)), 5)
    few = (f" (from {len(complete)} completed trials: a rough guide)"
           if filename == "param_importances.png" and len(complete) < FEW_FOR_IMPORTANCES else "")
    figure.suptitle(f"{study.study_name}: {caption[0].lower()}{caption[1:]}{few}", fontsize=10)
    for ax in axes:  # Optuna's blues fade to white at one end: that trial vanishes
        for drawn_set in ax.collections:
            cmap = drawn_set.get_cmap()
            if drawn_set.get_array() is not None and cmap.name.startswith("Blues"):
                drawn_set.set_cmap(ListedColormap(cmap(np.linspace(0.0, 0.75, 256)) if
                                                  cmap.name.endswith("_r") else
                                                  cmap(np.linspace(0.25, 1.0, 256))))
    bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # colour bars: "not compatible with tight_layout"
        figure.tight_layout(rect=(0, 0, 0.9 if bars else 1, 1))  # long names stay inside
    for bar in bars:  # in the margin kept for it, not over the last panel's points
        _, bottom, _, height = bar.get_position().bounds
        bar.set_position((0.92, bottom, 0.015, height))
    plt.close(figure)  # forget it in pyplot; the Figure object itself stays drawable
    return View(filename, caption, figure)


def _finite_view(study: optuna.Study) -> optuna.Study:
    """The study with diverged epochs (reported as inf) left out: they flatten the plot."""
    import optuna

    quiet = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "a new study created in memory"
    try:
        view = optuna.create_study(study_name=study.study_name, direction="minimize")
    finally:
        optuna.logging.set_verbosity(quiet)
    for trial in study.get_trials(deepcopy=False):
        steps = {s: v for s, v in trial.intermediate_values.items() if math.isfinite(v)}
        if steps:
            view.add_trial(optuna.trial.create_trial(
                state=TrialState.PRUNED if trial.state != TrialState.COMPLETE else trial.state,
                value=trial.value if trial.state == TrialState.COMPLETE else None,
                params=trial.params, distributions=trial.distributions,
                intermediate_values=steps))
    return view


# ------------------------------------------------------------------------------- the seeds' views


def lr_momentum_map(trials: Sequence[FrozenTrial], config: StudyConfig) -> View:
    """Final validation loss over learning rate x momentum: the seeds' hand grid, from trials."""
    filename, caption = "lr_momentum.png", "Validation loss over learning rate and momentum"
    points = [(t.params.get("lr", _fixed(config, "lr")),
               t.params.get("momentum", _fixed(config, "momentum")), t)
              for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if not any(config.search[k].searched for k in ("lr", "momentum")) or not points:
        return View(filename, caption, None, "needs lr or momentum searched and a finished trial")
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    finals = [_final_loss(t) for _, _, t in points]
    finite = [v for v in finals if math.isfinite(v) and v > 0]
    norm = LogNorm(min(finite), max(finite)) if finite else None
    shown = None
    for state, marker, label in ((TrialState.COMPLETE, "o", "completed"),
                                 (TrialState.PRUNED, "v", "pruned (loss when stopped)")):
        chosen = [(lr, m, v) for (lr, m, t), v in zip(points, finals, strict=True)
                  if t.state == state and math.isfinite(v) and v > 0]
        if chosen:
            lr, mom, val = zip(*chosen, strict=True)
            shown = ax.scatter(lr, mom, c=val, norm=norm, cmap="viridis", marker=marker, s=60,
                               edgecolors="k", linewidths=0.5, label=label)
    lost = [(lr, m) for (lr, m, _), v in zip(points, finals, strict=True) if v == math.inf]
    if lost:
        ax.scatter(*zip(*lost, strict=True), marker="x", c="red", s=60, label="diverged")
    if shown is not None:
        fig.colorbar(shown, ax=ax, label="validation loss (log scale; darker is better)")
    ax.set_xscale("log")
    ax.set(xlabel="learning rate (log scale)", ylabel="momentum",
           title=f"{config.name}: validation loss over learning rate x momentum\n"
                 f"{len(points)} trials")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)  # below: never on the points
    return View(filename, caption, fig)


def size_against_accuracy(trials: Sequence[FrozenTrial], name: str) -> View:
    """Parameter count against validation accuracy of completed trials (report 003)."""
    filename, caption = "size_accuracy.png", "Validation accuracy against model size"
    rows = [(r.n_params, r.val_acc) for r in map(TrialRecord.of, trials)
            if r and r.state == COMPLETE and r.n_params and r.val_acc is not None
            and math.isfinite(r.val_acc)]
    if not rows:
        return View(filename, caption, None, "needs a completed classification trial")
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    sizes, accs = zip(*sorted(rows), strict=True)
    ax.plot(sizes, [100 * a for a in accs], "o", label="completed trial")
    ax.set_xscale("log")
    ax.set(xlabel="trainable parameters (log scale)", ylabel="validation accuracy (%)",
           title=f"{name}: validation accuracy against model size")
    ax.grid(alpha=0.3)
    ax.legend()
    return View(filename, caption, fig)


def sample_images(data: Dataset) -> tuple[np.ndarray, tuple[str, ...]]:
    """SAMPLES_PER_CLASS training images of each class (blank where a class has fewer), in
    class order, scaled to 0..1, and the class names: what `samples_figure` draws."""
    import torch

    rows = []
    for index in range(len(data.classes)):
        found = torch.nonzero(data.train.y == index).flatten()[:SAMPLES_PER_CLASS]
        picked = data.train.x[found]
        if len(picked) < SAMPLES_PER_CLASS:  # a class with few examples: blank tiles
            blank = torch.zeros((SAMPLES_PER_CLASS - len(picked), *picked.shape[1:]),
                                dtype=picked.dtype)
            picked = torch.cat([picked, blank])
        rows.append(picked)
    return (torch.cat(rows).float() / 255.0).numpy(), tuple(data.classes)


def samples_figure(images: np.ndarray, classes: tuple[str, ...], name: str) -> Figure:
    """The images of `sample_images`, one row per class (report 000)."""
    import torch
    from torchvision.utils import make_grid

    pad = 2
    grid = make_grid(torch.from_numpy(images), nrow=SAMPLES_PER_CLASS, padding=pad,
                     pad_value=1.0)
    height = images.shape[2] + pad
    fig = Figure(figsize=(6, 0.6 * len(classes) + 1), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_yticks([pad + height * i + (height - pad) / 2 for i in range(len(classes))],
                  labels=list(classes))
    ax.set_xticks([])
    ax.set(ylabel="class", xlabel=f"the first {SAMPLES_PER_CLASS} examples of each class in "
                                  "the training split", title=f"{name}: training images by class")
    return fig


def _fixed(config: StudyConfig, key: str) -> float:
    """A parameter's fixed value (a searched one is in the trial's params)."""
    return float(config.search[key].value or 0.0) if key in config.search else 0.0


def _final_loss(trial: FrozenTrial) -> float:
    """A trial's last reported validation loss (inf for a diverged one)."""
    record = TrialRecord.of(trial)
    if record is not None and record.state == DIVERGED:
        return math.inf
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        return trial.value
    return trial.intermediate_values[max(trial.intermediate_values)] if (
        trial.intermediate_values) else math.nan
