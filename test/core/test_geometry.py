"""3D instances against a rendered scene with known geometry (test/scene3d.py), with exact and with tracked masks.

Tolerances, and why:
- the pixel grid samples an object at pixel centres, so an axis-aligned extent can be short of the true one by up to
  one pixel footprint (z / f: 6.7 mm at 2 m, 8.8 mm at 2.6 m with f = 300) and a median can sit half a footprint off
  the centre of a symmetric object: 10 mm / 4 mm are allowed;
- 16UC1 depth is quantised to 1 mm;
- masks from the tracker (classical segmenter, colour edges) have IoU 0.7-0.96 with the true ones here, and the
  moving panel's mask lags its leading edge by a few pixels: a mask that differs from the true one by a fraction
  (1 - IoU) of a 0.6 m wide object moves a median along it by up to about (1 - IoU) / 2 x 0.6 m, so that much plus
  1 cm is allowed (computed from each frame's IoU); the median's depth is not moved by a few stray pixels, so the
  panel's z must stay within 1 cm.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scene3d import CX, CY, FX, FY, H, W, render, tilted_plane_residual

from mastsam_ros.core.geometry import (
    GeometryError, Intrinsics, backproject, depth_to_metres, labelled_points, objects_3d, objects_from_depth,
    resize_point_map,
)

K = Intrinsics(FX, FY, CX, CY)


def _by_id(objs):
    return {o.id: o for o in objs}


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
@pytest.mark.parametrize("frame", [0, 3, 5])
def test_known_centroids_and_extents_from_exact_masks(frame, encoding):
    _, depth, labels, truths = render(frame)
    if encoding == "16UC1":
        depth = np.round(depth * 1000).astype(np.uint16)  # millimetres
    quant = 0.0005 if encoding == "16UC1" else 1e-5
    objs = _by_id(objects_from_depth(labels, depth, K))
    assert sorted(objs) == [1, 2, 3]
    for o in objs.values():
        assert o.points == o.pixels == int((labels == o.id).sum()) and o.valid_fraction == 1.0

    panel, sphere, tilted = (objs[i] for i in (1, 2, 3))
    t_panel, t_sphere, t_tilted = truths
    # Fronto-parallel panel: the centroid is its centre, the box its size (z extent 0).
    assert np.allclose(panel.centroid[:2], t_panel.centre[:2], atol=0.004)
    assert abs(panel.centroid[2] - t_panel.centre[2]) <= quant
    ext = np.array(panel.extent)
    assert np.all(ext[:2] <= t_panel.extent[:2] + 1e-6) and np.all(ext[:2] >= t_panel.extent[:2] - 0.010)
    assert ext[2] <= 2 * quant

    # Tilted rectangle: the box is (w cos 30, h, w sin 30); every point lies on its plane; the median lies on the
    # rectangle but is pulled towards the nearer edge (more pixels per metre there), 12.5 mm here.
    ext = np.array(tilted.extent)
    assert np.all(np.abs(ext - t_tilted.extent) <= 0.010 + 2 * quant), (ext, t_tilted.extent)
    pts = backproject(depth_to_metres(depth), K)[labels == 3]
    assert np.abs(tilted_plane_residual(pts)).max() <= 2 * quant
    assert abs(tilted_plane_residual(np.array([tilted.centroid]))[0]) <= 0.005
    assert np.linalg.norm(np.array(tilted.centroid) - t_tilted.centre) <= 0.02

    # Sphere: the visible cap. Every point lies on the sphere, its nearest point is (cx, cy, cz - r), and the cap's
    # median is between the surface and the centre, within r of the centre's line of sight.
    pts = backproject(depth_to_metres(depth), K)[labels == 2]
    assert np.abs(np.linalg.norm(pts - t_sphere.centre, axis=1) - t_sphere.radius).max() <= 2 * quant + 1e-5
    assert abs(sphere.min[2] - (t_sphere.centre[2] - t_sphere.radius)) <= 0.002
    assert t_sphere.centre[2] - t_sphere.radius < sphere.centroid[2] < t_sphere.centre[2]
    assert np.linalg.norm(np.array(sphere.centroid[:2]) - t_sphere.centre[:2]) < t_sphere.radius / 5


def test_invalid_depth_is_counted_not_used():
    _, depth, labels, _ = render(0)
    mm = np.round(depth * 1000).astype(np.uint16)
    panel = labels == 1
    rows = np.flatnonzero(panel.any(axis=1))
    keep = np.zeros_like(panel)
    keep[rows[: len(rows) // 4]] = True  # the top quarter of the panel (y from -0.1 to 0.0 m) keeps its depth
    hole = panel & ~keep
    mm[hole] = 0  # 16UC1: 0 = no measurement
    objs = _by_id(objects_from_depth(labels, mm, K))
    assert objs[1].pixels == panel.sum() and objs[1].points == panel.sum() - hole.sum()
    assert math.isclose(objs[1].valid_fraction, objs[1].points / objs[1].pixels)
    assert abs(objs[1].centroid[1] - -0.05) < 0.005  # the centroid follows the valid points: the top quarter's middle

    f = depth.copy()
    f[labels == 2] = np.nan
    f[labels == 3] = np.where(np.arange(W) % 2 == 0, np.inf, -1.0)[None, :].repeat(H, 0)[labels == 3]
    objs = _by_id(objects_from_depth(labels, f, K, ids=[1, 2, 3, 99]))
    assert list(objs) == [1, 2, 3, 99]  # the order asked for, absent ids included
    for i in (2, 3):
        assert objs[i].points == 0 and objs[i].valid_fraction == 0.0 and objs[i].pixels > 0
        assert all(math.isnan(v) for v in objs[i].centroid + objs[i].min + objs[i].max)
    assert objs[99].pixels == 0 and objs[99].points == 0
    # Bounds and medians equal a per-object brute force, also next to objects without any valid point.
    pts = backproject(depth_to_metres(f), K)
    for i in (1, 2, 3):
        p = pts[labels == i]
        p = p[np.isfinite(p).all(axis=1)]
        if len(p):
            assert np.allclose(objs[i].min, p.min(axis=0)) and np.allclose(objs[i].max, p.max(axis=0))
            assert np.allclose(objs[i].centroid, np.median(p, axis=0))
    f[labels == 1] = np.nan  # now the first object has none and the second all
    f[labels == 2] = depth[labels == 2]
    two = objects_from_depth(labels, f, K, ids=[1, 2])[1]
    p = backproject(depth, K)[labels == 2]
    assert np.allclose(two.min, p.min(axis=0)) and np.allclose(two.max, p.max(axis=0)) and two.points == len(p)
    d = objs[2].as_dict()
    assert d["centroid"] == [None, None, None] and d["points"] == 0  # JSON has no NaN


def test_trim_ignores_flying_pixels():
    _, depth, labels, _ = render(0)
    rng = np.random.default_rng(1)
    ys, xs = np.nonzero(labels == 1)
    pick = rng.choice(len(ys), len(ys) // 50, replace=False)  # 2 % of the panel's pixels jump to the wall
    depth[ys[pick], xs[pick]] = 6.0
    raw, trimmed = objects_from_depth(labels, depth, K, ids=[1])[0], objects_from_depth(labels, depth, K, [1], 0.05)[0]
    assert raw.extent[2] == pytest.approx(4.0, abs=1e-5)  # min/max take the outliers
    assert trimmed.extent[2] <= 1e-5 and abs(trimmed.centroid[2] - 2.0) <= 1e-5  # quantiles and median do not


def test_bad_inputs_raise_geometry_errors():
    _, depth, labels, _ = render(0)
    with pytest.raises(GeometryError, match="160x120 but the label map is 320x240"):
        objects_from_depth(labels, depth[::2, ::2], K)
    with pytest.raises(GeometryError, match="uint16 millimetres or float32"):
        objects_from_depth(labels, depth.astype(np.int32), K)
    with pytest.raises(GeometryError, match="H x W array"):
        depth_to_metres(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(GeometryError, match="fx, fy > 0"):
        Intrinsics(0.0, 300.0, 10.0, 10.0)
    with pytest.raises(GeometryError, match="fx, fy > 0"):
        Intrinsics.from_k([float("nan"), 0, 1, 0, 300, 1, 0, 0, 1])
    with pytest.raises(GeometryError, match="trim"):
        objects_3d(labels, backproject(depth, K), trim=0.5)
    with pytest.raises(GeometryError, match="H x W x 3"):
        objects_3d(labels, depth)
    assert Intrinsics.parse("300,300,159.5,119.5") == K
    with pytest.raises(GeometryError, match="four numbers"):
        Intrinsics.parse("300,300")


def test_scaled_intrinsics_and_resized_point_maps_agree():
    _, depth, labels, _ = render(0)
    full = _by_id(objects_from_depth(labels, depth, K))
    # The same scene at half size: intrinsics scaled with the pixel-centre convention give the same centroids.
    half_lab, half_depth = labels[1::2, 1::2], depth[1::2, 1::2]
    half = _by_id(objects_from_depth(half_lab, half_depth, K.scaled(0.5, 0.5)))
    for i in (1, 2, 3):
        assert np.linalg.norm(np.array(half[i].centroid) - full[i].centroid) < 0.015, i
    # A coarse point map (as a network predicts it) brought to the image size by nearest neighbour: no point is
    # invented between the panel and the wall, so the panel's depth stays exactly 2 m.
    coarse = backproject(half_depth, K.scaled(0.5, 0.5))
    up = resize_point_map(coarse, (W, H))
    assert up.shape == (H, W, 3)
    assert np.array_equal(up[1::2, 1::2], coarse) and np.array_equal(up[0::2, 0::2], coarse)
    zs = up[labels == 1][:, 2]
    assert set(np.unique(zs).tolist()) <= {2.0, 6.0}  # at most a border pixel takes the wall's point, never a blend
    assert objects_3d(labels, up, ids=[1])[0].centroid[2] == 2.0


def test_labelled_points_decimate_and_keep_ids():
    _, depth, labels, _ = render(0)
    pts = backproject(depth, K)
    pts[labels == 3] = np.nan
    xyz, ids = labelled_points(labels, pts, stride=4)
    sub = labels[::4, ::4]
    assert len(xyz) == len(ids) == int(((sub == 1) | (sub == 2)).sum())
    assert set(ids.tolist()) == {1, 2} and xyz.dtype == np.float32 and ids.dtype == np.uint32
    assert np.all(xyz[ids == 1][:, 2] == pytest.approx(2.0))
    with pytest.raises(GeometryError):
        labelled_points(labels, pts, stride=0)


def test_tracked_masks_on_the_rendered_sequence():
    """The real tracker (classical segmenter, flow) on the rendered frames: its ids keep their 3D position."""
    from mastsam_ros.core.config import Config
    from mastsam_ros.core.tracker import Tracker

    tracker = Tracker(Config())
    ids_of = {}
    for frame in range(6):
        rgb, depth, labels, truths = render(frame)
        result = tracker.step(rgb)
        objs = _by_id(objects_from_depth(result.labels, depth, K, ids=[t.id for t in result.tracks]))
        exact = _by_id(objects_from_depth(labels, depth, K))
        for truth in truths:
            gt = labels == truth.id
            ious = {t.id: (gt & (result.labels == t.id)).sum() / (gt | (result.labels == t.id)).sum()
                    for t in result.tracks}
            best = max(ious, key=ious.get)
            assert ious[best] > 0.7, (frame, truth.id, ious[best])
            ids_of.setdefault(truth.id, best)
            assert best == ids_of[truth.id], f"object {truth.id} changed id in frame {frame}"
            o = objs[best]
            assert o.valid_fraction == 1.0
            # Against the exact masks' record (what perfect masks give) and, for the panel, the true centre.
            allowed = (1 - ious[best]) / 2 * 0.6 + 0.01
            assert np.linalg.norm(np.array(o.centroid) - exact[truth.id].centroid) < allowed, (frame, truth.id)
            if truth.id == 1:
                assert np.linalg.norm(np.array(o.centroid[:2]) - truth.centre[:2]) < allowed
                assert abs(o.centroid[2] - truth.centre[2]) < 0.01


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouping_equals_a_per_object_brute_force(seed):
    """Random labels (ids up to 70000: the uint32 path too), random invalid points, absent ids, trim or not."""
    rng = np.random.default_rng(seed)
    h, w = 60, 80
    ids_pool = np.array([0, 3, 7, 8, 500, 70000 if seed == 2 else 9])
    labels = ids_pool[rng.integers(0, len(ids_pool), (h, w))].astype(np.uint32)
    pts = rng.normal(size=(h, w, 3)).astype(np.float32)
    pts[rng.random((h, w)) < 0.3] = np.nan
    pts[labels == 8] = np.nan  # one object without any valid point
    asked = [int(i) for i in ids_pool[1:]] + [12345]
    for trim in (0.0, 0.1):
        got = {o.id: o for o in objects_3d(labels, pts, asked, trim)}
        assert list(got) == asked
        for i in asked:
            p = pts[labels == i]
            assert got[i].pixels == len(p)
            p = p[np.isfinite(p).all(axis=1)]
            assert got[i].points == len(p)
            if not len(p):
                assert math.isnan(got[i].centroid[0])
                continue
            lo, hi = (p.min(axis=0), p.max(axis=0)) if trim == 0 else np.quantile(p, [trim, 1 - trim], axis=0)
            assert np.allclose(got[i].centroid, np.median(p, axis=0), atol=1e-6)
            assert np.allclose(got[i].min, lo, atol=1e-6) and np.allclose(got[i].max, hi, atol=1e-6)
