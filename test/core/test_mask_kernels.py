"""The tracker's compiled kernels (masks.py, points.py) against plain references written here, on random maps with
blobs, specks and holes like the tracker's working maps."""

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi

from mastsam_ros.core import masks as M
from mastsam_ros.core.points import carried_flags

SHAPE = (72, 128)


def isolated(points: np.ndarray, factor: float) -> np.ndarray:
    """Reference of carried_flags' isolation rule, in NumPy: flags of points farther from the set's median point than
    ``factor`` times the median of those distances (at least 1); none for fewer than 3 points."""
    n = points.shape[0]
    if n < 3:
        return np.zeros(n, bool)

    def median(a):
        s = np.sort(a, axis=0)
        return s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])

    d = np.sqrt(((points - median(points)) ** 2).sum(axis=1))
    return d > factor * max(float(median(d)), 1.0)


def blobs(rng, shape=SHAPE, level=0.6) -> np.ndarray:
    """A smooth random field in [0, 1]: thresholded, several blobs of different sizes."""
    noise = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 4)
    return ((noise - noise.min()) / max(float(np.ptp(noise)), 1e-6) * level * 1.5).clip(0, 1).astype(np.float32)


def label_map(rng, n, shape=SHAPE) -> np.ndarray:
    """A partition into up to n labels plus background (0), blob-shaped."""
    fields = np.stack([blobs(rng, shape) for _ in range(n)])
    labels = fields.argmax(0).astype(np.uint16) + 1
    labels[fields.max(0) < 0.5] = 0
    return labels


@pytest.mark.parametrize("seed", range(6))
def test_threshold_box_is_the_threshold_and_its_bounding_box(seed):
    rng = np.random.default_rng(seed)
    soft = blobs(rng) if seed else np.zeros(SHAPE, np.float32)
    hard = np.empty(SHAPE, bool)
    y0, y1, x0, x1 = M.threshold_box(soft, hard)
    assert np.array_equal(hard, soft >= 0.5)
    x, y, w, h = cv2.boundingRect((soft >= 0.5).view(np.uint8))
    if w == 0:
        assert y1 == 0
    else:
        assert (y0, y1, x0, x1) == (y, y + h, x, x + w)


@pytest.mark.parametrize("seed", range(6))
def test_drop_swallowed_follows_the_rule(seed):
    rng = np.random.default_rng(seed)
    owner = label_map(rng, 6)
    n = 7
    held = np.bincount(owner.ravel(), minlength=n)
    assert np.array_equal(M.count_labels(owner, n), held)
    hard = blobs(rng, level=0.9) >= 0.4
    me = int(rng.integers(1, n))
    ys, xs = np.nonzero(hard)
    if ys.size == 0:
        pytest.skip("empty draw")
    box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
    # reference: the rule of the docstring, per label
    taken = np.bincount(owner[hard], minlength=n)
    swallowed = [k for k in range(1, n) if k != me and taken[k] >= 0.5 * max(held[k], 1) and held[k] >= 0.5 * held[me]]
    expected = hard & ~np.isin(owner, swallowed)
    got = hard.copy()
    assert M.drop_swallowed(got, owner, held, me, 0.5, *box) == bool(swallowed)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("gap", [0, 2, 4])
@pytest.mark.parametrize("seed", range(4))
def test_main_parts_keeps_the_big_parts_by_their_own_pixels(seed, gap):
    rng = np.random.default_rng(seed)
    mask = blobs(rng, level=0.8) >= 0.55
    mask[rng.random(SHAPE) > 0.995] = True  # specks
    frac, min_area = 0.3, 40
    # reference: parts of the gap-bridged mask (scipy), sized by the mask's own pixels
    joined = ndi.binary_dilation(mask, np.ones((gap + 1, gap + 1), bool)) if gap else mask  # odd sizes: centred
    parts, n = ndi.label(joined, np.ones((3, 3), bool))
    areas = np.bincount(parts[mask], minlength=n + 1)
    keep = (areas >= frac * areas[1:].max()) | (areas >= min_area)
    keep[0] = False
    expected = keep[parts] & mask if n > 1 else mask
    assert np.array_equal(M.main_parts(mask, frac, min_area, gap), expected)
    inplace = mask.copy()
    assert M.main_parts(inplace, frac, min_area, gap, inplace=True) is inplace
    assert np.array_equal(inplace, expected)


@pytest.mark.parametrize("gap", range(7))
def test_connected_parts_are_opencvs_parts_of_the_dilated_box(gap):
    """The same parts as cv2.connectedComponents of the box dilated by cv2.dilate (what main_parts used to ask
    OpenCV for), even gap sizes (an off-centre anchor) and boxes cut inside the mask included."""
    rng = np.random.default_rng(gap)
    for trial in range(150):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        if trial % 2:
            mask = rng.random((h + 4, w + 4)) < rng.choice([0.02, 0.1, 0.3, 0.7])
        else:
            mask = cv2.GaussianBlur(rng.random((h + 4, w + 4)).astype(np.float32), (0, 0), 2) > 0.5
        y, x = (int(v) for v in rng.integers(0, 4, 2))
        crop = np.ascontiguousarray(mask[y : y + h, x : x + w]).view(np.uint8)
        joined = cv2.dilate(crop, np.ones((gap + 1, gap + 1), np.uint8)) if gap else crop
        n, ref = cv2.connectedComponents(joined, connectivity=8, ltype=cv2.CV_32S)
        count, parts = M.connected_parts(mask, y, x, h, w, gap)
        assert count == n
        if n <= 2:
            assert parts.size == 0
            continue
        on = crop.astype(bool)
        assert not parts[~on].any() and parts[on].min() >= 1
        pairs = set(zip(ref[on].tolist(), parts[on].tolist()))  # one to one: the same parts, numbered apart
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}) == n - 1


@pytest.mark.parametrize("seed", range(4))
def test_measure_gives_area_centroid_and_prompt_hits(seed):
    rng = np.random.default_rng(seed)
    mask = blobs(rng) >= 0.5
    pts = (rng.random((9, 2)) * [SHAPE[1] + 10, SHAPE[0] + 10] - 5).astype(np.float32)
    area, cx, cy, hits = M.measure(mask, 0, SHAPE[0], 0, SHAPE[1], pts)
    ys, xs = np.nonzero(mask)
    assert area == ys.size
    if area:
        assert np.allclose([cx, cy], [xs.mean(), ys.mean()])
    xy = np.clip(np.rint(pts).astype(int), 0, [SHAPE[1] - 1, SHAPE[0] - 1])
    assert hits == int(mask[xy[:, 1], xy[:, 0]].sum())


@pytest.mark.parametrize("seed", range(4))
def test_partition_stats_and_planes_of_a_candidate_map(seed):
    rng = np.random.default_rng(seed)
    n = 5
    cand = label_map(rng, n)
    prob = rng.random(SHAPE).astype(np.float32)
    stats, owner = np.empty((n, 7)), np.empty(SHAPE, np.uint16)
    M.partition_stats(cand, prob, n, stats, owner)
    assert np.array_equal(owner, np.where(prob >= 0.5, cand, 0))
    for k in range(n):
        mine = cand == k + 1
        soft = np.where(mine, prob, 0).astype(np.float32)
        hard = soft >= 0.5
        ys, xs = np.nonzero(mine)
        if ys.size == 0:
            assert stats[k, 1] == 0
            continue
        assert tuple(stats[k, :4]) == (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        hy, hx = np.nonzero(hard)
        assert stats[k, 4] == hy.size
        if hy.size:
            assert np.allclose(stats[k, 5:], [hx.mean(), hy.mean()])
        s, h = np.zeros(SHAPE, np.float32), np.zeros(SHAPE, bool)
        M.candidate_plane(cand, prob, k + 1, *(int(v) for v in stats[k, :4]), s, h)
        assert np.array_equal(s, soft) and np.array_equal(h, hard)


@pytest.mark.parametrize("seed", range(4))
def test_owner_probabilities_give_owners_and_halo_candidates(seed):
    rng = np.random.default_rng(seed)
    n = 4
    index = label_map(rng, n)
    softs = [blobs(rng, level=0.8) for _ in range(n)]
    cand, prob = index.copy(), np.zeros(SHAPE, np.float32)
    for k in range(n):
        M.owner_probabilities(softs[k], index, k + 1, 0, SHAPE[0], 0, SHAPE[1], cand, prob)
    # reference, pixel by pixel: the owner's probability (at least 0.5); on background, tracks in order, each that
    # beats the candidate's probability so far (kept below 0.5) takes over
    for y in range(0, SHAPE[0], 3):
        for x in range(0, SHAPE[1], 3):
            i = index[y, x]
            if i:
                assert cand[y, x] == i and prob[y, x] == max(softs[i - 1][y, x], np.float32(0.5))
                continue
            best, p = 0, np.float32(0)
            for k in range(n):
                if softs[k][y, x] > p:
                    best, p = k + 1, min(softs[k][y, x], np.float32(0.499))
            assert cand[y, x] == best and prob[y, x] == p


def test_claims_and_paint_of_overlapping_masks():
    rng = np.random.default_rng(3)
    masks = [blobs(rng) >= 0.45 for _ in range(5)]
    claims = np.zeros(masks[0].size, np.uint16)
    areas = [M.claim(claims, m.ravel()) for m in masks]
    assert areas == [int(m.sum()) for m in masks]
    assert np.array_equal(claims, np.sum(masks, axis=0).ravel())
    painted = M.paint(SHAPE, masks, [10, 20, 30, 40, 50])
    expected = np.zeros(SHAPE, np.uint32)
    for i in np.argsort([-a for a in areas], kind="stable"):  # larger first, smaller on top
        expected[masks[i]] = [10, 20, 30, 40, 50][i]
    assert np.array_equal(painted, expected)
    boxes = np.empty((6, 4), np.intp)
    M.label_boxes(painted // 10, 6, boxes)
    for k in range(6):
        ys, xs = np.nonzero(painted == 10 * (k + 1))
        if ys.size:
            assert tuple(boxes[k]) == (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        else:
            assert boxes[k, 1] == 0


@pytest.mark.parametrize("seed", range(6))
def test_carried_flags_are_confidence_frame_and_isolation(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 9, 6)
    total = int(counts.sum())
    dst = (rng.random((total, 2)) * [120, 80] - [10, 5]).astype(np.float32)
    dst[::5] += 300  # strays, some outside
    conf = rng.random(total).astype(np.float32)
    good, keep = np.empty(total, bool), np.empty(total, bool)
    trust, kept = np.empty(len(counts)), np.empty(len(counts), np.intp)
    carried_flags(dst, conf, counts, 110, 70, 0.3, 2.5, good, keep, trust, kept)
    ok = (conf >= 0.3) & (dst[:, 0] >= 0) & (dst[:, 0] <= 109) & (dst[:, 1] >= 0) & (dst[:, 1] <= 69)
    assert np.array_equal(good, ok)
    start = 0
    for j, n in enumerate(counts):
        sl = slice(start, start + n)
        expected = ok[sl].copy()
        expected[ok[sl]] = ~isolated(dst[sl][ok[sl]], 2.5)
        assert np.array_equal(keep[sl], expected)
        assert kept[j] == expected.sum()
        assert trust[j] == pytest.approx(float(np.where(ok[sl], conf[sl], 0).sum()) / n if n else 0.0, rel=1e-5)
        start += n


@pytest.mark.parametrize("shape", [(480, 854, 3), (7, 5, 3), (100, 101), (13, 17, 1), (1, 1, 3)])
def test_subsample_is_the_strided_copy(shape):
    from mastsam_ros.core.frames import subsample
    frame = np.random.default_rng(shape[0]).integers(0, 256, shape).astype(np.uint8)
    for step in (1, 2, 6, 7, 500):
        out, ref = subsample(frame, step), frame[::step, ::step]
        assert out.shape == ref.shape and out.dtype == ref.dtype and out.flags.c_contiguous
        assert np.array_equal(out, ref)


@pytest.mark.parametrize("shape", [(480, 854, 3), (7, 5, 3), (100, 101), (13, 17, 1)])
def test_take_grid_is_the_fancy_index(shape):
    from mastsam_ros.core.frames import take_grid
    rng = np.random.default_rng(shape[1])
    frame = rng.integers(0, 256, shape).astype(np.uint8)
    for rows, cols in ((np.arange(shape[0]), np.arange(shape[1])), (rng.integers(0, shape[0], 9), rng.integers(
            0, shape[1], 4)), (np.arange(0), np.arange(3)), (np.minimum(np.arange(5) * shape[0] // 5, shape[0] - 1),
                                                            np.arange(shape[1])[2:4])):
        out, ref = take_grid(frame, rows, cols), frame[rows[:, None], cols[None, :]]
        assert out.shape == ref.shape and out.dtype == ref.dtype and out.flags.c_contiguous
        assert np.array_equal(out, ref)


@pytest.mark.parametrize("seed", range(4))
def test_joining_pairs_are_the_numpy_selection(seed):
    rng = np.random.default_rng(seed)
    for n in (0, 1, 2, 7, 30):
        areas = rng.integers(0, 500, n).astype(np.float64)
        inter = np.minimum(areas[:, None], areas[None, :]) * rng.choice([0, 0.3, 0.6, 0.61, 1], (n, n))
        inter = np.floor(np.triu(inter, 1) + np.triu(inter, 1).T)
        np.fill_diagonal(inter, areas)
        smaller = np.minimum(areas[:, None], areas[None, :])
        rows, cols = np.nonzero(np.triu(inter > 0.6 * np.maximum(smaller, 1.0), k=1))
        pairs = M._joining_pairs(inter, 0.6)
        assert pairs.shape == (rows.size, 2) and pairs.tolist() == list(map(list, zip(rows.tolist(), cols.tolist())))


@pytest.mark.parametrize("seed", range(6))
def test_examine_is_the_checks_one_kernel_at_a_time(seed):
    rng = np.random.default_rng(seed)
    owner = label_map(rng, 4)
    held = M.count_labels(owner, 5)
    pts = (rng.random((7, 2)) * [SHAPE[1], SHAPE[0]]).astype(np.float32)
    for me in (1, 3):
        soft = blobs(rng, level=0.9)
        soft[rng.random(SHAPE) > 0.99] = 1.0  # specks: parts to drop
        if seed == 0 and me == 1:
            soft[:] = 0  # an empty answer
        for rule in (True, False):
            ref = np.empty(SHAPE, bool)
            y0, y1, x0, x1 = M.threshold_box(soft, ref)
            got = np.empty(SHAPE, bool)
            out = M.examine(soft, got, owner, held if rule else np.zeros(0, np.int64), me, 0.5, 0.3, 40, 4, pts)
            assert out[:4] == (y0, y1, x0, x1)
            if y1 == 0:
                continue
            swallowed = rule and M.drop_swallowed(ref, owner, held, me, 0.5, y0, y1, x0, x1)
            M.main_parts(ref, 0.3, 40, 4, box=(slice(y0, y1), slice(x0, x1)), inplace=True)
            assert np.array_equal(got, ref) and out[4] == swallowed
            assert out[5:] == M.measure(ref, y0, y1, x0, x1, pts)


@pytest.mark.parametrize("shape", [SHAPE, (7, 5), (1, 1), (33, 17)])
def test_iou_matrix_counts_exactly(shape):
    rng = np.random.default_rng(shape[0])
    for na, nb in ((1, 1), (4, 8), (9, 3)):
        a = [rng.random(shape) < rng.random() for _ in range(na)]
        b = [rng.random(shape) < rng.random() for _ in range(nb)]
        inter = np.array([[np.count_nonzero(x & y) for y in b] for x in a], float)
        union = np.array([[np.count_nonzero(x | y) for y in b] for x in a], float)
        assert np.array_equal(M.iou_matrix(a, b), (inter / np.maximum(union, 1.0)).astype(np.float32))
        got = M._intersections(a, b)
        assert got.dtype == np.float64 and np.array_equal(got, inter)
        assert np.array_equal(M._intersections(a, a), [[np.count_nonzero(x & y) for y in a] for x in a])
    assert M.iou_matrix([], b).shape == (0, len(b))


def test_box_iou_equals_iou_of_the_box_slices():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = rng.random((2, 40, 60)) < rng.random(2)[:, None, None]
        y0, x0 = rng.integers(0, 20), rng.integers(0, 30)
        y1, x1 = y0 + rng.integers(0, 20), x0 + rng.integers(0, 30)
        box = (slice(y0, y1), slice(x0, x1))
        assert M.box_iou(a, b, y0, y1, x0, x1) == pytest.approx(M.iou(a[box], b[box]))


@pytest.mark.parametrize("seed", range(4))
def test_box_iou_candidate_equals_box_iou_of_the_drawn_plane(seed):
    rng = np.random.default_rng(seed)
    n = 4
    cand = rng.integers(0, n + 1, SHAPE).astype(np.uint16)
    prob = rng.random(SHAPE).astype(np.float32)
    prob[0, :4] = 0.5  # the threshold itself belongs to the track
    for k in range(1, n + 1):
        a = rng.random(SHAPE) < 0.4
        soft, hard = np.zeros(SHAPE, np.float32), np.zeros(SHAPE, bool)
        M.candidate_plane(cand, prob, k, 0, SHAPE[0], 0, SHAPE[1], soft, hard)
        for _ in range(5):
            y0, x0 = rng.integers(0, SHAPE[0] // 2), rng.integers(0, SHAPE[1] // 2)
            y1, x1 = y0 + rng.integers(0, SHAPE[0] // 2), x0 + rng.integers(0, SHAPE[1] // 2)
            assert M.box_iou_candidate(a, cand, prob, k, y0, y1, x0, x1) == M.box_iou(a, hard, y0, y1, x0, x1)
