"""A segmenter that fails the way SAM fails, answering from the ground truth. EVALUATION ONLY.

The ``oracle`` answers perfectly, so a tracker evaluated with it is never asked to survive SAM. ``SamSimSegmenter``
(``sam_sim``) starts from the same ground truth and the frame's own image structure and injects SAM's documented
failure modes, each with a named rate (``SamSimRates``), all scaled by one ``severity`` in [0, 1]: the probability of
a mode at severity s is ``s x rate``. At severity 0 it answers like the oracle (objects whole; its background regions
follow image segments rather than a grid). It reads ground truth, so it lives here, beside ``oracle``, and is never
registered in the core's segmenter registry: the node and ``mastsam-track`` cannot select it.

Structure of a frame (computed once per frame at ``work_side`` pixels on the long side, answers at full resolution):
- wholes: each ground-truth object (one whole even when split into pieces) and background regions: Felzenszwalb
  graph segments of the frame restricted to background pixels (pieces under ``min_area`` of the image dropped);
- parts of an object: SLIC superpixels computed inside the object's mask (2 to ``max_parts``, more for larger
  objects), i.e. pieces of the object cut along its internal colour edges, as SAM's "part" masks are;
- neighbours of a whole: the other wholes its outline touches, with the contact length.

Failure modes (what SAM does, per the SAM paper (Kirillov et al., ICCV 2023) and the segment-anything repository's
notes on ambiguity, multimask output and the automatic mask generator; our summary):
- ``part`` (granularity): a point is ambiguous between a part, the object and a group of objects; SAM returns three
  masks and its predicted-IoU head picks one. The answer is the part holding most positive points, not the whole.
- ``leak``: SAM's masks often spill across weak edges into what touches the object (its shadow, the road under a
  car). The answer is the whole plus a band of one neighbour next to the contact (band width ``leak_band`` x the
  square root of the object's area).
- ``collapse``: the extreme leak, the whole plus its largest neighbour entire (car and road as one mask).
- ``union``: SAM treats all positive points as one object, so positives spread over two regions (one stray point on
  the road) return the union of those regions. Applies only when the positives fall in more than one whole.
- ``miss``: low-contrast or small objects get nothing usable: an empty mask with a low score.
- ``thin``: SAM's 256 x 256 low-resolution mask logits lose structures a few pixels wide (legs, bike frames, ropes):
  a morphological opening of radius ``thin_px`` removes them.
- ``jitter``: mask boundaries are off by a few pixels (low-resolution logits upsampled, threshold at 0): the outline
  moves by a smooth random field of amplitude up to ``jitter_px``.
- ``misrank``: the predicted-IoU score does not always rank the right mask first: a degraded answer gets a high score
  (and in ``predict_multimask`` the right one a low score). Without it degraded answers score lower than whole ones.
- automatic mode (SAM's automatic mask generator keeps all three granularities of every grid point after its score,
  stability and NMS filters, so its masks overlap and nest; and small image changes flip which masks pass):
  ``nested``: an object's parts are returned beside the whole; ``auto_leak``: a leaked superset is returned beside
  it; ``split``: the whole is missing and only its parts are returned; ``merge``: an object and its largest neighbour
  are returned as one mask instead of the object; ``drop``: a whole is missing this frame. Each is drawn afresh each
  frame, so the automatic set flickers from frame to frame.

Negative points are ignored (the worst case: SAM often, not always, respects them). Draws are deterministic per
``seed``: a prompt's draws depend on (seed, frame, the prompt's points), the automatic set's on (seed, frame), so a
run repeats exactly and the same prompt twice in one frame gets the same answer. ``active`` (a range of frame
indices, default every frame) limits the failure modes to those frames (tests drive a leak that lasts a while).

Frames are selected as the oracle does (by content hash when ``frames`` are given, else by counting); see
``oracle.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields

import cv2
import numpy as np
from skimage.segmentation import felzenszwalb, slic

from ..core.types import PointPrompt, Proposal
from .oracle import OracleSegmenter


@dataclass(frozen=True)
class SamSimRates:
    """Probability of each failure mode at severity 1 (at severity s: s x rate). See the module docstring."""

    part: float = 0.25
    leak: float = 0.2
    collapse: float = 0.08
    union: float = 0.6
    miss: float = 0.08
    thin: float = 0.5
    jitter: float = 0.6
    misrank: float = 0.3
    nested: float = 0.7
    auto_leak: float = 0.3
    split: float = 0.2
    merge: float = 0.1
    drop: float = 0.15

    @classmethod
    def only(cls, **rates: float) -> SamSimRates:
        """Every rate 0 except those given (a test isolates one mode)."""
        zero = {f.name: 0.0 for f in fields(cls)}
        zero.update(rates)
        return cls(**zero)


MODES = tuple(f.name for f in fields(SamSimRates))


@dataclass
class _Structure:
    wholes: list[np.ndarray]  # full-resolution bool masks; objects first
    n_objects: int
    parts: list[list[np.ndarray]]  # per whole: its parts (empty for background regions and tiny objects)
    neighbours: list[list[tuple[int, int]]]  # per whole: (other whole, contact pixels), most contact first
    index: np.ndarray  # H x W int32: whole of each pixel, -1 none


class SamSimSegmenter(OracleSegmenter):
    """SAM's failure modes on the ground truth (see the module docstring). Not SAM, not selectable by the node."""

    name = "sam_sim"
    is_fallback = True

    def __init__(
        self,
        gt,
        frames=None,
        severity: float = 0.5,
        seed: int = 0,
        rates: SamSimRates | None = None,
        active: range | None = None,
        work_side: int = 256,
        max_parts: int = 4,
        min_area: float = 0.004,
        leak_band: float = 0.35,
        thin_px: float = 4.0,
        jitter_px: float = 4.0,
    ):
        if not 0.0 <= severity <= 1.0:
            raise ValueError(f"sam_sim severity must be in [0, 1], got {severity}")
        super().__init__(gt, frames=frames, min_area=min_area)
        self._frames = frames
        self.severity = float(severity)
        self.seed = int(seed)
        self.rates = rates or SamSimRates()
        self.active = active
        self.work_side = work_side
        self.max_parts = max_parts
        self.leak_band = leak_band
        self.thin_px = thin_px
        self.jitter_px = jitter_px
        self._pending: np.ndarray | None = None
        self._s: _Structure | None = None
        self._auto: list[Proposal] | None = None
        #: how often each mode fired since construction (tests and reports read it)
        self.fired: dict[str, int] = {m: 0 for m in MODES}

    # -- frame selection: the oracle's, plus the image for the structure ---------------------------------------
    def set_image(self, image: np.ndarray) -> None:
        self._pending = np.asarray(image)
        try:
            super().set_image(image)
        finally:
            self._pending = None

    def _build(self, gt: np.ndarray) -> None:
        # the oracle sets self.frame before building; the image is the one being set, else the frame given
        image = self._pending if self._pending is not None else None
        if image is None and self._frames is not None:
            image = np.asarray(self._frames[self.frame])
        if image is None:
            raise RuntimeError("sam_sim needs the frame's image: call set_image, or give frames to use set_frame")
        self._s = _structure(gt, image, self.work_side, self.max_parts, self.min_area)
        self._regions = self._s.index
        self._masks = self._s.wholes
        self.n_objects = self._s.n_objects
        self._auto = None
        self._outside: dict[int, np.ndarray] = {}

    # -- draws ---------------------------------------------------------------------------------------------------
    def _rng(self, *key) -> np.random.Generator:
        h = hashlib.blake2b(repr((self.seed, self.frame) + key).encode(), digest_size=8).digest()
        return np.random.default_rng(int.from_bytes(h, "little"))

    def _on(self) -> bool:
        return self.active is None or self.frame in self.active

    def _p(self, mode: str) -> float:
        return self.severity * getattr(self.rates, mode) if self._on() else 0.0

    def _draw(self, rng: np.random.Generator, mode: str) -> bool:
        hit = bool(rng.random() < self._p(mode))
        if hit:
            self.fired[mode] += 1
        return hit

    # -- mask degradations -------------------------------------------------------------------------------------
    def _leaked(self, w: int, rng: np.random.Generator, full: bool) -> np.ndarray:
        """Whole ``w`` plus a band of one neighbour (``full``: the largest neighbour entire)."""
        s = self._s
        base = s.wholes[w]
        if not s.neighbours[w]:
            return base.copy()
        if full:
            j = max(s.neighbours[w], key=lambda nc: int(s.wholes[nc[0]].sum()))[0]
            return base | s.wholes[j]
        contact = np.array([c for _, c in s.neighbours[w]], np.float64)
        j = s.neighbours[w][int(rng.choice(len(contact), p=contact / contact.sum()))][0]
        band = max(3.0, self.leak_band * float(np.sqrt(base.sum())))
        if w not in self._outside:  # distance to the whole, once per whole and frame
            self._outside[w] = cv2.distanceTransform((~base).astype(np.uint8), cv2.DIST_L2, 3)
        return base | (s.wholes[j] & (self._outside[w] <= band))

    def _thin(self, m: np.ndarray) -> np.ndarray:
        r = max(1, int(round(self.thin_px * m.shape[0] / 480)))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        box, crop = _crop(m, 2 * r + 2)
        out = np.zeros_like(m)
        out[box] = cv2.morphologyEx(crop.astype(np.uint8), cv2.MORPH_OPEN, k).astype(bool)
        return out

    def _jitter(self, m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Move the outline by a smooth random field of amplitude up to ``jitter_px`` (scaled to the frame height)."""
        amp = self.jitter_px * m.shape[0] / 480
        if amp <= 0 or not m.any():
            return m
        box, crop = _crop(m, int(np.ceil(amp)) + 2)
        h, w = crop.shape
        inside = cv2.distanceTransform(crop.astype(np.uint8), cv2.DIST_L2, 3)
        outside = cv2.distanceTransform((~crop).astype(np.uint8), cv2.DIST_L2, 3)
        sd = inside - outside  # > 0 inside
        coarse = rng.uniform(-amp, amp, size=(max(2, h // 24), max(2, w // 24))).astype(np.float32)
        field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        out = np.zeros_like(m)
        out[box] = (sd + field) > 0.5
        return out

    def _finish(self, m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self._draw(rng, "thin"):
            m = self._thin(m)
        if self._draw(rng, "jitter"):
            m = self._jitter(m, rng)
        return m

    def _score(self, good: bool, rng: np.random.Generator) -> float:
        """Predicted quality: right answers score high, degraded ones lower, unless the ranking fails (misrank)."""
        if not good and self._draw(rng, "misrank"):
            good = True
        return float(rng.uniform(0.88, 0.99) if good else rng.uniform(0.55, 0.85))

    # -- prompts -----------------------------------------------------------------------------------------------
    def _answer(self, p: PointPrompt) -> list[tuple[str, np.ndarray, float]]:
        """The three multimask candidates (part, whole, superset) with scores; the first listed is the answer."""
        s = self._s
        H, W = self.shape
        pts = np.asarray(p.points, dtype=np.float64).reshape(-1, 2)
        pos = pts[np.asarray(p.labels).reshape(-1) == 1]
        rng = self._rng("prompt", np.round(pos, 1).tobytes())
        x, y = np.rint(pos[:, 0]).astype(np.int64), np.rint(pos[:, 1]).astype(np.int64)
        ok = (x >= 0) & (x < W) & (y >= 0) & (y < H)
        x, y = x[ok], y[ok]
        hit = s.index[y, x]
        hit_ok = hit[hit >= 0]
        empty = np.zeros((H, W), bool)
        if len(hit_ok) == 0:
            return [("miss", empty, 0.0)]
        counts = np.bincount(hit_ok)
        best = np.flatnonzero(counts == counts.max())
        w = next(int(h) for h in hit_ok if h in best)
        whole = s.wholes[w]
        # part: the part of w holding most positives (the whole when it has no parts)
        part = whole
        if s.parts[w]:
            in_part = [int(pm[y, x].sum()) for pm in s.parts[w]]
            part = s.parts[w][int(np.argmax(in_part))]
        superset = self._leaked(w, rng, full=False)
        regions = [int(r) for r in np.unique(hit_ok)]
        if self._draw(rng, "miss"):
            return [("miss", empty, float(rng.uniform(0.05, 0.4)))]
        if len(regions) > 1 and self._draw(rng, "union"):
            kind, m = "union", np.logical_or.reduce([s.wholes[r] for r in regions])
        elif self._draw(rng, "collapse"):
            kind, m = "collapse", self._leaked(w, rng, full=True)
        elif self._draw(rng, "leak"):
            kind, m = "leak", superset
        elif part is not whole and self._draw(rng, "part"):
            kind, m = "part", part
        else:
            kind, m = "whole", whole
        m = self._finish(m, rng)
        good = kind == "whole"
        top = self._score(good, rng)
        others = [(k, c) for k, c in (("part", part), ("whole", whole), ("superset", superset)) if k != kind]
        rest = []
        for k, c in others:
            # the right mask, when not the answer, scores below it (the ranking failed); the others lower still
            sc = min(top - 0.01, float(rng.uniform(0.6, 0.9))) if k == "whole" else float(rng.uniform(0.3, top - 0.02))
            rest.append((k, c.copy(), max(sc, 0.0)))
        return [(kind, m, top)] + rest

    def predict(self, prompts: list[PointPrompt]) -> list[Proposal]:
        """One mask per prompt: the top-scored of its multimask candidates (see the module docstring)."""
        self._need_image()
        return [Proposal(c[0][1].copy(), c[0][2]) for c in (self._answer(p) for p in prompts)]

    def predict_multimask(self, prompts: list[PointPrompt]) -> list[list[Proposal]]:
        """SAM's three outputs per prompt (part, whole, superset), ordered by score, best first."""
        self._need_image()
        out = []
        for p in prompts:
            cands = sorted(self._answer(p), key=lambda c: -c[2])
            out.append([Proposal(m.copy(), sc) for _, m, sc in cands])
        return out

    # -- automatic ---------------------------------------------------------------------------------------------
    def automatic(self) -> list[tuple[str, int, Proposal]]:
        """This frame's automatic set as (kind, whole index, proposal), best score first; drawn once per frame."""
        self._need_image()
        if self._auto is None:
            s = self._s
            rng = self._rng("automatic")
            out: list[tuple[str, int, Proposal]] = []
            for w, whole in enumerate(s.wholes):
                is_obj = w < s.n_objects
                if self._draw(rng, "drop"):
                    continue
                if s.parts[w] and self._draw(rng, "split"):
                    out += [("part", w, Proposal(self._finish(pm, rng), self._score(False, rng))) for pm in s.parts[w]]
                    continue
                if is_obj and s.neighbours[w] and self._draw(rng, "merge"):
                    merged = self._finish(self._leaked(w, rng, True), rng)
                    out.append(("merge", w, Proposal(merged, self._score(False, rng))))
                    continue
                out.append(("whole", w, Proposal(self._finish(whole, rng), self._score(True, rng))))
                if s.parts[w] and self._draw(rng, "nested"):
                    out += [("part", w, Proposal(self._finish(pm, rng), self._score(False, rng))) for pm in s.parts[w]]
                if s.neighbours[w] and self._draw(rng, "auto_leak"):
                    out.append(("leak", w, Proposal(self._finish(self._leaked(w, rng, False), rng),
                                                    self._score(False, rng))))
            out = [o for o in out if o[2].mask.any()]
            out.sort(key=lambda o: -o[2].score)
            self._auto = out
        return self._auto

    def generate(self, region: np.ndarray | None = None, seeds: np.ndarray | None = None) -> list[Proposal]:
        """This frame's automatic set; given ``region``, masks with enough pixels in it; given ``seeds``, masks
        holding a seed (SAM decodes masks at its seed points). Overlapping and nested, best score first."""
        auto = self.automatic()
        keep = []
        H, W = self.shape
        if seeds is not None:
            xy = np.rint(np.asarray(seeds, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
            xy = np.clip(xy, 0, [W - 1, H - 1])
        for _, _, p in auto:
            if region is not None and np.count_nonzero(p.mask & region) < self.min_seed_pixels:
                continue
            if seeds is not None and not p.mask[xy[:, 1], xy[:, 0]].any():
                continue
            keep.append(Proposal(p.mask.copy(), p.score))
        return keep


def _crop(m: np.ndarray, pad: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """The mask's bounding box grown by ``pad`` (clipped to the frame) and the mask inside it."""
    x, y, w, h = cv2.boundingRect(m.astype(np.uint8))
    H, W = m.shape
    box = (slice(max(0, y - pad), min(H, y + h + pad)), slice(max(0, x - pad), min(W, x + w + pad)))
    return box, m[box]


# -- per-frame structure -------------------------------------------------------------------------------------------
def _structure(gt: np.ndarray, image: np.ndarray, work_side: int, max_parts: int, min_area: float) -> _Structure:
    H, W = gt.shape
    scale = min(1.0, work_side / max(H, W))
    sw, sh = max(1, round(W * scale)), max(1, round(H * scale))
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else image
    objects = [int(v) for v in np.unique(gt) if v not in (0, 255)]
    wholes = [gt == v for v in objects]
    bg = ~np.isin(gt, objects)
    # background regions: graph segments of the frame, cut by the objects, pieces below min_area dropped
    seg = felzenszwalb(small, scale=300, sigma=0.8, min_size=max(20, int(0.01 * sw * sh)))
    seg = cv2.resize(seg.astype(np.int32), (W, H), interpolation=cv2.INTER_NEAREST)
    min_px = min_area * H * W
    for v in np.unique(seg[bg]):
        piece = (seg == v) & bg
        n, cc, stats, _ = cv2.connectedComponentsWithStats(piece.astype(np.uint8), connectivity=8)
        for c in range(1, n):
            if stats[c, cv2.CC_STAT_AREA] >= min_px:
                wholes.append(cc == c)
    index = np.full((H, W), -1, np.int32)
    for i, m in enumerate(wholes):
        index[m] = i
    parts: list[list[np.ndarray]] = [[] for _ in wholes]
    for i in range(len(objects)):
        parts[i] = _parts(wholes[i], small, scale, max_parts, min_px)
    return _Structure(wholes, len(objects), parts, _neighbours(index, len(wholes)), index)


def _parts(mask: np.ndarray, small: np.ndarray, scale: float, max_parts: int, min_px: float) -> list[np.ndarray]:
    """The object cut along its internal colour edges: SLIC superpixels inside its mask, each a part (>= 2 parts)."""
    area = int(mask.sum())
    n = int(np.clip(area / (4 * min_px), 2, max_parts))
    if area < 2 * min_px:
        return []
    sh, sw = small.shape[:2]
    ms = cv2.resize(mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST).astype(bool)
    if ms.sum() < 4 * n:
        return []
    lab = slic(small, n_segments=n, compactness=10.0, mask=ms, start_label=1, enforce_connectivity=True)
    H, W = mask.shape
    full = cv2.resize(lab.astype(np.int32), (W, H), interpolation=cv2.INTER_NEAREST)
    full[~mask] = 0
    box, _ = _crop(mask, 2)
    sub, msub = full[box], mask[box]
    holes = msub & (sub == 0)
    if holes.any():  # object pixels the low-resolution labels missed: the nearest labelled pixel's part
        from scipy import ndimage as ndi

        _, (iy, ix) = ndi.distance_transform_edt(sub == 0, return_indices=True)
        sub[holes] = sub[iy[holes], ix[holes]]
    out = [full == v for v in np.unique(full[mask]) if v > 0]
    out = [p for p in out if p.sum() >= 0.05 * area]
    return out if len(out) >= 2 else []


def _neighbours(index: np.ndarray, n: int) -> list[list[tuple[int, int]]]:
    """For each whole, the wholes it touches (4-neighbourhood across a 3-pixel gap) and the contact pixel count."""
    contact = np.zeros((n + 1, n + 1), np.int64)
    for dy, dx in ((0, 3), (3, 0)):
        a = index[: index.shape[0] - dy, : index.shape[1] - dx]
        b = index[dy:, dx:]
        sel = (a != b) & (a >= 0) & (b >= 0)
        np.add.at(contact, (a[sel], b[sel]), 1)
    contact = contact + contact.T
    out = []
    for i in range(n):
        js = np.flatnonzero(contact[i, :n])
        out.append(sorted(((int(j), int(contact[i, j])) for j in js), key=lambda t: -t[1]))
    return out
