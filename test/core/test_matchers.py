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


@pytest.mark.parametrize("backend", ["flow", "cadence"])
def test_prepare_computes_the_warp_at_the_announced_size(car_frames, monkeypatch, backend):
    """With ``warp_shape`` set, ``prepare`` (the tracker's matcher thread) computes the warp of that size, so
    ``warp_labels`` at that size only remaps; at another size it computes its own; the result is the same."""
    from mastsam_ros.core.matchers import flow as F

    a, b = shifted_pair(car_frames[0][0])
    cfg = Config()
    cfg.matcher.backend = backend
    cfg.matcher.anchor_backend = "xfeat"  # cadence: the dense flow between anchors warps (no MASt3R weights here)
    m, fresh = build_matcher(cfg.matcher), build_matcher(cfg.matcher)
    labels = np.zeros((72, 128), np.uint16)
    labels[20:40, 30:70] = 5
    for x in (m, fresh):
        x.push(a)
        x.push(b)
    m.warp_shape = labels.shape
    m.prepare()
    calls = []
    real = F.warp_sources
    monkeypatch.setattr(F, "warp_sources", lambda *args: calls.append(args[1:]) or real(*args))
    out = m.warp_labels(labels)
    assert calls == []  # computed by prepare
    assert np.array_equal(out, fresh.warp_labels(labels)) and calls == [(72, 128)]  # the other matcher computes it
    assert (out == 5).sum() > 0.8 * (labels == 5).sum()
    m.warp_labels(np.zeros((36, 64), np.uint16))
    assert calls[-1] == (36, 64)


def test_sparse_matchers_have_no_dense_warp(car_frames):
    cfg = Config()
    cfg.matcher.backend = "xfeat"
    m = build_matcher(cfg.matcher)
    a, b = shifted_pair(car_frames[0][0])
    m.push(a)
    m.push(b)
    assert m.warp_labels(np.zeros(a.shape[:2], np.uint16)) is None  # the tracker falls back to the median shift


# --- the flow matcher's compiled lookups against the NumPy / OpenCV computations they replace ----------------------
def _numpy_sample(field, pts):
    h, w = field.shape[:2]
    x, y = np.clip(pts[:, 0], 0, w - 1), np.clip(pts[:, 1], 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(int), w - 2 if w > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(int), h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = field[y0, x0] * (1 - fx) + field[y0, x1] * fx
    bot = field[y1, x0] * (1 - fx) + field[y1, x1] * fx
    return top * (1 - fy) + bot * fy


@pytest.mark.parametrize("shape", [(270, 480, 2), (37, 51, 1), (1, 5, 2), (4, 1, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flow_sample_equals_the_numpy_bilinear_lookup(shape, dtype):
    from mastsam_ros.core.matchers.flow import sample
    rng = np.random.default_rng(shape[0])
    field = (rng.standard_normal(shape) * 5).astype(np.float32)
    pts = (rng.random((300, 2)) * [shape[1] + 20, shape[0] + 20] - 10).astype(dtype)  # some outside: clamped
    pts[:3] = [[0, 0], [shape[1] - 1, shape[0] - 1], [shape[1] - 1.5, 0.25]]
    out = sample(field, pts)
    assert out.dtype == np.float64 and out.shape == (300, shape[2])
    assert np.array_equal(out, _numpy_sample(field, pts))
    view = field[..., :1]  # a strided view samples like its copy
    assert np.array_equal(sample(view, pts), _numpy_sample(np.ascontiguousarray(view), pts))


@pytest.mark.parametrize("src,dst", [((270, 480), (144, 256)), ((90, 160), (144, 256)), ((37, 51), (144, 256)),
                                     ((100, 100), (100, 100)), ((1, 5), (3, 4))])
def test_flow_maps_equal_resize_plus_grid(src, dst):
    """The remap maps of a flow: each pixel's coordinate plus the flow resized to the map (cv2.resize, INTER_LINEAR)
    in map pixels; equal up to float32 rounding (bit-equal on the default 480 -> 256 downscale and at equal sizes)."""
    import cv2
    from mastsam_ros.core.matchers.flow import flow_maps
    (hs, ws), (h, w) = src, dst
    bwd = (np.random.default_rng(hs).standard_normal((hs, ws, 2)) * 5).astype(np.float32)
    field = cv2.resize(bwd, (w, h), interpolation=cv2.INTER_LINEAR)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    ref_x, ref_y = gx + field[..., 0] * (w / ws), gy + field[..., 1] * (h / hs)
    map_x, map_y = flow_maps(bwd, h, w)
    assert map_x.dtype == map_y.dtype == np.float32 and map_x.shape == (h, w)
    tol = 1e-5 * max(1.0, w / ws, h / hs) * float(np.abs(bwd).max())
    np.testing.assert_allclose(map_x, ref_x, rtol=0, atol=tol)
    np.testing.assert_allclose(map_y, ref_y, rtol=0, atol=tol)
    if (hs, ws, h, w) == (270, 480, 144, 256):
        assert np.array_equal(map_x, ref_x) and np.array_equal(map_y, ref_y)
    if (hs, ws) == (h, w):  # at the flow's own size each pixel takes its own vector, exactly
        assert np.array_equal(map_x, gx + bwd[..., 0]) and np.array_equal(map_y, gy + bwd[..., 1])


@pytest.mark.parametrize("src,dst", [((270, 480), (144, 256)), ((37, 51), (144, 256)), ((100, 100), (100, 100)),
                                     ((1, 5), (3, 4))])
@pytest.mark.parametrize("step", [0.0, 0.5])
def test_warp_gather_equals_remap_along_the_flow_maps(src, dst, step):
    """The warp by :func:`warp_sources` / :func:`warp_gather` is ``cv2.remap`` (nearest, 0 border) along
    :func:`flow_maps`, bit for bit: coordinates on exact halves (``step`` 0.5: the flow rounded to halves), far
    outside the map, and NaN included."""
    import cv2
    from mastsam_ros.core.matchers.flow import flow_maps, warp_gather, warp_sources
    (hs, ws), (h, w) = src, dst
    rng = np.random.default_rng(hs + w)
    bwd = (rng.standard_normal((hs, ws, 2)) * 8).astype(np.float32)
    if step:
        bwd = np.round(bwd / step) * step
    bwd[rng.random((hs, ws)) < 0.02] = np.nan
    bwd[rng.random((hs, ws)) < 0.02] = 1e9
    map_x, map_y = flow_maps(bwd, h, w)
    sources = warp_sources(bwd, h, w)
    assert sources.dtype == np.int32 and sources.shape == (h, w)
    for labels in (rng.integers(0, 65536, (h, w)).astype(np.uint16), rng.random((h, w), dtype=np.float32)):
        ref = cv2.remap(labels, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out = warp_gather(labels, sources)
        assert out.dtype == labels.dtype and np.array_equal(out, ref)


def test_flow_carry_equals_the_numpy_computation(car_frames):
    """The compiled carry gives what its NumPy form gave, bit for bit: points in and out of the frame, on whole
    pixels and between, and NaN."""
    from mastsam_ros.core.matchers.flow import FlowMatcher, sample
    m = FlowMatcher(Config().matcher)
    frames = car_frames[0]
    m.push(frames[0])
    m.push(frames[1])
    fwd, bwd = m._pair_flows()
    h, w = m._cur.shape[:2]
    s = m._scale
    rng = np.random.default_rng(0)
    fh, fw = frames[0].shape[:2]
    pts = (rng.random((400, 2)) * [fw + 40, fh + 40] - 20).astype(np.float32)
    pts[:100] = np.round(pts[:100])
    pts[100:103] = np.nan
    p = pts * s
    q = p + sample(fwd, p)
    back = q + sample(bwd, q)
    conf = np.clip(1.0 - np.linalg.norm(back - p, axis=1) / m.max_error, 0.0, 1.0).astype(np.float32)
    conf[~((q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1))] = 0.0
    dst, got = m.carry(pts)
    assert dst.dtype == got.dtype == np.float32
    assert np.array_equal(dst, (q / s).astype(np.float32), equal_nan=True) and np.array_equal(got, conf)
    assert 0 < (got > 0.5).sum() < len(pts)  # some carried with confidence, some not
