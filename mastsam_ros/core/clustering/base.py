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


CLUSTERING: Registry[KMeans] = Registry("clustering")
