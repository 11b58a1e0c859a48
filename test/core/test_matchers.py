"""Matchers on a real frame shifted by a known amount (ground-truth correspondences by construction)."""

import numpy as np
import pytest

from mastsam_ros.core.config import Config
from mastsam_ros.core.matchers import build_matcher
from mastsam_ros.core.errors import ConfigError

DX, DY = 12, -7


def shifted_pair(frame):
    h, w = frame.shape[:2]
    a = frame[40 : h - 40, 40 : w - 40]
    b = frame[40 - DY : h - 40 - DY, 40 - DX : w - 40 - DX]  # content moves by (+DX, +DY) from a to b
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


@pytest.mark.parametrize("backend,tol", [("flow", 1.5), ("xfeat", 3.0)])
def test_points_follow_a_known_shift(car_frames, backend, tol):
    a, b = shifted_pair(car_frames[0][0])
    cfg = Config()
    cfg.matcher.backend = backend
    m = build_matcher(cfg.matcher)
    pts = np.array([[150, 120], [300, 200], [500, 250], [620, 300], [250, 330]], np.float32)
    q, conf = m.carry(pts)  # nothing pushed yet: no correspondence at all
    assert (conf == 0).all()
    m.push(a)
    m.push(b)
    q, conf = m.carry(pts)
    assert q.shape == pts.shape and q.dtype == np.float32 and conf.shape == (5,)
    good = conf >= 0.3
    assert good.sum() >= 4
    err = np.linalg.norm(q[good] - (pts[good] + [DX, DY]), axis=1)
    assert np.median(err) < tol
    m.reset()
    assert (m.carry(pts)[1] == 0).all()


def test_flow_confidence_is_zero_for_points_that_leave_the_frame(car_frames):
    a, b = shifted_pair(car_frames[0][0])
    m = build_matcher(Config().matcher)
    m.push(b)
    m.push(a)  # content moves by (-DX, -DY): a point at the left edge leaves
    _, conf = m.carry(np.array([[1.0, 200.0]], np.float32))
    assert conf[0] == 0.0


def test_unknown_matcher_names_the_choices():
    cfg = Config()
    cfg.matcher.backend = "sift"  # bypassing validation on purpose: the registry must still refuse it
    with pytest.raises(ConfigError, match="flow"):
        build_matcher(cfg.matcher)


def test_flow_warps_a_label_map_by_a_known_shift(car_frames):
    a, b = shifted_pair(car_frames[0][0])
    m = build_matcher(Config().matcher)
    labels = np.zeros(a.shape[:2], np.uint16)
    labels[100:220, 150:330] = 3  # two labelled boxes on the real frame a
    labels[250:330, 420:600] = 7
    assert m.warp_labels(labels) is None  # nothing pushed: no field yet
    m.push(a)
    m.push(b)
    out = m.warp_labels(labels)
    assert out.shape == labels.shape and out.dtype == np.uint16
    expected = np.zeros_like(labels)
    expected[100 + DY : 220 + DY, 150 + DX : 330 + DX] = 3
    expected[250 + DY : 330 + DY, 420 + DX : 600 + DX] = 7
    for label in (3, 7):
        inter = ((out == label) & (expected == label)).sum()
        union = ((out == label) | (expected == label)).sum()
        assert inter / union > 0.9, (label, inter / union)
    assert set(np.unique(out)) <= {0, 3, 7}  # nearest neighbour: no blended labels


def test_sparse_matchers_have_no_dense_warp(car_frames):
    cfg = Config()
    cfg.matcher.backend = "xfeat"
    m = build_matcher(cfg.matcher)
    a, b = shifted_pair(car_frames[0][0])
    m.push(a)
    m.push(b)
    assert m.warp_labels(np.zeros(a.shape[:2], np.uint16)) is None  # the tracker falls back to the median shift
