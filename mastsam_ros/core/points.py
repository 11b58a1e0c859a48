"""Mask points: the few pixels per mask that are carried to the next frame and prompt the segmenter there."""

from __future__ import annotations

import numpy as np

from .clustering.base import KMeans
from .config import TrackerSection


def point_count(area: int, image_area: int, cfg: TrackerSection) -> int:
    """How many points a mask of ``area`` pixels gets: one per ``area_per_point`` of the image, clamped."""
    k = int(round(area / (cfg.area_per_point * image_area)))
    return int(np.clip(k, cfg.points_min, cfg.points_max))


def mask_points(
    mask: np.ndarray, kmeans: KMeans, cfg: TrackerSection, rng: np.random.Generator, max_samples: int = 4000
) -> np.ndarray:
    """k-means centroids of the mask's pixel coordinates, each snapped onto the mask.

    ``mask`` is H x W bool; returns (k, 2) float32 x y pixels (k from :func:`point_count`), empty if the mask is.
    A centroid of a non-convex mask can fall outside it (a ring's centre), so each one moves to the nearest mask
    pixel of its own cluster sample: a prompt point off the object would segment the wrong thing.
    """
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return np.zeros((0, 2), np.float32)
    coords = np.stack([xs, ys], axis=1).astype(np.float32)
    if coords.shape[0] > max_samples:
        coords = coords[rng.choice(coords.shape[0], max_samples, replace=False)]
    k = min(point_count(xs.size, mask.size, cfg), coords.shape[0])
    if k == 1:
        centres = coords.mean(axis=0, keepdims=True)
    else:
        centres = kmeans.centroids(coords, k)
    # Snap: nearest sampled mask pixel to each centroid (O(k * samples), samples are capped).
    d2 = ((coords[None, :, :] - centres[:, None, :]) ** 2).sum(-1)
    return coords[np.argmin(d2, axis=1)].astype(np.float32)


def isolated(points: np.ndarray, factor: float) -> np.ndarray:
    """Boolean (N,) flags of points far from the bulk of their set (the car-and-road stray point).

    Distance to the set's median point compared with the median of those distances (a robust spread). Sets of
    fewer than 3 points have no bulk to compare against, and nothing is flagged.
    """
    n = points.shape[0]
    if n < 3:
        return np.zeros(n, bool)
    centre = np.median(points, axis=0)
    d = np.linalg.norm(points - centre, axis=1)
    spread = max(float(np.median(d)), 1.0)
    return d > factor * spread
