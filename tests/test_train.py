"""The training loop: learns, is reproducible on CPU, stops on divergence or when told."""

from __future__ import annotations

import math

import pytest
import torch

from hpstudy.data import load
from hpstudy.data.digits import DigitsOptions
from hpstudy.models import MLPOptions, build_model
from hpstudy.train import Diverged, Recipe, evaluate, fit, pick_device

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load("digits", DigitsOptions())


def train(digits, seed: int = 0, **recipe):
    torch.manual_seed(seed)
    model = build_model("mlp", MLPOptions(), digits.input_shape, 10, digits.mean, digits.std,
                        width=32, depth=1)
    settings = {"epochs": 3, "batch_size": 64, "optimizer": "sgd", "lr": 0.1,
                "momentum": 0.9, "seed": seed} | recipe
    return model, fit(model, digits, Recipe(**settings), CPU)


def test_training_learns_the_digits(digits):
    model, history = train(digits, epochs=5)
    assert [m.epoch for m in history] == [1, 2, 3, 4, 5]
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].val_acc > 0.9
    assert evaluate(model, digits.val.to(CPU)) == pytest.approx(
        (history[-1].val_loss, history[-1].val_acc), rel=1e-5)


def test_same_parameters_same_result_on_cpu(digits):
    _, first = train(digits)
    _, again = train(digits)
    assert [m.val_loss for m in first] == [m.val_loss for m in again]
    _, other_seed = train(digits, seed=1)
    assert other_seed[-1].val_loss != first[-1].val_loss


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_every_optimizer_trains(digits, optimizer):
    _, history = train(digits, optimizer=optimizer, lr=0.01 if optimizer != "sgd" else 0.1)
    assert history[-1].val_acc > 0.8


def test_a_huge_learning_rate_raises_diverged_with_the_history(digits):
    with pytest.raises(Diverged) as caught:
        train(digits, lr=1e6, momentum=0.9)
    assert not math.isfinite(caught.value.history[-1].train_loss)


def test_on_epoch_sees_every_epoch_and_can_stop_training(digits):
    seen = []

    class Stop(Exception):
        pass

    def on_epoch(metrics):
        seen.append(metrics.epoch)
        if metrics.epoch == 2:
            raise Stop

    torch.manual_seed(0)
    model = build_model("mlp", MLPOptions(), digits.input_shape, 10, digits.mean, digits.std, 8, 1)
    with pytest.raises(Stop):
        fit(model, digits, Recipe(5, 64, "sgd", 0.1), CPU, on_epoch)
    assert seen == [1, 2]


def test_auto_device_is_cuda_only_when_there_is_one():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == CPU
