"""The node's input helpers without a ROS graph: header sizes, pixel bound, bounded decoding, stamp gaps, log bridge."""

from __future__ import annotations

import logging
import struct
import zlib

import cv2
import numpy as np
import pytest

from mastsam_ros.node.conversions import BadImage
from mastsam_ros.node.inputs import (
    DDS_PROFILES, StampGaps, compressed_size, config_dir, dds_environment, decode_compressed, fit_pixels,
)
from mastsam_ros.node.logbridge import RosLogHandler


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit grey PNG of ``width`` x ``height`` zeros, built row by row (never held decoded here)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_header_sizes_without_decoding():
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 1_000_000
    assert compressed_size(bomb) == (20000, 20000, "PNG")
    ok, jpg = cv2.imencode(".jpg", np.zeros((30, 40, 3), np.uint8))
    assert compressed_size(jpg.tobytes()) == (40, 30, "JPEG")
    with pytest.raises(BadImage) as e:
        compressed_size(b"not an image at all")
    assert e.value.kind == "bad_data"


def test_png_over_the_bound_is_refused_before_decoding():
    bomb = png_bomb(20000, 20000)
    w, h, fmt = compressed_size(bomb)
    with pytest.raises(BadImage, match="refused undecoded") as e:
        decode_compressed(bomb, fmt, w, h, 2_073_600)
    assert e.value.kind == "too_large"


def test_jpeg_over_the_bound_is_decoded_reduced_and_fits():
    rng = np.random.default_rng(0)
    big = cv2.resize(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8), (2000, 1500), interpolation=cv2.INTER_LINEAR)
    data = cv2.imencode(".jpg", big)[1].tobytes()
    w, h, fmt = compressed_size(data)
    rgb, downscaled = decode_compressed(data, fmt, w, h, 100_000)
    assert downscaled and rgb.dtype == np.uint8 and rgb.shape[2] == 3
    assert rgb.shape[0] * rgb.shape[1] <= 100_000
    assert abs(rgb.shape[1] / rgb.shape[0] - 2000 / 1500) < 0.02
    # far beyond what DCT scaling can reach (8 per side): refused
    with pytest.raises(BadImage) as e:
        decode_compressed(data, fmt, w, h, 40_000)
    assert e.value.kind == "too_large"
    # within the bound: decoded as it is, in RGB order
    small = np.zeros((40, 60, 3), np.uint8)
    small[..., 0] = 255  # red in RGB
    rgb, downscaled = decode_compressed(cv2.imencode(".png", small[..., ::-1])[1].tobytes(), "PNG", 60, 40, 100_000)
    assert not downscaled and rgb.shape == (40, 60, 3) and rgb[0, 0].tolist() == [255, 0, 0]


def test_fit_pixels_keeps_aspect_and_bound():
    assert fit_pixels(1920, 1080, 1920 * 1080) == (1920, 1080)
    w, h = fit_pixels(4000, 3000, 1920 * 1080)
    assert w * h <= 1920 * 1080 and abs(w / h - 4 / 3) < 0.01 and w * h > 0.99 * 1920 * 1080


def test_stamp_gaps_count_frames_lost_before_the_callback():
    gaps = StampGaps(min_steps=5)
    period = 33_333_333
    t = 10**9
    lost = []
    for i in range(10):
        lost.append(gaps.update(t))
        t += period
    assert sum(lost) == 0  # steady stream
    t += 3 * period  # three frames never arrived
    assert gaps.update(t) == 3
    t += period
    assert gaps.update(t) == 0
    assert gaps.update(t - 5 * period) == 0  # backwards: the stamp checks' business; the period is re-learnt
    assert gaps.update(t + 10 * period) == 0


def test_dds_profiles_exist_and_unknown_names_are_refused(tmp_path):
    for name in DDS_PROFILES:
        env = dds_environment(name)
        assert env["FASTDDS_DEFAULT_PROFILES_FILE"].startswith(str(config_dir()))
    with pytest.raises(ValueError, match="one of: large_data, data_sharing"):
        dds_environment("fast")
    with pytest.raises(ValueError, match="does not exist"):
        dds_environment(str(tmp_path / "missing.xml"))


class _Recorder:
    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda text: self.lines.append((level, text))


def test_core_log_records_reach_the_ros_logger_throttled_per_place():
    clock = [0.0]
    ros = _Recorder()
    handler = RosLogHandler(ros, throttle_s=5.0, clock=lambda: clock[0])
    log = logging.getLogger("mastsam_ros.core.test_bridge")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)

    def one_place():
        log.warning("frame size changed from %s to %s", (1, 2), (3, 4))

    try:
        for _ in range(3):
            one_place()
        log.info("clustering: using scipy")
        log.error("another place")
        clock[0] = 6.0
        one_place()
    finally:
        log.removeHandler(handler)
    levels = [lvl for lvl, _ in ros.lines]
    assert levels == ["warning", "info", "error", "warning"]
    assert ros.lines[0][1] == "[mastsam_ros.core.test_bridge] frame size changed from (1, 2) to (3, 4)"
    assert ros.lines[3][1].endswith("(2 more like this in the last 5 s)")
