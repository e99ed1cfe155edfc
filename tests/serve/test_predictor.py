"""The served model's input handling: images as people have them, clear refusals otherwise."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hpstudy.serve.predictor import MAX_BATCH, MAX_SIDE, BadInput, decode_image, fit_to, rows


def encoded(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


GREY = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4


def test_png_bytes_base64_text_and_arrays_give_the_same_pixels():
    from_bytes = decode_image(encoded(GREY), 0)
    from_text = decode_image(base64.b64encode(encoded(GREY)).decode(), 0)
    from_lists = decode_image(GREY.tolist(), 0)
    assert from_bytes.shape == (8, 8, 1)
    assert np.array_equal(from_bytes, from_text) and np.array_equal(from_bytes, from_lists)


def test_colour_images_are_converted_and_resized_to_the_model_input():
    rgb = np.zeros((32, 48, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    pixels = decode_image(encoded(rgb, "JPEG"), 0)
    assert pixels.shape == (32, 48, 3)
    grey = fit_to(pixels, channels=1, height=8, width=8)
    assert grey.shape == (1, 8, 8) and grey.dtype == np.uint8
    assert abs(int(grey.mean()) - 76) <= 2  # red's luminance: 0.299 * 255
    assert fit_to(GREY[..., None], channels=3, height=8, width=8).shape == (3, 8, 8)


def test_same_size_grey_images_pass_through_unchanged():
    assert np.array_equal(fit_to(GREY[..., None], 1, 8, 8)[0], GREY)


@pytest.mark.parametrize(("value", "message"), [
    ([1, 2, 3], "expected shape H x W or H x W x C"),
    (np.zeros((2, 4, 4, 3)), "expected shape H x W or H x W x C"),
    (np.zeros((4, 4, 2)), "with C in 1, 3, 4"),
    ([[1, 2], [3]], "rows of unequal length"),
    ([[0.5, 0.25], [0.0, 1.0]], "fractional values"),
    ([[-1, 2], [3, 4]], "must lie in 0..255"),
    ([[1, 2], [3, 999]], "must lie in 0..255"),
    ([["a", "b"], ["c", "d"]], "expected integers 0..255"),
    ([[True, False], [False, True]], "expected integers 0..255"),
    ("not base64!", "base64-encoded PNG or JPEG"),
    (base64.b64encode(b"hello, not an image").decode(), "not a readable PNG or JPEG"),
    (encoded(GREY, "GIF"), "expected PNG or JPEG, got GIF"),
    (np.zeros((MAX_SIDE + 1, 2), dtype=np.uint8), f"more than {MAX_SIDE} on a side"),
])
def test_bad_images_are_refused_with_what_was_wrong(value, message):
    with pytest.raises(BadInput, match=message) as caught:
        decode_image(value, 3)
    assert "image 3:" in str(caught.value)
    assert caught.value.get_http_status_code() == 400


def test_batches_must_name_the_field_hold_something_and_not_be_too_large():
    with pytest.raises(BadInput, match="missing field 'image'"):
        rows(pd.DataFrame({"img": [GREY]}), "image")
    with pytest.raises(BadInput, match="empty batch"):
        rows({"image": []}, "image")
    with pytest.raises(BadInput, match=f"at most {MAX_BATCH}"):
        rows({"image": [GREY] * (MAX_BATCH + 1)}, "image")
    assert len(rows({"image": [GREY, GREY]}, "image")) == 2
