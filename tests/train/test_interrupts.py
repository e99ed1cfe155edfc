"""Ctrl-C and SIGTERM: at once inside training, held until a checkpoint anywhere else."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
import torch

from hpstudy.data import load
from hpstudy.data.digits import DigitsOptions
from hpstudy.models import MLPOptions, build_model
from hpstudy.spec.study_file import ModelConfig
from hpstudy.train import interrupts
from hpstudy.train.batched import Stack, train_group
from hpstudy.train.loop import Recipe, fit

RECIPE = Recipe(epochs=3, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9)


@pytest.fixture
def installed():
    """hpstudy's handlers for SIGINT and SIGTERM, as the CLI installs them; then the old ones."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupts.install()
    yield
    with contextlib.suppress(KeyboardInterrupt):
        interrupts.checkpoint()  # nothing held over into the next test
    signal.signal(signal.SIGINT, before[0])
    signal.signal(signal.SIGTERM, before[1])


def send(signum: int = signal.SIGINT) -> None:
    os.kill(os.getpid(), signum)  # delivered to this (the main) thread before the next line


@pytest.fixture(scope="module")
def digits():
    return load("digits", DigitsOptions())


def network(digits):
    torch.manual_seed(0)
    return build_model(ModelConfig("mlp", MLPOptions()), digits, {"width": 16, "depth": 1})


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_first_signal_outside_training_is_held_until_the_next_checkpoint(installed, signum):
    send(signum)  # as if it came during a database write: nothing is raised here
    with pytest.raises(KeyboardInterrupt):
        interrupts.checkpoint()
    interrupts.checkpoint()  # raised once, then gone


def test_a_second_signal_interrupts_at_once_wherever_it_lands(installed):
    send()
    with pytest.raises(KeyboardInterrupt):
        send()


def test_inside_immediate_a_signal_interrupts_at_once(installed):
    with pytest.raises(KeyboardInterrupt), interrupts.immediate():
        send()
        pytest.fail("the signal should have interrupted the block")


def test_a_held_signal_is_raised_on_entering_an_immediate_block(installed):
    send()
    with pytest.raises(KeyboardInterrupt), interrupts.immediate():
        pytest.fail("the block should not have started")


def test_training_stops_mid_epoch_and_the_epoch_callback_is_never_interrupted(installed, digits):
    """The loop's epochs are immediate; its callback (which writes, in a study) is not."""
    seen, finished = [], []

    def on_epoch(metrics):
        send()  # lands inside the callback: held, so the callback finishes its "write"
        finished.append(metrics.epoch)

    def step_hook(module, args):
        seen.append(1)

    model = network(digits)
    model.register_forward_pre_hook(step_hook)
    with pytest.raises(KeyboardInterrupt):
        fit(model, digits, RECIPE, torch.device("cpu"), on_epoch)
    assert finished == [1]  # the first epoch's callback ran to its end
    batches = -(-len(digits.train) // RECIPE.batch_size)
    assert len(seen) <= batches + 2  # stopped as the second epoch began, not after it


def test_a_signal_during_batched_training_interrupts_it(installed, digits):
    stack = Stack(network(digits), 2, torch.device("cpu"))
    steps = []

    def step_hook(module, args):
        steps.append(1)
        if len(steps) == 3:
            send()

    stack.layers[0].register_forward_pre_hook(step_hook)  # the shared input layer, every step
    with pytest.raises(KeyboardInterrupt):
        train_group(stack, digits, [RECIPE, RECIPE], torch.device("cpu"),
                    lambda member, metrics: False)
    assert len(steps) == 3  # at once: the third step's forward pass never ran
