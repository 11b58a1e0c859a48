"""The clustering interface: k-means centroids of a mask's pixel coordinates."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..registry import Registry


class KMeans(ABC):
    name: str = "?"

    def settings(self) -> dict:
        """The config fields (by name in their section) this backend copied when it was built, read back from the
        built object. Such fields are marked ``rebuild`` or ``read_only`` in the config; diagnostics show these."""
        return {}

    @abstractmethod
    def centroids(self, coords: np.ndarray, k: int) -> np.ndarray:
        """k-means of ``coords`` ((N, 2) float32 x y, N >= k); returns (k, 2) float32 centroids."""

    def centroids_many(self, coords: list[np.ndarray], ks: list[int]) -> list[np.ndarray]:
        """k-means of several point sets (one per track); backends that can batch them override this."""
        return [self.centroids(c, k) for c, k in zip(coords, ks)]


CLUSTERING: Registry[KMeans] = Registry("clustering")
