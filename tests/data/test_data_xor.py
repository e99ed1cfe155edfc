"""XOR: the four points, repeated for training, as two classes."""

from __future__ import annotations

import torch

from hpstudy.data import load
from hpstudy.data.xor import XorOptions


def test_xor_is_four_points_in_two_classes_repeated_for_training():
    data = load("xor", XorOptions(repeat=3))
    assert data.val.x.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert data.val.y.tolist() == [0, 1, 1, 0] and data.test.y.tolist() == [0, 1, 1, 0]
    assert len(data.train) == 12 and data.train.x.dtype == torch.float32
    assert data.input_shape == (2,) and data.num_outputs == 2 and data.mean == (0.5, 0.5)
