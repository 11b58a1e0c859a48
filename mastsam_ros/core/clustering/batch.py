"""k-means of every track at once, in NumPy: the default backend.

The tracker samples at most ``clustering.max_samples`` coordinates per mask at its working resolution, so each
problem is tiny; what costs is the per-call set-up. SciPy's ``kmeans2`` spends ~0.85 ms per call whatever the size
(8 tracks: ~7 ms a frame), a GPU k-means spends its kernel launches. Here all tracks are padded into one
(tracks x samples) array and run together: k-means++ seeding, then Lloyd iterations, each a handful of array ops.
"""

from __future__ import annotations

import numpy as np

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
        t, s, kmax = len(coords), max(len(c) for c in coords), max(ks)
        x = np.zeros((t, s, 2), np.float32)
        valid = np.zeros((t, s), bool)
        for i, c in enumerate(coords):
            x[i, : len(c)] = c
            valid[i, : len(c)] = True
        k = np.asarray(ks)
        rows = np.arange(t)
        xs, ys = x[..., 0], x[..., 1]  # (t, s) each: two planes, not a trailing axis of 2 (slow reductions)
        cx, cy = self._seed(xs, ys, valid, kmax)
        # Lloyd iterations, sums by bincount over (track, centre) bins; a centre that loses its points stays put.
        absent = np.where(np.arange(kmax)[None, :] < k[:, None], 0.0, np.inf)[:, None, :]  # (t, 1, kmax)
        owner = np.repeat(rows[:, None] * kmax, s, axis=1)[valid]
        px, py = xs[valid], ys[valid]
        assign = None
        for _ in range(self.iterations):
            dist = (xs[:, :, None] - cx[:, None, :]) ** 2 + (ys[:, :, None] - cy[:, None, :]) ** 2 + absent
            new = dist.argmin(2)[valid]
            if assign is not None and np.array_equal(new, assign):
                break
            assign = new
            bins = owner + assign
            count = np.bincount(bins, minlength=t * kmax).reshape(t, kmax)
            sx = np.bincount(bins, weights=px, minlength=t * kmax).reshape(t, kmax)
            sy = np.bincount(bins, weights=py, minlength=t * kmax).reshape(t, kmax)
            has = count > 0
            cx = np.where(has, sx / np.maximum(count, 1), cx)
            cy = np.where(has, sy / np.maximum(count, 1), cy)
        return [np.stack([cx[i, : k[i]], cy[i, : k[i]]], axis=1).astype(np.float32) for i in range(t)]

    def _seed(self, xs, ys, valid, kmax):
        """k-means++ seeding: the first centre uniformly among a set's points, each next one with probability
        proportional to the squared distance to the nearest centre so far. Returns (t, kmax) x and y."""
        t = xs.shape[0]
        rows = np.arange(t)
        n = valid.sum(1)
        first = np.minimum((self._rng.random(t) * n).astype(int), n - 1)
        cx = np.repeat(xs[rows, first][:, None], kmax, axis=1)
        cy = np.repeat(ys[rows, first][:, None], kmax, axis=1)
        d2 = np.where(valid, (xs - cx[:, :1]) ** 2 + (ys - cy[:, :1]) ** 2, 0.0)
        for j in range(1, kmax):
            cum = np.cumsum(d2, axis=1)
            total = cum[:, -1]
            pick = np.minimum((cum < (self._rng.random(t) * total)[:, None]).sum(1), n - 1)
            pick = np.where(total > 0, pick, first)
            cx[:, j], cy[:, j] = xs[rows, pick], ys[rows, pick]
            d2 = np.minimum(d2, np.where(valid, (xs - cx[:, j : j + 1]) ** 2 + (ys - cy[:, j : j + 1]) ** 2, 0.0))
        return cx, cy
