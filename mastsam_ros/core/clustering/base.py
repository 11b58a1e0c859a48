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

    def centroids_padded(
        self, xs: np.ndarray, ys: np.ndarray, n: np.ndarray, ks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """k-means of several point sets in one padded layout: row ``i`` of ``xs`` and ``ys`` ((t, s) float32) holds
        set ``i``'s ``n[i]`` x and y coordinates first, then padding; ``ks[i]`` centres wanted (1 <= ks[i] <= n[i]).
        Returns (t, max(ks)) float32 x and y of the centres, row ``i``'s first ``ks[i]`` filled (zeros after).
        This default goes through :meth:`centroids_many`; a backend that works on the layout itself overrides it."""
        kmax = int(np.max(ks))
        cx = np.zeros((len(ks), kmax), np.float32)
        cy = np.zeros((len(ks), kmax), np.float32)
        sets = [np.stack([xs[i, :m], ys[i, :m]], axis=1) for i, m in enumerate(np.asarray(n).tolist())]
        for i, c in enumerate(self.centroids_many(sets, np.asarray(ks).tolist())):
            cx[i, : len(c)], cy[i, : len(c)] = c[:, 0], c[:, 1]
        return cx, cy


CLUSTERING: Registry[KMeans] = Registry("clustering")
