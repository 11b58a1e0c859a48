"""Object permanence: signatures of tracks that left, re-identification of objects that come back, scene cuts.

A live track keeps a compact :class:`Signature` (refreshed every ``tracker.signature_interval`` frames while the
segmenter confirms it): its appearance and its size at the working resolution. When the
track leaves (unseen for ``tracker.max_age`` frames, hidden by others, or a scene cut) the signature is kept in the
:class:`DormantSet`, bounded in number (``tracker.dormant_max``, the oldest forgotten first) and in age
(``tracker.dormant_max_age`` frames). A track born later whose signature matches a dormant one well enough takes the
old id back (:meth:`DormantSet.match`): the score is the appearance similarity, zero when the sizes differ by more
than ``tracker.reid_max_area_ratio``; a match needs ``tracker.reid_min_score`` and, against the next best dormant
signature, a margin of ``tracker.reid_margin``, so a look-alike pair is left unmatched rather than guessed.
Candidates and dormant signatures are paired one to one (Hungarian), so two live tracks never share an id.

Appearance comes from one interface (:class:`Appearance`), chosen by ``tracker.reid_descriptor``:

- ``embedding``: the segmenter's image embedding pooled over the mask (``Segmenter.pool_embedding``: SAM and
  MobileSAM), compared by cosine similarity;
- ``colour``: a hue-saturation histogram of the mask's pixels (16 x 4 bins, HSV, at the working resolution),
  compared by 1 - Bhattacharyya distance; needs no segmenter;
- ``auto``: the embedding where the segmenter has one, else colour.

A scene cut (the camera looked elsewhere, a video cut, a bag that jumps) is a frame whose hue-saturation histogram
is farther than ``tracker.cut_distance`` (Bhattacharyya) from the previous frame's: within a shot consecutive frames
differ by at most 0.09 on every shared DAVIS sequence, while frames of two different
sequences differ by 0.22 or more (pairs of the six sequences, 128 x 72 pixels sampled;
``scripts/permanence_thresholds.py`` measures it, and the colour similarities behind ``reid_min_score``). Carried
points cannot be trusted across a cut: every live track goes dormant, and the frame is re-segmented from scratch.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from .frames import subsample

#: hue x saturation bins of the colour descriptor and of the cut detector's frame histogram
HIST_BINS = (16, 4)
_RANGES = [0, 180, 0, 256]


def hs_histogram(hsv: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The normalised hue-saturation histogram (flattened float32, sums to 1; zeros when empty) of an HSV image
    (uint8, OpenCV's hue 0-179), over ``mask`` (uint8 0/1 of the same size) when given."""
    h = cv2.calcHist([hsv], [0, 1], mask, list(HIST_BINS), _RANGES).reshape(-1)
    total = float(h.sum())
    return h / total if total > 0 else h


def hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two normalised histograms: 0 identical, 1 disjoint."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


@dataclass
class Signature:
    """What is remembered of one object: what re-identification compares (appearance, and size for the area
    ratio). Position, motion and 3D position are not kept: nothing compares them yet."""

    kind: str  # "colour" or "embedding": only signatures of one kind are compared
    appearance: np.ndarray  # normalised histogram (colour) or unit vector (embedding), float32
    area: int  # pixels at the working resolution
    index: int  # frame index at which it was taken

    def similarity(self, other: Signature) -> float:
        """Appearance similarity in [0, 1] (0 across kinds)."""
        if self.kind != other.kind:
            return 0.0
        if self.kind == "colour":
            return 1.0 - hist_distance(self.appearance, other.appearance)
        return float(max(0.0, np.dot(self.appearance, other.appearance)))


@dataclass
class Dormant:
    """A track that left: its id, its last signature, and when it was last seen."""

    id: int
    signature: Signature
    last_seen: int


@dataclass
class Match:
    """A re-identification: candidate index -> the dormant id it takes back, with its score and time away."""

    candidate: int
    id: int
    score: float
    frames_away: int


class DormantSet:
    """Bounded memory of tracks that left (see the module docstring). ``cfg`` is the tracker section, read at every
    call so runtime changes apply."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._by_id: OrderedDict[int, Dormant] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._by_id)

    def ids(self) -> list[int]:
        return list(self._by_id)

    def clear(self) -> None:
        self._by_id.clear()

    def add(self, track_id: int, signature: Signature, last_seen: int) -> list[int]:
        """Remember a track that left; returns the ids forgotten to stay within ``tracker.dormant_max``."""
        self._by_id[track_id] = Dormant(track_id, signature, last_seen)
        self._by_id.move_to_end(track_id)
        forgotten = []
        while len(self._by_id) > self.cfg.dormant_max:
            forgotten.append(self._by_id.popitem(last=False)[0])
        return forgotten

    def expire(self, index: int) -> list[int]:
        """Forget signatures unseen for more than ``tracker.dormant_max_age`` frames; returns their ids."""
        old = [i for i, d in self._by_id.items() if index - d.last_seen > self.cfg.dormant_max_age]
        for i in old:
            del self._by_id[i]
        return old

    def match(self, candidates: list[Signature], index: int) -> list[Match]:
        """Pair newly born tracks' signatures with dormant ones (one to one); the matched ids leave the set."""
        if not candidates or not self._by_id:
            return []
        cfg = self.cfg
        dormant = list(self._by_id.values())
        score = _similarities(candidates, [d.signature for d in dormant])
        ratio = (np.array([max(c.area, 1) for c in candidates], float)[:, None]
                 / np.array([max(d.signature.area, 1) for d in dormant], float)[None, :])
        score[(ratio < 1.0 / cfg.reid_max_area_ratio) | (ratio > cfg.reid_max_area_ratio)] = 0.0
        # a candidate's match must stand out from its next best dormant signature, and a dormant signature's from
        # its next best candidate: look-alikes stay unmatched
        margin = cfg.reid_margin
        second_row = np.sort(score, axis=1)[:, -2] if score.shape[1] > 1 else np.zeros(len(candidates))
        second_col = np.sort(score, axis=0)[-2, :] if score.shape[0] > 1 else np.zeros(len(dormant))
        rows, cols = linear_sum_assignment(-score)
        out = []
        for i, j in zip(rows.tolist(), cols.tolist()):
            s = score[i, j]
            if s < cfg.reid_min_score:
                continue
            if (s < score[i].max() or s - second_row[i] < margin
                    or s < score[:, j].max() or s - second_col[j] < margin):
                continue
            d = dormant[j]
            out.append(Match(i, d.id, float(s), index - d.last_seen))
        for m in out:
            del self._by_id[m.id]
        return out


def _similarities(a: list[Signature], b: list[Signature]) -> np.ndarray:
    """:meth:`Signature.similarity` of every pair, in one matrix product per kind (0 across kinds): for normalised
    histograms OpenCV's Bhattacharyya distance is sqrt(1 - sum(sqrt(p * q))), so the coefficients of all pairs are
    sqrt(P) @ sqrt(Q).T; embeddings are unit vectors (cosine)."""
    out = np.zeros((len(a), len(b)))
    for kind in {s.kind for s in a} & {s.kind for s in b}:
        ia = [i for i, s in enumerate(a) if s.kind == kind]
        ib = [j for j, s in enumerate(b) if s.kind == kind]
        pa = np.stack([a[i].appearance for i in ia]).astype(np.float64)
        pb = np.stack([b[j].appearance for j in ib]).astype(np.float64)
        if kind == "colour":
            coeff = np.sqrt(pa) @ np.sqrt(pb).T
            sim = 1.0 - np.sqrt(np.clip(1.0 - coeff, 0.0, 1.0))
        else:
            sim = np.clip(pa @ pb.T, 0.0, 1.0)
        out[np.ix_(ia, ib)] = sim
    return out


class Appearance:
    """Appearance signatures for one frame at the working resolution (see the module docstring)."""

    def __init__(self, kind: str, frame: np.ndarray, work: tuple[int, int], segmenter=None):
        self.kind = kind
        self._frame, self._work, self._segmenter = frame, work, segmenter
        self._rows: np.ndarray | None = None  # frame row / column of each working row / column (nearest)
        self._cols: np.ndarray | None = None

    @staticmethod
    def resolve(setting: str, segmenter) -> str:
        """``auto`` -> ``embedding`` where the segmenter pools its embedding, else ``colour``."""
        if setting == "auto":
            return "embedding" if getattr(segmenter, "pools_embedding", False) else "colour"
        return setting

    def _box_hsv(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """HSV of the frame sampled at the working grid inside a box (working pixels): the pixels
        ``cv2.resize(..., INTER_NEAREST)`` to the working size would give there, without converting the whole frame
        (a histogram needs the pixels' colours, not a filtered image)."""
        if self._rows is None:
            (fh, fw), (h, w) = self._frame.shape[:2], self._work
            self._rows = np.minimum(np.arange(h) * fh // h, fh - 1)
            self._cols = np.minimum(np.arange(w) * fw // w, fw - 1)
        crop = self._frame[self._rows[y0:y1, None], self._cols[None, x0:x1]]
        return cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)

    def of(self, mask: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray | None:
        """The appearance of a non-empty mask given as its crop (uint8 0/1) inside ``box`` (y0, y1, x0, x1) of the
        working map of ``shape``, or None (the segmenter has no embedding for this frame)."""
        y0, y1, x0, x1 = box
        if self.kind == "embedding":
            full = np.zeros(shape, bool)
            full[y0:y1, x0:x1] = mask.view(bool)
            v = self._segmenter.pool_embedding(full)
            if v is None:
                return None
            n = float(np.linalg.norm(v))
            return (np.asarray(v, np.float32) / n) if n > 0 else None
        return hs_histogram(self._box_hsv(y0, y1, x0, x1), mask)


class CutDetector:
    """Scene cuts from the hue-saturation histograms of consecutive frames (see the module docstring)."""

    def __init__(self):
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        self._previous = None

    def __call__(self, frame: np.ndarray, threshold: float) -> tuple[bool, float]:
        """(whether ``frame`` cuts from the previous one, the distance); ``threshold`` 0 turns detection off."""
        step = max(1, max(frame.shape[:2]) // 128)  # every step-th pixel: about 128 x 72, a strided view, no filter
        small = subsample(frame, step)  # frame[::step, ::step], contiguous
        hist = hs_histogram(cv2.cvtColor(small, cv2.COLOR_RGB2HSV))
        previous, self._previous = self._previous, hist
        if previous is None or threshold <= 0:
            return False, 0.0
        d = hist_distance(previous, hist)
        return d > threshold, d
