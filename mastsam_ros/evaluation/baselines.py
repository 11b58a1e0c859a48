"""Baselines for the tracker, each a frame-in / label-map-out object with the tracker's ``step`` shape.

- ``PerFrame`` (a): automatic segmentation of every frame, fresh ids every frame (no temporal link at all).
- ``GreedyIoU`` (b): automatic segmentation of every frame; each segment takes the id of the previous frame's segment
  it overlaps best when their IoU is at least 0.5 (greedy, best pairs first), else a new id.
- ``Prototype`` (c): the research prototype's loop: automatic segmentation on the first frame only; every later frame,
  each mask's points are re-derived from its previous-frame mask by k-means, carried n -> n+1 by the matcher and sent
  to the segmenter as one prompt per mask, one call each; ids are positions in the mask list (a mask that does not
  come back shifts the ids of those after it); every 10 frames the uncovered area is segmented and its new masks are
  appended; no re-segmentation, no filtering, no merging.
- ``SuperpixelIoU`` (d) Felzenszwalb, (e) SLIC: a plain per-frame superpixel segmentation of every frame (no
  segmenter, no matcher), each segment taking the id of the previous frame's segment it overlaps best at IoU >= 0.5
  (greedy, best pairs first), else a new id. The yardstick for the weight-free ``classical`` segmenter: a tracker
  built on it must beat simply segmenting each frame. Parameters (``SUPERPIXEL_PARAMS``) were tuned on the six shared
  sequences (docs/RESULTS.md says how).

Every ``step(rgb)`` takes an H x W x 3 uint8 RGB frame and returns an H x W uint32 label map (0 = background). Masks
are painted largest first, so where masks overlap the smaller one wins.
"""

from __future__ import annotations

import numpy as np

from ..core.config import Config
from ..core.masks import paint
from ..core.types import PointPrompt, Proposal


def _keep(props: list[Proposal], min_area: int) -> list[np.ndarray]:
    return [p.mask for p in props if int(p.mask.sum()) >= min_area]


def visible_segments(labels: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """(ids, H x W bool masks) of the ids present in a label map."""
    ids = [int(v) for v in np.unique(labels) if v != 0]
    return ids, [labels == v for v in ids]


def iou_matrix(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """IoU of every pair of bool masks of two lists, (len(a), len(b)), from one flattened matrix product."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    A = np.stack([m.ravel() for m in a]).astype(np.float32)
    B = np.stack([m.ravel() for m in b]).astype(np.float32)
    inter = A @ B.T
    union = A.sum(1)[:, None] + B.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


class PerFrame:
    """Baseline (a): per-frame automatic segmentation, fresh ids every frame."""

    name = "baseline_a"

    def __init__(self, cfg: Config, segmenter):
        self.cfg, self.segmenter = cfg, segmenter
        self._next_id = 1

    def step(self, rgb: np.ndarray) -> np.ndarray:
        self.segmenter.set_image(rgb)
        min_area = int(self.cfg.tracker.min_area_fraction * rgb.shape[0] * rgb.shape[1])
        masks = _keep(self.segmenter.generate(), min_area)
        ids = list(range(self._next_id, self._next_id + len(masks)))
        self._next_id += len(masks)
        return paint(rgb.shape[:2], masks, ids)


class GreedyIoU:
    """Baseline (b): per-frame automatic segmentation, greedy IoU association (>= ``iou``) to the previous frame."""

    name = "baseline_b"

    def __init__(self, cfg: Config, segmenter, iou: float = 0.5):
        self.cfg, self.segmenter, self.iou = cfg, segmenter, iou
        self._next_id = 1
        self._prev: tuple[list[int], list[np.ndarray]] = ([], [])

    def step(self, rgb: np.ndarray) -> np.ndarray:
        self.segmenter.set_image(rgb)
        shape = rgb.shape[:2]
        min_area = int(self.cfg.tracker.min_area_fraction * shape[0] * shape[1])
        masks = _keep(self.segmenter.generate(), min_area)
        # associate the segments as they will be seen (after painting), not the raw overlapping proposals
        _, segs = visible_segments(paint(shape, masks, list(range(1, len(masks) + 1))))
        prev_ids, prev_masks = self._prev
        ious = iou_matrix(segs, prev_masks)
        ids = [0] * len(segs)
        used: set[int] = set()
        for flat in np.argsort(-ious, axis=None):
            i, j = divmod(int(flat), max(len(prev_masks), 1))
            if ious[i, j] < self.iou:
                break
            if ids[i] == 0 and j not in used:
                ids[i] = prev_ids[j]
                used.add(j)
        for i in range(len(segs)):
            if ids[i] == 0:
                ids[i] = self._next_id
                self._next_id += 1
        labels = paint(shape, segs, ids)
        self._prev = (ids, segs)
        return labels


class Prototype:
    """Baseline (c): the research prototype's loop (see the module docstring)."""

    name = "baseline_c"

    def __init__(self, cfg: Config, segmenter, matcher, kmeans, append_every: int = 10):
        self.cfg, self.segmenter, self.matcher, self.kmeans = cfg, segmenter, matcher, kmeans
        self.append_every = append_every
        self._masks: list[np.ndarray] = []
        self._index = -1
        self._rng = np.random.default_rng(cfg.clustering.seed)

    def step(self, rgb: np.ndarray) -> np.ndarray:
        from ..core.points import mask_points

        self._index += 1
        shape = rgb.shape[:2]
        min_area = int(self.cfg.tracker.min_area_fraction * shape[0] * shape[1])
        self.segmenter.set_image(rgb)
        self.matcher.push(rgb)
        if self._index == 0:
            self._masks = _keep(self.segmenter.generate(), min_area)
        else:
            new = []
            for m in self._masks:  # one prompt, one call per mask: the prototype's way
                pts = mask_points(m, self.kmeans, self.cfg.tracker, self._rng, self.cfg.clustering.max_samples)
                if len(pts) == 0:
                    continue
                cur, conf = self.matcher.carry(pts)
                cur = cur[conf >= self.cfg.tracker.min_match_confidence]
                if len(cur) == 0:
                    continue
                (p,) = self.segmenter.predict([PointPrompt(cur.astype(np.float32), np.ones(len(cur), np.int32))])
                if p.mask.any():
                    new.append(p.mask)
            self._masks = new
            if self._index % self.append_every == 0:
                covered = np.zeros(shape, dtype=bool)
                for m in self._masks:
                    covered |= m
                for m in _keep(self.segmenter.generate(region=~covered), min_area):
                    if np.count_nonzero(m & ~covered) >= 0.5 * np.count_nonzero(m):  # mostly new area
                        self._masks.append(m)
        return paint(shape, self._masks, list(range(1, len(self._masks) + 1)))


#: Parameters of baselines (d) and (e) at ``SuperpixelIoU.work_side``: the best mean J&F of the grid of
#: scripts/tune_superpixel_baselines.py on the first 25 frames of the six shared sequences (docs/RESULTS.md).
SUPERPIXEL_PARAMS = {
    "baseline_d": {"scale": 800.0, "sigma": 0.8, "min_size_fraction": 0.005},
    "baseline_e": {"n_segments": 16, "compactness": 40.0},
}


class SuperpixelIoU:
    """Baselines (d) per-frame Felzenszwalb and (e) per-frame SLIC with greedy IoU association (module docstring).

    Segments at ``work_side`` pixels on the long side; IoUs come from the pair counts of two label maps, so a frame
    with hundreds of segments costs one ``bincount``; the label map is upsampled (nearest) to the frame size.
    """

    work_side = 256

    def __init__(self, kind: str, iou: float = 0.5, **params):
        if kind not in ("felzenszwalb", "slic"):
            raise ValueError(f"unknown superpixel kind '{kind}'; choose felzenszwalb or slic")
        self.kind, self.iou, self.params = kind, iou, params
        self.name = "baseline_d" if kind == "felzenszwalb" else "baseline_e"
        self._next_id = 1
        self._prev: np.ndarray | None = None  # previous frame's id map at the working resolution

    def segment(self, small: np.ndarray) -> np.ndarray:
        """Segment labels (0-based, int32) of an RGB image at the working resolution."""
        from skimage.segmentation import felzenszwalb, slic

        p = self.params
        if self.kind == "felzenszwalb":
            min_size = max(8, int(p["min_size_fraction"] * small.shape[0] * small.shape[1]))
            return felzenszwalb(small, scale=p["scale"], sigma=p["sigma"], min_size=min_size)
        return slic(small, n_segments=int(p["n_segments"]), compactness=p["compactness"], start_label=0)

    def step(self, rgb: np.ndarray) -> np.ndarray:
        import cv2

        H, W = rgb.shape[:2]
        scale = min(1.0, self.work_side / max(H, W))
        small = cv2.resize(rgb, (round(W * scale), round(H * scale)), interpolation=cv2.INTER_AREA)
        seg = self.segment(small).astype(np.int64)
        n = int(seg.max()) + 1
        ids = np.zeros(n, np.int64)
        if self._prev is not None:
            prev_vals, prev = np.unique(self._prev, return_inverse=True)
            prev = prev.reshape(seg.shape)
            m = len(prev_vals)
            inter = np.bincount((seg * m + prev).ravel(), minlength=n * m).reshape(n, m).astype(np.float64)
            union = inter.sum(1)[:, None] + inter.sum(0)[None, :] - inter
            ious = inter / np.maximum(union, 1)
            used: set[int] = set()
            for flat in np.argsort(-ious, axis=None):
                i, j = divmod(int(flat), m)
                if ious[i, j] < self.iou:
                    break
                if ids[i] == 0 and j not in used:
                    ids[i] = prev_vals[j]
                    used.add(j)
        for i in np.flatnonzero(ids == 0):
            ids[i] = self._next_id
            self._next_id += 1
        self._prev = ids[seg]
        return cv2.resize(self._prev.astype(np.int32), (W, H), interpolation=cv2.INTER_NEAREST).astype(np.uint32)


class TrackerMethod:
    """The MAST-SAM tracker behind the same ``step(rgb) -> labels`` shape as the baselines."""

    name = "tracker"

    def __init__(self, cfg: Config, segmenter, matcher=None, kmeans=None):
        from ..core.tracker import Tracker

        self.tracker = Tracker(cfg, segmenter=segmenter, matcher=matcher, clustering=kmeans)

    def step(self, rgb: np.ndarray) -> np.ndarray:
        return np.asarray(self.tracker.step(rgb).labels, dtype=np.uint32)


METHODS = ("tracker", "baseline_a", "baseline_b", "baseline_c", "baseline_d", "baseline_e")
USES_MATCHER = {
    "tracker": True, "baseline_a": False, "baseline_b": False, "baseline_c": True, "baseline_d": False,
    "baseline_e": False,
}
#: Methods that segment by themselves (no segmenter): they run once, under the ``classical`` segmenter's name.
OWN_SEGMENTATION = ("baseline_d", "baseline_e")


def build_method(name: str, cfg: Config, segmenter):
    """A method by name with the given (already built) segmenter; matcher and clustering are built from ``cfg``."""
    if name == "baseline_a":
        return PerFrame(cfg, segmenter)
    if name == "baseline_b":
        return GreedyIoU(cfg, segmenter)
    if name in OWN_SEGMENTATION:
        kind = "felzenszwalb" if name == "baseline_d" else "slic"
        return SuperpixelIoU(kind, **SUPERPIXEL_PARAMS[name])
    from ..core.clustering import build_clustering
    from ..core.matchers import build_matcher

    if name == "baseline_c":
        return Prototype(cfg, segmenter, build_matcher(cfg.matcher), build_clustering(cfg.clustering))
    if name == "tracker":
        return TrackerMethod(cfg, segmenter)
    raise ValueError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}")
