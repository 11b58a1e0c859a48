"""The MAST-SAM tracker: temporally consistent instance masks from a segmenter and a matcher.

Per frame (``Tracker.step``):
1. embed the frame once (segmenter) and push it to the matcher (whose features of the previous frame are kept);
2. carry every track's mask points from the previous frame with the matcher; drop points without a trustworthy
   correspondence and points isolated from the bulk of their track (one stray point can join car and road);
3. prompt the segmenter with each track's carried points (positives) and nearby tracks' points (negatives), all
   tracks in one batched call (or, under ``tracker.max_prompts_per_frame``, the tracks with the most doubt: low
   confidence of their carried points, a warped mask that drifted from the segmenter's last answer); keep each
   mask's main connected parts; reject a mask whose area or position jumps beyond a bound and keep the track's
   warped previous mask instead (warped pixel by pixel along the matcher's dense field where it has one, ``flow``;
   moved by its points' median displacement otherwise);
4. on keyframes (every ``tracker.keyframe_interval`` frames, the first frame, or on request) run automatic
   segmentation and match its masks to the tracks by IoU so ids persist (a scheduled one is spread over the next
   frames, ``tracker.resegment_seeds_per_frame`` grid seeds each, so the stream never stalls); between keyframes, every
   ``tracker.new_region_interval`` frames, segment large uncovered regions (newly visible area) into new tracks;
5. merge tracks whose masks overlap beyond ``tracker.merge_overlap`` of the smaller with union-find (the older id
   survives), paint the partition (label map, 0 = background), retire tracks unseen for ``tracker.max_age`` frames;
6. derive the next mask points: k-means centroids of each track's pixels.

Ids are never reused, not even across :meth:`Tracker.reset`, so a downstream consumer never confuses two objects.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from . import masks as M
from .clustering import KMeans, build_clustering
from .config import Config
from .errors import ConfigError
from .frames import check_frame
from .matchers import Matcher, build_matcher
from .points import isolated, mask_points
from .segmenters import Segmenter, build_segmenter
from .segmenters.base import grid_points
from .types import FrameResult, PointPrompt, Proposal, TrackInfo

log = logging.getLogger(__name__)

#: Doubt a track gains per unprompted frame even when all its points were carried with full confidence.
DOUBT_FLOOR = 0.1
#: Weight of a track's measured warp error (1 - IoU of its warped and its prompted mask at its last prompt, per frame
#: it went unprompted before) in the doubt it gains per frame. 5 was best of 2, 5, 10, 20 (docs/RESULTS.md).
WARP_WEIGHT = 5.0


@dataclass
class _Track:
    id: int
    mask: np.ndarray  # H x W bool, the track's pixels in the latest frame (its part of the partition)
    points: np.ndarray  # (k, 2) float32 mask points, to be carried into the next frame
    score: float
    born: int  # frame index of birth
    last_seen: int  # frame index of the last segmenter-confirmed (or confidently carried) mask
    last_prompted: int = -1  # frame index of the last prompt, for the per-frame prompt budget
    doubt: float = 0.0  # doubt accumulated since the last prompt (prompt budget: the most doubtful go first)
    warp_error: float = 0.0  # 1 - IoU of warped and prompted mask at the last prompt, per unprompted frame before it

    @property
    def area(self) -> int:
        return int(self.mask.sum())


class Tracker:
    """Frame in, label map and tracks out. Not thread-safe except :meth:`request_keyframe` and :meth:`request_reset`.

    Backends are built from ``cfg`` unless given (evaluation passes its own segmenter; tests pass fakes).
    """

    def __init__(
        self,
        cfg: Config | None = None,
        segmenter: Segmenter | None = None,
        matcher: Matcher | None = None,
        clustering: KMeans | None = None,
    ):
        self.cfg = cfg or Config()
        self.segmenter = segmenter or build_segmenter(self.cfg.segmenter)
        self.matcher = matcher or build_matcher(self.cfg.matcher)
        self.kmeans = clustering or build_clustering(self.cfg.clustering)
        # Backends given by the caller are not ours to rebuild when their config changes (see configure).
        self._owned = {"segmenter": segmenter is None, "matcher": matcher is None, "clustering": clustering is None}
        self._last_frame: np.ndarray | None = None
        self._next_id = 1
        self._flags_lock = threading.Lock()
        self._keyframe_requested = False
        self._reset_requested = False
        self.reset()

    # --- control ------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all tracks and frames. Ids keep counting up."""
        self._tracks: list[_Track] = []
        self._index = -1
        self._shape: tuple[int, int] | None = None
        self._rng = np.random.default_rng(self.cfg.clustering.seed)
        self._fresh = True
        self._pending_seeds: np.ndarray | None = None  # grid seeds of a spread re-segmentation still to decode
        self.matcher.reset()

    def request_keyframe(self) -> None:
        """Run a full re-segmentation on the next frame (thread-safe)."""
        with self._flags_lock:
            self._keyframe_requested = True

    def request_reset(self) -> None:
        """Reset before the next frame (thread-safe; for front ends whose worker owns the tracker)."""
        with self._flags_lock:
            self._reset_requested = True

    def configure(self, changes: dict) -> list[str]:
        """Apply config changes (``{dotted name: value}``) between two frames; returns the sections rebuilt.

        Validates first (ConfigError, nothing applied). Fields read at call time take effect on the next frame. A
        field marked ``rebuild`` (copied by its backend when built: ``matcher.max_side``, ``matcher.flow_preset``...)
        rebuilds that backend from the new config; a rebuilt matcher is given the last frame again, so the next frame
        still carries points from it. A backend the caller passed in (tests, evaluation) is not rebuilt: a warning
        says so. Not thread-safe: the tracker's owner (the node's worker) calls it between frames.
        """
        trial = copy.deepcopy(self.cfg)
        trial.update(changes)
        meta = {name: fld.metadata for name, fld, _ in trial.fields()}
        now, new = self.cfg.as_dict(), trial.as_dict()
        for name in changes:
            if meta[name].get("read_only") and new[name] != now[name]:
                raise ConfigError(f"{name} is read-only: it is fixed when the tracker is built")
        stale = sorted({n.split(".")[0] for n in changes if meta[n].get("rebuild")})
        for name in changes:  # in place, so the backends' own references to their section see the new values
            section, key = name.split(".")
            setattr(getattr(self.cfg, section), key, new[name])
        rebuilt = []
        for section in stale:
            if not self._owned[section]:
                log.warning("%s was passed in by the caller: not rebuilt for the new %s values", section, section)
                continue
            if section == "segmenter":
                self.segmenter = build_segmenter(self.cfg.segmenter)
            elif section == "matcher":
                self.matcher = build_matcher(self.cfg.matcher)
                if self._last_frame is not None:
                    self.matcher.push(self._last_frame)
            elif section == "clustering":
                self.kmeans = build_clustering(self.cfg.clustering)
                self._rng = np.random.default_rng(self.cfg.clustering.seed)
            rebuilt.append(section)
        return rebuilt

    @property
    def frame_shape(self) -> tuple[int, int] | None:
        return self._shape

    # --- the per-frame step -------------------------------------------------------------------------------------
    def step(self, frame: np.ndarray) -> FrameResult:
        """Track one frame: ``frame`` is H x W x 3 uint8 RGB (or H x W grey). Raises FrameError on bad frames.

        A frame of another size than the previous one resets the state (one warning) and starts afresh.
        """
        t_start = time.perf_counter()
        frame = check_frame(frame)
        self.matcher.check_size(*frame.shape[:2])  # before any state changes: a refused frame changes nothing
        with self._flags_lock:
            keyframe_requested, self._keyframe_requested = self._keyframe_requested, False
            reset_requested, self._reset_requested = self._reset_requested, False
        if reset_requested:
            self.reset()
        if self._shape is not None and frame.shape[:2] != self._shape:
            log.warning("frame size changed from %s to %s: tracker state reset", self._shape, frame.shape[:2])
            self.reset()
        was_fresh, self._fresh = self._fresh, False
        self._shape = frame.shape[:2]
        self._index += 1
        self._timings: dict[str, float] = {}
        cfg = self.cfg.tracker
        before = {t.id for t in self._tracks}

        with self._timed("encoder"):
            self.segmenter.set_image(frame)
        with self._timed("matcher"):
            self.matcher.push(frame)
        self._last_frame = frame

        correspondences = None
        if self._tracks:
            with self._timed("matcher"):
                carried, shifts, correspondences = self._carry()
            with self._timed("prompt"):
                self._prompt(carried, shifts)

        keyframe = (
            not self._tracks
            or keyframe_requested
            or (cfg.keyframe_interval > 0 and self._index % cfg.keyframe_interval == 0)
        )
        per_frame = cfg.resegment_seeds_per_frame
        resegmenting = False
        if keyframe and (per_frame == 0 or not self._tracks or keyframe_requested):
            self._pending_seeds = None
            with self._timed("automatic"):
                self._merge_automatic(self.segmenter.generate())
        elif keyframe or self._pending_seeds is not None:
            if self._pending_seeds is None:  # start a spread re-segmentation over the whole grid
                self._pending_seeds = grid_points(self._shape, self.cfg.segmenter.points_per_side)
            chunk, rest = self._pending_seeds[:per_frame], self._pending_seeds[per_frame:]
            self._pending_seeds = rest if len(rest) else None
            resegmenting = True
            with self._timed("automatic"):
                self._merge_automatic(self.segmenter.generate(seeds=chunk))
        elif cfg.new_region_interval > 0 and self._index % cfg.new_region_interval == 0:
            with self._timed("new_area"):
                self._segment_new_area()

        with self._timed("merge"):
            labels = self._partition()
        with self._timed("clustering"):
            self._refresh_points()

        after = {t.id for t in self._tracks}
        self._timings["total"] = (time.perf_counter() - t_start) * 1e3
        return FrameResult(
            index=self._index,
            labels=labels,
            tracks=[self._info(t) for t in self._tracks],
            keyframe=keyframe,
            resegmenting=resegmenting,
            reset=was_fresh,
            new_ids=sorted(after - before),
            retired_ids=sorted(before - after),
            timings=self._timings,
            correspondences=correspondences,
        )

    # --- stages -------------------------------------------------------------------------------------------------
    def _carry(self):
        """Carry all tracks' points at once; returns per-track kept points, per-track shift, and the kept pairs."""
        cfg = self.cfg.tracker
        counts = [t.points.shape[0] for t in self._tracks]
        src = np.concatenate([t.points for t in self._tracks]) if sum(counts) else np.zeros((0, 2), np.float32)
        dst, conf = self.matcher.carry(src)
        h, w = self._shape
        inside = (dst[:, 0] >= 0) & (dst[:, 0] <= w - 1) & (dst[:, 1] >= 0) & (dst[:, 1] <= h - 1)
        ok = (conf >= cfg.min_match_confidence) & inside
        carried, shifts, keep_src, keep_dst = [], [], [], []
        start = 0
        for t, n in zip(self._tracks, counts):
            p, q, good = src[start : start + n], dst[start : start + n], ok[start : start + n]
            # Doubt about where the track went: 1 - mean confidence of its points (a lost point counts 0), plus how
            # fast its warp drifted from the segmenter's answer last time, plus a floor so that every track gets its
            # turn.
            point_doubt = 1.0 - (float(np.where(good, conf[start : start + n], 0.0).mean()) if n else 0.0)
            t.doubt += DOUBT_FLOOR + point_doubt + WARP_WEIGHT * t.warp_error
            start += n
            # The track's motion: median displacement of its trustworthy points (None: no idea where it went).
            shifts.append(np.median(q[good] - p[good], axis=0) if good.any() else None)
            q, p = q[good], p[good]
            stray = isolated(q, cfg.isolation_factor)
            carried.append(q[~stray])
            keep_src.append(p[~stray])
            keep_dst.append(q[~stray])
        pairs = (np.concatenate(keep_src), np.concatenate(keep_dst)) if keep_src else None
        return carried, shifts, pairs

    def _prompt(self, carried: list[np.ndarray], shifts: list) -> None:
        cfg = self.cfg.tracker
        h, w = self._shape
        diag = float(np.hypot(h, w))
        warped = self._warp_masks(shifts)
        candidates = [i for i, pts in enumerate(carried) if pts.shape[0]]
        budget = cfg.max_prompts_per_frame
        if budget and len(candidates) > budget:  # the most doubt since their last prompt first
            candidates = sorted(candidates, key=lambda i: (-self._tracks[i].doubt, self._tracks[i].last_prompted, i))
            candidates = candidates[:budget]
        chosen = set(candidates)
        prompts, who = [], []
        for i, pts in enumerate(carried):
            if i not in chosen:
                continue
            negatives = self._negatives(i, carried, warped[i]) if cfg.negative_points else np.zeros((0, 2), np.float32)
            prompts.append(
                PointPrompt(
                    points=np.concatenate([pts, negatives]).astype(np.float32),
                    labels=np.concatenate([np.ones(len(pts), np.int32), np.zeros(len(negatives), np.int32)]),
                )
            )
            who.append(i)
        answers = self.segmenter.predict(prompts) if prompts else []
        confirmed = {}
        for i, prop in zip(who, answers):
            mask = M.main_parts(prop.mask, cfg.secondary_component_fraction, self._min_area())
            if self._plausible(mask, warped[i], carried[i], diag):
                confirmed[i] = (mask, prop.score)
        for i, t in enumerate(self._tracks):
            if i in confirmed and budget and t.last_prompted >= 0:
                m = confirmed[i][0]
                union = int((m | warped[i]).sum())
                iou = (m & warped[i]).sum() / union if union else 1.0
                t.warp_error = (1.0 - iou) / max(self._index - t.last_prompted, 1)
            if i in chosen:
                t.last_prompted, t.doubt = self._index, 0.0
            if i in confirmed:
                t.mask, t.score = confirmed[i]
                t.last_seen = self._index
            elif i not in chosen and carried[i].shape[0]:
                # Not prompted this frame (budget) but its points were carried with confidence: it moved with them.
                t.mask = warped[i]
                t.last_seen = self._index
            else:
                t.mask, t.score = warped[i], 0.0

    def _warp_masks(self, shifts: list) -> list[np.ndarray]:
        """Where each track's previous mask is now, without asking the segmenter: the reference for the plausibility
        checks, the fallback when a prompt fails, and the mask of a track left unprompted by the prompt budget.

        With a dense matcher (``flow``) the previous masks are warped pixel by pixel along the correspondence field,
        so they follow deformation and parts moving differently; with a sparse one each mask moves rigidly by the
        median displacement of its carried points (unmoved when none was carried)."""
        index = np.zeros(self._shape, np.uint16)  # the masks are a partition (see _partition): one map holds all
        for k, t in enumerate(self._tracks):
            index[t.mask] = k + 1
        moved = self.matcher.warp_labels(index)
        if moved is not None:
            return [moved == k + 1 for k in range(len(self._tracks))]
        return [M.shift_mask(t.mask, *s) if s is not None else t.mask for t, s in zip(self._tracks, shifts)]

    def _negatives(self, i: int, carried: list[np.ndarray], near: np.ndarray) -> np.ndarray:
        """Other tracks' carried points inside track i's expected box: where confusion between them is likely."""
        x, y, bw, bh = M.bbox(near)
        if bw == 0:
            return np.zeros((0, 2), np.float32)
        mx, my = 0.1 * bw, 0.1 * bh
        others = [c for j, c in enumerate(carried) if j != i and c.shape[0]]
        if not others:
            return np.zeros((0, 2), np.float32)
        pts = np.concatenate(others)
        sel = (pts[:, 0] >= x - mx) & (pts[:, 0] <= x + bw + mx) & (pts[:, 1] >= y - my) & (pts[:, 1] <= y + bh + my)
        return pts[sel][:8]

    def _plausible(self, mask: np.ndarray, expected: np.ndarray, positives: np.ndarray, diag: float) -> bool:
        """Reject the collapse cases: an empty mask, an area jump, a centroid jump, or a mask missing its prompts."""
        cfg = self.cfg.tracker
        area, ref = int(mask.sum()), int(expected.sum())
        if area == 0:
            return False
        if ref > 0:
            ratio = area / ref
            if ratio > cfg.max_area_ratio or ratio < 1.0 / cfg.max_area_ratio:
                return False
            if np.hypot(*(_centroid(mask) - _centroid(expected))) > cfg.max_shift_fraction * diag:
                return False
        xy = np.round(positives).astype(int)
        h, w = mask.shape
        hits = mask[np.clip(xy[:, 1], 0, h - 1), np.clip(xy[:, 0], 0, w - 1)]
        return bool(hits.mean() >= cfg.min_prompt_hits)

    def _merge_automatic(self, props: list[Proposal]) -> None:
        """Automatic masks (all of a re-segmentation, or a slice): they join tracks by IoU, the rest may be new."""
        props = self._big_enough(props)
        if self._tracks and props:
            used = self._associate(props)
            props = [p for k, p in enumerate(props) if k not in used]
        self._add_tracks(props)

    def _associate(self, props: list[Proposal]) -> set[int]:
        """Give re-segmentation masks to existing tracks; returns the indices of the proposals used.

        One Hungarian assignment on IoU (at least ``tracker.match_iou``). A track whose prompt failed this frame holds
        only its warped previous mask, which drifts; it may still take an unassigned proposal that covers most of
        that mask and is of a plausible size, so the object comes back under its old id instead of a new one.
        """
        cfg = self.cfg.tracker
        pm = [p.mask for p in props]
        iou = M.iou_matrix(pm, [t.mask for t in self._tracks])
        rows, cols = linear_sum_assignment(-iou)
        used, matched = set(), set()
        for r, c in zip(rows, cols):
            if iou[r, c] >= cfg.match_iou:
                used.add(int(r))
                matched.add(int(c))
                self._refresh(self._tracks[c], props[r])
        for c, t in enumerate(self._tracks):
            if c in matched or t.last_seen == self._index:
                continue
            area = max(t.area, 1)
            best, best_cover = None, 0.5
            for r, p in enumerate(props):
                if r in used:
                    continue
                ratio = p.mask.sum() / area
                cover = (p.mask & t.mask).sum() / area
                if cover > best_cover and 1.0 / cfg.max_area_ratio <= ratio <= cfg.max_area_ratio:
                    best, best_cover = r, cover
            if best is not None:
                used.add(best)
                self._refresh(t, props[best])
        return used

    def _refresh(self, t: _Track, p: Proposal) -> None:
        if t.last_seen != self._index:  # the prompt failed this frame: take the fresh mask
            t.mask, t.score = p.mask, p.score
            t.last_seen = self._index

    def _segment_new_area(self) -> None:
        """Segment large regions that no track covers (newly visible area) into new tracks."""
        cfg = self.cfg.tracker
        h, w = self._shape
        free = np.ones((h, w), bool)
        for t in self._tracks:
            free &= ~t.mask
        free = cv2.morphologyEx(free.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        n, cc, stats, _ = cv2.connectedComponentsWithStats(free, connectivity=8)
        big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= cfg.new_region_fraction * h * w)
        big = big[big > 0]
        if big.size == 0:
            return
        region = np.isin(cc, big)
        seeds = grid_points(self._shape, self.cfg.segmenter.points_per_side, region)
        per_frame = cfg.resegment_seeds_per_frame
        if per_frame and len(seeds) > per_frame:  # bound this frame's work: an even subset of the seeds
            seeds = seeds[np.linspace(0, len(seeds) - 1, per_frame).astype(int)]
        self._add_tracks(self._big_enough(self.segmenter.generate(region, seeds=seeds)))

    def _min_area(self) -> float:
        h, w = self._shape
        return self.cfg.tracker.min_area_fraction * h * w

    def _big_enough(self, props: list[Proposal]) -> list[Proposal]:
        min_area = self._min_area()
        return [p for p in props if p.mask.sum() >= min_area]

    def _add_tracks(self, props: list[Proposal]) -> None:
        """New tracks from proposals that lie mostly on uncovered pixels, best first, each claiming its pixels."""
        cfg = self.cfg.tracker
        h, w = self._shape
        taken = np.zeros((h, w), bool)
        for t in self._tracks:
            taken |= t.mask
        min_area = self._min_area()
        for p in sorted(props, key=lambda p: -p.score):
            if len(self._tracks) >= cfg.max_tracks:
                break
            fresh = M.main_parts(p.mask & ~taken, cfg.secondary_component_fraction, min_area)
            area = int(fresh.sum())
            if area < min_area or area < 0.5 * p.mask.sum():
                continue
            self._tracks.append(
                _Track(self._next_id, fresh, np.zeros((0, 2), np.float32), p.score, self._index, self._index)
            )
            self._next_id += 1
            taken |= fresh

    def _partition(self) -> np.ndarray:
        """Merge overlapping tracks (union-find, older id survives), retire stale ones, paint the label map."""
        cfg = self.cfg.tracker
        tracks = [t for t in self._tracks if self._index - t.last_seen <= cfg.max_age and t.mask.any()]
        merged = []
        for group in M.merge_groups([t.mask for t in tracks], cfg.merge_overlap):
            keep = tracks[group[0]]  # tracks are kept in birth order, so the first is the oldest
            if len(group) > 1:
                union = np.logical_or.reduce([tracks[g].mask for g in group])
                # A merge that would more than multiply the survivor's area is the car-and-road collapse: refuse it
                # and let painting split the overlap instead.
                if union.sum() <= cfg.max_area_ratio * max(keep.area, 1):
                    keep.mask = union
                    keep.last_seen = max(tracks[g].last_seen for g in group)
                    merged.append(keep)
                    continue
                merged.extend(tracks[g] for g in group)
                continue
            merged.append(keep)
        merged.sort(key=lambda t: t.id)
        if len(merged) > cfg.max_tracks:  # keep the largest
            merged = sorted(sorted(merged, key=lambda t: -t.area)[: cfg.max_tracks], key=lambda t: t.id)
        labels = M.paint(self._shape, [t.mask for t in merged], [t.id for t in merged])
        # Each track keeps only its visible part, so the stored masks are a partition too.
        for t in merged:
            t.mask = labels == t.id
        self._tracks = [t for t in merged if t.mask.any()]
        return labels

    def _refresh_points(self) -> None:
        cfg = self.cfg.tracker
        n = max(len(self._tracks), 1)
        cap = max(1, cfg.max_points_total // n)
        for t in self._tracks:
            pts = mask_points(t.mask, self.kmeans, cfg, self._rng, self.cfg.clustering.max_samples)
            t.points = pts[:cap]

    # --- helpers ------------------------------------------------------------------------------------------------
    def _info(self, t: _Track) -> TrackInfo:
        return TrackInfo(
            id=t.id,
            score=float(t.score),
            area=t.area,
            bbox=M.bbox(t.mask),
            age=self._index - t.born,
            frames_since_seen=self._index - t.last_seen,
            points=t.points.copy(),
        )

    @contextmanager
    def _timed(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._timings[stage] = self._timings.get(stage, 0.0) + (time.perf_counter() - t0) * 1e3


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()]) if xs.size else np.zeros(2)
