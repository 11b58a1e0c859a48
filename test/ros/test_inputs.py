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
    DDS_PROFILES, DEFAULT_DDS_PROFILE, StampGaps, apply_dds_profile, compressed_size, config_dir, dds_environment,
    dds_profile_in_use, decode_compressed, fit_pixels,
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


PERIOD = 33_333_333  # 30 Hz, in ns


def _feed(gaps: StampGaps, stamps) -> list[int]:
    return [gaps.update(int(t)) for t in stamps]


def test_stamp_gaps_count_frames_missing_between_stamps():
    gaps = StampGaps()
    t0 = 1_700_000_000 * 10**9
    assert sum(_feed(gaps, [t0 + i * PERIOD for i in range(10)])) == 0  # a steady stream
    assert gaps.update(t0 + 13 * PERIOD) == 3  # three frames never arrived
    assert gaps.update(t0 + 14 * PERIOD) == 0
    # jitter of +-20% around the period is not loss; a double step with jitter is one frame
    rng = np.random.default_rng(0)
    t = t0 + 14 * PERIOD + np.cumsum(PERIOD * (1 + rng.uniform(-0.2, 0.2, 60)))
    assert sum(_feed(gaps, t)) == 0
    assert gaps.update(int(t[-1] + 2.15 * PERIOD)) == 1


def test_stamp_gaps_count_heavy_loss_in_full_including_while_the_period_is_learnt():
    """14 of 75 frames at 30 Hz arrive (as from a publisher whose large frames mostly do not fit the transport): the
    61 missing between the first and the last one are counted, also those before the period was known."""
    rng = np.random.default_rng(1)
    kept = np.sort(rng.choice(np.arange(1, 74), 12, replace=False))
    kept = np.unique(np.concatenate([[0, 74], kept, [kept[3] + 1]]))  # a consecutive pair among the first steps
    kept = kept[kept < 75]
    gaps = StampGaps()
    t0 = 5 * 10**9
    lost = _feed(gaps, t0 + kept * PERIOD)
    assert sum(lost) == kept[-1] - kept[0] + 1 - len(kept), (kept, lost)


def test_stamp_gaps_do_not_count_pauses_clock_jumps_resets_or_backwards_stamps():
    gaps = StampGaps()
    t0 = 100 * 10**9
    stream = [t0 + i * PERIOD for i in range(20)]
    assert sum(_feed(gaps, stream)) == 0
    # the publisher paused for 20 s (600 periods), then went on
    t1 = stream[-1] + 20 * 10**9
    assert sum(_feed(gaps, [t1 + i * PERIOD for i in range(10)])) == 0 and gaps.pauses == 1
    # bag stamps, then the wall clock (a jump of decades)
    t2 = 1_790_000_000 * 10**9
    assert sum(_feed(gaps, [t2 + i * PERIOD for i in range(10)])) == 0 and gaps.pauses == 2
    # a deactivate / activate 16 s later: the node calls reset, nothing before it is compared
    gaps.reset()
    t3 = t2 + 9 * PERIOD + 16 * 10**9
    assert sum(_feed(gaps, [t3 + i * PERIOD for i in range(10)])) == 0 and gaps.pauses == 2
    # a bag looped (stamps backwards): not loss; the period is learnt again, then gaps count again
    t4 = t0
    assert sum(_feed(gaps, [t4 + i * PERIOD for i in range(10)])) == 0
    assert gaps.update(t4 + 12 * PERIOD) == 2
    # stamps of 0 (a driver without a clock) and a repeated stamp are neither loss nor a step
    assert gaps.update(0) == 0 and gaps.update(t4 + 12 * PERIOD) == 0 and gaps.update(t4 + 13 * PERIOD) == 0
    # a slow stream (0.5 Hz): its 2 s steps are its period, not pauses; a missing frame is still one
    slow = StampGaps()
    assert sum(_feed(slow, [i * 2 * 10**9 + 1 for i in range(10)])) == 0
    assert slow.update(11 * 2 * 10**9 + 1) == 1 and slow.pauses == 0


def test_the_node_process_gets_the_package_profile_unless_its_environment_names_one(tmp_path):
    env: dict[str, str] = {}
    assert apply_dds_profile(env) == DEFAULT_DDS_PROFILE == "udp_input"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds_udp_input.xml")
    assert dds_profile_in_use(env) == env["FASTDDS_DEFAULT_PROFILES_FILE"]
    own = {"FASTDDS_DEFAULT_PROFILES_FILE": str(tmp_path / "mine.xml")}  # the launch file's choice, or the user's
    assert apply_dds_profile(own) is None and own == {"FASTDDS_DEFAULT_PROFILES_FILE": str(tmp_path / "mine.xml")}
    old = {"FASTRTPS_DEFAULT_PROFILES_FILE": "/x.xml"}
    assert apply_dds_profile(old) is None and dds_profile_in_use(old) == "/x.xml"
    chosen = {"MASTSAM_DDS_PROFILE": "large_data"}
    assert apply_dds_profile(chosen) == "large_data"
    assert chosen["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds_large_data.xml")
    none = {"MASTSAM_DDS_PROFILE": "none"}
    assert apply_dds_profile(none) is None and dds_profile_in_use(none).startswith("none: ")
    cyclone = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert apply_dds_profile(cyclone) is None and "FASTDDS_DEFAULT_PROFILES_FILE" not in cyclone
    assert dds_profile_in_use(cyclone) == "not Fast DDS (rmw_cyclonedds_cpp)"
    with pytest.raises(ValueError, match="MASTSAM_DDS_PROFILE=fast: unknown DDS profile"):
        apply_dds_profile({"MASTSAM_DDS_PROFILE": "fast"})


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
