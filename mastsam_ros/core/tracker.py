"""The MAST-SAM tracker: temporally consistent instance masks from a segmenter and a matcher.

Per frame (``Tracker.prepare``, which a stream may run one frame ahead in another thread, then ``Tracker.step``):
1. embed the frame once (segmenter) while the matcher computes the pair previous -> current in a second thread
   (``tracker.overlap_matcher``: DIS flow on the CPU runs while the encoder runs);
2. carry every track's mask points from the previous frame with the matcher; drop points without a trustworthy
   correspondence and points isolated from the bulk of their track (one stray point can join car and road);
3. warp the previous label map along the matcher's dense field (``flow``; with a sparse matcher each mask moves by
   its points' median displacement): where each track is now without asking the segmenter;
4. prompt the segmenter with each track's carried points (positives) and nearby tracks' points (negatives), all
   tracks in one batched call, or under ``tracker.max_prompts_per_frame`` the most doubtful ones (``budget.py``);
   keep each answer's main connected parts; reject an answer whose area or position jumps or that misses its
   prompts, and keep the warped mask instead;
5. what the schedule says (``schedule.py``): automatic masks from a re-segmentation started on each keyframe (the
   whole grid at once, or a slice of it a frame until the next keyframe) matched to the tracks by IoU so ids
   persist, and every ``tracker.new_region_interval`` frames newly visible area segmented into new tracks;
6. merge tracks whose masks overlap beyond ``tracker.merge_overlap`` of the smaller with union-find (the older id
   survives; a merge that would multiply the survivor's area is refused: car and road; a track unseen this frame
   joins no merge: it keeps what the seen ones leave it, so its id neither rides onto them nor is lost), retire
   tracks unseen for ``tracker.max_age`` frames, paint the partition;
7. derive the next mask points: k-means centroids of every track's pixels at once.

All of this runs on one label map at a working resolution (longer side ``tracker.work_max_side``, SAM's decoder
output size by default), never on full-size masks: segmenter answers arrive at that size (``Segmenter.mask_shape``)
or are resized to it once. Only the published label map is brought to the frame size, once per frame
(:meth:`WorkGrid.publish`: nearest neighbour, the boundary pixels by interpolated probability); track areas and boxes
are those of that published map; a small track answered this frame takes its published pixels from the segmenter's
frame-size answer inside its box (``small.py``). The per-pixel and per-track work of each stage is done by compiled
kernels (``masks.py``, ``points.py``, ``grid.py``, ``clustering/batch.py``; numba through ``jit.py``), a few calls per
track instead of a few dozen NumPy calls.

Ids are never reused, not even across :meth:`Tracker.reset`, so a downstream consumer never confuses two objects.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from . import masks as M
from .budget import PromptBudget
from .clustering import KMeans, build_clustering
from .config import Config
from .dormant import GATE_MIN_PIXELS, GATE_SAMPLE_PIXELS, Appearance, CutDetector, Dormant, DormantSet, Signature
from .errors import ConfigError, FrameError
from .frames import check_frame
from .grid import WorkGrid
from .matchers import Matcher, build_matcher
from .points import carried_flags, label_points, near_points, prompt_arrays
from .schedule import Resegmentation
from .segmenters import Segmenter, build_segmenter
from .segmenters.base import grid_points
from .small import frame_answer, publish_small
from .types import FrameResult, PointPrompt, TrackEvent, TrackInfo

log = logging.getLogger(__name__)


@dataclass
class _Track:
    """One object: its identity and its mask points. Its pixels are its index in the tracker's working map."""

    id: int
    points: np.ndarray  # (k, 2) float32 mask points in frame pixels, carried into the next frame
    score: float  # segmenter score of its latest accepted mask (0 after a rejected or impossible prompt)
    born: int  # frame index of birth
    last_seen: int  # frame index of the last segmenter-confirmed mask (or confident carry while unprompted)
    signature: Signature | None = None  # what is remembered if it leaves (dormant.py), refreshed while confirmed
    provisional: bool = True  # its id may still give way to a dormant one (found under tracker.reid_window ago)
    box: list[int] | None = None  # (y0, y1, x0, x1) working pixels when last seen: where it is looked for if it leaves
    box_index: int = 0  # the frame of ``box``
    speed: float = 0.0  # its box centre's recent speed, working pixels a frame


@dataclass
class Prepared:
    """:meth:`Tracker.prepare`'s answer: what a frame's step can use instead of computing it (by the backends that
    made it)."""

    segmenter: Segmenter
    matcher: Matcher
    embedding: object = None  # ``segmenter.embed(frame)``
    pair: object = None  # ``matcher.pair_ahead(previous, frame)`` (None: nothing computed ahead)
    flow_ms: float = 0.0  # the pair's part of it (beside the encoder when overlapped)


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
        self._last_frame: np.ndarray | None = None  # the last frame stepped (given to a rebuilt matcher)
        self._prepared_last: np.ndarray | None = None  # the last frame prepared (the previous one of the next pair)
        self._pool: ThreadPoolExecutor | None = None  # the matcher's thread (tracker.overlap_matcher)
        #: Called before and after every timed stage when set (benchmarks set ``torch.cuda.synchronize``), so a stage
        #: is charged with the device work it queued rather than the next stage that waits for it.
        self.synchronize = None
        self._next_id = 1
        self._flags_lock = threading.Lock()
        self._keyframe_requested = False
        self._reset_requested = False
        self.schedule = Resegmentation(self.cfg.tracker)
        self.dormant = DormantSet(self.cfg.tracker)
        self._cut = CutDetector()
        self.reset()

    # --- control ------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all tracks and frames. Ids keep counting up."""
        self._tracks: list[_Track] = []
        self._index_map: np.ndarray | None = None  # working map: k + 1 where track k is, 0 = background
        self._cand: np.ndarray | None = None  # the owner, or on background the most likely track (0: none)
        self._prob: np.ndarray | None = None  # probability of ``_cand`` (>= 0.5 where owned, < 0.5 on background)
        self._softs: dict[int, np.ndarray] = {}  # during a step: each track's probability map at the working size
        self._answered: dict[int, object] = {}  # during a step: id -> its accepted prompt answer (small.py)
        self._joined: set[int] = set()  # during a step: ids that took other tracks in by a merge
        self._grid: WorkGrid | None = None
        self._seeds: tuple | None = None  # ((frame shape, points_per_side), seed grid)
        self._index = -1
        self._rng = np.random.default_rng(self.cfg.clustering.seed)
        self._fresh = True
        self.budget = PromptBudget()
        self.schedule.reset()
        self.dormant.clear()  # another camera or a request to forget: nothing that left is expected back
        self._cut.reset()
        self._visit = 0  # the frame at which the camera came to the current shot
        self._boxes = np.zeros((0, 4), np.intp)  # each live track's box in the working map (y0, y1, x0, x1)
        self._uncovered = (1 << 62, False)  # (fewest uncovered working pixels since the last search, grown since)
        self.matcher.reset()

    def request_keyframe(self) -> bool:
        """Run a full re-segmentation on the next frame and, where the matcher has anchor frames (``matcher.backend:
        cadence``), make it an anchor frame too: the points carried into it then come from the anchor matcher, not
        from the flow chain whose drift may be why a re-segmentation was asked for (thread-safe: both requests are
        flags read at the next step). Returns whether an anchor was requested."""
        with self._flags_lock:
            self._keyframe_requested = True
        request_anchor = getattr(self.matcher, "request_anchor", None)
        if request_anchor is None:
            return False
        request_anchor()
        return True

    def request_reset(self) -> None:
        """Reset before the next frame (thread-safe; for front ends whose worker owns the tracker)."""
        with self._flags_lock:
            self._reset_requested = True

    def close(self) -> None:
        """Stop the matcher's thread (a step in progress finishes first), and close the backends that hold workers
        or resources (the cadence matcher's asynchronous anchor). The tracker is not used after this."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        for backend in (self.matcher, self.segmenter, self.kmeans):
            _close(backend)

    def configure(self, changes: dict) -> list[str]:
        """Apply config changes (``{dotted name: value}``) between two frames; returns the sections rebuilt.

        Validates first (ConfigError, nothing applied). Fields read at call time take effect on the next frame. A
        field marked ``rebuild`` (copied by its backend when built: ``matcher.max_side``, ``matcher.flow_preset``...)
        rebuilds that backend only when the built backend uses it (it is in the backend's ``settings()``) and its
        value changed; the replaced backend is closed. A rebuilt matcher is given the last frame again, so the next
        frame still carries points from it. A backend the caller passed in (tests, evaluation) is not rebuilt: a
        warning says so. Not thread-safe: the tracker's owner (the stream's tracking thread) calls it between frames.
        """
        trial = copy.deepcopy(self.cfg)
        trial.update(changes)
        meta = {name: fld.metadata for name, fld, _ in trial.fields()}
        now, new = self.cfg.as_dict(), trial.as_dict()
        for name in changes:
            if meta[name].get("read_only") and new[name] != now[name]:
                raise ConfigError(f"{name} is read-only: it is fixed when the tracker is built")
        backends = {"segmenter": self.segmenter, "matcher": self.matcher, "clustering": self.kmeans}
        stale = []
        for section, backend in backends.items():
            held = backend.settings()
            if any(n.startswith(section + ".") and meta[n].get("rebuild") and n.split(".")[1] in held
                   and held[n.split(".")[1]] != new[n] for n in changes):
                stale.append(section)
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
                    try:
                        self.matcher.push(self._last_frame)
                    except FrameError as e:  # the new settings refuse this frame size: no pair for the next frame
                        log.warning("rebuilt matcher refuses the last frame (%s): the next frame carries nothing", e)
            elif section == "clustering":
                self.kmeans = build_clustering(self.cfg.clustering)
                self._rng = np.random.default_rng(self.cfg.clustering.seed)
            _close(backends[section])
            rebuilt.append(section)
        return rebuilt

    @property
    def work_shape(self) -> tuple[int, int] | None:
        """The working resolution of the current frame size (None before the first frame)."""
        return self._grid.work if self._grid else None

    # --- the per-frame step -------------------------------------------------------------------------------------
    def prepare(self, frame: np.ndarray) -> Prepared:
        """What can be computed for ``frame`` before its step: the segmenter's embedding and the matcher's pair
        (previous prepared frame, ``frame``), side by side when ``tracker.overlap_matcher`` (both release the GIL in
        their native code). Runs in another thread while the previous frame's :meth:`step` runs (a stream computing
        ahead); it never touches the state the step reads. Calls must not overlap each other. Raises what the
        backends raise on a bad frame (then the next frame pairs with the last frame prepared without error).
        """
        frame = check_frame(frame)
        segmenter, matcher, previous = self.segmenter, self.matcher, self._prepared_last

        def pair() -> object:
            t = time.perf_counter()
            try:
                return matcher.pair_ahead(previous, frame)
            except Exception as e:  # noqa: BLE001 - the step computes the pair itself and reports a bad frame
                if not isinstance(e, FrameError):
                    log.warning("computing the matcher's pair ahead failed (%s); the step computes it", e)
                return None
            finally:
                out.flow_ms = (time.perf_counter() - t) * 1e3

        out = Prepared(segmenter=segmenter, matcher=matcher)
        if self.cfg.tracker.overlap_matcher and segmenter.embeds_ahead:
            future = self._matcher_pool().submit(pair)
            try:
                out.embedding = segmenter.embed(frame)
            finally:
                out.pair = future.result()  # waited for even after an error: one pair at a time
        else:
            out.embedding = segmenter.embed(frame)
            out.pair = pair()
        self._prepared_last = frame
        return out

    def _matcher_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="mastsam-matcher")
        return self._pool

    def step(self, frame: np.ndarray, prepared: Prepared | None = None) -> FrameResult:
        """Track one frame: ``frame`` is H x W x 3 uint8 RGB (or H x W grey). Raises FrameError on bad frames.

        ``prepared``: :meth:`prepare` of this frame, computed ahead (a stream); its embedding and pair are used
        where the backends that made them are still the tracker's (a runtime change may have rebuilt one: then that
        part is computed here). Without it the frame is encoded and matched here, side by side when
        ``tracker.overlap_matcher``.

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
        if self._grid is not None and frame.shape[:2] != self._grid.frame:
            log.warning("frame size changed from %s to %s: tracker state reset", self._grid.frame, frame.shape[:2])
            self.reset()
        if self._grid is None:
            self._grid = WorkGrid(frame.shape[:2], self.cfg.tracker.work_max_side)
            self._index_map = np.zeros(self._grid.work, np.uint16)
            self._cand = np.zeros(self._grid.work, np.uint16)
            self._prob = np.zeros(self._grid.work, np.float32)
        self.segmenter.mask_shape = self._grid.work
        self.matcher.warp_shape = self._grid.work  # the matcher's prepare (in its thread) warps at that size
        was_fresh, self._fresh = self._fresh, False
        self._index += 1
        self._timings: dict[str, float] = {}
        before = {t.id for t in self._tracks}
        seen_before = {t.id for t in self._tracks if t.last_seen == self._index - 1}
        last_seen = {t.id: t.last_seen for t in self._tracks}
        self._events: list[TrackEvent] = []
        self._back: set[int] = set()
        self._appearance: Appearance | None = None
        self._frame = frame

        pair_used, seen = self._embed_and_match(frame, prepared)
        shot = self._cut.shot
        cut, _ = self._cut(frame, self.cfg.tracker.cut_distance, self.cfg.tracker.cut_max_correlation, seen)
        if cut:
            self._visit = self._index  # the camera came to this shot (again) at this frame
        if cut and self._tracks:  # carried points mean nothing across a cut: every track leaves, re-segment
            for t in self._tracks:
                self._leave(t, shot)
            self._tracks = []
            self._index_map[:] = 0
            self._cand[:] = 0
            self._prob[:] = 0
            self.budget.keep(set())
        masks: dict[int, np.ndarray] = {}
        self._softs, self._answered, self._joined = {}, {}, set()
        self._suspect: set[int] = set()  # ids confirmed on an answer mostly off their warped mask: _gate checks them
        prompted: list[int] = []
        correspondences = None
        if self._tracks:
            with self._timed("matcher"):
                carried, moves, correspondences = self._carry()
            with self._timed("warp"):
                warped, owner = self._warp(moves)
            with self._timed("prompt"):
                masks, prompted = self._prompt(carried, warped, owner)

        key = (self._grid.frame, self.cfg.segmenter.points_per_side)  # the automatic-mode seed grid, made once
        if self._seeds is None or self._seeds[0] != key:
            self._seeds = (key, grid_points(*key))
            self._seeds[1].flags.writeable = False  # shared by every frame's schedule: nobody writes into it
        grid = self._seeds[1]
        action = self.schedule.next(self._index, bool(self._tracks), keyframe_requested, grid)
        if action.kind == "automatic":
            with self._timed("automatic"):
                self._merge_automatic(masks, self.segmenter.generate())
        elif action.kind == "slice":
            with self._timed("automatic"):
                self._merge_automatic(masks, self.segmenter.generate(seeds=action.seeds))
        # after the slice (what it found is no longer uncovered); also on the frame after the uncovered area grew
        new_area = action.new_area or (self._uncovered[1] and self.cfg.tracker.new_region_interval > 0)
        if new_area:
            with self._timed("new_area"):
                self._segment_new_area(masks)

        with self._timed("merge"):
            if self._tracks:
                self._gate(masks, last_seen)
            self._partition(masks)
            self._watch_uncovered(new_area)
        with self._timed("permanence"):
            self._permanence(seen_before)
        with self._timed("clustering"):
            self._refresh_points()
        with self._timed("publish"):
            labels, tracks = self._publish()

        after = {t.id for t in self._tracks}
        self._timings["total"] = (time.perf_counter() - t_start) * 1e3
        return FrameResult(
            index=self._index,
            labels=labels,
            tracks=tracks,
            keyframe=action.keyframe,
            resegmenting=action.kind == "slice",
            reset=was_fresh,
            new_ids=sorted((after - before) | self._back),  # with hidden ids an object found again took back
            retired_ids=sorted(before - after),
            prompted=sorted(prompted),
            timings=self._timings,
            correspondences=correspondences,
            pair_used=pair_used,
            events=self._events,
            cut=cut,
        )

    # --- stages -------------------------------------------------------------------------------------------------
    def _embed_and_match(self, frame: np.ndarray, prepared: Prepared | None) -> tuple[bool, tuple]:
        """Make ``frame`` current in the segmenter (its embedding computed ahead, or encoded here) and the matcher
        (the pair computed ahead installed, or pushed here), then the matcher's work on the new pair; the two sides
        run in parallel when ``tracker.overlap_matcher`` and both have work here, the cut detector's reading of the
        frame (:meth:`CutDetector.measure`) on this side after the encoder. Returns whether the pair computed ahead
        was installed, and that reading."""
        embedding = pair = None
        if prepared is not None:
            if prepared.segmenter is self.segmenter:
                embedding = prepared.embedding
            if prepared.matcher is self.matcher:
                pair = prepared.pair
        used = False

        def encode() -> None:
            if embedding is None:
                self.segmenter.set_image(frame)
            else:
                self.segmenter.set_embedding(embedding)

        def match() -> float:
            nonlocal used
            t0 = time.perf_counter()
            used = self.matcher.push_ahead(frame, pair)
            self.matcher.prepare()
            return (time.perf_counter() - t0) * 1e3

        self._last_frame = frame
        # a thread only where there is something to overlap: an embedding computed ahead is installed at once
        if not self.cfg.tracker.overlap_matcher or embedding is not None:
            with self._timed("encoder"):
                encode()
            self._timings["matcher"] = match()
            return used, self._cut.measure(frame)
        future = self._matcher_pool().submit(match)
        try:
            with self._timed("encoder"):
                encode()
            seen = self._cut.measure(frame)
        finally:
            self._timings["matcher"] = future.result()  # re-raises the matcher's error, after it has finished
        return used, seen

    def _carry(self):
        """Carry all tracks' points at once; returns per-track kept points, a function giving per-track displacements
        of the trustworthy points (NaN for the others; only a matcher without a dense field needs them), and the
        kept pairs."""
        cfg = self.cfg.tracker
        counts = np.array([t.points.shape[0] for t in self._tracks])
        src = np.concatenate([t.points for t in self._tracks]) if counts.sum() else np.zeros((0, 2), np.float32)
        dst, conf = self.matcher.carry(src)
        h, w = self._grid.frame
        good, keep = np.empty(len(src), bool), np.empty(len(src), bool)
        trust, kept = np.empty(len(counts)), np.empty(len(counts), np.intp)
        # kept: trustworthy (confident, inside the frame) and not isolated from the bulk of the track (one stray
        # point can join car and road)
        carried_flags(dst, conf, counts, w, h, cfg.min_match_confidence, cfg.isolation_factor, good, keep, trust, kept)
        for t, c in zip(self._tracks, trust.tolist()):
            self.budget.accrue(t.id, c)
        carried = _pieces(dst[keep], kept.tolist())

        def moves() -> list[np.ndarray]:  # each track's trustworthy points' displacements: its motion
            return _pieces(np.where(good[:, None], dst - src, np.nan), counts.tolist())

        return carried, moves, (src[keep], dst[keep])

    def _warp(self, shifts) -> tuple[list[_Mask], np.ndarray | None]:
        """Where each track's previous mask is now, without asking the segmenter: the reference for the plausibility
        checks, the fallback when a prompt fails, and the mask of a track left unprompted by the prompt budget.

        With a dense matcher (``flow``) the working maps (owner or candidate, and its probability) are warped pixel by
        pixel along the correspondence field, so masks follow deformation and parts
        moving differently; with a sparse one each mask moves rigidly by the median displacement of its carried
        points (unmoved when none was carried). Returns the masks and, with a dense matcher, the warped partition
        (track index + 1 where each track is now, 0 elsewhere). ``shifts``: :meth:`_carry`'s displacements (a
        function: a dense matcher never calls it)."""
        n = len(self._tracks)
        cand = self.matcher.warp_labels(self._cand)
        if cand is not None:
            prob = self.matcher.warp_labels(self._prob)  # the same pixel mapping (computed once per pair)
            # one pass: every track's box, area and centroid, and the partition
            stats, owner = np.empty((n, 7)), np.empty(cand.shape, cand.dtype)
            M.partition_stats(cand, prob, n, stats, owner)
            return [_Mask.of_candidates(cand, prob, k + 1, row) for k, row in enumerate(stats.tolist())], owner
        out = []
        for k, moves in enumerate(shifts()):
            mask = self._index_map == k + 1
            moves = moves[~np.isnan(moves[:, 0])]
            # the median displacement of its trustworthy points; unmoved when none was carried
            if len(moves):
                mask = M.shift_mask(mask, *(np.median(moves, axis=0) * self._grid.scale))
            out.append(_Mask(mask, mask.astype(np.float32)))
        return out, None

    def _prompt(self, carried: list[np.ndarray], warped: list[_Mask], owner: np.ndarray | None):
        """Prompt the chosen tracks; returns every track's mask this frame (working size) and the prompted ids.
        ``owner``: the warped partition when the matcher gives one (see :meth:`_warp`)."""
        cfg = self.cfg.tracker
        g = self._grid
        diag = float(np.hypot(*g.work))
        counts = [len(c) for c in carried]
        flat = np.concatenate(carried) if carried else np.zeros((0, 2), np.float32)
        flat_w = g.to_work(flat)
        carried_w = _pieces(flat_w, counts)  # one conversion for all tracks
        candidates = [t.id for t, pts in zip(self._tracks, carried) if pts.shape[0]]
        chosen = set(self.budget.choose(candidates, cfg.max_prompts_per_frame))
        negatives = _Negatives(flat, flat_w, counts, warped if cfg.negative_points else None)
        who = [i for i, t in enumerate(self._tracks) if t.id in chosen]
        prompts = negatives.prompts(who)
        held = None  # (where each track is now, its pixel count per track index + 1) for the swallowing rule
        if owner is not None and cfg.swallow_fraction < 1.0:
            held = (owner, np.array([0] + [w.area for w in warped]))  # the warped partition: its areas are counted
        elif prompts and cfg.swallow_fraction < 1.0:
            # where each track is now, by its warped masks (a sparse matcher gives no warped partition)
            owner = M.paint(g.work, [w.mask for w in warped], list(range(1, len(warped) + 1)))
            held = (owner, M.count_labels(owner, len(warped) + 1))
        confirmed = self._answers(prompts, who, [carried_w[i] for i in who], warped, held, diag)
        if cfg.retry_rejected:
            # A rejected answer usually means the carried points slid off the object (occlusion, fast motion) while
            # the warped mask is still on it: ask once more from the warped mask's innermost pixel.
            retry = [i for i in who if i not in confirmed and warped[i].area]
            inner = [_innermost(warped[i].mask) for i in retry]
            prompts = []
            for i, pw in zip(retry, inner):
                neg = negatives.near(i)
                prompts.append(
                    PointPrompt(
                        points=np.concatenate([g.to_frame(pw), neg]).astype(np.float32),
                        labels=np.concatenate([np.ones(1, np.int32), np.zeros(len(neg), np.int32)]),
                    )
                )
            confirmed.update(self._answers(prompts, retry, inner, warped, held, diag))
        masks = {}
        for i, t in enumerate(self._tracks):
            if t.id in chosen:
                iou = M.iou(confirmed[i][0], warped[i].mask) if i in confirmed and cfg.max_prompts_per_frame else None
                self.budget.prompted(t.id, self._index, iou)
            if i in confirmed:
                masks[t.id], self._softs[t.id], t.score = confirmed[i]
                t.last_seen = self._index
            elif t.id not in chosen and carried[i].shape[0]:
                # Not prompted this frame (budget) but its points were carried with confidence: it moved with them.
                masks[t.id], self._softs[t.id] = warped[i].mask, warped[i].soft
                t.last_seen = self._index
            else:
                masks[t.id], self._softs[t.id], t.score = warped[i].mask, warped[i].soft, 0.0
        return masks, sorted(chosen)

    def _answers(
        self, prompts: list, who: list[int], positives_w: list, warped: list[_Mask], held: tuple | None, diag: float,
    ) -> dict:
        """Decode ``prompts`` (for tracks ``who``) in one call; the plausible answers as {track index: (mask,
        probability map, score)}. Each answer is examined inside its own box; ``held`` (where each track is now and
        how many pixels it holds; None: the rule is off) serves the rule against swallowed neighbours."""
        cfg = self.cfg.tracker
        out = {}
        answers = self.segmenter.predict(prompts) if prompts else []
        owner, held = held if held is not None else (_NO_OWNER, _NO_HELD)
        min_area = self._min_area()
        for i, pos, prop in zip(who, positives_w, answers):
            soft = self._grid.soft(prop)
            hard = np.empty(soft.shape, bool)
            # The answer thresholded; an answer that swallows most of another tracked object at least half this
            # track's size is the car-and-road collapse: that neighbour's pixels are not this track's (a sliver of a
            # neighbour, motion or occlusion, stays, and so does a small one: a part of this object tracked on its
            # own, which merging then joins to it); its main parts kept (M.main_parts); then measured.
            y0, y1, x0, x1, swallowed, area, cx, cy, hits = M.examine(
                soft, hard, owner, held, i + 1, cfg.swallow_fraction, cfg.secondary_component_fraction, min_area,
                cfg.part_gap, pos)
            if y1 == 0:
                continue
            expected = warped[i]
            if swallowed and (self._tracks[i].last_seen < self._index - 1 or M.iou(hard, expected.mask) < 0.5):
                # what is left is not where the track was, or the track was unseen: its points lie on the object that
                # hides it (an occluder it slid onto), and the answer was about that object
                continue
            if self._plausible(area, (cx, cy), hits, pos.shape[0], expected, diag):
                out[i] = (hard, soft, prop.score)
                self._answered[self._tracks[i].id] = prop
                if expected.box is not None:  # an answer mostly elsewhere than the track was: check who it is
                    ey, ex = expected.box
                    if expected.box_iou(hard, min(y0, ey.start), max(y1, ey.stop), min(x0, ex.start),
                                        max(x1, ex.stop)) < 0.5:
                        self._suspect.add(self._tracks[i].id)  # every plausible answer is confirmed
        return out

    def _plausible(self, area: int, centroid, hits: int, prompts: int, expected: _Mask, diag: float) -> bool:
        """Reject the collapse cases: an empty mask, an area jump, a centroid jump, or a mask missing its prompts
        (``hits`` of its ``prompts`` positive points on it)."""
        cfg = self.cfg.tracker
        ref = expected.area
        if area == 0:
            return False
        if ref > 0:
            ratio = area / ref
            if ratio > cfg.max_area_ratio or ratio < 1.0 / cfg.max_area_ratio:
                return False
            ex, ey = expected.centroid_xy()
            if np.hypot(centroid[0] - ex, centroid[1] - ey) > cfg.max_shift_fraction * diag:
                return False
        return prompts > 0 and hits >= cfg.min_prompt_hits * prompts

    def _merge_automatic(self, masks: dict, props: list) -> None:
        """Automatic masks (all of a re-segmentation, or a slice): they join tracks by IoU, the rest may be new."""
        found = self._big_enough(props)
        if self._tracks and found:
            used = self._associate(masks, found)
            found = [p for k, p in enumerate(found) if k not in used]
        self._add_tracks(masks, found)

    def _associate(self, masks: dict, found: list) -> set[int]:
        """Give re-segmentation masks to existing tracks; returns the indices of the masks used.

        One Hungarian assignment on IoU (at least ``tracker.match_iou``). A track whose prompt failed this frame holds
        only its warped previous mask, which drifts; it may still take an unassigned mask that covers most of that
        mask and is of a plausible size, so the object comes back under its old id instead of a new one.
        """
        cfg = self.cfg.tracker
        iou = M.iou_matrix([f[0] for f in found], [masks[t.id] for t in self._tracks])
        rows, cols = linear_sum_assignment(-iou)
        used, matched = set(), set()
        for r, c in zip(rows, cols):
            if iou[r, c] >= cfg.match_iou:
                used.add(int(r))
                matched.add(int(c))
                self._refresh(masks, self._tracks[c], found[r])
        areas = [np.count_nonzero(f[0]) for f in found]
        for c, t in enumerate(self._tracks):
            if c in matched or t.last_seen == self._index:
                continue
            mine = masks[t.id]
            area = max(np.count_nonzero(mine), 1)
            best, best_cover = None, 0.5
            for r, (m, _, _) in enumerate(found):
                if r in used:
                    continue
                ratio = areas[r] / area
                cover = np.count_nonzero(m & mine) / area
                if cover > best_cover and 1.0 / cfg.max_area_ratio <= ratio <= cfg.max_area_ratio:
                    best, best_cover = r, cover
            if best is not None:
                used.add(best)
                self._refresh(masks, t, found[best])
        return used

    def _refresh(self, masks: dict, t: _Track, found: tuple) -> None:
        if t.last_seen != self._index:  # the prompt failed this frame: take the fresh mask
            masks[t.id], self._softs[t.id], t.score = found
            t.last_seen = self._index

    def _segment_new_area(self, masks: dict) -> None:
        """Segment large regions that no shown track covers (newly visible area) into new tracks: the warped guess
        of a track unseen for more than ``tracker.hidden_publish_frames`` covers nothing (an object coming back from
        behind it is found there, and may take its id: :meth:`_permanence`)."""
        cfg = self.cfg.tracker
        g = self._grid
        h, w = g.work
        hidden = self._hidden_ids()
        free = ~_union([m for i, m in masks.items() if i not in hidden], g.work)
        k = max(1, round(5 * float(g.scale.min())))  # the 5-pixel opening of the frame, at the working size
        free = cv2.morphologyEx(free.view(np.uint8), cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
        n, cc, stats, _ = cv2.connectedComponentsWithStats(free, connectivity=8)
        big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= cfg.new_region_fraction * h * w)
        big = big[big > 0]
        if big.size == 0:
            return
        region = np.isin(cc, big)
        seeds = grid_points(g.work, self.cfg.segmenter.points_per_side, region)
        per_frame = cfg.resegment_seeds_per_frame
        if per_frame and len(seeds) > per_frame:  # bound this frame's work: an even subset of the seeds
            seeds = seeds[np.linspace(0, len(seeds) - 1, per_frame).astype(int)]
        self._add_tracks(masks, self._big_enough(self.segmenter.generate(seeds=g.to_frame(seeds))))

    def _hidden_ids(self) -> set[int]:
        """Ids of the tracks unseen for more than ``tracker.hidden_publish_frames``: carried, not published."""
        limit = self._index - self.cfg.tracker.hidden_publish_frames
        return {t.id for t in self._tracks if t.last_seen < limit}

    def _min_area(self) -> float:
        h, w = self._grid.work
        return self.cfg.tracker.min_area_fraction * h * w

    def _big_enough(self, props: list) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Segmenter proposals as (working mask, probability map, score), those of at least the minimum area."""
        min_area = self._min_area()
        out = []
        for p in props:
            soft = self._grid.soft(p)
            mask = soft >= 0.5
            if np.count_nonzero(mask) >= min_area:
                out.append((mask, soft, p.score))
        return out

    def _add_tracks(self, masks: dict, found: list) -> None:
        """New tracks from masks that lie mostly on uncovered pixels, best first, each claiming its pixels (also from
        the warped guesses of hidden tracks, :meth:`_hidden_ids`)."""
        cfg = self.cfg.tracker
        if not found or len(self._tracks) >= cfg.max_tracks:
            return
        hidden = [i for i in self._hidden_ids() if i in masks]
        taken = _union([m for i, m in masks.items() if i not in hidden], self._grid.work)
        min_area = self._min_area()
        for m, soft, score in sorted(found, key=lambda f: -f[2]):
            if len(self._tracks) >= cfg.max_tracks:
                break
            fresh = M.main_parts(m & ~taken, cfg.secondary_component_fraction, min_area)
            area = int(np.count_nonzero(fresh))
            if area < min_area or area < 0.5 * np.count_nonzero(m):
                continue
            self._tracks.append(_Track(self._next_id, np.zeros((0, 2), np.float32), score, self._index, self._index))
            masks[self._next_id], self._softs[self._next_id] = fresh, soft
            self._next_id += 1
            taken |= fresh
            for i in hidden:
                masks[i] = masks[i] & ~fresh

    def _partition(self, masks: dict) -> None:
        """Merge overlapping tracks (union-find, older id survives; tracks unseen this frame join no merge), retire
        stale ones, paint the working map."""
        cfg = self.cfg.tracker
        alive = list(self._tracks)
        tracks = [t for t in self._tracks if self._index - t.last_seen <= cfg.max_age]
        merged, joined_into = [], {}
        inter = M.self_intersections([masks[t.id] for t in tracks]) if tracks else None
        if inter is not None and not (held := np.diagonal(inter) > 0).all():  # empty masks leave (their rows: 0)
            kept = np.flatnonzero(held)
            tracks, inter = [tracks[k] for k in kept.tolist()], inter[np.ix_(kept, kept)]
        area = {t.id: int(inter[k, k]) for k, t in enumerate(tracks)}
        for group in M.merge_groups([masks[t.id] for t in tracks], cfg.merge_overlap, inter):
            seen = [g for g in group if tracks[g].last_seen == self._index]
            if seen and len(seen) < len(group):
                # a track unseen this frame whose guess overlaps one seen is not that object: it neither takes the
                # seen one's id (the older id would ride onto it) nor is joined into it (its own id would be lost
                # without a signature); it keeps what the seen ones leave it, and leaves (dormant) if that is nothing
                union = np.logical_or.reduce([masks[tracks[g].id] for g in seen])
                for g in group:
                    if g not in seen:
                        masks[tracks[g].id] = masks[tracks[g].id] & ~union
                        area[tracks[g].id] = int(np.count_nonzero(masks[tracks[g].id]))
                        merged.append(tracks[g])
                group = seen
            keep = tracks[group[0]]  # tracks are kept in id (birth) order, so the first is the oldest
            if len(group) > 1:
                union = np.logical_or.reduce([masks[tracks[g].id] for g in group])
                # A merge that would more than multiply the survivor's area is the car-and-road collapse: refuse it
                # and let painting split the overlap instead.
                if (joined := np.count_nonzero(union)) <= cfg.max_area_ratio * max(area[keep.id], 1):
                    masks[keep.id], area[keep.id] = union, joined
                    self._softs[keep.id] = np.maximum.reduce([self._softs[tracks[g].id] for g in group])
                    keep.last_seen = max(tracks[g].last_seen for g in group)
                    merged.append(keep)
                    joined_into.update((tracks[g].id, keep.id) for g in group[1:])
                    continue
                merged.extend(tracks[g] for g in group)
                continue
            merged.append(keep)
        merged.sort(key=lambda t: t.id)
        self._joined = set(joined_into.values())
        if len(merged) > cfg.max_tracks:  # keep the largest
            merged = sorted(merged, key=lambda t: -area[t.id])[: cfg.max_tracks]
            merged.sort(key=lambda t: t.id)
        index = M.paint(self._grid.work, [masks[t.id] for t in merged], list(range(1, len(merged) + 1)),
                        [area[t.id] for t in merged], dtype=np.uint16)
        boxes = np.empty((len(merged), 4), np.intp)  # each painted track's box; y1 == 0: hidden by the others
        M.label_boxes(index, len(merged), boxes)
        present = boxes[:, 1] > 0
        if not present.all():
            # Each track keeps only its visible part, so the working map is a partition; renumber without the hidden.
            lut = _renumbering(present)
            index, boxes = lut[index], boxes[present]
        self._index_map = index
        self._tracks = [t for t, p in zip(merged, present) if p]
        self._boxes = boxes
        live = {t.id for t in self._tracks}
        for t in alive:
            if t.id in joined_into:
                self._events.append(TrackEvent("merged", t.id, into=joined_into[t.id]))
            elif t.id not in live:
                self._leave(t)
        self.budget.keep(live)
        self._probabilities(boxes)

    def _watch_uncovered(self, searched: bool) -> None:
        """Note whether the uncovered area grew by ``tracker.new_region_fraction`` of the map since the last new
        area search (an object coming into view, an occluder moving off): the next frame searches it. The pixels of
        hidden tracks (:meth:`_hidden_ids`) count as uncovered."""
        idx = self._index_map
        free = idx.size - int(np.count_nonzero(idx))
        hidden = self._hidden_ids()
        if hidden:
            counts = M.count_labels(idx, len(self._tracks) + 1)
            free += int(sum(counts[k + 1] for k, t in enumerate(self._tracks) if t.id in hidden))
        floor = free if searched else min(self._uncovered[0], free)
        self._uncovered = (floor, free - floor >= self.cfg.tracker.new_region_fraction * idx.size)

    def _leave(self, t: _Track, shot: int | None = None) -> None:
        """A live track leaves: dormant when it has a signature (it may come back), else retired. ``shot``: the shot
        it was last seen in (default: the current one)."""
        if t.signature is None or self.cfg.tracker.dormant_max == 0:
            self._events.append(TrackEvent("retired", t.id))
            return
        self._events.append(TrackEvent("dormant", t.id))
        for forgotten in self.dormant.add(t.id, t.signature, t.last_seen, self._cut.shot if shot is None else shot,
                                          t.box, t.speed, current=self._cut.shot, since=self._visit):
            self._events.append(TrackEvent("retired", forgotten))

    def _appearance_now(self) -> Appearance:
        if self._appearance is None:
            kind = Appearance.resolve(self.cfg.tracker.reid_descriptor, self.segmenter)
            self._appearance = Appearance(kind, self._frame, self._grid.work, self.segmenter)
        return self._appearance

    def _signature(self, k: int) -> Signature | None:
        """The signature of live track ``k`` (index in ``_tracks``) in this frame, or None (nothing visible)."""
        y0, y1, x0, x1 = (int(v) for v in self._boxes[k])
        if y1 <= y0 or x1 <= x0:
            return None
        crop = (self._index_map[y0:y1, x0:x1] == k + 1).view(np.uint8)
        area = int(np.count_nonzero(crop))
        if not area:
            return None
        app = self._appearance_now()
        h, w = self._index_map.shape
        look = app.of(crop, (y0, y1, x0, x1), (h, w))
        whole = y0 > 0 and x0 > 0 and y1 < h and x1 < w
        return None if look is None else Signature(app.kind, look, area, self._index, whole)

    def _permanence(self, seen_before: set[int]) -> None:
        """Tracks found within ``tracker.reid_window`` frames that match a dormant signature take their old id back
        (one found earlier than this frame reports its provisional id merged into the old one); signatures of
        confirmed tracks are refreshed; born, hidden, re-identified and forgotten tracks become events
        (``dormant.py``)."""
        cfg = self.cfg.tracker
        remember = cfg.dormant_max > 0  # 0: retire and forget, no signature is ever needed
        born = [k for k, t in enumerate(self._tracks) if t.born == self._index]
        sigs = {k: self._signature(k) if remember else None for k in born}
        for t in self._tracks:
            t.provisional = t.provisional and self._index - t.born <= cfg.reid_window
        # live tracks hidden from view compete with the dormant ones: an object found again takes its id at once
        gone = self._hidden_ids() if remember else set()
        hidden = {t.id: t for t in self._tracks if t.id in gone and t.signature is not None}
        found_again = []
        if len(self.dormant) or hidden:
            young = [k for k, t in enumerate(self._tracks)
                     if t.provisional and t.born != self._index and t.last_seen == self._index]
            sigs.update((k, self._signature(k)) for k in young)
            usable = [k for k, sg in sigs.items() if sg is not None]
            pool = [Dormant(t.id, t.signature, t.last_seen, self._cut.shot) for t in hidden.values()]
            near = _near(self._boxes[usable], self._boxes[[k for k, t in enumerate(self._tracks) if t.id in hidden]])
            diag = float(np.hypot(*self._grid.work))
            for m in self.dormant.match([sigs[k] for k in usable], self._index, self._cut.shot, pool, near,
                                        self._boxes[usable], diag):
                t = self._tracks[usable[m.candidate]]
                if m.id in hidden:
                    found_again.append(hidden[m.id])
                self._events.append(TrackEvent("reidentified", m.id, frames_away=m.frames_away, score=m.score))
                if t.born != self._index:
                    self._events.append(TrackEvent("merged", t.id, into=m.id))
                t.id, t.provisional = m.id, False
                now = sigs[usable[m.candidate]]  # a view cut off or partly hidden keeps the stored one
                stored = m.signature
                t.signature = stored.seen_again(now, cfg.signature_views) if _better_view(
                    now, stored, 3 * cfg.signature_interval) else stored
        for k in born:
            t = self._tracks[k]
            if t.provisional:
                t.signature = sigs[k]
                self._events.append(TrackEvent("born", t.id))
        # (the list stays in this frame's map order; the next partition sorts it by id again)
        rows = self._boxes.tolist()
        for k, t in enumerate(self._tracks):
            if remember and t.last_seen == self._index:  # where and how fast it was last seen: where it is looked for
                box = rows[k]
                if t.box is not None and self._index > t.box_index:
                    moved = math.hypot((box[0] + box[1] - t.box[0] - t.box[1]) / 2,
                                       (box[2] + box[3] - t.box[2] - t.box[3]) / 2) / (self._index - t.box_index)
                    t.speed = 0.5 * (t.speed + moved)
                t.box, t.box_index = box, self._index
            # refreshed every signature_interval frames, spread over the frames by id (not all tracks at once)
            if remember and t.born != self._index and t.last_seen == self._index and (
                    t.signature is None or (self._index + t.id) % cfg.signature_interval == 0):
                sg = sigs.get(k) or self._signature(k)
                if sg is not None and _better_view(sg, t.signature, 3 * cfg.signature_interval):
                    t.signature = sg if t.signature is None else t.signature.seen_again(sg, cfg.signature_views)
            elif t.id in seen_before and t.last_seen < self._index:
                self._events.append(TrackEvent("hidden", t.id))
        self._back = {t.id for t in found_again}  # hidden (unpublished) ids back on the map: new to a consumer
        if found_again:
            self._drop(found_again)
        for forgotten in self.dormant.expire(self._index):
            self._events.append(TrackEvent("retired", forgotten))

    def _drop(self, tracks: list[_Track]) -> None:
        """Remove live tracks (their ids were taken by the objects found again) from the working maps; what they
        held becomes background."""
        keep = np.array([not any(t is d for d in tracks) for t in self._tracks], bool)
        lut = _renumbering(keep)
        self._index_map, self._cand = lut[self._index_map], lut[self._cand]
        self._prob[self._cand == 0] = 0.0
        self._boxes = self._boxes[keep]
        self._tracks = [t for t, k in zip(self._tracks, keep) if k]

    def _gate(self, masks: dict, last_seen: dict[int, int]) -> None:
        """A track confirmed again after frames unseen, or on a mask whose IoU with its warped one is under 0.5, or
        due for its periodic check (every ``tracker.gate_interval`` frames, spread by id, masks of at least
        ``GATE_SAMPLE_PIXELS`` working pixels: points that slid onto an occluder a little each frame), whose new
        mask does not look like its signature (similarity under ``tracker.gate_min_score``) was found on something
        else (an occluder, the background its points slid onto, an object coming into view): it keeps no pixels this
        frame, so it leaves (dormant) instead of riding on, and what it was given becomes a new track (which may in
        turn take a dormant id back)."""
        cfg = self.cfg.tracker
        if cfg.dormant_max == 0 or cfg.gate_min_score <= 0:
            return
        app, found = None, []
        for t in self._tracks:
            if t.signature is None or t.last_seen != self._index:
                continue
            flagged = t.id in self._suspect or last_seen.get(t.id, self._index) < self._index - 1
            if not flagged and not (cfg.gate_interval and (self._index + t.id) % cfg.gate_interval == 0):
                continue
            # a check that is only due (nothing seen amiss) needs the larger sample: a small grey region's hue is noise
            need = GATE_MIN_PIXELS if flagged else GATE_SAMPLE_PIXELS
            mask = masks.get(t.id)
            box = _box(mask) if mask is not None else None
            if box is None:
                continue
            app = app or self._appearance_now()
            crop = mask[box].view(np.uint8)
            area = int(np.count_nonzero(crop))
            if min(area, t.signature.area) < need:
                continue  # too few pixels for a colour histogram to tell one object from another
            step = max(1, int(np.sqrt(area / GATE_SAMPLE_PIXELS)))
            look = app.of(crop, (box[0].start, box[0].stop, box[1].start, box[1].stop), mask.shape, step)
            if look is None:
                continue
            now = Signature(app.kind, look, area, self._index)
            if now.similarity(t.signature) < cfg.gate_min_score:
                found.append((mask, self._softs[t.id], t.score))
                masks[t.id] = np.zeros_like(mask)
                t.last_seen = last_seen[t.id]
        if found:
            self._add_tracks(masks, found)

    def _probabilities(self, boxes: np.ndarray) -> None:
        """Owner probability of every owned working pixel (at least 0.5), and on background the most likely track
        and its probability (below 0.5), from the tracks' probability maps of this frame: what the published map
        interpolates between working pixels. ``boxes``: each track's box in the working map (y0, y1, x0, x1)."""
        idx = self._index_map
        cand, prob = idx.copy(), np.zeros(idx.shape, np.float32)
        h, w = idx.shape
        for k, (y0, y1, x0, x1) in enumerate(boxes.tolist()):
            if y1:  # the track's box grown by 2 pixels: its halo on the background around it
                M.owner_probabilities(self._softs[self._tracks[k].id], idx, k + 1, max(y0 - 2, 0), min(y1 + 2, h),
                                      max(x0 - 2, 0), min(x1 + 2, w), cand, prob)
        self._cand, self._prob = cand, prob

    def _refresh_points(self) -> None:
        """Next mask points of every track (k-means of all tracks at once)."""
        cfg = self.cfg.tracker
        n = max(len(self._tracks), 1)
        cap = max(1, cfg.max_points_total // n)
        got = label_points(
            self._index_map, list(range(1, len(self._tracks) + 1)), self.kmeans, cfg, self._rng,
            self.cfg.clustering.max_samples, cap,
        )
        if not self._tracks:
            return
        pts = [got[k + 1] for k in range(len(self._tracks))]
        frame = _pieces(self._grid.to_frame(np.concatenate(pts)), [len(p) for p in pts])
        for t, p in zip(self._tracks, frame):  # one conversion to frame pixels for all tracks
            t.points = p

    def _publish(self) -> tuple[np.ndarray, list[TrackInfo]]:
        """The frame-size label map (ids, uint32) and the track records, from the working maps in one compiled pass
        (:meth:`WorkGrid.publish`): nearest neighbour where a working cell's corners agree, the boundary pixels by
        interpolated probability. Areas and boxes are those of the published map, counted in the same pass. Small
        tracks answered this frame are then repainted from the segmenter's frame-size answer (``small.py``,
        ``tracker.small_track_fraction``); their points stay those of their working masks. A track unseen for more than
        ``tracker.hidden_publish_frames`` is left out of both (label 0, no record) while it is still carried."""
        cfg = self.cfg.tracker
        # a track unseen for more than hidden_publish_frames is still carried but not published: its mask is a guess
        shown = [self._index - t.last_seen <= cfg.hidden_publish_frames for t in self._tracks]
        ids = np.array([0] + [t.id if s else 0 for t, s in zip(self._tracks, shown)], np.uint32)
        labels, area, boxes = self._grid.publish(self._index_map, self._cand, self._prob, ids)
        if self._answered and cfg.small_track_fraction > 0:  # small answered tracks from the frame-size answers
            answers = [frame_answer(self._answered[t.id], self._grid.frame)
                       if t.id in self._answered and t.id not in self._joined else None for t in self._tracks]
            publish_small(self._grid, labels, area, boxes, self._index_map, self._boxes, ids, answers,
                          cfg.small_track_fraction, cfg.small_track_margin)
        area, boxes = area.tolist(), boxes.tolist()
        tracks = [
            TrackInfo(
                id=t.id,
                score=float(t.score),
                area=area[k + 1],
                bbox=tuple(boxes[k + 1]),
                age=self._index - t.born,
                frames_since_seen=self._index - t.last_seen,
                points=t.points.copy(),
            )
            for k, t in enumerate(self._tracks) if shown[k]
        ]
        return labels, tracks

    # --- helpers ------------------------------------------------------------------------------------------------
    def _timed(self, stage: str) -> _Timed:
        """``with self._timed(stage):`` adds the block's milliseconds to ``self._timings[stage]``."""
        return _Timed(self, stage)


class _Timed:
    """:meth:`Tracker._timed`'s context (a class: a generator-based one costs a few microseconds per stage)."""

    __slots__ = ("_tracker", "_stage", "_t0")

    def __init__(self, tracker: Tracker, stage: str):
        self._tracker, self._stage = tracker, stage

    def __enter__(self) -> None:
        if self._tracker.synchronize is not None:
            self._tracker.synchronize()
        self._t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        t = self._tracker
        if t.synchronize is not None:
            t.synchronize()
        t._timings[self._stage] = t._timings.get(self._stage, 0.0) + (time.perf_counter() - self._t0) * 1e3


class _Mask:
    """A track's mask at the working size with what the checks ask of it, each computed once: its probability map,
    box (slices), area and centroid (working pixels).

    :meth:`of_candidates` makes one from a row of :func:`masks.partition_stats` instead: measured already, its
    planes (``mask``, ``soft``) drawn from the candidate maps only when asked for (a track whose answer is accepted
    never needs them)."""

    __slots__ = ("_mask", "_soft", "box", "area", "_centroid", "_xy", "_source")

    def __init__(self, mask: np.ndarray, soft: np.ndarray):
        self._mask, self._soft, self._source, self._xy = mask, soft, None, None
        self.box = _box(mask)
        self.area = int(np.count_nonzero(mask[self.box])) if self.box is not None else 0
        self._centroid = None

    @classmethod
    def of_candidates(cls, cand: np.ndarray, prob: np.ndarray, label: int, stats: list[float]) -> _Mask:
        m = object.__new__(cls)  # a few dozen a frame: no __init__, no arrays until asked for
        m._mask = m._soft = m._centroid = None
        y1, area = int(stats[1]), int(stats[4])
        m.box = (slice(int(stats[0]), y1), slice(int(stats[2]), int(stats[3]))) if y1 else None
        m.area = area
        m._xy = (stats[5], stats[6]) if area else (0.0, 0.0)
        m._source = (cand, prob, label)
        return m

    def _draw(self) -> None:
        cand, prob, label = self._source
        self._soft, self._mask = np.zeros(cand.shape, np.float32), np.zeros(cand.shape, bool)
        if self.box is not None:
            ys, xs = self.box
            M.candidate_plane(cand, prob, label, ys.start, ys.stop, xs.start, xs.stop, self._soft, self._mask)

    @property
    def mask(self) -> np.ndarray:
        if self._mask is None:
            self._draw()
        return self._mask

    @property
    def soft(self) -> np.ndarray:
        if self._soft is None:
            self._draw()
        return self._soft

    def box_iou(self, other: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> float:
        """:func:`masks.box_iou` of ``other`` and this mask inside a box holding all of this mask, from the candidate
        maps when the planes are not drawn (an accepted answer never needs them)."""
        if self._mask is None:
            cand, prob, label = self._source
            return M.box_iou_candidate(other, cand, prob, label, y0, y1, x0, x1)
        return M.box_iou(other, self._mask, y0, y1, x0, x1)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """x, y, width, height (zeros when empty)."""
        if self.box is None:
            return 0, 0, 0, 0
        ys, xs = self.box
        return xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start

    @property
    def centroid(self) -> np.ndarray:
        if self._centroid is None:
            if self._xy is not None:
                self._centroid = np.array(self._xy)
            else:
                self._centroid = _centroid(self.mask, self.box) if self.area else np.zeros(2)
        return self._centroid

    def centroid_xy(self) -> tuple[float, float]:
        """:attr:`centroid` as two floats."""
        return self._xy if self._xy is not None else tuple(self.centroid.tolist())


class _Negatives:
    """Every track's carried points in one array, to hand each prompt the other tracks' points inside its box.
    Which points lie in which track's expected box is decided for all tracks at once (``points.near_points``)."""

    def __init__(self, points: np.ndarray, points_w: np.ndarray, counts: list[int], warped: list[_Mask] | None,
                 limit: int = 8):
        self.points = points  # every track's carried points in turn (frame pixels), ``counts`` of each
        self._counts = np.array(counts, np.int64)
        n = len(counts)
        self._near = np.zeros((n, limit), np.int64)
        self._found = np.zeros(n, np.int64)
        if warped is not None:  # None: no negative points (``tracker.negative_points`` off)
            # each track's expected box (x, y, width, height)
            boxes = np.array([w.bbox for w in warped], np.float32).reshape(-1, 4)
            near_points(points_w, self._counts, boxes, limit, self._near, self._found)

    def near(self, i: int) -> np.ndarray:
        """Other tracks' carried points inside track i's expected box grown by a tenth of its size on each side:
        where confusion between them is likely (at most ``limit``)."""
        return self.points[self._near[i, : self._found[i]]]

    def prompts(self, who: list[int]) -> list[PointPrompt]:
        """The prompts of tracks ``who``: each one's carried points (positive) then :meth:`near` (negative); their
        arrays are consecutive views of one points array and one labels array, made in one compiled pass."""
        pts, labels, offsets = prompt_arrays(self.points, self._counts, self._near, self._found,
                                             np.array(who, np.int64))
        offsets = offsets.tolist()
        return [PointPrompt(points=pts[a:b], labels=labels[a:b]) for a, b in zip(offsets, offsets[1:])]


_NO_OWNER, _NO_HELD = np.zeros((1, 1), np.uint16), np.zeros(0, np.int64)  # M.examine without the swallowing rule


def _renumbering(keep: np.ndarray) -> np.ndarray:
    """The lookup table (uint16, index = working-map label) that renumbers the tracks ``keep`` (bool per track, in
    map order) 1.. in order and sends the others, and 0, to 0."""
    lut = np.zeros(len(keep) + 1, np.uint16)
    lut[1:][keep] = np.arange(1, int(np.count_nonzero(keep)) + 1)
    return lut


def _near(boxes: np.ndarray, guesses: np.ndarray) -> np.ndarray:
    """Which candidate boxes (y0, y1, x0, x1 rows) meet each hidden track's guessed box grown by its own larger side
    on every side: a track hidden for a few frames comes back near where it was carried (candidates x guesses)."""
    g = guesses.astype(np.int64)
    grow = np.maximum(g[:, 1] - g[:, 0], g[:, 3] - g[:, 2])
    b = boxes.astype(np.int64)[:, None, :]
    return ((b[..., 0] < g[:, 1] + grow) & (b[..., 1] > g[:, 0] - grow)
            & (b[..., 2] < g[:, 3] + grow) & (b[..., 3] > g[:, 2] - grow))


def _better_view(new: Signature, old: Signature | None, stale: int) -> bool:
    """Whether ``new`` replaces ``old``: not when it shows the object cut off by the image border while ``old`` shows
    it whole, nor when it is under half ``old``'s area (partly hidden), nor over twice it (the mask spilled onto
    something else) unless ``old`` was cut off (an object coming into view through the border grows), unless ``old``
    is over ``stale`` frames old."""
    if old is None or new.index - old.index > stale:
        return True
    if (old.whole and not new.whole) or 2 * new.area < old.area:
        return False
    return new.area <= 2 * old.area or not old.whole


def _close(backend) -> None:
    """Close a backend that has a ``close`` (workers, threads); others hold nothing that needs it."""
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def _pieces(a: np.ndarray, counts: list[int]) -> list[np.ndarray]:
    """``a`` cut into consecutive views of ``counts`` rows (``counts`` summing to ``len(a)``): what ``np.split`` at
    the cumulative counts gives, without its per-call cost (tens of microseconds, three times a frame)."""
    out, start = [], 0
    for c in counts:
        out.append(a[start : start + c])
        start += c
    return out


def _box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The slices of a boolean mask's bounding box (None when empty)."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    return (slice(y, y + h), slice(x, x + w)) if w else None


def _innermost(mask: np.ndarray) -> np.ndarray:
    """The mask pixel farthest from its border ((1, 2) x y, working pixels)."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    crop = np.pad(mask[y : y + h, x : x + w].view(np.uint8), 1)
    dist = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([[x + c - 1, y + r - 1]], np.float32)


def _union(masks, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, bool)
    for m in masks:
        out |= m
    return out


def _centroid(mask: np.ndarray, box: tuple[slice, slice] | None = None) -> np.ndarray:
    """Centroid (x, y) of a boolean mask, within ``box`` when given (slices holding all of it)."""
    box = _box(mask) if box is None else box
    if box is None:
        return np.zeros(2)
    m = cv2.moments(mask[box].view(np.uint8), binaryImage=True)
    y, x = box[0].start, box[1].start
    return np.array([x + m["m10"] / m["m00"], y + m["m01"] / m["m00"]]) if m["m00"] else np.zeros(2)
