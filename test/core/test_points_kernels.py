"""The compiled clustering stage (``points.label_points``, ``BatchKMeans``) against plain per-element references.

The references below restate the algorithm one pixel and one point at a time in Python: group the map's pixels by
id in raster order, sample (all pixels, or the pixels at the drawn positions), k from ``point_count``, the mean for
k = 1, k-means++ seeding from one uniform per (centre, track) and Lloyd iterations for the others, each centre
snapped onto the nearest sample. Given the same draws the kernels must give the same points, bit for bit.
"""

import numpy as np
import pytest

from mastsam_ros.core import tracker as tracker_module
from mastsam_ros.core.clustering import build_clustering
from mastsam_ros.core.clustering.base import KMeans
from mastsam_ros.core.clustering.batch import BatchKMeans
from mastsam_ros.core.config import Config
from mastsam_ros.core.errors import MastSamError
from mastsam_ros.core.points import label_points, point_count, snap
from mastsam_ros.core.tracker import Tracker

f32 = np.float32


# --- references -----------------------------------------------------------------------------------------------------
def ref_kmeans(pts, k, u, iterations=6, lost=None):
    """k-means of ``pts`` (list of (x, y)) with the seeding uniforms ``u`` (one per centre), as plain loops.

    Seeding arithmetic in float32 (squared distances, their running sum); Lloyd in float64. ``lost`` (a list)
    collects the centres that kept their place because no point chose them."""
    n = len(pts)
    first = min(int(u[0] * n), n - 1)
    centres = [pts[first]]
    d2 = [(f32(x) - f32(pts[first][0])) ** 2 + (f32(y) - f32(pts[first][1])) ** 2 for x, y in pts]
    for j in range(1, k):
        cum, run = [], f32(0)
        for d in d2:
            run = f32(run + d)
            cum.append(run)
        total = cum[-1]
        if total > 0:
            threshold = u[j] * float(total)
            pick = min(sum(1 for c in cum if float(c) < threshold), n - 1)
        else:
            pick = first
        centres.append(pts[pick])
        cx, cy = f32(pts[pick][0]), f32(pts[pick][1])
        d2 = [min(d, (f32(x) - cx) ** 2 + (f32(y) - cy) ** 2) for d, (x, y) in zip(d2, pts)]
    centres = [(float(x), float(y)) for x, y in centres]
    previous = None
    for _ in range(iterations):
        assign = []
        for x, y in pts:
            d = [(float(x) - cx) ** 2 + (float(y) - cy) ** 2 for cx, cy in centres]
            assign.append(d.index(min(d)))  # the first of equally near centres
        if assign == previous:
            break
        previous = assign
        for j in range(k):
            mine = [pts[p] for p in range(n) if assign[p] == j]
            if mine:
                sx = sy = 0.0
                for x, y in mine:
                    sx, sy = sx + float(x), sy + float(y)
                centres[j] = (sx / len(mine), sy / len(mine))
            elif lost is not None:
                lost.append(j)
    return np.array(centres, np.float32)


def ref_snap(centres, pts):
    out = []
    for cx, cy in centres:
        d = [(f32(x) - f32(cx)) ** 2 + (f32(y) - f32(cy)) ** 2 for x, y in pts]
        out.append(pts[d.index(min(d))])
    return np.array(out, np.float32).reshape(-1, 2)


def ref_label_points(labels, ids, kmeans_rng, cfg, rng, max_samples, caps, lost=None):
    """``rng`` draws the samples, ``kmeans_rng`` (the k-means backend's generator) the seeding uniforms."""
    h, w = labels.shape
    pixels = {i: [] for i in ids}
    for y in range(h):
        for x in range(w):
            v = int(labels[y, x])
            if v in pixels:
                pixels[v].append((x, y))
    out = {i: np.zeros((0, 2), np.float32) for i in ids}
    present = [i for i in ids if pixels[i]]
    if not present:
        return out
    n = [len(pixels[i]) for i in present]
    size = min(max_samples, max(n))
    drawn = rng.integers(0, np.array(n)[:, None], (len(present), size)) if max(n) > max_samples else None
    samples = [pixels[i] if m <= size else [pixels[i][d] for d in drawn[j]] for j, (i, m) in enumerate(zip(present, n))]
    ks = [min(point_count(m, labels.size, cfg), caps, len(s)) for m, s in zip(n, samples)]
    multi = [j for j, k in enumerate(ks) if k > 1]
    u = kmeans_rng.random((max(ks[j] for j in multi), len(multi))) if multi else None
    for j, i in enumerate(present):
        s = samples[j]
        if ks[j] == 1:
            centres = np.array([[sum(x for x, _ in s) / len(s), sum(y for _, y in s) / len(s)]], np.float32)
        else:
            centres = ref_kmeans(s, ks[j], u[:, multi.index(j)], lost=lost)
        out[i] = ref_snap(centres, s)
    return out


# --- inputs ---------------------------------------------------------------------------------------------------------
def blob_map(rng, h, w, tracks):
    """An index map of overlapping random discs and boxes (later ones on top), some tiny, ids 1..tracks."""
    labels = np.zeros((h, w), np.uint16)
    yy, xx = np.mgrid[:h, :w]
    for i in range(1, tracks + 1):
        kind = rng.integers(0, 4)
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        if kind == 0:  # a speck of 1 to 3 pixels
            labels[cy, cx : cx + rng.integers(1, 4)] = i
        elif kind == 1:
            r = rng.integers(2, max(3, h // 3))
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = i
        else:
            labels[cy : cy + rng.integers(3, h // 2), cx : cx + rng.integers(3, w // 2)] = i
    return labels


def assert_same(got, want):
    assert got.keys() == want.keys()
    for i in want:
        assert got[i].dtype == np.float32 and got[i].shape == want[i].shape, (i, got[i], want[i])
        assert np.array_equal(got[i], want[i]), (i, got[i], want[i])


# --- label_points ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_label_points_matches_the_reference_on_random_maps(seed):
    cfg = Config().tracker
    cfg.area_per_point = 0.004  # more centres per track: k up to points_max
    rng = np.random.default_rng(seed)
    tracks = int(rng.integers(1, 24))
    labels = blob_map(rng, 48, 80, tracks)
    labels[0, :3] = tracks + 5  # a label outside ``ids``: left out
    ids = [i for i in range(1, tracks + 1) if i != 2]  # id 2 not asked for
    max_samples, caps = int(rng.choice([16, 64, 4000])), int(rng.integers(1, 9))
    got = label_points(labels, ids, BatchKMeans(seed=seed), cfg, np.random.default_rng(100 + seed), max_samples, caps)
    want = ref_label_points(labels, ids, np.random.default_rng(seed), cfg, np.random.default_rng(100 + seed),
                            max_samples, caps)
    assert_same(got, want)
    present = set(np.unique(labels).tolist())
    for i in ids:
        assert (len(got[i]) > 0) == (i in present)
        if len(got[i]):  # every point on its own track
            assert (labels[got[i][:, 1].astype(int), got[i][:, 0].astype(int)] == i).all()


@pytest.fixture(scope="module")
def tracker_calls(car_frames):
    """``label_points`` arguments and answers of a tracker on real frames (car-roundabout), each call's generator
    state kept, over two runs with the same seed."""
    frames, _ = car_frames
    runs = []
    for _ in range(2):
        calls = []

        def spy(labels, ids, kmeans, cfg, rng, max_samples, caps):
            state, kstate = rng.bit_generator.state, kmeans._rng.bit_generator.state
            got = label_points(labels, ids, kmeans, cfg, rng, max_samples, caps)
            calls.append(dict(labels=labels.copy(), ids=list(ids), cfg=cfg, state=state, kstate=kstate,
                              max_samples=max_samples, caps=caps, got={i: p.copy() for i, p in got.items()}))
            return got

        mp = pytest.MonkeyPatch()
        mp.setattr(tracker_module, "label_points", spy)
        try:
            tracker = Tracker(Config())
            for f in frames[:4]:
                tracker.step(f)
            tracker.close()
        finally:
            mp.undo()
        runs.append(calls)
    return runs


def test_label_points_matches_the_reference_on_real_frames(tracker_calls):
    calls = tracker_calls[0]
    assert len(calls) == 4 and any(len(c["ids"]) >= 5 for c in calls)
    checked = 0
    for c in calls[1:]:  # after the first keyframe: the tracked map
        rng = np.random.default_rng()
        rng.bit_generator.state = c["state"]
        km = np.random.default_rng()
        km.bit_generator.state = c["kstate"]
        want = ref_label_points(c["labels"], c["ids"], km, c["cfg"], rng, c["max_samples"], c["caps"])
        assert_same(c["got"], want)
        checked += sum(len(p) for p in want.values())
    assert checked > 20


def test_tracker_points_are_deterministic_for_a_seed(tracker_calls):
    first, second = tracker_calls
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert np.array_equal(a["labels"], b["labels"])
        assert_same(a["got"], b["got"])


def test_label_points_through_a_backend_without_the_padded_layout():
    """scipy's k-means goes through ``KMeans.centroids_padded``'s default (``centroids_many`` on lists)."""
    cfg = Config()
    cfg.clustering.backend = "scipy"
    labels = blob_map(np.random.default_rng(3), 60, 90, 12)
    ids = list(range(1, 13))
    got = label_points(labels, ids, build_clustering(cfg.clustering), cfg.tracker, np.random.default_rng(0), 64, 8)
    for i in ids:
        m = int((labels == i).sum())
        if m == 0:
            assert got[i].shape == (0, 2)
            continue
        assert got[i].shape == (min(point_count(m, labels.size, cfg.tracker), 8, m, 64), 2)
        assert (labels[got[i][:, 1].astype(int), got[i][:, 0].astype(int)] == i).all()


def test_label_points_of_nothing():
    cfg = Config().tracker
    km, rng = BatchKMeans(), np.random.default_rng(0)
    assert label_points(np.zeros((10, 12), np.uint16), [], km, cfg, rng, 128, 8) == {}
    got = label_points(np.zeros((10, 12), np.uint16), [1, 2], km, cfg, rng, 128, 8)
    assert list(got) == [1, 2] and all(p.shape == (0, 2) and p.dtype == np.float32 for p in got.values())


# --- BatchKMeans ------------------------------------------------------------------------------------------------------
def test_batch_kmeans_matches_the_reference_on_float_coordinates():
    rng = np.random.default_rng(7)
    sets = [rng.normal(0, 30, (int(rng.integers(1, 150)), 2)).astype(np.float32) + 100 for _ in range(9)]
    ks = [int(rng.integers(1, min(len(s), 8) + 1)) for s in sets]
    got = BatchKMeans(seed=4).centroids_many(sets, ks)
    u = np.random.default_rng(4).random((max(ks), len(sets)))
    lost: list[int] = []
    for i, (s, k) in enumerate(zip(sets, ks)):
        want = ref_kmeans([tuple(p) for p in s], k, u[:, i], lost=lost)
        assert got[i].dtype == np.float32 and np.array_equal(got[i], want), (i, got[i], want)


def test_a_centre_that_loses_its_points_stays_put():
    # two distinct places, three centres: the seeding's third centre falls on the first one's place (nothing is
    # farther than 0 from a centre), the lower-numbered centre takes those points on the tie, the third stays put
    pts = np.array([[10, 10]] * 5 + [[50, 20]] * 5, np.float32)
    got = BatchKMeans(seed=0).centroids(pts, 3)
    lost: list[int] = []
    want = ref_kmeans([tuple(p) for p in pts], 3, np.random.default_rng(0).random((3, 1))[:, 0], lost=lost)
    assert np.array_equal(got, want) and lost
    places = [tuple(p) for p in got.tolist()]
    assert set(places) == {(10.0, 10.0), (50.0, 20.0)} and places[2] == places[0]


def test_batch_kmeans_draws_the_same_count_whatever_the_data():
    km = BatchKMeans(seed=2)
    same = np.zeros((1, 6), np.float32)  # all points on one place: the seeding needs no draw after the first
    km.centroids_padded(same, same, np.array([6]), np.array([4]))
    km.centroids_padded(np.arange(12, dtype=np.float32).reshape(2, 6), np.ones((2, 6), np.float32),
                        np.array([6, 3]), np.array([2, 3]))
    expected = np.random.default_rng(2)
    expected.random((4, 1))
    expected.random((3, 2))
    assert km._rng.bit_generator.state == expected.bit_generator.state


def test_batch_kmeans_refuses_more_centres_than_points():
    km = BatchKMeans()
    xs = np.zeros((2, 5), np.float32)
    with pytest.raises(MastSamError, match="k <= points"):
        km.centroids_padded(xs, xs, np.array([5, 2]), np.array([2, 3]))
    with pytest.raises(MastSamError, match="k <= points"):
        km.centroids_padded(xs, xs, np.array([5, 2]), np.array([0, 1]))
    with pytest.raises(MastSamError, match="sets"):
        km.centroids_padded(xs, xs, np.array([5]), np.array([2]))


def test_the_default_padded_layout_goes_through_centroids_many():
    class FirstPoints(KMeans):  # a deliberately simple backend: the first k points
        def centroids(self, coords, k):
            return coords[:k].astype(np.float32)

    xs = np.array([[1, 2, 3, 0], [4, 5, 0, 0]], np.float32)
    ys = xs + 10
    cx, cy = FirstPoints().centroids_padded(xs, ys, np.array([3, 2]), np.array([3, 1]))
    assert cx.tolist() == [[1, 2, 3], [4, 0, 0]] and cy.tolist() == [[11, 12, 13], [14, 0, 0]]


# --- snap -------------------------------------------------------------------------------------------------------------
def test_snap_matches_the_reference_and_keeps_the_first_of_a_tie():
    rng = np.random.default_rng(5)
    samples = rng.integers(0, 40, (60, 2)).astype(np.float32)
    centres = rng.random((7, 2)).astype(np.float32) * 40
    assert np.array_equal(snap(centres, samples), ref_snap(centres, [tuple(p) for p in samples]))
    tie = snap(np.array([[1, 0]], np.float32), np.array([[0, 0], [2, 0]], np.float32))
    assert tie.tolist() == [[0, 0]]



def _near_reference(points_w, counts, boxes, limit):
    """The NumPy expression near_points replaced: a (tracks x points) matrix of which points lie in which box."""
    owner = np.repeat(np.arange(len(counts)), counts)
    x, y, bw, bh = boxes.T[:, :, None]
    mx, my = 0.1 * bw, 0.1 * bh
    inside = ((owner[None, :] != np.arange(len(counts))[:, None]) & (bw > 0)
              & (points_w[None, :, 0] >= x - mx) & (points_w[None, :, 0] <= x + bw + mx)
              & (points_w[None, :, 1] >= y - my) & (points_w[None, :, 1] <= y + bh + my))
    return [np.flatnonzero(row)[:limit] for row in inside]


@pytest.mark.parametrize("seed", range(6))
def test_near_points_and_prompt_arrays_equal_the_numpy_reference(seed):
    from mastsam_ros.core.points import near_points, prompt_arrays
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    counts = rng.integers(0, 9, n)
    total = int(counts.sum())
    # on a coarse grid, so points fall exactly on grown box edges too
    points_w = (np.round(rng.random((total, 2)) * [256, 144] * 4) / 4).astype(np.float32)
    boxes = np.round(rng.random((n, 4)) * [256, 144, 80, 60]).astype(np.float32)
    boxes[rng.random(n) < 0.2, 2] = 0  # empty expected masks: no negatives
    near, found = np.zeros((n, 8), np.int64), np.zeros(n, np.int64)
    near_points(points_w, counts.astype(np.int64), boxes, 8, near, found)
    ref = _near_reference(points_w, counts, boxes, 8)
    for i in range(n):
        assert near[i, : found[i]].tolist() == ref[i].tolist()
    points = rng.random((total, 2)).astype(np.float32) * 800
    who = np.flatnonzero(rng.random(n) < 0.7)
    pts, labels, offsets = prompt_arrays(points, counts.astype(np.int64), near, found, who)
    starts = np.concatenate([[0], np.cumsum(counts)])
    for q, i in enumerate(who):
        a, b = offsets[q], offsets[q + 1]
        own = points[starts[i] : starts[i + 1]]
        assert np.array_equal(pts[a:b], np.concatenate([own, points[ref[i]]]))
        assert labels[a:b].tolist() == [1] * len(own) + [0] * len(ref[i])
    assert offsets[-1] == len(pts) == len(labels)
