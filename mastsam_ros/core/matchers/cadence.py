"""A costly matcher on anchor frames, dense flow between: ``matcher.backend: cadence``.

MASt3R gives good correspondences but costs a network pass per frame pair; DIS flow costs a few CPU milliseconds.
:class:`CadenceMatcher` runs the *anchor* matcher (``matcher.anchor_backend``: mast3r, xfeat or flow) only on anchor
frames, every ``matcher.anchor_interval`` frames and whenever :meth:`CadenceMatcher.request_anchor` asks, and the
flow matcher on every frame:

- **Between anchor frames** a point is carried one frame by the flow (forward-backward checked, as the flow backend).
- **On an anchor frame k** (the last one was a) a point of frame k-1 is first taken back to frame a along the chain
  of backward flow fields a <- ... <- k-1, kept per pixel and advanced once per frame, then carried a -> k by the
  anchor matcher, whose only pair is (a, k): it sees anchor frames only, so MASt3R encodes one frame in N. Its
  confidence is the lower of the anchor match's and the chain's (the weakest forward-backward agreement along it).
  Where that is below ``matcher.anchor_min_confidence`` the point keeps its one-frame flow carry instead: a
  fallback, counted in :attr:`CadenceMatcher.stats`.
- **Dense warp** of the label map (:meth:`warp_labels`): the flow's, on every frame.
- **Point map**: the anchor's, on anchor frames only (None between them).

``anchor_interval: 1`` makes every frame an anchor frame: the anchor matcher carries every pair and the flow only
warps the label map and stands in where the anchor is not confident.

``anchor_mode: async`` takes the anchor pair off the frame's own step, so the N-th frame no longer pays it:

- **On an anchor frame k** the anchor pair (a, k) is handed to a worker thread (the anchor matcher's push, prepare
  and pair work run there) and frame k, like the frames after it, is carried by the flow alone.
- **Chains while it runs**: the backward chain to a keeps advancing past k (each pixel of the newest frame, where it
  is in frame a), a new backward chain to k starts (for the next pair (k, k')), and a forward chain from k (each pixel
  of frame k, where it is in the newest frame, with the weakest forward-backward agreement on the way).
- **The result** is looked at on each push and never waited for. The first frame m whose push finds it done applies
  it in :meth:`carry`: a point of frame m-1 is taken back to frame a along the old backward chain, carried a -> k by
  the anchor, brought forward k -> m-1 by sampling the forward chain at its anchor position, then one frame by the
  flow. Confidence is the lowest of the anchor's, the two chains' and the last flow step's; below
  ``anchor_min_confidence`` the point keeps its flow carry (the fallback of the sync mode, counted the same way).
  Backward to a, forward from k: both are per-pixel fields sampled at points, so the points the tracker asks about on
  frame m (its own points of m-1, whatever they are) are re-anchored without the anchor seeing them beforehand.
- **One pair in flight**: an anchor frame that comes while one runs is skipped (``stats["anchor_skipped"]``) and the
  next waits a full interval; an anchor frame that comes on the very frame that applies a result is moved to the
  next frame (the anchor matcher answers that frame's :meth:`carry` on the calling thread).
- :meth:`reset` and a frame size change drop the pair in flight (``stats["anchor_dropped"]``; a reset clears the
  other counts and keeps this one at the pair it dropped): its result is never applied, and the anchor matcher is
  reset on the worker before its next frame. :meth:`close` joins the worker.
- **Point map**: None on every frame (the anchor's would be of frame k, not of the current frame).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np

from ..config import MatcherSection
from .base import Matcher
from .flow import FlowMatcher, flow_maps, sample

log = logging.getLogger(__name__)

#: a chain: per pixel of one frame (at the flow's scale), its position in another frame (h, w, 2) and the weakest
#: forward-backward agreement on the way (h, w); None = identity (the two frames are the same)
Chain = tuple[np.ndarray, np.ndarray] | None


class CadenceMatcher(Matcher):
    """Anchor matcher every ``anchor_interval`` frames, flow between; see the module docstring."""

    name = "cadence"

    def __init__(self, cfg: MatcherSection, anchor: Matcher | None = None, flow: FlowMatcher | None = None):
        from . import MATCHERS  # noqa: PLC0415 - the registry imports this module lazily

        self.interval = int(cfg.anchor_interval)
        self.min_confidence = float(cfg.anchor_min_confidence)
        self.max_error = float(cfg.max_error_px)
        self.flow = flow if flow is not None else FlowMatcher(cfg)
        # Every backend factory reads its own fields of the section, never ``backend``: the same section builds it.
        self.anchor = anchor if anchor is not None else MATCHERS.build(cfg.anchor_backend, cfg)
        self.mode = str(getattr(cfg, "anchor_mode", "sync"))
        if self.mode not in ("sync", "async"):
            raise ValueError(f"anchor_mode must be sync or async, not {self.mode!r}")
        self._lock = threading.Lock()
        self._requested = False
        self._pool: ThreadPoolExecutor | None = None  # async: the anchor matcher's worker (one thread)
        self._job: Future | None = None  # async: the newest job given to the worker
        self._job_pair = False  # that job is a pair (a, k) whose result is to be applied
        self._job_frame = 0  # the frame count at which it was submitted
        self._anchor_dirty = False  # async: the anchor matcher is to be reset on the worker before its next frame
        #: async: (frame submitted, frame applied) of the last applied pair, counted in frames since the last reset
        self.last_applied: tuple[int, int] | None = None
        #: counts since the last reset: frames, anchor frames, points carried by the anchor, points that fell back;
        #: async only: anchor frames skipped (a pair in flight), pairs applied, pairs dropped (reset, size change),
        #: pairs whose worker raised (logged), frames from submitting to applying, summed over the applied pairs
        self.stats = {"frames": 0, "anchor_frames": 0, "anchored_points": 0, "fallback_points": 0,
                      "anchor_skipped": 0, "anchor_applied": 0, "anchor_dropped": 0, "anchor_failed": 0,
                      "anchor_lag_frames": 0}
        self.reset()

    def settings(self) -> dict:
        return {
            **self.anchor.settings(), **self.flow.settings(), "anchor_backend": self.anchor.name,
            "anchor_interval": self.interval, "anchor_min_confidence": self.min_confidence, "anchor_mode": self.mode,
        }

    def reset(self) -> None:
        dropped_before = self.stats["anchor_dropped"]
        self.flow.reset()
        if self._pool is None:
            self.anchor.reset()
        else:  # the worker may be inside the anchor matcher now: reset it there, before its next frame
            self._drop_job()
            self._anchor_dirty = True
        self._anchor_pushed = False
        self._since: int | None = None  # frames since the last anchor frame; None before the first frame
        self._is_anchor = False  # the newest frame is an anchor frame
        self._has_anchor_pair = False  # the anchor matcher holds two anchor frames
        # Chain of the newest frame: per flow pixel, (where it is in the last anchor frame (h, w, 2), confidence
        # (h, w)); None = identity (the newest frame is an anchor frame). ``_chain_ready`` False: not advanced yet.
        self._chain: tuple[np.ndarray, np.ndarray] | None = None
        self._chain_ready = True
        self._chain_prev: Chain = None  # the chain of the previous frame
        # async, while a pair (a, k) is in flight: the backward chain to a (``_old``, of the newest frame once
        # settled; ``_old_prev``, of the previous frame) and the forward chain from k (``_fwd`` / ``_fwd_prev``)
        self._pending = False
        self._old: Chain = None
        self._old_prev: Chain = None
        self._fwd: Chain = None
        self._fwd_prev: Chain = None
        self._apply = False  # the newest frame applies the finished pair in carry
        self._fwd_advance = False  # the forward chain advances through the newest pair (False on frame k itself)
        self._settled = True  # the chains went through the newest pair (or there is none)
        self._anchor_pushed = False  # async: the anchor matcher holds a frame (the next anchor frame makes a pair)
        self.last_applied = None
        dropped = self.stats["anchor_dropped"] - dropped_before
        for k in self.stats:
            self.stats[k] = 0
        self.stats["anchor_dropped"] = dropped  # the pair this reset dropped, if any

    def close(self) -> None:
        """Async: stop the worker thread, waiting for a pair in progress (its result is dropped). Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._drop_job()
            pool.shutdown(wait=True)
            # a later frame starts again (a new worker) from a reset anchor matcher: no pair across the close
            self._anchor_dirty, self._anchor_pushed, self._pending, self._apply = True, False, False, False

    def _drop_job(self) -> None:
        if self._job is not None and self._job_pair:
            self.stats["anchor_dropped"] += 1
        self._job, self._job_pair = None, False

    def request_anchor(self) -> None:
        """Make the next pushed frame an anchor frame (thread-safe)."""
        with self._lock:
            self._requested = True

    @property
    def is_anchor_frame(self) -> bool:
        """Whether the newest frame was an anchor frame."""
        return self._is_anchor

    def check_size(self, height: int, width: int) -> None:
        self.flow.check_size(height, width)
        self.anchor.check_size(height, width)

    def push(self, image: np.ndarray) -> None:
        self.check_size(*image.shape[:2])
        self._settle()  # the chains of the frame about to become the previous one
        with self._lock:
            requested, self._requested = self._requested, False
        had_frame = self._since is not None
        self.flow.push(image)
        fresh = had_frame and getattr(self.flow, "_prev", True) is None  # the flow restarted (frame size changed)
        self._settled = not had_frame or fresh  # no pair to go through
        if self.mode == "async":
            self._push_async(image, had_frame, fresh, requested)
            return
        if fresh:
            self.anchor.reset()
            self._has_anchor_pair = False
        anchor_now = not had_frame or fresh or requested or self._since + 1 >= self.interval
        self._chain_prev = None if fresh else self._chain
        if anchor_now:
            self.anchor.push(image)
            self._has_anchor_pair = had_frame and not fresh
            self._since = 0
            self._chain, self._chain_ready = None, True
            self.stats["anchor_frames"] += 1
        else:
            self._since += 1
            self._chain_ready = False
        self._is_anchor = anchor_now
        self.stats["frames"] += 1

    def prepare(self) -> None:
        self.flow.warp_shape = self.warp_shape  # the dense flow warps the label maps
        self.flow.prepare()
        if self._is_anchor and self.mode == "sync":
            self.anchor.prepare()
        self._settle()

    def carry(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        flow_pts, flow_conf = self.flow.carry(points)
        if points.shape[0] == 0:
            return flow_pts, flow_conf
        if self.mode == "async":
            if not self._apply:
                return flow_pts, flow_conf
            origin, chain_conf = self._back(self._old_prev, points)  # frame m-1 -> a
            anchor_pts, anchor_conf = self.anchor.carry(origin)  # a -> k
            ahead, ahead_conf = self._forward(self._fwd_prev, anchor_pts)  # k -> m-1
            moved, step_conf = self.flow.carry(ahead)  # m-1 -> m
            conf = np.minimum(np.minimum(anchor_conf, chain_conf), np.minimum(ahead_conf, step_conf))
            return self._choose(moved, conf, flow_pts, flow_conf)
        if not (self._is_anchor and self._has_anchor_pair):
            return flow_pts, flow_conf
        origin, chain_conf = self._back(self._chain_prev, points)  # the previous frame -> the last anchor frame
        anchor_pts, anchor_conf = self.anchor.carry(origin)
        return self._choose(anchor_pts, np.minimum(anchor_conf, chain_conf), flow_pts, flow_conf)

    def _choose(self, anchor_pts, conf, flow_pts, flow_conf) -> tuple[np.ndarray, np.ndarray]:
        """The anchor-carried point where its confidence reaches ``anchor_min_confidence``, else the flow's."""
        conf = np.asarray(conf, np.float32)
        use = conf >= self.min_confidence
        self.stats["anchored_points"] += int(use.sum())
        self.stats["fallback_points"] += int((~use).sum())
        out = np.where(use[:, None], anchor_pts, flow_pts).astype(np.float32)
        return out, np.where(use, conf, flow_conf).astype(np.float32)

    def _back(self, chain: Chain, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points (full-resolution pixels) of a chain's frame, taken to its reference frame; their confidence."""
        if chain is None:
            return points, np.ones(points.shape[0], np.float32)
        return self._sample_chain(chain, points)

    _forward = _back  # a forward chain is sampled the same way: at the points of its reference frame

    def _sample_chain(self, chain: tuple[np.ndarray, np.ndarray], points: np.ndarray):
        where, conf = chain
        s = self.flow._scale
        p = points * s
        moved = (sample(where, p) / s).astype(np.float32)
        chain_conf = sample(conf[..., None], p)[:, 0].astype(np.float32)
        h, w = conf.shape
        inside = (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)
        chain_conf[~inside] = 0.0
        return moved, chain_conf

    # --- async ------------------------------------------------------------------------------------------------------
    def _push_async(self, image: np.ndarray, had_frame: bool, fresh: bool, requested: bool) -> None:
        self.stats["frames"] += 1
        self._apply = False
        if fresh:  # size change: the pair in flight is of the old size
            self._drop_job()
            self._anchor_dirty, self._anchor_pushed = True, False
            self._pending = False
        job = self._job
        if job is not None and job.done():
            self._job = None
            err = job.exception()
            if err is not None:
                self.stats["anchor_failed"] += 1
                self._pending = False
                self._anchor_dirty, self._anchor_pushed = True, False  # unknown state: start the anchor again
                log.warning("cadence: the anchor matcher failed on the worker (%s: %s); its pair is skipped and the "
                            "flow carries on", type(err).__name__, err)
            elif self._job_pair:
                self._apply = True
                self.last_applied = (self._job_frame, self.stats["frames"])
                self.stats["anchor_applied"] += 1
                self.stats["anchor_lag_frames"] += self.stats["frames"] - self._job_frame
        if self._pending:  # the chains of a pair in flight go on; after it is applied, they end
            self._old_prev, self._fwd_prev = self._old, self._fwd
            self._fwd_advance = True
            if self._apply:
                self._pending = False
                self._old = self._fwd = None
        self._chain_prev = None if fresh else self._chain
        due = not had_frame or fresh or requested or self._since + 1 >= self.interval
        busy = self._job is not None or self._apply  # a pair in flight, or the anchor answers this frame's carry
        anchor_now = due and not busy
        if due and self._job is not None:  # a pair in flight
            if requested:
                with self._lock:
                    self._requested = True  # a request is kept until it can be served
            if self._since + 1 >= self.interval:  # the interval's anchor frame is skipped: the next in a full one
                self.stats["anchor_skipped"] += 1
                self._since = 0
            else:
                self._since += 1
        elif anchor_now:
            pair = had_frame and not fresh and self._anchor_pushed
            if pair:  # the chains of the new pair: back to a goes on, forward from k starts
                self._pending = True
                self._old, self._old_prev = None, self._chain
                self._fwd, self._fwd_prev, self._fwd_advance = None, None, False
            self._submit(image, pair)
            self._since = 0
            self._chain, self._chain_ready = None, True
            self.stats["anchor_frames"] += 1
        else:  # not due, or due on the frame that applies a pair: the next frame is an anchor frame then
            self._since = self._since + 1 if not due else max(self.interval - 1, 0)
            if due and requested:
                with self._lock:
                    self._requested = True
        if not anchor_now:
            self._chain_ready = False
        self._is_anchor = anchor_now

    def _submit(self, image: np.ndarray, pair: bool) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cadence-anchor")
        dirty, self._anchor_dirty = self._anchor_dirty, False
        self._job = self._pool.submit(self._work, np.array(image, copy=True), dirty, pair)
        self._job_pair, self._job_frame = pair, self.stats["frames"]
        self._anchor_pushed = True

    def _work(self, image: np.ndarray, dirty: bool, pair: bool) -> None:
        """The worker's part: the anchor matcher's frame and, for a pair, its pair work (the only thread inside the
        anchor matcher until this returns; the calling thread only carries points with it once it is done)."""
        if dirty:
            self.anchor.reset()
        self.anchor.push(image)
        if pair:
            self.anchor.prepare()
            self.anchor.carry(np.zeros((0, 2), np.float32))  # pair work done on the first carry (XFeat's matches)

    def warp_labels(self, labels: np.ndarray) -> np.ndarray | None:
        return self.flow.warp_labels(labels)

    def point_map(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.mode == "async":
            return None
        return self.anchor.point_map() if self._is_anchor else None

    # --- the chains -------------------------------------------------------------------------------------------------
    def _settle(self) -> None:
        """Advance the chains through the newest pair (previous -> newest) once: where each pixel of the newest frame
        is in the last anchor frame (and, async with a pair in flight, in frame a of that pair), where each pixel of
        frame k of that pair is in the newest frame, and the weakest forward-backward agreement on the way."""
        old = self.mode == "async" and self._pending
        fwd_too = old and self._fwd_advance
        if self._chain_ready and not old:
            return
        if self._settled:
            return
        fwd, bwd = self.flow._pair_flows()
        map_x, map_y = flow_maps(bwd, *bwd.shape[:2])  # each newest pixel in the previous frame
        agree = _agreement(bwd, fwd, map_x, map_y, self.max_error)
        if not self._chain_ready:
            self._chain = _advance_back(self._chain_prev, map_x, map_y, agree)
            self._chain_ready = True
        if old:
            self._old = _advance_back(self._old_prev, map_x, map_y, agree)
        if fwd_too:
            self._fwd = _advance_forward(self._fwd_prev, fwd, bwd, self.max_error)
        self._settled = True


def _agreement(flow: np.ndarray, other: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, max_error: float):
    """Per pixel of ``flow``'s frame: how well ``other`` (the opposite flow) at the pixel's landing point
    (``map_x``, ``map_y``) brings it back (1 = exactly, 0 = ``max_error`` pixels off or landing outside)."""
    h, w = flow.shape[:2]
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    back = cv2.remap(other, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    err = np.linalg.norm(flow + back, axis=2)
    agree = np.clip(1.0 - err / max_error, 0.0, 1.0).astype(np.float32)
    agree[~inside] = 0.0
    return agree


def _advance_back(prev: Chain, map_x: np.ndarray, map_y: np.ndarray, agree: np.ndarray) -> tuple:
    """The backward chain of the newest frame from the previous frame's (``prev``, None: it is the reference)."""
    if prev is None:
        return np.stack([map_x, map_y], axis=2).astype(np.float32), agree
    where = cv2.remap(prev[0], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    conf = np.minimum(agree, cv2.remap(prev[1], map_x, map_y, cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=0.0))
    return where.astype(np.float32), conf.astype(np.float32)


def _advance_forward(prev: Chain, fwd: np.ndarray, bwd: np.ndarray, max_error: float) -> tuple:
    """The forward chain (each pixel of its reference frame, where it is in the newest frame) from the one that
    ended in the previous frame (``prev``, None: the previous frame is the reference)."""
    f_x, f_y = flow_maps(fwd, *fwd.shape[:2])  # each previous pixel in the newest frame
    agree_f = _agreement(fwd, bwd, f_x, f_y, max_error)  # per pixel of the previous frame
    if prev is None:
        return np.stack([f_x, f_y], axis=2).astype(np.float32), agree_f
    px, py = prev[0][..., 0], prev[0][..., 1]  # where the reference pixels are in the previous frame
    step = cv2.remap(fwd, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    conf = np.minimum(prev[1], cv2.remap(agree_f, px, py, cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=0.0))
    where = (prev[0] + step).astype(np.float32)
    h, w = fwd.shape[:2]
    inside = (where[..., 0] >= 0) & (where[..., 0] <= w - 1) & (where[..., 1] >= 0) & (where[..., 1] <= h - 1)
    conf[~inside] = 0.0
    return where, conf.astype(np.float32)
