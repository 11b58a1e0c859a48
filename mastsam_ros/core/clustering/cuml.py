"""k-means on the GPU with RAPIDS cuML, chosen by ``clustering.backend: cuml`` (or ``auto`` when it can run).

Same contract as :class:`~mastsam_ros.core.clustering.sklearn.SklearnKMeans`: ``k`` raw centroids of the given
coordinates, same initialisation budget (k-means++, one start, 50 iterations, ``seed``). Snapping the centroids onto
the mask is the caller's job (``core/points.py``), so both backends feed it the same kind of answer.
"""

from __future__ import annotations

import numpy as np

from ..errors import BackendUnavailable, MastSamError
from .base import KMeans

INSTALL_HINT = (
    "install RAPIDS cuML matching your CUDA version (e.g. pip install --extra-index-url=https://pypi.nvidia.com "
    "cuml-cu12) or use clustering.backend: sklearn / auto"
)


def _cuda_device_count() -> int:
    """CUDA devices visible to cuML's array library (CuPy); 0 when the driver or runtime is unusable."""
    try:
        import cupy  # noqa: PLC0415 - cuML depends on it

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # ImportError, CUDARuntimeError (no driver / no device) ...
        return 0


class CumlKMeans(KMeans):
    name = "cuml"

    def __init__(self, seed: int = 0):
        try:
            from cuml.cluster import KMeans as _CuKMeans  # noqa: PLC0415 - heavy, optional
        except Exception as e:  # ImportError, or cuML failing to load its CUDA libraries
            raise BackendUnavailable(f"clustering backend cuml: cuml does not import ({e}); {INSTALL_HINT}") from e
        if _cuda_device_count() < 1:
            raise BackendUnavailable("clustering backend cuml: no CUDA device is visible; use sklearn or auto")
        self._cls = _CuKMeans
        self.seed = seed

    def settings(self) -> dict:
        return {"seed": self.seed}

    def centroids(self, coords: np.ndarray, k: int) -> np.ndarray:
        coords = np.asarray(coords, dtype=np.float32)
        if coords.ndim != 2 or coords.shape[1] != 2 or not 1 <= k <= coords.shape[0]:
            raise MastSamError(f"k-means needs (N, 2) coordinates with N >= k >= 1, got {coords.shape} and k={k}")
        km = self._cls(
            n_clusters=k, init="k-means++", n_init=1, max_iter=50, random_state=self.seed, output_type="numpy"
        )
        km.fit(coords)
        return np.asarray(km.cluster_centers_, dtype=np.float32).reshape(k, 2)
