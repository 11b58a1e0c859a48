"""k-means backends, looked up by ``clustering.backend`` (``auto``: cuML when it imports with CUDA, else SciPy)."""

from __future__ import annotations

import logging

from ..config import ClusteringSection
from ..errors import BackendUnavailable
from .base import CLUSTERING, KMeans

log = logging.getLogger(__name__)


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


@CLUSTERING.register("auto")
def _auto(cfg: ClusteringSection) -> KMeans:
    try:
        return _cuml(cfg)
    except BackendUnavailable as e:
        log.info("clustering: using scipy (%s)", e)
        return _scipy(cfg)


def build_clustering(cfg: ClusteringSection) -> KMeans:
    return CLUSTERING.build(cfg.backend, cfg)


__all__ = ["CLUSTERING", "KMeans", "build_clustering"]
