"""A weight-free segmenter from OpenCV and scikit-image. A documented FALLBACK, not SAM.

It lets the whole pipeline run on any machine without checkpoints (tests, CI, a laptop demo), and its automatic
masks change from frame to frame much as SAM's do, which is what the tracker exists to smooth over. Its masks follow
colour edges only; it has no notion of objects.

- Automatic mode: Felzenszwalb-Huttenlocher graph segmentation of the smoothed frame (scikit-image).
- Point prompts: one marker-controlled watershed on the colour gradient (scikit-image) for all prompts of a call:
  each prompt's positive points are one marker; background markers are a regular grid kept away from every prompt's
  points, plus the prompts' negative points. Each prompt's mask is the basin its marker floods.
All work happens at reduced resolution (``segmenter.max_side``); masks are returned at full resolution.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import felzenszwalb, watershed

from ..config import SegmenterSection
from ..types import PointPrompt, Proposal
from .base import Segmenter


class ClassicalSegmenter(Segmenter):
    name = "classical"
    is_fallback = True

    def __init__(self, cfg: SegmenterSection):
        self.max_side = cfg.max_side
        self.grid = 12  # background seeds per image side for prompted watershed
        self._shape: tuple[int, int] | None = None

    def settings(self) -> dict:
        return {"max_side": self.max_side}

    # --- per frame ----------------------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        self._shape = (h, w)
        self._scale = min(1.0, self.max_side / max(h, w))
        small = image
        if self._scale < 1.0:
            small = cv2.resize(image, (round(w * self._scale), round(h * self._scale)), interpolation=cv2.INTER_AREA)
        self._small = cv2.GaussianBlur(small, (0, 0), 1.0)
        lab = cv2.cvtColor(self._small, cv2.COLOR_RGB2LAB).astype(np.float32)
        gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)
        self._grad = np.sqrt(gx**2 + gy**2).max(axis=2)
        self._segments: np.ndarray | None = None  # automatic segmentation, computed on first generate()

    def _full(self, small_mask: np.ndarray) -> np.ndarray:
        h, w = self._shape
        return cv2.resize(small_mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)

    # --- automatic ----------------------------------------------------------------------------------------------
    def generate(self, region: np.ndarray | None = None, seeds: np.ndarray | None = None) -> list[Proposal]:
        """Graph segments of the frame: all of them, those touching ``region``, or those holding a seed."""
        sh, sw = self._grad.shape
        if self._segments is None:
            self._segments = felzenszwalb(self._small, scale=400, sigma=0.5, min_size=max(16, sh * sw // 600))
        seg = self._segments
        keep = None
        if seeds is not None:
            xy = np.clip(np.round(np.asarray(seeds, np.float32) * self._scale).astype(int), 0, [sw - 1, sh - 1])
            keep = np.zeros(seg.max() + 1, bool)
            keep[seg[xy[:, 1], xy[:, 0]]] = True
        if region is not None:
            small_region = cv2.resize(region.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST).astype(bool)
            inside = np.bincount(seg[small_region].ravel(), minlength=seg.max() + 1) > 0
            keep = inside if keep is None else keep & inside
        out = []
        areas = np.bincount(seg.ravel())
        for label in np.flatnonzero(areas):
            if keep is not None and not keep[label]:
                continue
            m = seg == label
            out.append(Proposal(mask=self._full(m), score=self._edge_score(m), stability=1.0))
        return out

    def _edge_score(self, m: np.ndarray) -> float:
        """Contrast of the region's outline: mean gradient on its boundary against inside, mapped to [0, 1]."""
        x, y, w, h = cv2.boundingRect(m.astype(np.uint8))
        m, grad = m[y : y + h, x : x + w], self._grad[y : y + h, x : x + w]
        edge = m & ~ndi.binary_erosion(m, border_value=0)
        inner = m & ~edge
        b = float(grad[edge].mean()) if edge.any() else 0.0
        i = float(grad[inner].mean()) if inner.any() else 0.0
        return b / (b + i + 1e-6)

    # --- prompted -----------------------------------------------------------------------------------------------
    def predict(self, prompts: list[PointPrompt]) -> list[Proposal]:
        if not prompts:
            return []
        sh, sw = self._grad.shape
        s = self._scale
        markers = np.zeros((sh, sw), np.int32)
        claimed = np.zeros((sh, sw), np.uint8)  # where background seeds may not go
        negatives = []
        for i, p in enumerate(prompts):
            pos = np.round(p.points[p.labels == 1] * s).astype(int)
            pos[:, 0] = np.clip(pos[:, 0], 0, sw - 1)
            pos[:, 1] = np.clip(pos[:, 1], 0, sh - 1)
            negatives.append(p.points[p.labels == 0] * s)
            if pos.shape[0] == 0:
                continue
            markers[pos[:, 1], pos[:, 0]] = i + 1
            # Keep background seeds off the object's likely extent: the hull of its points, grown by their spacing.
            spread = _mean_spacing(pos) if pos.shape[0] > 1 else max(sh, sw) / self.grid
            hull = cv2.convexHull(pos.astype(np.int32).reshape(-1, 1, 2))
            cv2.fillConvexPoly(claimed, hull, 1)
            cv2.polylines(claimed, [hull], True, 1, thickness=max(1, int(spread)))
            for x, y in pos:
                cv2.circle(claimed, (int(x), int(y)), max(1, int(spread * 0.75)), 1, -1)
        bg = len(prompts) + 1
        step = max(sh, sw) / self.grid
        gy, gx = np.mgrid[step / 2 : sh : step, step / 2 : sw : step]
        gx, gy = gx.astype(int).ravel(), gy.astype(int).ravel()
        free = (claimed[gy, gx] == 0) & (markers[gy, gx] == 0)
        markers[gy[free], gx[free]] = bg
        for neg in negatives:
            n = np.round(neg).astype(int)
            ok = (n[:, 0] >= 0) & (n[:, 0] < sw) & (n[:, 1] >= 0) & (n[:, 1] < sh)
            n = n[ok]
            sel = markers[n[:, 1], n[:, 0]] == 0
            markers[n[sel, 1], n[sel, 0]] = bg
        basins = watershed(self._grad, markers)
        out = []
        for i in range(len(prompts)):
            m = basins == i + 1
            out.append(Proposal(mask=self._full(m), score=self._edge_score(m) if m.any() else 0.0, stability=1.0))
        return out


def _mean_spacing(pts: np.ndarray) -> float:
    d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1).astype(np.float32))
    np.fill_diagonal(d, np.inf)
    return float(d.min(axis=1).mean())
