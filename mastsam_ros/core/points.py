"""Mask points: the few pixels per mask that are carried to the next frame and prompt the segmenter there."""

from __future__ import annotations

import numpy as np

from .clustering.base import KMeans
from .config import TrackerSection
from .jit import kernel


def point_count(area: int, image_area: int, cfg: TrackerSection) -> int:
    """How many points a mask of ``area`` pixels gets: one per ``area_per_point`` of the image, clamped."""
    k = round(float(area) / (cfg.area_per_point * image_area))
    return min(max(k, cfg.points_min), cfg.points_max)


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
    """Each centre moved to its nearest sample ((k, 2) float32; O(k * samples), samples are capped)."""
    d2 = ((samples[None, :, :] - centres[:, None, :]) ** 2).sum(-1)
    return samples[np.argmin(d2, axis=1)].astype(np.float32)


def isolated(points: np.ndarray, factor: float) -> np.ndarray:
    """Boolean (N,) flags of points far from the bulk of their set (the car-and-road stray point).

    Distance to the set's median point compared with the median of those distances (a robust spread). Sets of
    fewer than 3 points have no bulk to compare against, and nothing is flagged.
    """
    n = points.shape[0]
    if n < 3:
        return np.zeros(n, bool)
    centre = _median(points)
    d = np.sqrt(((points - centre) ** 2).sum(axis=1))
    spread = max(float(_median(d)), 1.0)
    return d > factor * spread


def _median(a: np.ndarray) -> np.ndarray:
    """Median along axis 0 of a small array (np.median's own overhead is tens of microseconds a call)."""
    s = np.sort(a, axis=0)
    n = s.shape[0]
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


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

    ``labels`` is the tracker's working map of small ids (uint16, 0 = background, ``ids`` among 1..max). One sort of
    its pixels groups them by id; each track gets all its pixels or, above ``max_samples``, that many drawn at random
    (with replacement: a repeated pixel does not move a k-means centroid much), k from :func:`point_count` (capped at
    ``caps``), k-means centroids of all tracks in one call, each snapped onto the nearest sampled pixel of its own
    track. Everything is done for all tracks together in (tracks x samples) arrays.
    """
    out: dict[int, np.ndarray] = {i: np.zeros((0, 2), np.float32) for i in ids}
    if not ids:
        return out
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")  # a radix sort for the uint16 index map: pixels grouped by id
    counts = np.bincount(flat, minlength=max(ids) + 1)
    starts = np.cumsum(counts) - counts
    who = np.array(ids)
    who = who[counts[who] > 0]
    if who.size == 0:
        return out
    n = counts[who]
    size = min(max_samples, int(n.max()))
    col = np.arange(size)
    drawn = rng.integers(0, n[:, None], (who.size, size)) if int(n.max()) > max_samples else None
    pick = col[None, :] if drawn is None else np.where((n <= max_samples)[:, None], col[None, :], drawn)
    valid = col[None, :] < np.minimum(n, size)[:, None]
    pix = order[starts[who][:, None] + np.minimum(pick, (n - 1)[:, None])]
    w = labels.shape[1]
    xs, ys = (pix % w).astype(np.float32), (pix // w).astype(np.float32)
    ks = [min(point_count(a, labels.size, cfg), caps, v) for a, v in zip(n.tolist(), valid.sum(1).tolist())]
    kmax = max(ks)
    cx = np.zeros((who.size, kmax), np.float32)
    cy = np.zeros((who.size, kmax), np.float32)
    multi = [j for j, k in enumerate(ks) if k > 1]
    for j in (j for j, k in enumerate(ks) if k == 1):
        cx[j, 0], cy[j, 0] = xs[j][valid[j]].mean(), ys[j][valid[j]].mean()
    if multi:
        got = kmeans.centroids_many([np.stack([xs[j][valid[j]], ys[j][valid[j]]], axis=1) for j in multi],
                                    [ks[j] for j in multi])
        for j, c in zip(multi, got):
            cx[j, : len(c)], cy[j, : len(c)] = c[:, 0], c[:, 1]
    # snap: each centre onto the nearest sampled pixel of its own track
    d2 = (xs[:, None, :] - cx[:, :, None]) ** 2 + (ys[:, None, :] - cy[:, :, None]) ** 2
    nearest = np.where(valid[:, None, :], d2, np.inf).argmin(2)  # (tracks, kmax)
    rows = np.arange(who.size)[:, None]
    pts = np.stack([xs[rows, nearest], ys[rows, nearest]], axis=2)
    for j, (i, k) in enumerate(zip(who.tolist(), ks)):
        out[i] = pts[j, :k]
    return out


@kernel
def carried_flags(dst, conf, counts, width, height, min_confidence, factor, good, keep, trust, kept) -> None:
    """What survives of every track's carried points, all tracks at once (``counts`` points each, in order):
    a point is ``good`` (trustworthy) when its confidence is at least ``min_confidence`` and it landed inside the
    frame (``width`` x ``height``), and kept when it is also not :func:`isolated` among its track's good points.
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
        if m >= 3:  # isolation needs a bulk to compare against (see isolated)
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
    """The median of a float32 vector as :func:`_median` computes it (the mean of the middle two in float32)."""
    a.sort()
    n = a.shape[0]
    return a[n // 2] if n % 2 else np.float32(0.5) * (a[n // 2 - 1] + a[n // 2])
