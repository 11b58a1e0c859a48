"""k-means on the CPU with scikit-learn (``clustering.backend: sklearn``; ``auto`` picks scipy on the CPU)."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans as _SkKMeans

from .base import KMeans


class SklearnKMeans(KMeans):
    name = "sklearn"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def settings(self) -> dict:
        return {"seed": self.seed}

    def centroids(self, coords: np.ndarray, k: int) -> np.ndarray:
        # One k-means++ start is enough here: centroids only need to spread over the mask, not be optimal,
        # and n_init=1 keeps the per-track cost at a few milliseconds.
        km = _SkKMeans(n_clusters=k, n_init=1, random_state=self.seed, max_iter=50)
        km.fit(coords.astype(np.float32, copy=False))
        return km.cluster_centers_.astype(np.float32)
