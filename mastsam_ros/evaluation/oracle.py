"""A segmenter that answers from the ground truth. EVALUATION ONLY.

``OracleSegmenter`` makes segmentation perfect so that an evaluation measures only what a tracker does with the masks
(how ids survive motion, occlusion and re-segmentation). It reads ground truth, so it lives here, outside the core,
and is never registered in the core's segmenter registry: the node and the offline runner cannot select it.

Regions of a frame form a partition of the image:
- each ground-truth object is one region, whole, even when it has several disconnected parts;
- the background is cut by a coarse grid (``grid`` = rows x columns cells); each cell's background pixels are one
  region, so that, like SAM, the oracle also returns several background masks. Cells with fewer than ``min_area``
  background pixels are merged into the neighbouring background region that touches them most (or dropped when none
  touches them).
- void pixels (DAVIS-2017 index 255) count as background.

``generate(region, seeds)`` returns every region, objects first, as ``Proposal(mask, score=1.0)``; given ``region``,
only those with at least ``min_seed_pixels`` pixels inside it; given ``seeds`` ((N, 2) x y pixels), only those holding
a seed (as SAM answers one mask per seed point). ``predict(prompts)`` returns, for each prompt, the region
holding most of its positive points (ties go to the region of the earliest of the tied points' first occurrences);
negative points are ignored; a prompt without a positive point inside the image gets an empty mask with score 0.

Which frame? ``set_image(rgb)`` selects the ground-truth frame:
- when the oracle was given the sequence's ``frames``, by the image content (an exact hash), so repeated or
  out-of-order ``set_image`` calls are safe;
- otherwise (or when the image is not one of ``frames``), by counting: the first call is frame 0 and each call with
  an image different from the previous one advances by one; the same image twice does not advance.
``set_frame(i)`` selects frame ``i`` explicitly and overrides both.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from ..core.errors import FrameError
from ..core.segmenters.base import Segmenter
from ..core.types import PointPrompt, Proposal

log = logging.getLogger(__name__)


def _digest(image: np.ndarray) -> bytes:
    a = np.ascontiguousarray(image)
    return hashlib.blake2b(a.tobytes(), digest_size=16).digest() + repr(a.shape).encode()


class OracleSegmenter(Segmenter):
    """Ground-truth segmenter for evaluation (see the module docstring). Not SAM, not selectable by the node."""

    name = "oracle"
    is_fallback = True

    def __init__(
        self,
        gt: np.ndarray | list[np.ndarray],
        frames: list[np.ndarray] | None = None,
        grid: tuple[int, int] = (2, 3),
        min_area: float = 0.002,
        min_seed_pixels: int = 64,
    ):
        """``gt``: T x H x W (or a list of H x W) integer label maps, 0 background, 1..K objects, 255 void.
        ``frames``: the sequence's RGB frames, to identify frames by content (optional). ``min_area``: fraction of
        the image below which a background cell is merged into a neighbour."""
        self.gt = [np.asarray(g) for g in gt]
        if not self.gt:
            raise ValueError("OracleSegmenter needs at least one ground-truth frame")
        self.shape = self.gt[0].shape
        self.grid = grid
        self.min_area = min_area
        self.min_seed_pixels = min_seed_pixels
        self._by_content = {_digest(f): i for i, f in enumerate(frames)} if frames is not None else {}
        self._last_digest: bytes | None = None
        self.frame = -1
        self._regions: np.ndarray | None = None  # H x W int32 region index, 0..R-1
        self._masks: list[np.ndarray] = []

    # -- frame selection -------------------------------------------------------------------------------------
    def set_frame(self, index: int) -> None:
        if not 0 <= index < len(self.gt):
            raise IndexError(f"oracle has {len(self.gt)} ground-truth frames, asked for frame {index}")
        if index != self.frame or self._regions is None:
            self.frame = index
            self._build(self.gt[index])

    def set_image(self, image: np.ndarray) -> None:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[:2] != self.shape:
            raise FrameError(f"oracle ground truth is {self.shape}, got an image of shape {image.shape}")
        d = _digest(image)
        if d in self._by_content:
            index = self._by_content[d]
        elif d == self._last_digest:
            index = max(self.frame, 0)
        else:
            index = self.frame + 1
            if index >= len(self.gt):
                log.warning("oracle: image %d beyond the %d ground-truth frames; reusing the last", index, len(self.gt))
                index = len(self.gt) - 1
        self._last_digest = d
        self.set_frame(index)

    # -- regions ---------------------------------------------------------------------------------------------
    def _build(self, gt: np.ndarray) -> None:
        H, W = gt.shape
        objects = [int(v) for v in np.unique(gt) if v not in (0, 255)]
        regions = np.full((H, W), -1, dtype=np.int32)
        for i, v in enumerate(objects):
            regions[gt == v] = i
        bg = regions < 0
        rows, cols = self.grid
        ys = np.minimum(np.arange(H) * rows // H, rows - 1)
        xs = np.minimum(np.arange(W) * cols // W, cols - 1)
        cell = ys[:, None] * cols + xs[None, :]
        n = len(objects)
        cell_ids = np.where(bg, cell + n, -1)
        min_px = self.min_area * H * W
        counts = np.bincount(cell_ids[bg], minlength=n + rows * cols)
        for c in range(n, n + rows * cols):
            if 0 < counts[c] < min_px:  # a sliver of background: give it to the background cell it touches most
                sl = cell_ids == c
                ring = _dilate4(sl) & ~sl & bg
                neigh = cell_ids[ring]
                neigh = neigh[(neigh != c) & (counts[np.maximum(neigh, 0)] >= min_px)]
                cell_ids[sl] = np.bincount(neigh).argmax() if len(neigh) else -1
        regions[bg] = cell_ids[bg]
        # renumber densely: objects first, then background cells in grid order; drop empty ones
        present = [r for r in range(n + rows * cols) if np.any(regions == r)]
        lut = np.full(n + rows * cols + 1, -1, dtype=np.int32)
        lut[np.array(present, dtype=np.int64)] = np.arange(len(present), dtype=np.int32)
        self._regions = lut[regions]  # -1 (a dropped sliver) stays -1 via lut[-1]
        self._masks = [self._regions == i for i in range(len(present))]
        self.n_objects = sum(1 for r in present if r < n)

    def _need_image(self) -> None:
        if self._regions is None:
            raise RuntimeError("OracleSegmenter: call set_image (or set_frame) before generate / predict")

    def generate(self, region: np.ndarray | None = None, seeds: np.ndarray | None = None) -> list[Proposal]:
        """Every region; given ``region``, those with enough pixels in it; given ``seeds``, those holding a seed."""
        self._need_image()
        keep = np.ones(len(self._masks), dtype=bool)
        if region is not None:
            region = np.asarray(region, dtype=bool)
            counts = np.bincount(self._regions[region & (self._regions >= 0)], minlength=len(self._masks))
            keep &= counts >= self.min_seed_pixels
        if seeds is not None:
            H, W = self.shape
            xy = np.rint(np.asarray(seeds, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
            xy = np.clip(xy, 0, [W - 1, H - 1])
            hit = self._regions[xy[:, 1], xy[:, 0]]
            seeded = np.zeros(len(self._masks), dtype=bool)
            seeded[hit[hit >= 0]] = True
            keep &= seeded
        return [Proposal(m.copy(), 1.0) for m, k in zip(self._masks, keep) if k]

    def predict(self, prompts: list[PointPrompt]) -> list[Proposal]:
        self._need_image()
        H, W = self.shape
        out = []
        for p in prompts:
            pts = np.asarray(p.points, dtype=np.float64).reshape(-1, 2)
            pos = pts[np.asarray(p.labels).reshape(-1) == 1]
            x = np.rint(pos[:, 0]).astype(np.int64)
            y = np.rint(pos[:, 1]).astype(np.int64)
            inside = (x >= 0) & (x < W) & (y >= 0) & (y < H)
            hit = self._regions[y[inside], x[inside]]
            hit = hit[hit >= 0]
            if len(hit) == 0:
                out.append(Proposal(np.zeros((H, W), dtype=bool), 0.0))
                continue
            counts = np.bincount(hit)
            best = np.flatnonzero(counts == counts.max())
            # tie: the region among the best that the earliest positive point falls in
            first = next(int(h) for h in hit if h in best)
            out.append(Proposal(self._masks[first].copy(), 1.0))
        return out


def _dilate4(m: np.ndarray) -> np.ndarray:
    d = m.copy()
    d[1:] |= m[:-1]
    d[:-1] |= m[1:]
    d[:, 1:] |= m[:, :-1]
    d[:, :-1] |= m[:, 1:]
    return d
