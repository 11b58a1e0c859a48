"""Mask operations of the tracker: connected parts, union-find merging, painting a partition."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.cluster.hierarchy import DisjointSet


def main_parts(mask: np.ndarray, secondary_fraction: float, min_area: float = np.inf) -> np.ndarray:
    """Keep the largest connected part of ``mask`` and every other part at least ``secondary_fraction`` of it or at
    least ``min_area`` pixels (big enough to stand as an object of its own).

    Stray specks a prompt point dragged in are dropped; a genuinely split object (a rider and a bike) keeps its parts.
    """
    n, cc, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, bool)
    keep[1:] = (areas >= secondary_fraction * areas.max()) | (areas >= min_area)
    return keep[cc]


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the mask's pixels; zeros for an empty mask."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return int(x), int(y), int(w), int(h)


def merge_groups(masks: list[np.ndarray], overlap: float) -> list[list[int]]:
    """Union-find over masks: i and j join when their intersection exceeds ``overlap`` x the smaller area.

    Returns the groups as lists of indices, each sorted ascending, groups ordered by their first index, so the
    caller keeps the first (oldest) member's identity.
    """
    n = len(masks)
    ds = DisjointSet(range(n))
    if n > 1:
        # Pairwise intersections from one matrix product over downsampled masks: n is at most a few dozen.
        small = np.stack([m[::4, ::4].ravel() for m in masks]).astype(np.float32)
        inter = small @ small.T
        area = np.diag(inter)
        smaller = np.minimum(area[:, None], area[None, :])
        hit = np.triu(inter > overlap * np.maximum(smaller, 1.0), k=1)
        for i, j in zip(*np.nonzero(hit)):
            ds.merge(int(i), int(j))
    groups = [sorted(g) for g in ds.subsets()]
    return sorted(groups, key=lambda g: g[0])


def paint(shape: tuple[int, int], masks: list[np.ndarray], ids: list[int]) -> np.ndarray:
    """A label map (H x W uint32, 0 = background) where larger masks are painted first so smaller ones stay visible."""
    labels = np.zeros(shape, np.uint32)
    order = np.argsort([-int(m.sum()) for m in masks], kind="stable")
    for i in order:
        labels[masks[i]] = ids[i]
    return labels


def iou_matrix(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """IoU of every mask in ``a`` with every mask in ``b`` (downsampled 4x, enough for association)."""
    if not a or not b:
        return np.zeros((len(a), len(b)), np.float32)
    fa = np.stack([m[::4, ::4].ravel() for m in a]).astype(np.float32)
    fb = np.stack([m[::4, ::4].ravel() for m in b]).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1.0)


def shift_mask(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate a mask by (dx, dy) pixels (nearest neighbour; pixels shifted out are lost)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = mask.shape
    return cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST).astype(bool)
