"""cuML k-means backend: the error path always runs; the GPU comparison runs where cuML and CUDA exist."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mastsam_ros.core.clustering import build_clustering
from mastsam_ros.core.config import ClusteringSection
from mastsam_ros.core.errors import BackendUnavailable


def _cuml_usable() -> str | None:
    """None when cuML imports and sees a CUDA device, else the reason to skip."""
    try:
        from mastsam_ros.core.clustering.cuml import CumlKMeans

        CumlKMeans()
    except BackendUnavailable as e:
        return str(e)
    return None


def test_missing_cuml_raises_backend_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuml", None)  # makes `import cuml` fail even where it is installed
    monkeypatch.setitem(sys.modules, "cuml.cluster", None)
    with pytest.raises(BackendUnavailable, match="cuml"):
        build_clustering(ClusteringSection(backend="cuml"))


def test_auto_falls_back_to_a_cpu_backend_without_cuml(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuml", None)
    monkeypatch.setitem(sys.modules, "cuml.cluster", None)
    km = build_clustering(ClusteringSection(backend="auto"))
    assert km.name != "cuml"
    coords = np.array([[0, 0], [1, 0], [10, 10], [11, 10]], np.float32)
    assert km.centroids(coords, 2).shape == (2, 2)


@pytest.mark.skipif(_cuml_usable() is not None, reason=f"cuML unusable here: {_cuml_usable()}")
def test_cuml_matches_sklearn_contract():
    rng = np.random.default_rng(0)
    centres = np.array([[40, 40], [200, 60], [120, 180]], np.float32)
    coords = np.concatenate([c + rng.normal(0, 6, (300, 2)) for c in centres]).astype(np.float32)
    gpu = build_clustering(ClusteringSection(backend="cuml")).centroids(coords, 3)
    cpu = build_clustering(ClusteringSection(backend="sklearn")).centroids(coords, 3)
    assert gpu.shape == (3, 2) and gpu.dtype == np.float32
    # Same clusters found, whatever the order: each GPU centroid is within 2 px of a CPU one.
    d = np.linalg.norm(gpu[:, None] - cpu[None], axis=-1)
    assert np.all(d.min(axis=1) < 2.0)


def test_cuml_without_cuda_device_raises(monkeypatch):
    # cuML importable but no usable CUDA runtime (CuPy missing or no device): still BackendUnavailable, so the
    # auto backend falls back instead of failing at the first fit.
    import types

    fake = types.ModuleType("cuml")
    fake_cluster = types.ModuleType("cuml.cluster")
    fake_cluster.KMeans = object
    fake.cluster = fake_cluster
    monkeypatch.setitem(sys.modules, "cuml", fake)
    monkeypatch.setitem(sys.modules, "cuml.cluster", fake_cluster)
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        build_clustering(ClusteringSection(backend="cuml"))
