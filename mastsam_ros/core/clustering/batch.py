"""k-means of every track at once, one compiled kernel: the default backend.

The tracker samples at most ``clustering.max_samples`` coordinates per mask at its working resolution, so each
problem is tiny; what costs is the per-call set-up. SciPy's ``kmeans2`` spends ~0.85 ms per call whatever the size
(8 tracks: ~7 ms a frame), a GPU k-means spends its kernel launches, and the same work as NumPy array operations is
some fifty calls of a few microseconds each. Here all tracks are padded into one (tracks x samples) layout and one
kernel (:mod:`mastsam_ros.core.jit`) loops over them: k-means++ seeding, then Lloyd iterations.

The random numbers are drawn outside the kernel from the backend's own ``numpy`` Generator (seeded by
``clustering.seed``), a fixed count per call whatever the data: one uniform per (centre, track) of a
(``max(ks)``, tracks) array, so results are deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

from ..errors import MastSamError
from ..jit import kernel
from .base import KMeans


class BatchKMeans(KMeans):
    name = "batch"

    def __init__(self, seed: int = 0, iterations: int = 6):
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.iterations = iterations

    def settings(self) -> dict:
        return {"seed": self.seed}

    def centroids(self, coords: np.ndarray, k: int) -> np.ndarray:
        return self.centroids_many([coords], [k])[0]

    def centroids_many(self, coords: list[np.ndarray], ks: list[int]) -> list[np.ndarray]:
        if not coords:
            return []
        t, s = len(coords), max(len(c) for c in coords)
        xs = np.zeros((t, s), np.float32)
        ys = np.zeros((t, s), np.float32)
        for i, c in enumerate(coords):
            xs[i, : len(c)] = c[:, 0]
            ys[i, : len(c)] = c[:, 1]
        n = np.array([len(c) for c in coords], np.int64)
        cx, cy = self.centroids_padded(xs, ys, n, np.asarray(ks, np.int64))
        return [np.stack([cx[i, :k], cy[i, :k]], axis=1) for i, k in enumerate(ks)]

    def centroids_padded(
        self, xs: np.ndarray, ys: np.ndarray, n: np.ndarray, ks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(ks) == 0:
            return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
        if len(n) != len(ks) or xs.shape != ys.shape or xs.ndim != 2 or xs.shape[0] != len(ks):
            raise MastSamError(f"k-means: {len(ks)} sets, {len(n)} sizes, rows of {xs.shape} and {ys.shape}")
        u = self._rng.random((int(ks.max()), len(ks)))  # one uniform per (centre, track): the seeding's draws
        cx, cy, bad = _kmeans(
            np.ascontiguousarray(xs, np.float32), np.ascontiguousarray(ys, np.float32),
            np.ascontiguousarray(n, np.int64), np.ascontiguousarray(ks, np.int64), u, self.iterations,
        )
        if bad >= 0:
            raise MastSamError(
                f"k-means needs 1 <= k <= points per set <= {xs.shape[1]}: set {bad} has {n[bad]} points, k {ks[bad]}"
            )
        return cx, cy


@kernel
def _kmeans(xs, ys, n, ks, u, iterations):
    """k-means of each row: row ``i`` of ``xs``, ``ys`` ((t, s) float32) holds ``n[i]`` points, ``ks[i]`` centres
    (1 <= ks[i] <= n[i]). ``u`` ((max(ks), t) float64 in [0, 1)) are the seeding's uniforms.

    k-means++ seeding: the first centre is point ``int(u[0, i] * n[i])``; centre ``j`` is the first point whose
    running sum of squared distances to the nearest centre so far (float32, in point order) reaches ``u[j, i]``
    times the total (the first centre again when the total is 0: all points on it). Then at most ``iterations``
    Lloyd iterations: each point to its nearest centre (squared distances in float64, the lowest index on a tie),
    each centre to the mean of its points (float64 sums in point order), a centre that loses all its points stays
    put; a row stops early when no point changed centre (an unchanged assignment is a fixed point, so stopping
    all rows together would give the same centres). Returns (t, max(ks)) float32 x and y of the centres, row
    ``i``'s first ``ks[i]`` filled, and the first row whose ``ks``, ``n`` do not fit (nothing computed then; -1
    when all fit).
    """
    t, s = xs.shape
    kmax = u.shape[0]
    out_x = np.zeros((t, kmax), np.float32)
    out_y = np.zeros((t, kmax), np.float32)
    d2 = np.empty(s, np.float32)
    assign = np.zeros(s, np.int64)
    best = np.zeros(s, np.int64)
    best_d = np.empty(s, np.float64)
    cx = np.empty(kmax, np.float64)
    cy = np.empty(kmax, np.float64)
    sx = np.empty(kmax, np.float64)
    sy = np.empty(kmax, np.float64)
    count = np.empty(kmax, np.int64)
    for i in range(t):
        if not 1 <= ks[i] <= n[i] <= s or ks[i] > kmax:
            return out_x, out_y, i
    for i in range(t):
        m, k = n[i], ks[i]
        first = min(int(u[0, i] * m), m - 1)
        cx[0], cy[0] = xs[i, first], ys[i, first]
        for p in range(m):
            dx, dy = xs[i, p] - xs[i, first], ys[i, p] - ys[i, first]
            d2[p] = dx * dx + dy * dy
        for j in range(1, k):
            total = np.float32(0.0)
            for p in range(m):
                total += d2[p]
            pick = first
            if total > 0:
                threshold = u[j, i] * np.float64(total)
                run = np.float32(0.0)
                pick = m - 1
                for p in range(m):
                    run += d2[p]
                    if np.float64(run) >= threshold:
                        pick = p
                        break
            px, py = xs[i, pick], ys[i, pick]
            cx[j], cy[j] = px, py
            for p in range(m):
                dx, dy = xs[i, p] - px, ys[i, p] - py
                d2[p] = min(d2[p], dx * dx + dy * dy)
        for it in range(iterations):
            # nearest centre of each point, centre by centre (a loop over the points the compiler vectorises)
            for p in range(m):
                dx, dy = xs[i, p] - cx[0], ys[i, p] - cy[0]
                best_d[p] = dx * dx + dy * dy
                best[p] = 0
            for j in range(1, k):
                for p in range(m):
                    dx, dy = xs[i, p] - cx[j], ys[i, p] - cy[j]
                    d = dx * dx + dy * dy
                    closer = d < best_d[p]
                    best_d[p] = d if closer else best_d[p]
                    best[p] = j if closer else best[p]
            changed = it == 0
            for p in range(m):
                changed |= best[p] != assign[p]
                assign[p] = best[p]
            if not changed:
                break
            sx[:k] = 0.0
            sy[:k] = 0.0
            count[:k] = 0
            for p in range(m):
                j = assign[p]
                sx[j] += xs[i, p]
                sy[j] += ys[i, p]
                count[j] += 1
            for j in range(k):
                if count[j] > 0:
                    cx[j] = sx[j] / count[j]
                    cy[j] = sy[j] / count[j]
        for j in range(k):
            out_x[i, j] = cx[j]
            out_y[i, j] = cy[j]
    return out_x, out_y, -1
