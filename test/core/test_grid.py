"""WorkGrid.publish, the compiled pass that brings the working maps to the published label map, against a plain
per-pixel Python reference of the rule its docstring states, on realistic random working maps and on the tracker's
own maps of real frames (DAVIS car-roundabout with the ground-truth oracle, at 854x480 and 301x173)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mastsam_ros.core.config import Config
from mastsam_ros.core.errors import MastSamError
from mastsam_ros.core.grid import WorkGrid
from mastsam_ros.core.tracker import Tracker
from mastsam_ros.evaluation import davis
from mastsam_ros.evaluation.oracle import OracleSegmenter

F32 = np.float32


@np.errstate(invalid="ignore")  # inf * 0 in the rule's arithmetic is NaN, on purpose
def reference_labels(frame, work, index_map, cand, prob, ids, rows=None):
    """The documented rule, one frame pixel at a time (``rows``: only those frame rows). Returns the label map
    (uint32; rows not visited are 0)."""
    (fh, fw), (h, w) = frame, work
    out = np.zeros(frame, np.uint32)
    idx, cnd, prb = index_map.tolist(), cand.tolist(), prob.tolist()
    n = len(ids) - 1
    fine = h >= 2 and w >= 2 and (fh, fw) != (h, w) and n > 0
    for r in range(fh) if rows is None else rows:
        for c in range(fw):
            if not fine:  # nearest working pixel: the one whose area holds the frame pixel centre
                y, x = min(int((r + 0.5) * (h / fh)), h - 1), min(int((c + 0.5) * (w / fw)), w - 1)
                out[r, c] = ids[idx[y][x]]
                continue
            fy, fx = (r + 0.5) * (h / fh) - 0.5, (c + 0.5) * (w / fw) - 0.5
            y, x = min(max(int(np.floor(fy)), 0), h - 2), min(max(int(np.floor(fx)), 0), w - 2)
            ay, ax = F32(min(max(fy - y, 0.0), 1.0)), F32(min(max(fx - x, 0.0), 1.0))
            corners = [(y, x), (y, x + 1), (y + 1, x), (y + 1, x + 1)]
            labs = [cnd[i][j] for i, j in corners]
            owners = [idx[i][j] for i, j in corners]
            if len(set(labs)) == 1 and len(set(owners)) == 1:
                out[r, c] = ids[owners[0]]
                continue
            weights = [(F32(1) - ay) * (F32(1) - ax), (F32(1) - ay) * ax, ay * (F32(1) - ax), ay * ax]
            terms = [weights[i] * F32(prb[i0][j0]) for i, (i0, j0) in enumerate(corners)]
            scores = []
            for i in range(4):
                s = terms[i]
                for j in range(4):
                    if j != i:
                        s = s + terms[j] * F32(labs[j] == labs[i])
                scores.append(s)
            scores.append(F32(1) - (((terms[0] + terms[1]) + terms[2]) + terms[3]))
            best = 0
            for i in range(1, 5):
                if np.isnan(scores[best]):
                    break
                if scores[i] > scores[best] or np.isnan(scores[i]):
                    best = i
            out[r, c] = ids[(labs + [0])[best]]
    return out


def areas_and_boxes(labels, ids):
    """Area and box (x, y, width, height; zeros when absent) of each id in ``ids`` in a label map."""
    area = np.array([np.count_nonzero(labels == i) for i in ids], np.int64)
    boxes = np.zeros((len(ids), 4), np.int64)
    for k, i in enumerate(ids):
        ys, xs = np.nonzero(labels == i)
        if ys.size:
            boxes[k] = xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    return area, boxes


def random_maps(rng, work, n, levels=None):
    """Working maps as the tracker keeps them: a blocky partition (index_map), on background a candidate track
    (or none) below 0.5, owned pixels at or above 0.5. ``levels``: probabilities on a coarse ladder, so that
    interpolated scores tie exactly."""
    h, w = work
    coarse = rng.integers(0, n + 1, (max(1, h // 3), max(1, w // 3)))
    idx = cv2.resize(coarse.astype(np.uint16), (w, h), interpolation=cv2.INTER_NEAREST)
    cand = idx.copy()
    bg = idx == 0
    cand[bg] = np.where(rng.random(bg.sum()) < 0.6, rng.integers(0, n + 1, bg.sum()), 0) if n else 0
    p = rng.random(work).astype(F32)
    if levels:
        p = (np.round(p * levels) / levels).astype(F32)
    prob = np.where(bg, np.minimum(p * 0.5, F32(0.499)), np.maximum(p, F32(0.5))).astype(F32)
    prob[bg & (cand == 0)] = 0
    ids = np.array([0, *sorted(rng.choice(np.arange(1, 500), n, replace=False))], np.uint32)
    return idx, cand, prob, ids


def check(grid, index_map, cand, prob, ids, rows=None):
    labels, area, boxes = grid.publish(index_map, cand, prob, ids)
    assert labels.dtype == np.uint32 and labels.shape == grid.frame
    ref = reference_labels(grid.frame, grid.work, index_map, cand, prob, ids, rows)
    if rows is None:
        np.testing.assert_array_equal(labels, ref)
    else:
        np.testing.assert_array_equal(labels[rows], ref[rows])
    ref_area, ref_boxes = areas_and_boxes(labels, ids)  # of the whole published map
    np.testing.assert_array_equal(area[1:], ref_area[1:])
    np.testing.assert_array_equal(boxes[1:], ref_boxes[1:])
    assert area.sum() == labels.size
    return labels


@pytest.mark.parametrize(
    "frame, max_side",
    [
        ((37, 23), 16),  # odd sizes, 16 x 10 working
        ((40, 61), 25),
        ((24, 40), 40),  # frame and working size equal: nearest neighbour (identity)
        ((3, 90), 40),  # a working side of 1: nearest neighbour
        ((90, 3), 40),
        ((9, 7), 4),
    ],
)
@pytest.mark.parametrize("levels", [None, 4])
def test_publish_equals_the_per_pixel_rule_on_random_maps(frame, max_side, levels):
    rng = np.random.default_rng([*frame, max_side, levels or 0])
    grid = WorkGrid(frame, max_side)
    for n in (1, 3, 12):
        check(grid, *random_maps(rng, grid.work, n, levels))


def test_publish_ties_go_to_the_first_label():
    # two tracks with probability 1 on a checkerboard of working pixels: most boundary scores tie exactly
    grid = WorkGrid((40, 40), 20)
    idx = ((np.indices(grid.work).sum(0) % 2) + 1).astype(np.uint16)
    labels = check(grid, idx, idx.copy(), np.ones(grid.work, F32), np.array([0, 7, 9], np.uint32))
    assert set(np.unique(labels)) == {7, 9}


def test_publish_a_nan_probability_gives_the_top_left_label_around_it():
    grid = WorkGrid((40, 40), 20)
    idx = np.zeros(grid.work, np.uint16)
    idx[:, 10:] = 1
    cand = idx.copy()
    cand[:, 9] = 1
    prob = np.where(idx > 0, F32(0.9), F32(0.3)).astype(F32)
    prob[5, 10] = np.nan
    check(grid, idx, cand, prob, np.array([0, 4], np.uint32))


def test_publish_sums_the_corner_terms_in_the_documented_order():
    # Found by a search over float32 probabilities: at frame pixel (1, 2) of a 40 x 61 frame (working 16 x 25) the
    # top right corner's term equals the sum of the other three (one label) taken in another order, one unit in
    # the last place above the documented order's sum; so the label changes with the order of the additions.
    grid = WorkGrid((40, 61), 25)
    y, x = grid.cy[1], grid.cx[2]
    idx = np.ones(grid.work, np.uint16)
    idx[y, x + 1] = 2
    prob = np.ones(grid.work, F32)
    prob[y, x], prob[y, x + 1] = 0.8932114839553833, 0.9841657280921936
    prob[y + 1, x], prob[y + 1, x + 1] = 0.803044319152832, 0.8444751501083374
    ids = np.array([0, 5, 6], np.uint32)
    labels = check(grid, idx, idx.copy(), prob, ids)
    assert labels[1, 2] == 6


def test_publish_an_infinite_probability_follows_argmax():
    # an infinite term times a 0 flag is NaN: the scores of the other labels are NaN, and argmax takes the first NaN
    grid = WorkGrid((40, 40), 20)
    idx = np.zeros(grid.work, np.uint16)
    idx[:, 10:] = 1
    idx[:, 14:] = 2
    cand = idx.copy()
    prob = np.where(idx > 0, F32(0.9), F32(0.0)).astype(F32)
    prob[6, 13] = np.inf
    labels = check(grid, idx, cand, prob, np.array([0, 4, 8], np.uint32))
    assert (labels == 8).any() and (labels == 4).any()


def test_publish_without_tracks_is_background():
    grid = WorkGrid((48, 80), 20)
    labels, area, boxes = grid.publish(*[np.zeros(grid.work, t) for t in (np.uint16, np.uint16, F32)],
                                       np.zeros(1, np.uint32))
    assert not labels.any() and labels.dtype == np.uint32 and area.tolist() == [labels.size]
    assert boxes.shape == (1, 4)


def test_publish_refuses_maps_it_cannot_read():
    grid = WorkGrid((48, 80), 20)
    idx, cand, prob, ids = random_maps(np.random.default_rng(0), grid.work, 3)
    # an index above the 3 tracks in the last row, the last column (checked apart) and inside, of either map
    for which, at in [(0, (-1, 3)), (1, (5, -1)), (0, (4, 6)), (1, (4, 6)), (1, (-1, -1))]:
        maps = [idx.copy(), cand.copy()]
        maps[which][at] = 4
        with pytest.raises(MastSamError, match="index above"):
            grid.publish(maps[0], maps[1], prob, ids)
    with pytest.raises(MastSamError, match="working size"):
        grid.publish(idx[:-1], cand[:-1], prob[:-1], ids)
    with pytest.raises(MastSamError, match="not unsigned"):
        grid.publish(idx.astype(np.int32), cand, prob, ids)
    with pytest.raises(MastSamError, match="not float32"):  # float64 would change the rule's arithmetic
        grid.publish(idx, cand, prob.astype(np.float64), ids)
    with pytest.raises(MastSamError, match="index above"):  # without cells too (nearest neighbour)
        WorkGrid(grid.work, 20).publish(idx + 1, cand, prob, ids)


@pytest.mark.parametrize("size, rows", [(None, slice(None, None, 12)), ((301, 173), None)])
def test_publish_equals_the_rule_on_the_trackers_maps_of_real_frames(davis_root, size, rows):
    """The tracker with the ground-truth oracle (whose masks, given at frame size, make fractional probabilities)
    on car-roundabout: every published frame equals the rule applied to the working maps it was published from
    (at 854 x 480 on every 12th row, to keep the Python reference quick), areas and boxes those of the map."""
    frames = davis.load_frames(davis_root, "car-roundabout", limit=4)
    _, gt = davis.load_gt(davis_root, "car-roundabout", limit=4)
    if size is not None:
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
        gt = np.stack([cv2.resize(g, size, interpolation=cv2.INTER_NEAREST) for g in gt])
    tracker = Tracker(Config(), segmenter=OracleSegmenter(gt, frames=frames))
    mixed = 0
    for f in frames:
        res = tracker.step(f)
        ids = np.array([0] + [t.id for t in res.tracks], np.uint32)
        grid = tracker._grid
        assert grid.fine and len(ids) > 2
        ref = reference_labels(grid.frame, grid.work, tracker._index_map, tracker._cand, tracker._prob, ids,
                               None if rows is None else list(range(grid.frame[0]))[rows])
        got = res.labels if rows is None else res.labels[rows]
        np.testing.assert_array_equal(got, ref if rows is None else ref[rows])
        area, boxes = areas_and_boxes(res.labels, ids)
        assert [t.area for t in res.tracks] == area[1:].tolist()
        assert [t.bbox for t in res.tracks] == [tuple(b) for b in boxes[1:].tolist()]
        up = ids[tracker._index_map][grid.rows][:, grid.cols]  # nearest neighbour
        mixed += np.count_nonzero(res.labels != up)
    assert mixed > 0  # the boundary pixels were interpolated, not only repeated
