"""How a step runs: bf16, channels_last and compile train as fp32 does; CUDA graphs on a GPU."""

from __future__ import annotations

import pytest
import torch

from hpstudy.data import load
from hpstudy.data.digits import DigitsOptions
from hpstudy.errors import ConfigError
from hpstudy.models import CNNOptions, MLPOptions, build_model
from hpstudy.spec.study_file import ModelConfig
from hpstudy.train.batched import Stack, train_group
from hpstudy.train.loop import Recipe, fit
from hpstudy.train.step import Speed, resolve, steps_per_epoch

CPU = torch.device("cpu")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


@pytest.fixture(scope="module")
def digits():
    return load("digits", DigitsOptions(subset=512))  # 8 whole batches of 64: none dropped


def cnn(digits, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    options = CNNOptions(kernel_size=3, padding=1, fc_width=32, fc_depth=1)
    return build_model(ModelConfig("cnn", options), digits, {"width": 4, "depth": 1})


def losses(digits, device: torch.device = CPU, epochs: int = 2, **step) -> list[float]:
    """Training and validation losses of every epoch, as the step keys `step` train."""
    history = fit(cnn(digits), digits, Recipe(epochs, 64, "sgd", 0.05, momentum=0.9, **step),
                  device)
    return [m.train_loss for m in history] + [m.val_loss for m in history]


def test_bf16_autocast_on_the_cpu_trains_as_fp32_does(digits):
    fp32, bf16 = losses(digits), losses(digits, precision="bf16")
    assert fp32 != bf16  # it did run in bf16
    assert bf16 == pytest.approx(fp32, rel=0.05)


def test_channels_last_gives_the_fp32_losses(digits):
    assert losses(digits, channels_last=True) == pytest.approx(losses(digits), rel=1e-4)


def test_auto_is_fp32_and_contiguous_on_the_cpu(digits):
    auto = resolve(Recipe(1, 64, "sgd", 0.1, precision="auto", channels_last="auto"),
                   cnn(digits), CPU, 4)
    assert auto == Speed(bf16=False, channels_last=False, compile=False, cuda_graph=False)
    asked = resolve(Recipe(1, 64, "sgd", 0.1, precision="bf16", channels_last=True),
                    cnn(digits), CPU, 4)
    assert asked.bf16 and asked.channels_last
    mlp = build_model(ModelConfig("mlp", MLPOptions()), digits, {"width": 8, "depth": 1})
    assert not resolve(Recipe(1, 64, "sgd", 0.1, channels_last=True), mlp, CPU, 4).channels_last


@pytest.mark.slow  # compiling takes a minute or more on 2 shared cores
def test_a_compiled_step_gives_the_eager_losses_and_times_its_warm_up(digits):
    recipe = Recipe(2, 64, "sgd", 0.05, momentum=0.9, compile=True)
    compiled = fit(cnn(digits), digits, recipe, CPU)
    assert compiled[0].warmup_seconds > 0 and compiled[1].warmup_seconds == 0
    eager = losses(digits, epochs=2)
    assert [m.train_loss for m in compiled] + [m.val_loss for m in compiled] == pytest.approx(
        eager, rel=1e-4)


def test_a_compiled_or_captured_step_drops_the_last_partial_batch():
    static, eager = Speed(False, False, True, False), Speed(False, False, False, False)
    assert steps_per_epoch(1000, 64, static) == 15 and steps_per_epoch(1000, 64, eager) == 16


def test_a_compiled_step_that_cannot_train_whole_batches_names_the_key(digits):
    with pytest.raises(ConfigError, match=r"train.compile.*smaller batch_size"):
        fit(cnn(digits), digits, Recipe(1, 100_000, "sgd", 0.05, compile=True), CPU)


def test_a_cuda_graph_on_the_cpu_is_refused_naming_the_key(digits):
    with pytest.raises(ConfigError, match=r"train.cuda_graph: expected false on the CPU"):
        fit(cnn(digits), digits, Recipe(1, 64, "sgd", 0.05, cuda_graph=True), CPU)


def test_a_vectorised_group_trains_in_bf16(digits):
    model = build_model(ModelConfig("mlp", MLPOptions()), digits, {"width": 16, "depth": 1})
    seen = {}
    for precision in ("fp32", "bf16"):
        recipes = [Recipe(2, 64, "sgd", lr, momentum=0.9, precision=precision)
                   for lr in (0.05, 0.1)]
        train_group(Stack(model, 2, CPU), digits, recipes, CPU,
                    lambda member, m, p=precision: seen.setdefault(p, []).append(m.val_loss))
    assert seen["bf16"] != seen["fp32"]
    assert seen["bf16"] == pytest.approx(seen["fp32"], rel=0.05)


@CUDA
def test_a_captured_step_trains_as_the_eager_step_on_cuda(digits):
    cuda = torch.device("cuda")
    eager = losses(digits, cuda, precision="fp32", channels_last=False)
    graphed = losses(digits, cuda, precision="fp32", channels_last=False, cuda_graph=True)
    assert graphed == pytest.approx(eager, rel=1e-3)  # same batches: no partial one here
    assert losses(digits, cuda, precision="bf16", channels_last=True, cuda_graph=True) == \
        pytest.approx(eager, rel=0.1)
