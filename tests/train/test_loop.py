"""The training loop: learns, is reproducible on CPU, stops on divergence or when told."""

from __future__ import annotations

import itertools
import math
import typing

import pytest
import torch

from hpstudy.data import load
from hpstudy.data.digits import DigitsOptions
from hpstudy.models import MLPOptions, build_model
from hpstudy.spec.study_file import ModelConfig, TrainConfig
from hpstudy.train.loop import (
    SCHEDULES,
    Diverged,
    Recipe,
    evaluate,
    fit,
    fit_seeds,
    make_optimizer,
    make_scheduler,
    pick_device,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load("digits", DigitsOptions())


def train(digits, seed: int = 0, **recipe):
    torch.manual_seed(seed)
    model = build_model(ModelConfig("mlp", MLPOptions()), digits, {"width": 32, "depth": 1})
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
    model = build_model(ModelConfig("mlp", MLPOptions()), digits, {"width": 8, "depth": 1})
    with pytest.raises(Stop):
        fit(model, digits, Recipe(5, 64, "sgd", 0.1), CPU, on_epoch)
    assert seen == [1, 2]


def learning_rates(schedule: str, epochs: int = 6, steps: int = 4) -> list[float]:
    """The learning rate each epoch starts with, as torch's scheduler sets it."""
    model = torch.nn.Linear(2, 2)
    recipe = Recipe(epochs, 16, "sgd", 0.1, momentum=0.9, schedule=schedule)
    optimizer = make_optimizer(model, recipe)
    scheduler = make_scheduler(optimizer, recipe, steps)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        for _ in range(steps):
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    return rates


def test_each_schedule_changes_the_learning_rate_over_epochs():
    assert learning_rates("constant") == [0.1] * 6
    assert learning_rates("step") == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cosine = learning_rates("cosine")
    assert cosine[0] == 0.1 and all(a > b for a, b in itertools.pairwise(cosine))
    cycle = learning_rates("one-cycle")
    peak = cycle.index(max(cycle))
    assert cycle[0] < 0.01 and 0 < peak < 5 and cycle[-1] < max(cycle) / 2  # up, then down
    assert max(cycle) <= 0.1


def test_the_schedules_are_those_a_study_file_may_name():
    assert typing.get_args(typing.get_type_hints(TrainConfig)["schedule"]) == SCHEDULES


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_training_with_every_schedule_learns(digits, schedule):
    _, history = train(digits, schedule=schedule, epochs=4)
    assert history[-1].val_acc > 0.8


def test_auto_device_is_cuda_only_when_there_is_one():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == CPU


def with_dropout(digits, seed: int) -> torch.nn.Module:
    """A network that draws random numbers while training (dropout), built from `seed`."""
    torch.manual_seed(seed)
    return build_model(ModelConfig("mlp", MLPOptions()), digits,
                       {"width": 16, "depth": 1, "dropout": 0.3})


def test_seeds_trained_in_turn_compute_what_each_computes_alone(digits):
    recipes = [Recipe(3, 64, "sgd", 0.1, momentum=0.9, seed=seed) for seed in (0, 1, 2)]
    seen = []
    together = fit_seeds([with_dropout(digits, r.seed) for r in recipes], digits, recipes, CPU,
                         seen.append)
    alone = []
    for recipe in recipes:
        model = with_dropout(digits, recipe.seed)
        torch.manual_seed(recipe.seed)  # dropout draws, as the objective seeds them
        alone.append(fit(model, digits, recipe, CPU))
    assert [[m.val_loss for m in h] for h in together] == [[m.val_loss for m in h] for h in alone]
    assert [[m.epoch for m in epoch] for epoch in seen] == [[1, 1, 1], [2, 2, 2], [3, 3, 3]]
    assert len({h[-1].val_loss for h in together}) == 3  # the seeds differ


def test_a_diverging_seed_stops_all_with_the_mean_history(digits):
    recipes = [Recipe(3, 64, "sgd", lr, momentum=0.9, seed=0) for lr in (0.1, 1e6)]
    torch.manual_seed(0)  # as in the one-seed test above: 1e6 diverges from these weights
    models = [build_model(ModelConfig("mlp", MLPOptions()), digits, {"width": 32, "depth": 1})
              for _ in recipes]
    with pytest.raises(Diverged) as caught:
        fit_seeds(models, digits, recipes, CPU)
    last = caught.value.history[-1]  # the mean over both seeds
    assert not (math.isfinite(last.train_loss) and math.isfinite(last.val_loss))
    assert [m.epoch for m in caught.value.history] == list(range(1, len(caught.value.history) + 1))


class Blowup(torch.nn.Module):
    """The digits MLP with its outputs scaled up: a finite loss far above any sane one."""

    def __init__(self, network: torch.nn.Module, scale: float):
        super().__init__()
        self.network, self.scale = network, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x) * self.scale


def test_a_finite_loss_that_explodes_is_diverged_and_a_large_sane_one_is_not(digits):
    torch.manual_seed(0)
    network = build_model(ModelConfig("mlp", MLPOptions()), digits, {"width": 32, "depth": 1})
    recipe = Recipe(epochs=2, batch_size=64, optimizer="sgd", lr=0.0, seed=0)  # lr 0: no fix
    with pytest.raises(Diverged, match=r"loss exploded to .* at epoch 1 \(above 2\.3e\+06"):
        fit(Blowup(network, 1e12), digits, recipe, CPU)  # finite: about 1e12
    history = fit(Blowup(network, 1e3), digits, recipe, CPU)  # large (about 1e3), not exploded
    assert len(history) == 2 and history[-1].val_loss > 10
