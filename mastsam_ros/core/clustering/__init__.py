"""k-means backends, looked up by ``clustering.backend``.

``auto`` is ``batch`` (all tracks at once in one compiled kernel, ``batch.py``): with at most
``clustering.max_samples`` points per track the work is tiny and one call per track (SciPy) or per-call kernel
launches (cuML) cost more than the work.
``cuml``, ``scipy`` and ``sklearn`` stay selectable by name.
"""

from __future__ import annotations

from ..config import ClusteringSection
from .base import CLUSTERING, KMeans

@CLUSTERING.register("sklearn")
def _sklearn(cfg: ClusteringSection) -> KMeans:
    from .sklearn import SklearnKMeans

    return SklearnKMeans(seed=cfg.seed)


@CLUSTERING.register("scipy")
def _scipy(cfg: ClusteringSection) -> KMeans:
    from .scipy import ScipyKMeans

    return ScipyKMeans(seed=cfg.seed)


@CLUSTERING.register("cuml")
def _cuml(cfg: ClusteringSection) -> KMeans:
    from .cuml import CumlKMeans

    return CumlKMeans(seed=cfg.seed)


@CLUSTERING.register("batch")
@CLUSTERING.register("auto")
def _batch(cfg: ClusteringSection) -> KMeans:
    from .batch import BatchKMeans

    return BatchKMeans(seed=cfg.seed)


def build_clustering(cfg: ClusteringSection) -> KMeans:
    return CLUSTERING.build(cfg.backend, cfg)


__all__ = ["CLUSTERING", "KMeans", "build_clustering"]
