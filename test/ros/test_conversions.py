"""Message <-> numpy conversions on hand-made messages: no ROS graph, no rclpy needed."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from mastsam_ros.core.types import FrameResult, TrackInfo
from mastsam_ros.node.conversions import (
    BadImage, LabelMapper, compressed_to_rgb, image_to_rgb, stamp_ns,
)

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


def test_compressed_roundtrip_and_garbage():
    ok, png = cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert np.array_equal(compressed_to_rgb(SimpleNamespace(format="png", data=png.tobytes())), RGB)
    with pytest.raises(BadImage):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b"not an image"))


def test_stamp_ns():
    h = SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=7))
    assert stamp_ns(h) == 3_000_000_007


def _result(ids: list[int]) -> FrameResult:
    labels = np.zeros((4, len(ids) + 1), np.uint32)
    for col, i in enumerate(ids):
        labels[:, col] = i
    tracks = [TrackInfo(id=i, score=1.0, area=4, bbox=(c, 0, 1, 4), age=0, frames_since_seen=0,
                        points=np.zeros((0, 2), np.float32)) for c, i in enumerate(ids)]
    return FrameResult(index=0, labels=labels, tracks=tracks, keyframe=False)


def test_label_mapper_keeps_small_ids_and_wraps_large_ones_without_collisions():
    m = LabelMapper()
    img, of = m.assign(_result([1, 2, 300]))
    assert of == {1: 1, 2: 2, 300: 300} and img.dtype == np.uint16 and list(img[0, :3]) == [1, 2, 300]
    # 65536 wraps to 1, taken by live id 1 -> next free value; 65537 wraps to 2, taken -> next free.
    img, of = m.assign(_result([1, 2, 300, 65536, 65537]))
    assert of[65536] == 3 and of[65537] == 4 and len(set(of.values())) == 5
    assert list(img[0, :5]) == [1, 2, 300, 3, 4]
    # Stable while the track lives, freed when it retires.
    _, again = m.assign(_result([65536, 65537]))
    assert again == {65536: 3, 65537: 4}
    _, later = m.assign(_result([65537, 131071]))
    assert later[65537] == 4 and later[131071] == 1
