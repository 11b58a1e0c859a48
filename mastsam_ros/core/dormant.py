"""Object permanence: signatures of tracks that left, re-identification of objects that come back, scene cuts.

A live track keeps a compact :class:`Signature` (refreshed every ``tracker.signature_interval`` frames while the
segmenter confirms it): its appearance (the mean of its last ``tracker.signature_views`` views) and its size at the
working resolution. When the track leaves (unseen for ``tracker.max_age`` frames, hidden by others, or a scene cut) the
signature is kept in the :class:`DormantSet`, bounded in number (``tracker.dormant_max``; when full, the oldest of the
largest group goes first, a group being another shot's signatures or those that left the current shot since the camera
came to it, so every place the camera looked at keeps some: :meth:`DormantSet.add`) and in age
(``tracker.dormant_max_age`` frames). A track born later whose signature matches a dormant one well enough takes the old
id back (:meth:`DormantSet.match`): the score is the appearance similarity, zero when the sizes differ by more than
``tracker.reid_max_area_ratio``; a match needs ``tracker.reid_min_score`` and, against the next best dormant signature,
a margin of ``tracker.reid_margin``, so a look-alike pair is left unmatched rather than guessed; and it must be found
within reach of where the dormant track was last seen (``tracker.reid_reach``: the two boxes' half diagonals plus its
last speed and a fraction of the image diagonal per frame away; the last position is kept, not extrapolated, since a
camera that panned away pans back and an occluded object stops behind its occluder). Live tracks hidden from view
(unseen for more than ``tracker.hidden_publish_frames``: carried, not published) compete alike: an object found again
near where such a track was carried takes its id at once, and the hidden track's guess is dropped.
Candidates and dormant signatures are paired one to one (Hungarian), so two live tracks never share an id. An
object that comes back partly in view (through the image border, from behind an occluder) may not match at first:
a track stays a candidate for ``tracker.reid_window`` frames after it was found, and when it matches later its
provisional id is reported merged into the old one.

Carried points can land on something else (an occluder, the background an object left, an object coming into view):
a track confirmed again after frames unseen, or on a mask whose IoU with its warped one is under 0.5, and every
track of at least ``GATE_SAMPLE_PIXELS`` working pixels every ``tracker.gate_interval`` frames (points that slide onto
an occluder a little each frame; a smaller grey region's hue histogram changes too much from frame to frame), must still
look like its signature (``tracker.gate_min_score``), else it leaves (dormant) and the mask becomes a new track. A
signature taken while the object is cut off by the image border, partly hidden (under half the stored area) or spilled
onto its surroundings (over twice the stored area, unless the stored one was cut off by the border: an object coming
into view grows), does not replace the stored one unless that one is over 3 x ``tracker.signature_interval`` frames
old. A hidden track is published for ``tracker.hidden_publish_frames`` (2) frames unseen and still carried and
prompted, unpublished, until ``tracker.max_age`` (10): its warped mask is a guess that soon lies on whatever covers
the object.

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
``scripts/permanence_thresholds.py`` measures it, and the colour similarities behind ``reid_min_score`` and
``gate_min_score``). A fast pan can change the histogram as much (the pan edits of ``evaluation/leave_return.py``: 38
consecutive pairs over 0.15), but its frames are one view shifted: a cut also needs the peak of the two frames' phase
correlation under ``tracker.cut_max_correlation`` (those pan pairs: 0.32 or more; frames of two sequences: at most
0.26). Carried points cannot be trusted across a cut: every live track goes dormant, and the frame is re-segmented
from scratch. A cut starts a new shot, or goes back to one seen before when this frame is within ``cut_distance`` of
that shot's last frame (the camera looked back); a dormant track is matched only in the shot it was last seen in, so
an object of the place the camera cut away from never takes an id in another place it cut to.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from .frames import subsample, take_grid

#: hue x saturation bins of the colour descriptor and of the cut detector's frame histogram
HIST_BINS = (16, 4)
#: the appearance gate judges masks of at least this many working pixels (4 a bin of the colour histogram on
#: average): a smaller mask's histogram is mostly noise (shrunken DAVIS at s = 0.25: libby's dog, ~60 pixels, was
#: gated away and lost; J&F 0.996 -> 0.732)
GATE_MIN_PIXELS = 4 * HIST_BINS[0] * HIST_BINS[1]
#: the appearance gate's histogram of a larger mask comes from an even sample of about this many of its pixels (every
#: k-th row and column): 16 a bin on average, at a fraction of the cost of all of them; the periodic check
#: (``tracker.gate_interval``) judges masks of at least this many pixels only (the bench's stand-in regions of ~600
#: pixels on grey road scored 0.49 against themselves two frames apart)
GATE_SAMPLE_PIXELS = 4 * GATE_MIN_PIXELS
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
    """What is remembered of one object's look: what re-identification compares (appearance, and size for the area
    ratio). Where and how fast it was last seen is kept beside it (:class:`Dormant`); a 3D position is not kept:
    nothing compares it yet."""

    kind: str  # "colour" or "embedding": only signatures of one kind are compared
    appearance: np.ndarray  # normalised histogram (colour) or unit vector (embedding), float32
    area: int  # pixels at the working resolution
    index: int  # frame index at which it was taken
    whole: bool = True  # the mask's box is clear of the image border (not cut off by the edge of the view)
    views: int = 1  # how many views its appearance averages (:meth:`seen_again`)

    def seen_again(self, new: Signature, views: int) -> Signature:
        """``new``'s view added to this signature: the appearance becomes the running mean of the last ``views``
        views (about: each new view weighs 1 / min(views so far, ``views``)); size, frame and border flag are
        ``new``'s."""
        if new.kind != self.kind:
            return new
        n = min(self.views + 1, max(views, 1))
        if n == 1:
            return Signature(self.kind, new.appearance, new.area, new.index, new.whole, self.views + 1)
        look = self.appearance + (new.appearance - self.appearance) / n
        if self.kind == "embedding":
            norm = float(np.linalg.norm(look))
            look = look / norm if norm > 0 else new.appearance
        return Signature(self.kind, look.astype(np.float32), new.area, new.index, new.whole, self.views + 1)

    def similarity(self, other: Signature) -> float:
        """Appearance similarity in [0, 1] (0 across kinds)."""
        if self.kind != other.kind:
            return 0.0
        if self.kind == "colour":
            return 1.0 - hist_distance(self.appearance, other.appearance)
        return float(max(0.0, np.dot(self.appearance, other.appearance)))


@dataclass
class Dormant:
    """A track that left: its id, its last signature, when and where it was last seen."""

    id: int
    signature: Signature
    last_seen: int
    shot: int = 0  # the shot it was last seen in (CutDetector.shot)
    box: list[int] | None = None  # (y0, y1, x0, x1) at the working resolution when last seen (None: anywhere)
    speed: float = 0.0  # how fast its box centre moved then, working pixels a frame


@dataclass
class Match:
    """A re-identification: candidate index -> the dormant id it takes back, with its score and time away."""

    candidate: int
    id: int
    score: float
    frames_away: int
    signature: Signature | None = None  # the one it was matched to


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

    def add(self, track_id: int, signature: Signature, last_seen: int, shot: int = 0, box: list[int] | None = None,
            speed: float = 0.0, current: int | None = None, since: int = 0) -> list[int]:
        """Remember a track that left; returns the ids forgotten to stay within ``tracker.dormant_max``. The
        signatures are grouped: one group per shot other than the ``current`` one, and one of the current shot's
        signatures that left since the camera came to it (frame ``since``); the oldest signature of the largest group
        goes first (of the largest groups, the oldest), so a camera that looked at several places in turn keeps some
        of each, and the tracks that come and go while it stays at one place push out each other, however long it
        stays. The current shot's signatures that left before the camera came back to it are kept while any group
        is left: they are the objects expected back (at a cut back the tracks of the place the camera cut away from
        go dormant at once, and may outnumber the room left). Without ``current``: the oldest first."""
        self._by_id[track_id] = Dormant(track_id, signature, last_seen, shot, box, speed)
        self._by_id.move_to_end(track_id)
        forgotten = []
        while len(self._by_id) > self.cfg.dormant_max:
            victim = None
            if current is not None:
                group = {i: (d.shot if d.shot != current else None) for i, d in self._by_id.items()
                         if d.shot != current or d.last_seen >= since}  # None: the current shot since ``since``
                size = Counter(group.values())
                most = max(size.values(), default=0)
                victim = next((i for i, g in group.items() if size[g] == most), None)
            if victim is None:
                victim = next(iter(self._by_id))
            del self._by_id[victim]
            forgotten.append(victim)
        return forgotten

    def expire(self, index: int) -> list[int]:
        """Forget signatures unseen for more than ``tracker.dormant_max_age`` frames; returns their ids."""
        old = [i for i, d in self._by_id.items() if index - d.last_seen > self.cfg.dormant_max_age]
        for i in old:
            del self._by_id[i]
        return old

    def match(self, candidates: list[Signature], index: int, shot: int = 0, hidden: list[Dormant] = (),
              near: np.ndarray | None = None, boxes: np.ndarray | None = None, diag: float = 0.0) -> list[Match]:
        """Pair newly found tracks' signatures with those of the dormant tracks last seen in this ``shot`` and of the
        live tracks ``hidden`` from view (carried, unpublished: they compete alike, each taken only by the candidates
        ``near`` it, a candidates x hidden boolean matrix: default all) one to one; the matched dormant ids leave the
        set. ``boxes``: the candidates' boxes (y0, y1, x0, x1 rows, working pixels) in an image of diagonal ``diag``,
        for ``tracker.reid_reach`` (None: no position check)."""
        cfg = self.cfg
        dormant = [d for d in self._by_id.values() if d.shot == shot] + list(hidden)
        if not candidates or not dormant:
            return []
        look = _similarities(candidates, [d.signature for d in dormant])
        gone = len(dormant) - len(hidden)  # the dormant ones first, then the hidden live ones
        far = np.zeros(look.shape, bool)  # not there: not that object (but still a look-alike below)
        if near is not None and len(hidden):
            far[:, gone:] = ~np.asarray(near, bool)
        if boxes is not None and cfg.reid_reach > 0:
            far[:, :gone] = ~_within_reach(boxes, dormant[:gone], index, cfg.reid_reach * diag)
        ratio = (np.array([max(c.area, 1) for c in candidates], float)[:, None]
                 / np.array([max(d.signature.area, 1) for d in dormant], float)[None, :])
        score = np.where(far | (ratio < 1.0 / cfg.reid_max_area_ratio) | (ratio > cfg.reid_max_area_ratio), 0.0, look)
        # a candidate's match must stand out from its next best dormant signature, and a dormant signature's from
        # its next best candidate, by appearance alone (one of another size or elsewhere that looks as alike counts
        # too): look-alikes stay unmatched
        margin = cfg.reid_margin
        second_row = np.sort(look, axis=1)[:, -2] if look.shape[1] > 1 else np.zeros(len(candidates))
        second_col = np.sort(look, axis=0)[-2, :] if look.shape[0] > 1 else np.zeros(len(dormant))
        rows, cols = linear_sum_assignment(-score)
        out = []
        for i, j in zip(rows.tolist(), cols.tolist()):
            s = score[i, j]
            if s < cfg.reid_min_score:
                continue
            if (s < look[i].max() or s - second_row[i] < margin
                    or s < look[:, j].max() or s - second_col[j] < margin):
                continue
            d = dormant[j]
            out.append(Match(i, d.id, float(s), index - d.last_seen, d.signature))
        for m in out:
            self._by_id.pop(m.id, None)
        return out


def _within_reach(boxes: np.ndarray, dormant: list[Dormant], index: int, reach: float) -> np.ndarray:
    """Candidates x dormant: whether a candidate's box centre lies within the dormant track's reach of where it was
    last seen (the two boxes' half diagonals, plus its last speed and ``reach`` working pixels per frame away; where
    it was last seen is kept, not extrapolated: a camera that panned away pans back, an occluded object stops)."""
    out = np.ones((len(boxes), len(dormant)), bool)
    at = [j for j, d in enumerate(dormant) if d.box is not None]
    if not at or not len(boxes):
        return out
    b = np.asarray(boxes, np.float64)
    d = np.array([dormant[j].box for j in at], np.float64)
    away = np.array([index - dormant[j].last_seen for j in at], np.float64)
    speed = np.array([dormant[j].speed for j in at], np.float64)
    centre = lambda x: np.stack([x[:, 0] + x[:, 1], x[:, 2] + x[:, 3]], 1) / 2  # noqa: E731
    half = lambda x: np.hypot(x[:, 1] - x[:, 0], x[:, 3] - x[:, 2]) / 2  # noqa: E731
    dist = np.linalg.norm(centre(b)[:, None, :] - centre(d)[None, :, :], axis=2)
    out[:, at] = dist <= half(b)[:, None] + half(d)[None, :] + (speed + reach) * away
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

    def _box_hsv(self, y0: int, y1: int, x0: int, x1: int, step: int = 1) -> np.ndarray:
        """HSV of the frame sampled at the working grid inside a box (working pixels, every ``step``-th row and
        column): the pixels ``cv2.resize(..., INTER_NEAREST)`` to the working size would give there, without
        converting the whole frame (a histogram needs the pixels' colours, not a filtered image)."""
        if self._rows is None:
            (fh, fw), (h, w) = self._frame.shape[:2], self._work
            self._rows = np.minimum(np.arange(h) * fh // h, fh - 1)
            self._cols = np.minimum(np.arange(w) * fw // w, fw - 1)
        rows, cols = self._rows[y0:y1:step], self._cols[x0:x1:step]
        return cv2.cvtColor(take_grid(self._frame, rows, cols), cv2.COLOR_RGB2HSV)

    def of(self, mask: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int],
           step: int = 1) -> np.ndarray | None:
        """The appearance of a non-empty mask given as its crop (uint8 0/1) inside ``box`` (y0, y1, x0, x1) of the
        working map of ``shape``, or None (the segmenter has no embedding for this frame). ``step`` > 1: the colour
        histogram of every ``step``-th row and column only (an even sample, for a cheap check of a large mask)."""
        y0, y1, x0, x1 = box
        if self.kind == "embedding":
            full = np.zeros(shape, bool)
            full[y0:y1, x0:x1] = mask.view(bool)
            v = self._segmenter.pool_embedding(full)
            if v is None:
                return None
            n = float(np.linalg.norm(v))
            return (np.asarray(v, np.float32) / n) if n > 0 else None
        if step > 1:
            mask = np.ascontiguousarray(mask[::step, ::step])
        return hs_histogram(self._box_hsv(y0, y1, x0, x1, step), mask)


class CutDetector:
    """Scene cuts from consecutive frames (see the module docstring): the hue-saturation histograms must differ
    (``tracker.cut_distance``) and the two frames must not be one view shifted (the peak of their phase correlation
    below ``tracker.cut_max_correlation``), so a fast pan over differently coloured scenery is no cut."""

    #: shots whose last frame is remembered, to tell a cut back to one of them (the oldest forgotten first)
    SHOTS = 32

    def __init__(self):
        self._previous: np.ndarray | None = None
        self._small: np.ndarray | None = None
        self._window: np.ndarray | None = None
        self.shot = 0  # the shot of the latest frame: a new number at a cut, or the number of the shot cut back to
        self._ends: OrderedDict[int, np.ndarray] = OrderedDict()  # shot -> histogram of its last frame
        self._shots = 0

    def reset(self) -> None:
        self._previous = self._small = None
        self._ends.clear()
        self.shot = self._shots = 0

    def __call__(self, frame: np.ndarray, threshold: float, max_correlation: float = 1.0,
                 measured: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[bool, float]:
        """(whether ``frame`` cuts from the previous one, the histogram distance); ``threshold`` 0 turns detection
        off; ``max_correlation`` 1 leaves the histograms alone to decide. ``measured``: :meth:`measure` of
        ``frame`` when it was computed already."""
        small, hist = self.measure(frame) if measured is None else measured
        (previous, self._previous), (before, self._small) = (self._previous, hist), (self._small, small)
        if previous is None or threshold <= 0:
            return False, 0.0
        d = hist_distance(previous, hist)
        cut = d > threshold and (max_correlation >= 1.0 or self.correlation(before, small) < max_correlation)
        if cut:
            self._cut_to(previous, hist, threshold)
        return cut, d

    @staticmethod
    def measure(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What a call reads of ``frame``: every step-th pixel (about 128 x 72, a strided view, no filter) and their
        hue-saturation histogram. It reads and changes no state, so it may run beside other work (the tracker runs
        it while its matcher thread works)."""
        step = max(1, max(frame.shape[:2]) // 128)
        small = subsample(frame, step)  # frame[::step, ::step], contiguous
        return small, hs_histogram(cv2.cvtColor(small, cv2.COLOR_RGB2HSV))

    def _cut_to(self, end: np.ndarray, hist: np.ndarray, threshold: float) -> None:
        """The shot after a cut: one seen before whose last frame is within ``threshold`` of this frame (the camera
        looked back), else a new one."""
        self._ends[self.shot] = end
        self._ends.move_to_end(self.shot)
        while len(self._ends) > self.SHOTS:
            self._ends.popitem(last=False)
        near = [(hist_distance(h, hist), s) for s, h in self._ends.items() if s != self.shot]
        back = min(near, default=(np.inf, -1))
        if back[0] <= threshold:
            self.shot = back[1]
        else:
            self._shots += 1
            self.shot = self._shots

    def correlation(self, a: np.ndarray, b: np.ndarray) -> float:
        """Peak of the phase correlation of two RGB frames in grey (1: one view shifted; near 0: unrelated views);
        0 when their sizes differ."""
        if a.shape != b.shape:
            return 0.0
        ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (a, b))
        if self._window is None or self._window.shape != ga.shape:
            self._window = cv2.createHanningWindow(ga.shape[::-1], cv2.CV_32F)
        return float(cv2.phaseCorrelate(ga, gb, self._window)[1])
