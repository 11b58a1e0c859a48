"""Mask operations of the tracker: connected parts, union-find merging, painting a partition.

The tracker calls them on masks at its working resolution (a few ten thousand pixels), so they work on every pixel.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.cluster.hierarchy import DisjointSet


def main_parts(mask: np.ndarray, secondary_fraction: float, min_area: float = np.inf) -> np.ndarray:
    """Keep the largest connected part of ``mask`` and every other part at least ``secondary_fraction`` of it or at
    least ``min_area`` pixels (big enough to stand as an object of its own).

    Stray specks a prompt point dragged in are dropped; a genuinely split object (a rider and a bike) keeps its parts.
    """
    x, y, w, h = bbox(mask)  # label only the mask's box: most masks cover a small part of the frame
    if w == 0:
        return mask
    crop = mask[y : y + h, x : x + w]
    n, cc, stats, _ = cv2.connectedComponentsWithStats(crop.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, bool)
    keep[1:] = (areas >= secondary_fraction * areas.max()) | (areas >= min_area)
    out = np.zeros_like(mask, dtype=bool)
    out[y : y + h, x : x + w] = keep[cc]
    return out


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
        inter = _intersections(masks, masks)
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


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks of one shape (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def iou_matrix(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """IoU of every mask in ``a`` with every mask in ``b``, float32 (len(a), len(b))."""
    if not a or not b:
        return np.zeros((len(a), len(b)), np.float32)
    inter = _intersections(a, b)
    area_a = _intersections(a, a).diagonal()
    area_b = _intersections(b, b).diagonal()
    union = area_a[:, None] + area_b[None, :] - inter
    return (inter / np.maximum(union, 1.0)).astype(np.float32)


def _intersections(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Pixel counts of every pairwise intersection, as float64 (len(a), len(b)).

    Bit-packed AND and popcount: exact, no BLAS thread pool (whose spinning costs seconds on a loaded 2-core
    machine), and about a millisecond for a few dozen masks.
    """
    pa = np.stack([np.packbits(m) for m in a])
    pb = pa if b is a else np.stack([np.packbits(m) for m in b])
    return np.bitwise_count(pa[:, None, :] & pb[None, :, :]).sum(axis=2, dtype=np.int64).astype(np.float64)


def shift_mask(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate a mask by (dx, dy) pixels (nearest neighbour; pixels shifted out are lost)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = mask.shape
    return cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST).astype(bool)
