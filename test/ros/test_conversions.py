"""Message <-> numpy conversions on hand-made messages: no ROS graph, no rclpy needed."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from mastsam_ros.core.errors import BadImage, MastSamError
from mastsam_ros.node.conversions import compressed_to_rgb, image_to_rgb, stamp_ns

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _msg(enc: str, pixels: np.ndarray, pad: int = 0, **over):
    rows = pixels.reshape(pixels.shape[0], -1)
    padded = np.zeros((rows.shape[0], rows.shape[1] + pad), np.uint8)
    padded[:, : rows.shape[1]] = rows
    fields = dict(encoding=enc, height=pixels.shape[0], width=pixels.shape[1], step=padded.shape[1],
                  data=padded.tobytes())
    fields.update(over)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize("encoding,code", [
    ("rgb8", None), ("bgr8", cv2.COLOR_RGB2BGR), ("rgba8", cv2.COLOR_RGB2RGBA), ("bgra8", cv2.COLOR_RGB2BGRA),
])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_and_row_padding_give_rgb(encoding, code, pad):
    pixels = RGB if code is None else cv2.cvtColor(RGB, code)
    out = image_to_rgb(_msg(encoding, pixels, pad))
    assert out.dtype == np.uint8 and out.shape == RGB.shape and np.array_equal(out, RGB)


def test_mono8_is_replicated_to_three_channels():
    grey = RGB[:, :, 0].copy()
    out = image_to_rgb(_msg("mono8", grey, pad=1))
    assert out.shape == (5, 7, 3) and all(np.array_equal(out[:, :, c], grey) for c in range(3))


@pytest.mark.parametrize("over,kind", [
    (dict(encoding="16UC1"), "bad_encoding"),
    (dict(width=0), "bad_size"),
    (dict(height=0), "bad_size"),
    (dict(step=10), "bad_data"),  # shorter than width x 3
    (dict(data=b"\0" * 20), "bad_data"),  # shorter than step x height
])
def test_bad_images_are_refused_with_their_kind(over, kind):
    with pytest.raises(BadImage) as e:
        image_to_rgb(_msg("rgb8", RGB, **over))
    assert e.value.kind == kind
    # One error family: a front end that catches MastSamError also catches bad images.
    assert isinstance(e.value, MastSamError)


def test_compressed_roundtrip_and_garbage():
    ok, png = cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert np.array_equal(compressed_to_rgb(SimpleNamespace(format="png", data=png.tobytes())), RGB)
    with pytest.raises(BadImage):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b"not an image"))


def test_stamp_ns():
    h = SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=7))
    assert stamp_ns(h) == 3_000_000_007
