"""Two-digit sums: 28x56 images, 19 classes, pairs drawn within each MNIST split, seeded."""

from __future__ import annotations

import torch
from data_files import write_mnist

from hpstudy.data import load
from hpstudy.data.mnist import MnistOptions
from hpstudy.data.mnist_sum import MnistSumOptions

TINY = MnistSumOptions(val_size=20, train_pairs=64, val_pairs=16, test_pairs=12)


def test_pairs_are_two_digits_side_by_side_labelled_with_their_sum(tmp_path):
    folder = write_mnist(tmp_path)
    data = load("mnist_sum", TINY, folder)
    assert data.input_shape == (1, 28, 56) and data.num_outputs == 19
    assert (len(data.train), len(data.val), len(data.test)) == (64, 16, 12)
    digits = load("mnist", MnistOptions(val_size=20), folder)
    lookup = {x.numpy().tobytes(): int(y) for x, y in zip(digits.test.x, digits.test.y,
                                                          strict=True)}
    for x, y in zip(data.test.x, data.test.y, strict=True):
        left, right = x[:, :, :28].numpy().tobytes(), x[:, :, 28:].numpy().tobytes()
        assert lookup[left] + lookup[right] == y  # test pairs come from MNIST's test set only


def test_the_pairs_never_change_for_the_same_seed(tmp_path):
    folder = write_mnist(tmp_path)
    first, again = load("mnist_sum", TINY, folder), load("mnist_sum", TINY, folder)
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.val.y, again.val.y)
