import numpy as np
import pytest

from mastsam_ros.core import masks as M
from mastsam_ros.core.clustering import build_clustering
from mastsam_ros.core.config import Config
from mastsam_ros.core.points import carried_flags, mask_points, point_count, point_counts


@pytest.mark.parametrize("backend", ["batch", "scipy", "sklearn"])
def test_mask_points_lie_on_a_non_convex_mask(backend):
    cfg = Config()
    cfg.clustering.backend = backend
    yy, xx = np.mgrid[:200, :200]
    r = np.hypot(xx - 100, yy - 100)
    ring = (r > 60) & (r < 80)  # the centroid of the whole ring is off the mask
    pts = mask_points(ring, build_clustering(cfg.clustering), cfg.tracker, np.random.default_rng(0))
    assert pts.shape == (point_count(int(ring.sum()), ring.size, cfg.tracker), 2)
    assert pts.dtype == np.float32 and len(pts) >= 2
    assert ring[pts[:, 1].astype(int), pts[:, 0].astype(int)].all()
    # k-means spreads the points around the ring rather than bunching them
    assert np.ptp(pts[:, 0]) > 80 or np.ptp(pts[:, 1]) > 80


def test_point_count_scales_with_area_within_bounds():
    t = Config().tracker
    assert point_count(1, 10_000, t) == t.points_min
    assert point_count(10_000, 10_000, t) == t.points_max
    assert point_count(300, 10_000, t) == 3  # area_per_point = 1% of the image
    # all tracks at once: the same counts, halves rounded to even as Python's round does (3.5 -> 4, 4.5 -> 4)
    areas = np.arange(0, 3000, 7)
    want = [min(max(round(float(a) / (t.area_per_point * 10_000)), t.points_min), t.points_max) for a in areas]
    assert point_counts(areas, 10_000, t).tolist() == want
    assert point_counts(np.array([250, 350, 450]), 10_000, t).tolist() == [3, 4, 4]


def _kept(pts: np.ndarray, factor: float) -> list[bool]:
    """carried_flags on one track of fully confident points inside a large frame: what isolation alone keeps."""
    n = len(pts)
    good, keep = np.empty(n, bool), np.empty(n, bool)
    trust, kept = np.empty(1), np.empty(1, np.intp)
    carried_flags(pts, np.ones(n, np.float32), np.array([n]), 1000, 1000, 0.3, factor, good, keep, trust, kept)
    return keep.tolist()


def test_isolation_drops_only_the_stray_point():
    pts = np.array([[10, 10], [12, 11], [11, 13], [9, 12], [200, 180]], np.float32)
    assert _kept(pts, 2.5) == [True, True, True, True, False]
    assert all(_kept(pts[:2], 2.5))  # too few points to judge


def test_union_find_groups_are_transitive_and_ordered():
    a = np.zeros((40, 40), bool)
    a[0:20, 0:20] = True
    b = np.zeros_like(a)
    b[4:20, 4:20] = True  # inside a
    c = np.zeros_like(a)
    c[8:12, 8:12] = True  # inside b
    d = np.zeros_like(a)
    d[30:40, 30:40] = True
    assert M.merge_groups([a, b, c, d], 0.6) == [[0, 1, 2], [3]]
    assert M.merge_groups([d, a, c], 0.6) == [[0], [1, 2]]
    assert M.merge_groups([a, d], 0.6) == [[0], [1]]  # nothing joins
    assert M.merge_groups([a], 0.6) == [[0]] and M.merge_groups([], 0.6) == []


def test_paint_keeps_small_masks_on_top_and_main_parts_drops_specks():
    big = np.zeros((30, 30), bool)
    big[:, :] = True
    small = np.zeros_like(big)
    small[5:10, 5:10] = True
    labels = M.paint(big.shape, [small, big], [7, 3])
    assert labels.dtype == np.uint32 and (labels[5:10, 5:10] == 7).all() and (labels == 3).sum() == 900 - 25
    m = np.zeros((50, 50), bool)
    m[0:20, 0:20] = True
    m[40:42, 40:42] = True
    assert not M.main_parts(m, 0.3)[41, 41] and M.main_parts(m, 0.3)[5, 5]
    m[30:50, 30:50] = True  # now the second part is large: kept
    assert M.main_parts(m, 0.3)[45, 45]


def test_main_parts_gap_keeps_a_broken_thin_structure_with_its_object():
    m = np.zeros((60, 60), bool)
    m[10:40, 10:40] = True  # the object
    m[42:45, 20:23] = True  # a piece of it 2 pixels away (a line broken by downsampling)
    m[55:58, 55:58] = True  # a speck far away
    strict, joined = M.main_parts(m, 0.3), M.main_parts(m, 0.3, gap=3)
    assert not strict[43, 21] and joined[43, 21]  # the near piece joins only with the gap
    assert not joined[56, 56]  # the far speck is still dropped
    assert not (joined & ~m).any()  # the gap bridges; it never adds pixels
    box = (slice(10, 58), slice(10, 58))
    assert np.array_equal(M.main_parts(m, 0.3, gap=3, box=box), joined)


def test_self_intersections_match_the_pairwise_counts():
    rng = np.random.default_rng(1)
    masks = [rng.random((40, 50)) < 0.2 for _ in range(6)] + [np.zeros((40, 50), bool)]
    assert np.array_equal(M.self_intersections(masks), M._intersections(masks, masks))
    tiles = [np.zeros((40, 50), bool) for _ in range(3)]
    for i, t in enumerate(tiles):
        t[:, i * 10 : (i + 1) * 10] = True  # disjoint: nothing claimed twice
    assert np.array_equal(M.self_intersections(tiles), M._intersections(tiles, tiles))
