"""A weight-free segmenter from OpenCV and scikit-image. A documented FALLBACK, not SAM.

It lets the whole pipeline run on any machine without checkpoints (tests, CI, a laptop demo), and its automatic
masks change from frame to frame much as SAM's do, which is what the tracker exists to smooth over. Its masks follow
colour edges only; it has no notion of objects.

- Automatic mode: hierarchical merging of superpixels. A Felzenszwalb-Huttenlocher graph segmentation
  (scikit-image) is the bottom level; its region adjacency graph is merged greedily, always across the weakest
  boundary (mean colour gradient along the shared boundary plus the two regions' mean colour difference, recomputed
  after each merge; regions under ``min_area`` merge first), until the weakest boundary reaches ``level`` and at
  most ``max_regions`` regions of at least ``min_area`` are left (a busy frame merges past ``level``). The regions
  then alive are the masks (a partition). A mask's score is its persistence: how much stronger its weakest
  outer boundary is than the strongest boundary merged inside it (or, for an unmerged superpixel, its inner
  texture), in [0, 1]; regions outlined by strong edges and uniform inside score high. Best first, at most
  ``max_proposals``. (Returning every region of the hierarchy, nested like SAM's automatic masks, was tried and
  measured worse with the tracker: docs/RESULTS.md.)
- Point prompts: one marker-controlled watershed on the colour gradient (scikit-image) for all prompts of a call:
  each prompt's positive points are one marker; background markers are a regular grid kept away from every prompt's
  points, plus the prompts' negative points. Each prompt's mask is the basin its marker floods.
All work happens at reduced resolution (``segmenter.max_side``); masks are returned at full resolution.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import felzenszwalb, watershed

from ..config import SegmenterSection
from ..errors import MastSamError
from ..types import PointPrompt, Proposal
from .base import Segmenter


@dataclass(frozen=True)
class _Prepared:
    """One frame's preparation (:meth:`ClassicalSegmenter.embed`)."""

    shape: tuple[int, int]  # H, W of the frame
    scale: float  # working / frame size
    small: np.ndarray  # blurred RGB at the working size
    grad: np.ndarray  # Lab colour gradient magnitude at the working size, float32


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
    embeds_ahead = True

    def embed(self, image: np.ndarray) -> "_Prepared":
        """The per-frame preparation (downscale, blur, Lab gradient), computed without touching the current image."""
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = image
        if scale < 1.0:
            small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), 1.0)
        lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
        gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)
        return _Prepared((h, w), scale, small, np.sqrt(gx**2 + gy**2).max(axis=2))

    def set_embedding(self, embedding: object) -> None:
        if not isinstance(embedding, _Prepared):
            raise MastSamError(f"classical: set_embedding got {type(embedding).__name__}, not this segmenter's embed()")
        self._shape, self._scale, self._small, self._grad = (embedding.shape, embedding.scale, embedding.small,
                                                             embedding.grad)
        self._segments: np.ndarray | None = None  # automatic segmentation, computed on first generate()

    def set_image(self, image: np.ndarray) -> None:
        self.set_embedding(self.embed(image))

    def _full(self, small_mask: np.ndarray) -> np.ndarray:
        h, w = self._shape
        return cv2.resize(small_mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)

    # --- automatic ---------------------------------------------------------------------------------------------
    #: ``level`` was chosen on the first 25 frames of the six shared DAVIS sequences (docs/RESULTS.md, fallback).
    fine_scale = 400.0  # Felzenszwalb scale of the bottom level
    colour_weight = 1.0  # weight of the mean-colour difference (Lab, / 100) against the boundary gradient
    max_proposals = 96
    min_area = 0.002  # fraction of the frame
    max_level = 1.0  # boundary strength that counts as the top of the hierarchy (for persistence)
    level = 0.5  # merging stops when the weakest boundary is this strong (0.35, 0.5, 0.7 tried: 0.5 best)
    #: at most this many regions of at least ``min_area``: past ``level``, merging goes on across the weakest
    #: boundaries until that many are left (a busy frame otherwise gives dozens of small background tracks; the demo's
    #: distinct ids and the values tried, 20, 24, 28, 30: docs/RESULTS.md, fallback)
    max_regions = 30

    def _hierarchy(self) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
        """Fine labels (small frame) and the regions at ``level`` as (member fine labels, persistence score)."""
        sh, sw = self._grad.shape
        fine = felzenszwalb(self._small, scale=self.fine_scale, sigma=0.5, min_size=max(16, sh * sw // 600))
        n = int(fine.max()) + 1
        lab = cv2.cvtColor(self._small, cv2.COLOR_RGB2LAB).astype(np.float64)
        area = np.bincount(fine.ravel(), minlength=n).astype(np.float64)
        csum = np.stack([np.bincount(fine.ravel(), lab[..., c].ravel(), minlength=n) for c in range(3)], 1)
        g = self._grad / max(float(self._grad.max()), 1e-6)
        # boundary gradient sums and lengths of every adjacent pair (4-neighbourhood)
        a = np.concatenate([fine[:, :-1].ravel(), fine[:-1, :].ravel()])
        b = np.concatenate([fine[:, 1:].ravel(), fine[1:, :].ravel()])
        gv = np.concatenate([np.maximum(g[:, :-1], g[:, 1:]).ravel(), np.maximum(g[:-1, :], g[1:, :]).ravel()])
        sel = a != b
        lo, hi, gv = np.minimum(a[sel], b[sel]), np.maximum(a[sel], b[sel]), gv[sel]
        key = lo.astype(np.int64) * n + hi
        uk, inv = np.unique(key, return_inverse=True)
        bsum = np.bincount(inv, gv)
        blen = np.bincount(inv).astype(np.float64)
        edges: dict[int, dict[int, list[float]]] = {i: {} for i in range(n)}
        for k, s_, l_ in zip(uk, bsum, blen):
            i, j = divmod(int(k), n)
            edges[i][j] = edges[j][i] = [s_, l_]
        members = {i: [i] for i in range(n)}
        # a superpixel is born at its own texture: the mean gradient inside it
        inner = np.bincount(fine.ravel(), g.ravel(), minlength=n) / np.maximum(area, 1)
        birth = {i: float(inner[i]) for i in range(n)}
        min_px = self.min_area * sh * sw

        def weight(i: int, j: int) -> float:
            s_, l_ = edges[i][j]
            dc = np.linalg.norm(csum[i] / area[i] - csum[j] / area[j]) / 100.0
            w = s_ / l_ + self.colour_weight * dc
            return w * 0.5 if min(area[i], area[j]) < min_px else w  # specks merge first

        heap = [(weight(i, j), i, j) for i in edges for j in edges[i] if i < j]
        heapq.heapify(heap)
        alive = set(range(n))
        n_big = int(np.count_nonzero(area >= min_px))  # regions of at least min_area: the masks that count
        nxt = n
        while heap:
            w, i, j = heapq.heappop(heap)
            if i not in alive or j not in alive or j not in edges[i]:
                continue
            if w > self.level and n_big <= self.max_regions:
                break
            k = nxt
            nxt += 1
            area = np.append(area, area[i] + area[j])
            csum = np.vstack([csum, csum[i] + csum[j]])
            members[k] = members.pop(i) + members.pop(j)
            birth[k] = max(w, birth[i], birth[j])
            edges[k] = {}
            for r in (i, j):
                for o, (s_, l_) in edges.pop(r).items():
                    if o in (i, j):
                        continue
                    del edges[o][r]
                    e = edges[k].setdefault(o, [0.0, 0.0])
                    e[0] += s_
                    e[1] += l_
                    edges[o][k] = e
            n_big += int(area[k] >= min_px) - int(area[i] >= min_px) - int(area[j] >= min_px)
            alive -= {i, j}
            alive.add(k)
            for o in edges[k]:
                heapq.heappush(heap, (weight(k, o), min(k, o), max(k, o)))
        out = []
        for r in alive:  # the partition at ``level``: each region scored by its weakest outer boundary
            death = min((weight(r, o) for o in edges[r]), default=self.max_level)
            if area[r] >= min_px:
                out.append((np.array(members[r]), _contrast(death, birth[r])))
        return fine, out

    def generate(self, region: np.ndarray | None = None, seeds: np.ndarray | None = None) -> list[Proposal]:
        """Merged regions, best first: all of them, those touching ``region``, or those holding a seed."""
        sh, sw = self._grad.shape
        if self._segments is None:
            fine, cands = self._hierarchy()
            cands.sort(key=lambda c: -c[1])
            top = cands[: self.max_proposals]
            self._segments = fine
            self._cands = [(np.isin(fine, m), p) for m, p in top]
        out = []
        if seeds is not None:
            xy = np.clip(np.round(np.asarray(seeds, np.float32) * self._scale).astype(int), 0, [sw - 1, sh - 1])
        if region is not None:
            small_region = cv2.resize(region.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST).astype(bool)
        for m, score in self._cands:
            if seeds is not None and not m[xy[:, 1], xy[:, 0]].any():
                continue
            if region is not None and not (m & small_region).any():
                continue
            out.append(Proposal(mask=self._full(m), score=score, stability=1.0))
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


def _contrast(death: float, birth: float) -> float:
    """Persistence as a score in [0, 1]: how much stronger the absorbing boundary is than what lies inside."""
    return max(0.0, death - birth) / max(death + birth, 1e-6)


def _mean_spacing(pts: np.ndarray) -> float:
    d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1).astype(np.float32))
    np.fill_diagonal(d, np.inf)
    return float(d.min(axis=1).mean())
