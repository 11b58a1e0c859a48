"""Mask points: the few pixels per mask that are carried to the next frame and prompt the segmenter there."""

from __future__ import annotations

import numpy as np

from .clustering.base import KMeans
from .config import TrackerSection
from .jit import kernel


def point_count(area: int, image_area: int, cfg: TrackerSection) -> int:
    """How many points a mask of ``area`` pixels gets: one per ``area_per_point`` of the image, clamped."""
    return int(point_counts(np.array([area]), image_area, cfg)[0])


def point_counts(areas: np.ndarray, image_area: int, cfg: TrackerSection) -> np.ndarray:
    """:func:`point_count` of each of ``areas`` ((N,) int64 in, (N,) int64 out; halves round to even)."""
    k = np.rint(np.asarray(areas) / (cfg.area_per_point * image_area))
    return np.clip(k, cfg.points_min, cfg.points_max).astype(np.int64)


def mask_points(
    mask: np.ndarray, kmeans: KMeans, cfg: TrackerSection, rng: np.random.Generator, max_samples: int = 4000
) -> np.ndarray:
    """k-means centroids of the mask's pixel coordinates, each snapped onto the mask.

    ``mask`` is H x W bool; returns (k, 2) float32 x y pixels (k from :func:`point_count`), empty if the mask is.
    A centroid of a non-convex mask can fall outside it (a ring's centre), so each one moves to the nearest mask
    pixel of its own cluster sample: a prompt point off the object would segment the wrong thing.
    """
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return np.zeros((0, 2), np.float32)
    coords = np.stack([xs, ys], axis=1).astype(np.float32)
    if coords.shape[0] > max_samples:
        coords = coords[rng.choice(coords.shape[0], max_samples, replace=False)]
    k = min(point_count(xs.size, mask.size, cfg), coords.shape[0])
    if k == 1:
        centres = coords.mean(axis=0, keepdims=True)
    else:
        centres = kmeans.centroids(coords, k)
    return snap(centres, coords)


def snap(centres: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Each centre moved to its nearest sample ((k, 2) float32; the first of equally near ones; O(k * samples),
    samples are capped). The kernel of :func:`label_points` on one row."""
    c = np.asarray(centres, np.float32)
    p = np.asarray(samples, np.float32)
    got = _snap(
        np.ascontiguousarray(p[None, :, 0]), np.ascontiguousarray(p[None, :, 1]), np.array([len(p)], np.int64),
        np.ascontiguousarray(c[None, :, 0]), np.ascontiguousarray(c[None, :, 1]), np.array([len(c)], np.int64),
    )
    return got[0, : len(c)]


def label_points(
    labels: np.ndarray,
    ids: list[int],
    kmeans: KMeans,
    cfg: TrackerSection,
    rng: np.random.Generator,
    max_samples: int,
    caps: int,
) -> dict[int, np.ndarray]:
    """Mask points of every track of an index map at once: ``{id: (k, 2) float32 x y}`` in map pixels.

    ``labels`` is the tracker's working map of small ids (uint16, 0 = background, ``ids`` among 1..max). A counting
    sort groups its pixels by id, in raster order within an id; each track gets all its pixels or, above
    ``max_samples``, that many drawn at random (with replacement: a repeated pixel does not move a k-means centroid
    much; the draws are one ``rng.integers`` call for all tracks, made whatever their sizes once one track is above
    ``max_samples``), k from :func:`point_counts` (capped at ``caps``), the mean for k = 1 and the k-means centroids
    of all other tracks in one ``kmeans.centroids_padded`` call, each centre snapped onto the nearest sampled pixel
    of its own track. Grouping, sampling and snapping are compiled kernels over (tracks x samples) arrays.
    """
    out: dict[int, np.ndarray] = {i: np.zeros((0, 2), np.float32) for i in ids}
    if not ids:
        return out
    counts, starts, order = _group(labels.ravel(), max(ids))
    who = np.array(ids, np.int64)
    who = who[counts[who] > 0]
    if who.size == 0:
        return out
    n = counts[who]
    most = int(n.max())
    size = min(max_samples, most)
    drawn = rng.integers(0, n[:, None], (who.size, size)) if most > max_samples else np.zeros((0, 0), np.int64)
    valid = np.minimum(n, size)
    ks = np.minimum(np.minimum(point_counts(n, labels.size, cfg), caps), valid)
    xs, ys, cx, cy = _gather(order, starts[who], n, drawn, size, labels.shape[1], int(ks.max()))
    multi = np.flatnonzero(ks > 1)
    if multi.size:
        mx, my = kmeans.centroids_padded(xs[multi], ys[multi], valid[multi], ks[multi])
        cx[multi, : mx.shape[1]], cy[multi, : my.shape[1]] = mx, my
    pts = _snap(xs, ys, valid, cx, cy, ks)
    for j, (i, k) in enumerate(zip(who.tolist(), ks.tolist())):
        out[i] = pts[j, :k]
    return out


@kernel
def _group(flat, top):
    """Counting sort of a flat label map's pixels with labels 1..``top`` (others are left out): ``counts`` (top + 1,)
    int64 pixels per label, ``starts`` (top + 1,) int64 where each label's pixels begin in ``order``, ``order`` the
    flat pixel indices (int32) grouped by label, in raster order within a label. One pass over the map acts at the
    ends of runs of equal labels only (a label map is mostly long runs along its rows) and notes the runs of
    labels 1..``top``; the second pass visits those runs only."""
    size = flat.size
    counts = np.zeros(top + 1, np.int64)
    starts = np.zeros(top + 1, np.int64)
    if size == 0:
        return counts, starts, np.empty(0, np.int32)
    run_lo = np.empty(size, np.int64)  # the noted runs: pixels run_lo[r]:run_hi[r], all of label run_v[r]
    run_hi = np.empty(size, np.int64)
    run_v = np.empty(size, np.int64)
    runs = 0
    start, v = 0, flat[0]
    for p in range(1, size + 1):
        w = flat[p] if p < size else v + 1  # past the end: a label unlike the last one closes its run
        if w != v:
            if 0 < v <= top:
                counts[v] += p - start
                run_lo[runs], run_hi[runs], run_v[runs] = start, p, v
                runs += 1
            start, v = p, w
    for u in range(1, top + 1):
        starts[u] = starts[u - 1] + counts[u - 1]
    order = np.empty(starts[top] + counts[top], np.int32)
    fill = starts.copy()
    for r in range(runs):
        v, lo, hi = run_v[r], run_lo[r], run_hi[r]
        f = fill[v]
        for q in range(lo, hi):
            order[f + q - lo] = q
        fill[v] = f + hi - lo
    return counts, starts, order


@kernel
def _gather(order, starts, n, drawn, size, width, kmax):
    """The sampled pixels of each track: row ``j`` takes its ``n[j]`` pixels (``order[starts[j]:][:n[j]]``) when
    they fit in ``size``, else the pixels at its drawn positions ``drawn[j]`` (each in [0, n[j])). Returns their x and
    y ((tracks, size) float32, padding 0) and (tracks, kmax) float32 centre arrays holding in column 0 the mean x and
    y of each row's samples (a track's single point when it gets k = 1), zeros elsewhere."""
    t = n.size
    xs = np.zeros((t, size), np.float32)
    ys = np.zeros((t, size), np.float32)
    cx = np.zeros((t, kmax), np.float32)
    cy = np.zeros((t, kmax), np.float32)
    for j in range(t):
        m = min(n[j], size)
        sx, sy = 0.0, 0.0
        for c in range(m):
            pix = order[starts[j] + (c if n[j] <= size else drawn[j, c])]
            x, y = pix % width, pix // width
            xs[j, c], ys[j, c] = x, y
            sx += x
            sy += y
        cx[j, 0], cy[j, 0] = sx / m, sy / m
    return xs, ys, cx, cy


@kernel
def _snap(xs, ys, n, cx, cy, ks):
    """Row ``j``'s first ``ks[j]`` centres (``cx``, ``cy``) each moved onto the nearest of the row's first ``n[j]``
    samples (``xs``, ``ys``): squared distances in float32, the first sample on a tie. Returns (rows, max k, 2)
    float32 x y."""
    t = n.size
    out = np.zeros((t, cx.shape[1], 2), np.float32)
    for j in range(t):
        for c in range(ks[j]):
            best, best_d = 0, np.inf
            for p in range(n[j]):
                dx, dy = xs[j, p] - cx[j, c], ys[j, p] - cy[j, c]
                d = dx * dx + dy * dy
                if d < best_d:
                    best, best_d = p, d
            out[j, c, 0], out[j, c, 1] = xs[j, best], ys[j, best]
    return out


@kernel
def carried_flags(dst, conf, counts, width, height, min_confidence, factor, good, keep, trust, kept) -> None:
    """What survives of every track's carried points, all tracks at once (``counts`` points each, in order):
    a point is ``good`` (trustworthy) when its confidence is at least ``min_confidence`` and it landed inside the
    frame (``width`` x ``height``), and kept when it is also not isolated from the bulk of its track's good points
    (the car-and-road stray point): no farther from their median point than ``factor`` times the median of those
    distances (a robust spread, at least 1 pixel). A track with fewer than 3 good points has no bulk to compare
    against, and none of them is dropped. Medians of an even count are the mean of the middle two, in float32.
    ``trust[j]``: track j's mean confidence, counting 0 for a point that is not good; ``kept[j]`` its kept count."""
    start = 0
    for j in range(counts.shape[0]):
        n = counts[j]
        ok = np.zeros(n, np.bool_)
        total = 0.0
        for i in range(n):
            x, y, c = dst[start + i, 0], dst[start + i, 1], conf[start + i]
            ok[i] = c >= min_confidence and x >= 0 and x <= width - 1 and y >= 0 and y <= height - 1
            if ok[i]:
                total += c
        trust[j] = total / n if n else 0.0
        m = ok.sum()
        for i in range(n):
            keep[start + i] = good[start + i] = ok[i]
        if m >= 3:  # isolation needs a bulk to compare against
            q = np.empty((m, 2), np.float32)
            r = 0
            for i in range(n):
                if ok[i]:
                    q[r, 0], q[r, 1] = dst[start + i, 0], dst[start + i, 1]
                    r += 1
            cx, cy = _median32(q[:, 0].copy()), _median32(q[:, 1].copy())
            d = np.empty(m, np.float32)
            for r in range(m):
                dx, dy = q[r, 0] - cx, q[r, 1] - cy
                d[r] = np.sqrt(dx * dx + dy * dy)
            limit = np.float32(factor * max(np.float64(_median32(d.copy())), 1.0))
            r = 0
            for i in range(n):
                if ok[i]:
                    keep[start + i] = d[r] <= limit
                    r += 1
        kept[j] = keep[start : start + n].sum()
        start += n


@kernel
def _median32(a):
    """The median of a float32 vector (sorted in place; the mean of the middle two in float32 for an even count)."""
    a.sort()
    n = a.shape[0]
    return a[n // 2] if n % 2 else np.float32(0.5) * (a[n // 2 - 1] + a[n // 2])


@kernel
def near_points(pw, counts, boxes, limit, near, found) -> None:
    """The negative prompt points of every track at once. ``pw`` ((N, 2) float32, working pixels) holds each
    track's carried points in turn (``counts[i]`` of track i); ``boxes`` ((n, 4) float32) each track's expected box
    (x, y, width, height). ``near[i, :found[i]]`` (at most ``limit`` per track) get the indices, in order, of the
    other tracks' points inside track i's box grown by a tenth of its size on each side (none for an empty box).
    The arithmetic is float32, as the NumPy expression it replaces computed it."""
    n = counts.shape[0]
    owner = np.empty(pw.shape[0], np.int64)
    start = 0
    for i in range(n):
        for j in range(start, start + counts[i]):
            owner[j] = i
        start += counts[i]
    tenth = np.float32(0.1)
    for i in range(n):
        x, y, bw, bh = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        found[i] = 0
        if not bw > 0:
            continue
        mx, my = tenth * bw, tenth * bh
        x0, x1, y0, y1 = x - mx, (x + bw) + mx, y - my, (y + bh) + my
        f = 0
        for j in range(pw.shape[0]):
            if f == limit:
                break
            if owner[j] != i and pw[j, 0] >= x0 and pw[j, 0] <= x1 and pw[j, 1] >= y0 and pw[j, 1] <= y1:
                near[i, f] = j
                f += 1
        found[i] = f


@kernel
def prompt_arrays(points, counts, near, found, who):
    """The prompts of tracks ``who``, in one pass: each one's own points (``counts[i]`` consecutive rows of
    ``points`` for track i, labels 1) then its negatives (``points[near[i, :found[i]]]``, labels 0). Returns the
    rows of all prompts one after the other ((M, 2) float32, (M,) int32) and where each prompt starts (len(who) + 1
    offsets)."""
    n = counts.shape[0]
    starts = np.zeros(n + 1, np.int64)
    for i in range(n):
        starts[i + 1] = starts[i] + counts[i]
    offsets = np.zeros(who.shape[0] + 1, np.int64)
    for q in range(who.shape[0]):
        i = who[q]
        offsets[q + 1] = offsets[q] + counts[i] + found[i]
    pts = np.empty((offsets[-1], 2), np.float32)
    labels = np.empty(offsets[-1], np.int32)
    for q in range(who.shape[0]):
        i, r = who[q], offsets[q]
        for j in range(starts[i], starts[i + 1]):
            pts[r, 0], pts[r, 1] = points[j, 0], points[j, 1]
            labels[r] = 1
            r += 1
        for f in range(found[i]):
            j = near[i, f]
            pts[r, 0], pts[r, 1] = points[j, 0], points[j, 1]
            labels[r] = 0
            r += 1
    return pts, labels, offsets
