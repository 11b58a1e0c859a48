"""Matcher.pair_ahead / push_ahead: a pair computed ahead without touching the matcher, then installed."""

from __future__ import annotations


import numpy as np
import pytest

from mastsam_ros.core.config import Config
from mastsam_ros.core.errors import FrameTooSmall
from mastsam_ros.core.matchers import build_matcher
from mastsam_ros.core.matchers.base import Matcher
from flowcount import count_flow

POINTS = np.array([[150, 120], [300, 200], [500, 250], [620, 300], [250, 330], [840, 470]], np.float32)


def counted_flow(cfg=None):
    return count_flow(build_matcher((cfg or Config()).matcher))


def answers(m, shape):
    """What the matcher says about its current pair: carried points, confidence, a warped label map."""
    labels = (np.arange(shape[0] * shape[1], dtype=np.uint32).reshape(shape) % 997).astype(np.uint16)
    q, conf = m.carry(POINTS)
    return q, conf, m.warp_labels(labels)


def assert_same(a, b):
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None:
            assert np.array_equal(x, y)


def test_pair_ahead_leaves_the_matcher_as_it_was_and_push_ahead_equals_push(car_frames):
    f0, f1, f2 = car_frames[0][:3]
    ref = build_matcher(Config().matcher)
    for f in (f0, f1):
        ref.push(f)
    ref_01 = answers(ref, (120, 200))
    ref.push(f2)
    ref_12 = answers(ref, (120, 200))

    m = counted_flow()
    m.push(f0)
    m.push(f1)
    pair = m.pair_ahead(f1, f2)  # before the current pair's flow is even computed
    assert m._dis.threads == [] and len(m._ahead_dis.threads) == 2
    assert_same(answers(m, (120, 200)), ref_01)  # the current pair is untouched
    assert len(m._dis.threads) == 2
    assert m.push_ahead(f2, pair) is True
    assert_same(answers(m, (120, 200)), ref_12)
    assert len(m._dis.threads) == 2  # the pair (f1, f2) was not computed again
    assert (ref_12[1] > 0.5).sum() >= 3  # the answers compared are real correspondences


def test_a_pair_that_does_not_fit_the_matcher_is_computed_again(car_frames):
    f0, f1, f2 = car_frames[0][:3]
    m = counted_flow()
    pair = m.pair_ahead(f1, f2)
    assert m._ahead_dis.threads and m._dis.threads == []

    # the matcher holds f0, not f1 (a frame in between failed, say): the flows of (f0, f2) are computed
    m.push(f0)
    assert m.push_ahead(f2, pair) is False
    ref = build_matcher(Config().matcher)
    ref.push(f0)
    ref.push(f2)
    assert_same(answers(m, (120, 200)), answers(ref, (120, 200)))
    assert len(m._dis.threads) == 2

    # after a reset there is no pair at all
    m.reset()
    assert m.push_ahead(f2, pair) is False
    assert (m.carry(POINTS)[1] == 0).all() and m.warp_labels(np.zeros((10, 10), np.uint16)) is None

    # a pair made by another matcher (other settings) is not used
    other = build_matcher(Config().matcher)
    m.reset()
    m.push(f1)
    assert m.push_ahead(f2, other.pair_ahead(f1, f2)) is False
    assert m.push_ahead(f2, None) is False


def test_pair_ahead_across_a_size_change_and_on_a_bad_frame(car_frames):
    f0, f1 = car_frames[0][:2]
    m = build_matcher(Config().matcher)
    small = np.ascontiguousarray(f0[:300, :400])
    pair = m.pair_ahead(small, f1)
    assert pair.flows is None and pair.previous is not None
    assert m.pair_ahead(None, f1).flows is None
    assert m.pair_ahead(np.zeros((4, 4, 3), np.uint8), f1).flows is None  # a previous frame too small: no flows
    with pytest.raises(FrameTooSmall):
        m.pair_ahead(f0, np.zeros((4, 4, 3), np.uint8))
    m.push(small)
    assert m.push_ahead(f1, pair) is False and (m.carry(POINTS)[1] == 0).all()  # size change: no pair, as push


def test_the_previous_frame_is_downscaled_once_in_a_stream(car_frames):
    frames = car_frames[0][:3]
    m = build_matcher(Config().matcher)
    a = m.pair_ahead(None, frames[0])
    b = m.pair_ahead(frames[0], frames[1])
    c = m.pair_ahead(frames[1], frames[2])
    assert b.previous is a.current and c.previous is b.current
    assert m.pair_ahead(frames[0].copy(), frames[2]).previous is not b.current  # another array: downscaled again


class _Plain(Matcher):
    name = "plain"

    def __init__(self):
        self.pushed = []

    def push(self, image):
        self.pushed.append(image)

    def carry(self, points):
        return points.copy(), np.zeros(len(points), np.float32)


def test_the_default_computes_nothing_ahead_and_pushes():
    m = _Plain()
    img = np.zeros((8, 8, 3), np.uint8)
    assert m.pair_ahead(None, img) is None
    assert m.push_ahead(img, None) is False and m.pushed == [img]
