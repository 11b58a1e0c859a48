"""The flow matcher's smallest frame: derived from OpenCV DIS's own pyramid rule, checked against OpenCV itself.

OpenCV DIS on images below its rule takes a fallback that changes the object's patch size / finest scale for every
later call, raises, or (on thin strips) crashes the process; each probe therefore runs in a child process.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mastsam_ros.core.config import Config
from mastsam_ros.core.errors import FrameTooSmall
from mastsam_ros.core.matchers.flow import PRESETS, FlowMatcher, dis_size_ok, downscaled_size, min_long_side
from mastsam_ros.core.tracker import Tracker

PROBE = """
import sys, cv2, numpy as np
preset, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dis = cv2.DISOpticalFlow_create({"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST, "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[preset])
before = (dis.getPatchSize(), dis.getFinestScale())
a = np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)
try:
    dis.calc(a, np.roll(a, 1, axis=1).copy(), None)
except cv2.error:
    print("error"); sys.exit(0)
print("normal" if (dis.getPatchSize(), dis.getFinestScale()) == before else "fallback")
"""


def _probe(preset: str, h: int, w: int) -> str:
    r = subprocess.run([sys.executable, "-c", PROBE, preset, str(h), str(w)], capture_output=True, text=True,
                       timeout=30)
    return r.stdout.strip() or f"crash (code {r.returncode})"


@pytest.mark.parametrize("preset", ["medium", "ultrafast"])
def test_accepted_sizes_run_dis_normally_and_the_smallest_refused_do_not(preset):
    import cv2

    dis = cv2.DISOpticalFlow_create(PRESETS[preset])
    patch, finest = dis.getPatchSize(), dis.getFinestScale()
    short, long_ = patch << finest, min_long_side(patch, finest)
    accepted = [(short, long_), (long_, short), (short, 400), (400, short), (long_, long_)]
    refused = [(short - 1, long_), (short, long_ - 1), (short - 1, 400), (11, 11)]
    for h, w in accepted:
        assert dis_size_ok(h, w, patch, finest)
        assert _probe(preset, h, w) == "normal", (preset, h, w)
    for h, w in refused:
        assert not dis_size_ok(h, w, patch, finest)
        assert _probe(preset, h, w) != "normal", (preset, h, w)


def test_the_tracker_refuses_too_small_frames_before_any_state_changes(car_frames):
    cfg = Config()
    tracker = Tracker(cfg)
    frame = np.ascontiguousarray(car_frames[0][0][:240, :320])
    tracker.step(frame)
    h, w = downscaled_size(20, 1000, cfg.matcher.max_side)
    assert (h, w) == (10, 480)
    for bad in (np.zeros((11, 11, 3), np.uint8), np.zeros((20, 1000, 3), np.uint8)):
        with pytest.raises(FrameTooSmall, match="too small for the flow matcher"):
            tracker.step(bad)
    result = tracker.step(np.ascontiguousarray(car_frames[0][1][:240, :320]))
    assert not result.reset and result.index == 1  # the refused frames did not count or reset anything


def test_flow_matcher_check_names_the_bound():
    m = FlowMatcher(Config().matcher)
    m.check_size(480, 640)
    with pytest.raises(FrameTooSmall, match="short side >= 16 px and the long side >= 46 px"):
        m.check_size(11, 11)
