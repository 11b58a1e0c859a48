"""A requested re-segmentation: a keyframe on the next frame and, with the cadence matcher, an anchor frame too."""

from __future__ import annotations

import numpy as np

from mastsam_ros.core.config import Config, MatcherSection
from mastsam_ros.core.matchers import Matcher
from mastsam_ros.core.matchers.cadence import CadenceMatcher
from mastsam_ros.core.tracker import Tracker


class FakeAnchor(Matcher):
    """An anchor matcher that records which frames (indices set by the test) it was given and what it carried; it
    answers each point where it was, fully confident (the frames below barely move)."""

    name = "fake-anchor"

    def __init__(self):
        self.frames: list[int] = []
        self.asked: list[np.ndarray] = []
        self.next_index = 0

    def push(self, image):
        self.frames.append(self.next_index)

    def carry(self, points):
        self.asked.append(points.copy())
        return points.astype(np.float32).copy(), np.full(len(points), 0.9, np.float32)

    def reset(self):
        self.frames = []


def moving_frames(frame: np.ndarray, n: int = 6) -> list[np.ndarray]:
    """Crops of one real frame, its content moving 2 pixels right and 1 up a frame."""
    h, w = frame.shape[:2]
    return [np.ascontiguousarray(frame[20 + t: h - 20 + t, 20 - 2 * t: w - 20 - 2 * t]) for t in range(n)]


def _config() -> Config:
    # keyframes and anchors only when asked (or on the first frame): what a request changes is all there is to see
    return Config().update({"tracker.keyframe_interval": 1000, "matcher.backend": "cadence",
                            "matcher.anchor_interval": 1000})


def test_a_request_makes_the_next_frame_a_keyframe_and_an_anchor_frame(car_frames):
    frames = moving_frames(car_frames[0][0])
    anchor = FakeAnchor()
    cfg = _config()
    tracker = Tracker(cfg, matcher=CadenceMatcher(MatcherSection(backend="cadence", anchor_interval=1000),
                                                  anchor=anchor))
    results = []
    for t, f in enumerate(frames):
        anchor.next_index = t
        if t == 3:
            assert tracker.request_keyframe()  # an anchor was asked for too
        results.append(tracker.step(f))
        assert tracker.matcher.is_anchor_frame == (t in (0, 3)), t
    assert anchor.frames == [0, 3]  # the anchor matcher saw the first frame and the requested one only
    assert [r.keyframe for r in results] == [t in (0, 3) for t in range(len(frames))]
    assert tracker.matcher.stats["anchor_frames"] == 2
    # the anchor carried the tracks' points into the requested frame (its pair (0, 3)) and into no other
    assert len(anchor.asked) == 1 and len(anchor.asked[0]) > 0
    assert np.all([len(r.tracks) for r in results[1:]])
    tracker.close()


def test_without_anchors_only_the_keyframe_is_requested(car_frames):
    tracker = Tracker(Config().update({"tracker.keyframe_interval": 1000}))  # the flow matcher
    frames = car_frames[0][:3]
    first = tracker.step(frames[0])
    assert not tracker.request_keyframe()
    second = tracker.step(frames[1])
    third = tracker.step(frames[2])
    assert first.keyframe and second.keyframe and not third.keyframe
    tracker.close()


def test_scheduled_keyframes_spread_and_new_area_searches_in_the_tracker(car_frames):
    """Every 2 frames a keyframe starts a re-segmentation spread over 2 frames (128 of the 16x16 grid's seeds a
    frame, the floor of 8 raised), and new area is searched on every frame that does not decode the whole grid."""
    cfg = Config().update({"tracker.keyframe_interval": 2, "tracker.new_region_interval": 1})
    tracker = Tracker(cfg)
    results = [tracker.step(f) for f in car_frames[0]]
    tracker.close()
    assert [r.keyframe for r in results] == [True, False, True, False, True, False]
    # frame 0 decodes the whole grid at once; frames 2-3 and 4-5 a half each
    assert [r.resegmenting for r in results] == [False, False, True, True, True, True]
    assert ["automatic" in r.timings for r in results] == [True, False, True, True, True, True]
    assert ["new_area" in r.timings for r in results] == [False] + [True] * 5
    assert all(r.tracks for r in results)
