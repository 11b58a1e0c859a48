"""Mask operations of the tracker: connected parts, union-find merging, painting a partition.

The tracker calls them on masks at its working resolution (a few ten thousand pixels), so they work on every pixel.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.cluster.hierarchy import DisjointSet


def main_parts(
    mask: np.ndarray, secondary_fraction: float, min_area: float = np.inf, gap: int = 0, box=None
) -> np.ndarray:
    """Keep the largest connected part of ``mask`` and every other part at least ``secondary_fraction`` of it or at
    least ``min_area`` pixels (big enough to stand as an object of its own).

    Stray specks a prompt point dragged in are dropped; a genuinely split object (a rider and a bike) keeps its parts.
    Pieces at most ``gap`` pixels apart count as one part: a thin structure broken by downsampling (a kite's lines,
    a fence) stays with its object. ``box``: (row slice, column slice) known to hold all of the mask.
    """
    if box is None:
        x, y, w, h = bbox(mask)  # label only the mask's box: most masks cover a small part of the frame
        if w == 0:
            return mask
    else:
        y, x = box[0].start, box[1].start
        h, w = box[0].stop - y, box[1].stop - x
    on = mask[y : y + h, x : x + w]
    crop = on.astype(np.uint8)
    # bridge gaps of up to ``gap`` pixels; only the mask's own pixels are kept in the end
    joined = cv2.dilate(crop, np.ones((gap + 1, gap + 1), np.uint8)) if gap else crop
    n, cc = cv2.connectedComponents(joined, connectivity=8)
    if n <= 2:
        return mask
    areas = np.bincount(cc[on], minlength=n)[1:]  # the mask's own pixels in each part
    keep = np.zeros(n, bool)
    keep[1:] = (areas >= secondary_fraction * areas.max()) | (areas >= min_area)
    out = np.zeros_like(mask, dtype=bool)
    out[y : y + h, x : x + w] = keep[cc] & on
    return out


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the mask's pixels; zeros for an empty mask."""
    m = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
    x, y, w, h = cv2.boundingRect(m)
    return int(x), int(y), int(w), int(h)


def merge_groups(masks: list[np.ndarray], overlap: float) -> list[list[int]]:
    """Union-find over masks: i and j join when their intersection exceeds ``overlap`` x the smaller area.

    Returns the groups as lists of indices, each sorted ascending, groups ordered by their first index, so the
    caller keeps the first (oldest) member's identity.
    """
    n = len(masks)
    ds = DisjointSet(range(n))
    if n > 1:
        inter = _self_intersections(masks)
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
    area_a = np.array([np.count_nonzero(m) for m in a], np.float64)
    area_b = np.array([np.count_nonzero(m) for m in b], np.float64)
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


def _self_intersections(masks: list[np.ndarray]) -> np.ndarray:
    """:func:`_intersections` of a list with itself, counted only on the pixels two or more masks claim (tracks'
    masks mostly tile the image, so those are few); the diagonal holds the areas."""
    areas = np.array([np.count_nonzero(m) for m in masks], np.float64)
    claims = np.zeros(masks[0].size, np.uint16)
    for m in masks:
        claims += m.ravel()
    shared = np.flatnonzero(claims >= 2)
    if shared.size == 0:
        return np.diag(areas)
    sub = [m.ravel()[shared] for m in masks]
    inter = _intersections(sub, sub)
    np.fill_diagonal(inter, areas)
    return inter


def shift_mask(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate a mask by (dx, dy) pixels (nearest neighbour; pixels shifted out are lost)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = mask.shape
    return cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST).astype(bool)
