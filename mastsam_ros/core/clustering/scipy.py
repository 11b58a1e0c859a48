"""k-means on the CPU with SciPy's ``kmeans2`` (k-means++ start): the default CPU backend.

Per call it costs a few milliseconds on a few thousand points, where scikit-learn's ``KMeans`` spends 100 ms or more
in set-up (thread pools, validation) on the same input; the tracker calls it once per track per frame.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.vq import kmeans2

from .base import KMeans


class ScipyKMeans(KMeans):
    name = "scipy"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def settings(self) -> dict:
        return {"seed": self.seed}

    def centroids(self, coords: np.ndarray, k: int) -> np.ndarray:
        centres, _ = kmeans2(coords.astype(np.float64), k, iter=10, minit="++", seed=self._rng)
        return centres.astype(np.float32)
