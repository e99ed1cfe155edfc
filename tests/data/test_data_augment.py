"""`augment = "flip_crop"`: every training batch flipped and cropped on the device, labels kept,
validation and test untouched, the same for the same seed; images only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpstudy.data import load
from hpstudy.data.augment import AUGMENTS, CROP_PAD, augmenter, flip_crop
from hpstudy.data.digits import DigitsOptions
from hpstudy.data.variants import DataOptions
from hpstudy.data.xor import XorOptions
from hpstudy.errors import ConfigError
from hpstudy.train.loop import Recipe, evaluate, fit

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load("digits", DigitsOptions(subset=256, augment="flip_crop"))


def variants(image: torch.Tensor) -> list[torch.Tensor]:
    """Every flip and CROP_PAD-padded crop of one image [C, H, W]: what flip_crop may give."""
    h, w = image.shape[1:]
    out = []
    for flipped in (image, image.flip(2)):
        padded = nn.functional.pad(flipped, (CROP_PAD,) * 4)
        out += [padded[:, dy:dy + h, dx:dx + w] for dy in range(2 * CROP_PAD + 1)
                for dx in range(2 * CROP_PAD + 1)]
    return out


def test_flip_crop_changes_a_batch_into_flips_and_crops_of_the_same_images(digits):
    batch = digits.train.x[:32]
    augmented = flip_crop(batch, torch.Generator().manual_seed(0))
    assert augmented.shape == batch.shape and augmented.dtype == torch.uint8
    assert not torch.equal(augmented, batch)
    for original, changed in zip(batch, augmented, strict=True):  # image i stays image i
        assert any(torch.equal(changed, v) for v in variants(original))


def test_the_same_seed_gives_the_same_batches_another_seed_others(digits):
    batch = digits.train.x[:32]
    first, again, other = (augmenter("flip_crop", seed, CPU) for seed in (0, 0, 1))
    assert torch.equal(first(batch), again(batch))
    assert not torch.equal(first(batch), other(batch))
    assert augmenter("none", 0, CPU) is None


class Recorder(nn.Module):
    """A linear classifier that keeps every batch it is given, in training and in eval mode."""

    def __init__(self, shape: tuple[int, ...], classes: int):
        super().__init__()
        self.linear = nn.Linear(int(torch.tensor(shape).prod()), classes)
        self.seen: dict[bool, list[torch.Tensor]] = {True: [], False: []}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen[self.training].append(x.clone())
        return self.linear(x.float().flatten(1) / 255)


def test_training_batches_are_augmented_and_validation_and_test_are_not(digits):
    recorded = {}
    for augment in ("flip_crop", "none"):
        model = Recorder(digits.input_shape, len(digits.classes))
        fit(model, digits, Recipe(2, 64, "sgd", 0.1, seed=3, augment=augment), CPU)
        recorded[augment] = model
        assert torch.equal(torch.cat(model.seen[False]), torch.cat([digits.val.x] * 2))
    plain, augmented = (torch.cat(recorded[a].seen[True]) for a in ("none", "flip_crop"))
    assert plain.shape == augmented.shape and not torch.equal(plain, augmented)
    for original, changed in zip(plain[:20], augmented[:20], strict=True):  # same order
        assert any(torch.equal(changed, v) for v in variants(original))
    model = recorded["flip_crop"]
    evaluate(model.eval(), digits.test)
    assert torch.equal(model.seen[False][-1], digits.test.x)


def test_augment_on_data_that_are_not_images_names_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"data.augment: expected 'none' for data that are not "
                                          r"images.*Remove data.augment"):
        load("xor", XorOptions(augment="flip_crop"))


def test_the_study_file_offers_exactly_the_augmentations_there_are():
    import typing

    assert typing.get_args(typing.get_type_hints(DataOptions)["augment"]) == tuple(AUGMENTS)
