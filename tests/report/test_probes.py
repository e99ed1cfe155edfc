"""Pictures drawn from the network during training: xor (report 002), functions (003), the
weights' path over training (003)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_study
from mlflow import MlflowClient
from PIL import Image

from hpstudy.data import load
from hpstudy.data.digits import DigitsOptions
from hpstudy.models import MLPOptions, build_model
from hpstudy.report.probes import (
    FIT_PNG,
    PATHS_PNG,
    PER_EPOCH,
    XOR_PNG,
    WeightPathProbe,
    probe_for,
    snapshot_epochs,
)
from hpstudy.search.record import TrialRecord
from hpstudy.spec.study_file import ModelConfig, load_study
from hpstudy.train.loop import Recipe, fit

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load("digits", DigitsOptions())


def watched_training(digits, epochs: int, width: int = 32):
    """A digits MLP trained `epochs` epochs with a weight-path probe; both, and the steps."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("mlp", MLPOptions()), digits, {"width": width, "depth": 1})
    recipe = Recipe(epochs=epochs, batch_size=64, optimizer="sgd", lr=0.1, momentum=0.9, seed=0)
    steps = -(-len(digits.train) // recipe.batch_size)
    probe = WeightPathProbe(epochs)
    probe.watch(model, steps)
    fit(model, digits, recipe, CPU, lambda metrics: probe.observe(model, metrics.epoch))
    return model, probe, steps


def test_only_mlps_have_their_weight_path_drawn(digits):
    assert any(isinstance(p, WeightPathProbe) for p in probe_for("digits", None, digits, 5,
                                                                   "mlp").probes)
    assert not probe_for("digits", None, digits, 5, "cnn").probes


def test_snapshots_are_a_quarter_half_and_the_end():
    assert snapshot_epochs(30, first=True) == [1, 7, 15, 30]
    assert snapshot_epochs(2, first=False) == [1, 2]


def test_the_weights_are_taken_a_few_times_an_epoch_from_the_start_to_the_end(digits):
    model, probe, _ = watched_training(digits, epochs=3)
    epochs = [at for at, _ in probe.seen]
    assert epochs[0] == 0 and epochs[-1] == 3 and epochs == sorted(set(epochs))
    assert [e for e in epochs if e == int(e)] == [0, 1, 2, 3]  # every epoch's end
    assert PER_EPOCH * 3 - 3 <= len(epochs) - 1 <= PER_EPOCH * 3 + 3
    final = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert np.array_equal(probe.seen[-1][1][0], final.numpy())  # the last is the trained one
    first = next(m for m in model if isinstance(m, torch.nn.Linear)).weight
    assert np.array_equal(probe.seen[-1][1][1], first.detach().reshape(-1).numpy())


def test_the_weight_path_is_a_png_with_two_labelled_panels(digits, tmp_path):
    _, probe, _ = watched_training(digits, epochs=4)
    (name, draw, args), = probe.figures("digits: trial 0 (complete)")
    figure = draw(*args)
    axes = [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]
    assert name == PATHS_PNG and len(axes) == 2
    titles = [ax.get_title() for ax in axes]
    assert titles[0].startswith("whole network: ") and titles[1].startswith("first layer: ")
    for ax in axes:
        assert ax.get_xlabel().startswith("PC 1 (") and "% of the variance" in ax.get_ylabel()
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["initial weights",
                                                                       "final weights"]
    assert "epoch" in [ax.get_ylabel() for ax in figure.axes if ax not in axes]  # colour bar
    figure.savefig(tmp_path / PATHS_PNG)
    assert Image.open(tmp_path / PATHS_PNG).size[0] > 800


def test_a_large_network_is_followed_through_a_fixed_random_subset_of_its_weights(digits):
    model, probe, _ = watched_training(digits, epochs=1, width=512)  # 38,410 weights
    (_, _, (panels, epochs, _)), = probe.figures("")
    whole, first = (label for label, _, _ in panels)
    assert whole == "whole network: a random 20,000 of its 38,410 weights"
    assert first == "first layer: a random 20,000 of its 32,768 weights"
    assert all(path.shape == (len(epochs), 2) for _, path, _ in panels)
    assert not model._forward_pre_hooks  # the probe lets go of the network when done


@pytest.mark.slow
@pytest.mark.parametrize(("study", "picture"), [("xor_mlp", XOR_PNG),
                                                ("functions_mlp", FIT_PNG),
                                                ("functions_mlp", PATHS_PNG)])
def test_the_task_picture_is_in_each_trials_run(stores, tmp_path, study, picture):
    config = load_study(study, ["train.epochs=4", "data.points=200"] if study.startswith(
        "functions") else ["train.epochs=4"])
    outcome = run_study(config, stores, trials=1, device="cpu")
    run_id = TrialRecord.of(outcome.study.trials[0]).run_id
    client = MlflowClient(stores.tracking_uri)
    path = Path(client.download_artifacts(run_id, picture, str(tmp_path)))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    assert "hpstudy.figures_error" not in client.get_run(run_id).data.tags
