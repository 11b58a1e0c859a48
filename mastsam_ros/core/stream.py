"""The stream: the one path every frame travels, for every front end (the node, ``mastsam-track``, ``mastsam-bag``,
``process-many``, the bench's end-to-end runs). Frames in, in order; for each frame one :class:`Outcome` out, in
submission order: the tracker's :class:`~mastsam_ros.core.types.FrameResult`, the uint16 label image with its
id -> value map (:class:`~mastsam_ros.core.labels.LabelMapper`), the 3D objects where a depth image or the matcher's
point map is given, or, for a bad frame, the error in its place (counted by kind). A front end converts its input to
frames and an outcome to its own output, and does nothing else per frame.

One driver, three stages, one thread each:

1. ``decode``: takes the newest submitted item from the entrance, decodes it (``decode``: a ROS message, a file...
   to H x W x 3 uint8 RGB), checks it (:func:`~mastsam_ros.core.frames.check_frame`) and reads its depth (``depth``);
2. ``prepare``: with ``ahead`` (the default), :meth:`Tracker.prepare`: the segmenter's embedding and the matcher's
   pair (previous frame, this frame), computed while stage 3 tracks the frame before (on a GPU the encoder of frame
   n+1 runs while frame n is tracked); without ``ahead`` (serial) it passes the frame on and the step computes both;
3. ``track``: :meth:`Tracker.step` with what stage 2 prepared, the label image and the 3D objects, then ``deliver``
   with the outcome, in this same thread, so the tracker and its matcher still hold that frame's state while the
   front end publishes it.

Between two stages one slot (a queue of depth 1). A stage starts a frame only when its slot downstream is free
and, from each stage's mean work per frame, just early enough that the frame reaches the next stage as that one
frees: the slowest stage never waits for the others, and a frame spends little time in slots, so its latency stays
near decode + prepare + track and the frame decoded is the newest at the entrance when decoding starts. The entrance
is one slot too: a newer item replaces one still waiting there (live use), and that is counted as dropped; past the
entrance no frame is dropped, and since every frame passes every stage in turn, outcomes come out in submission
order, a failed frame included. Offline, :meth:`Stream.run` waits at the entrance instead: no frame is dropped.

Counts hold at every moment: ``submitted = dropped + delivered + in_flight``; ``errors`` (by kind in
``errors_by_kind``) are delivered outcomes without a result.

Control between frames: ``between`` is called in the tracking thread before every step and while it waits for a
frame (the node applies parameter changes there). What stage 2 prepared with a backend the tracker has since
replaced is computed again in the step (:meth:`Tracker.step`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

import numpy as np

from .errors import MastSamError
from .frames import check_frame
from .geometry import (
    GeometryError, Intrinsics, Object3D, backproject, depth_to_metres, frame_point_map, objects_3d, resize_point_map,
)
from .labels import LabelMapper
from .tracker import Prepared, Tracker
from .types import FrameResult

log = logging.getLogger(__name__)

STAGES = ("decode", "prepare", "track")


@dataclass
class Depth:
    """One frame's depth, for its 3D objects: ``image`` H x W uint16 millimetres (0 = invalid) or float metres
    (non-finite or <= 0 invalid), registered to the frame; ``intrinsics`` of the camera at ``image``'s size. The
    points are back-projected at the depth's size and brought to the label map's size (nearest) when the frame was
    processed at another size."""

    image: np.ndarray
    intrinsics: Intrinsics


@dataclass
class Outcome:
    """One submitted item's answer, delivered in submission order."""

    seq: int  # submission number (0, 1, ...), dropped items included: gaps are the entrance's drops
    payload: Any  # what was submitted
    arrived: float  # time.monotonic() of arrival (given at submit, else the submit time)
    frame: np.ndarray | None = None  # the decoded, checked frame (None when decoding failed)
    result: FrameResult | None = None  # None when a stage failed
    error: BaseException | None = None  # the first stage's exception, if any
    labels: np.ndarray | None = None  # H x W uint16 pixel values of the result's ids (LabelMapper)
    label_of: dict[int, int] = field(default_factory=dict)  # {track id: pixel value} of this frame
    objects: list[Object3D] | None = None  # 3D objects (depth or point map given and usable), else None
    objects_error: BaseException | None = None  # why a frame that should have had 3D objects has none
    points: np.ndarray | None = None  # with ``objects``: the label map's H x W x 3 float32 points (NaN invalid)
    stage_ms: dict[str, float] = field(default_factory=dict)  # decode, prepare, track: work only, no waiting
    pair_used: bool = False  # the step installed the matcher's pair computed in stage 2
    flow_ms: float = 0.0  # the matcher's pair computed in stage 2 (inside its prepare time; 0: none computed)
    matcher_ms: float = 0.0  # the matcher's work inside the step (``FrameResult.timings["matcher"]``)
    latency_ms: float = 0.0  # arrival to result (waiting included), before ``deliver`` runs

    @property
    def waited_ms(self) -> float:
        """Time spent waiting at the entrance and between stages."""
        return self.latency_ms - sum(self.stage_ms.values())

    def figures(self) -> Outcome:
        """A copy without the arrays (frame, labels, result), for statistics kept over many frames."""
        return Outcome(self.seq, None, self.arrived, error=self.error, stage_ms=dict(self.stage_ms),
                       pair_used=self.pair_used, flow_ms=self.flow_ms, matcher_ms=self.matcher_ms,
                       latency_ms=self.latency_ms)


def error_kind(e: BaseException) -> str:
    """The counter an error is counted under: its ``kind`` where it has one, else its class name."""
    return str(getattr(e, "kind", None) or type(e).__name__)


class _Item:
    __slots__ = ("outcome", "depth", "prepared")

    def __init__(self, outcome: Outcome):
        self.outcome = outcome
        self.depth: Depth | None = None
        self.prepared: Prepared | None = None


class Stream:
    """Decode, prepare and track in three threads (module docstring). Thread-safe: :meth:`submit` from any thread.

    ``deliver(outcome)`` runs in the tracking thread for every item that passed the entrance, in order; an exception
    it raises is logged and counted (``deliver_errors``), never stops the stream. Without ``deliver``, outcomes are
    kept for :meth:`run`. ``decode(payload)`` runs in the decoding thread (identity by default: the payload is already
    a frame); whatever it raises is delivered as the outcome's error. ``depth(payload, frame)`` (optional, decoding
    thread) gives the frame's :class:`Depth` or None; what it raises becomes the outcome's ``objects_error``.
    ``pointmap_min_conf``: 3D objects from the matcher's point map (``Matcher.point_map``) where no depth is given,
    its pixels below that confidence invalid (None: no point map). ``trim``: the objects' bounds from the q and 1-q
    quantiles (:func:`~mastsam_ros.core.geometry.objects_3d`). ``ahead``: stage 2 prepares frames ahead (else the
    step computes everything: serial). The tracker belongs to the stream's threads while the stream runs.
    """

    def __init__(
        self,
        tracker: Tracker,
        deliver: Callable[[Outcome], None] | None = None,
        *,
        decode: Callable[[Any], np.ndarray] | None = None,
        depth: Callable[[Any, np.ndarray], Depth | None] | None = None,
        pointmap_min_conf: float | None = None,
        trim: float = 0.0,
        ahead: bool = True,
        between: Callable[[], None] | None = None,
        name: str = "mastsam",
        history: int = 300,
    ):
        self.tracker = tracker
        self.ahead = ahead
        self._done_q: SimpleQueue[Outcome] | None = SimpleQueue() if deliver is None else None
        self._deliver = deliver or self._done_q.put
        self._decode = decode or (lambda payload: payload)
        self._depth = depth
        self._pointmap_min_conf = pointmap_min_conf
        self._trim = trim
        self._between = between
        self._labels = LabelMapper()
        self._cond = threading.Condition()
        self._entrance: _Item | None = None
        self._decoded: _Item | None = None
        self._prepared: _Item | None = None
        self._started: dict[str, float | None] = dict.fromkeys(STAGES)  # monotonic start of the frame in work
        self._took = dict.fromkeys(STAGES, 0.0)  # running mean of each stage's work per frame (s)
        self._stop = threading.Event()
        self._seq = 0
        self.counters = {"submitted": 0, "dropped": 0, "delivered": 0, "errors": 0, "deliver_errors": 0,
                         "paired_ahead": 0, "pair_used": 0, "pair_not_used": 0, "objects": 0, "objects_skipped": 0}
        self.errors_by_kind: Counter[str] = Counter()
        self._recent: deque[Outcome] = deque(maxlen=history)  # newest outcomes (their arrays dropped), for stats
        self._threads = [threading.Thread(target=run, name=f"{name}-{stage}", daemon=True)
                         for stage, run in zip(STAGES, (self._run_decode, self._run_prepare, self._run_track))]
        for t in self._threads:
            t.start()

    # --- entrance -------------------------------------------------------------------------------------------------
    def submit(self, payload: Any, arrived: float | None = None, block: bool = False,
               timeout: float | None = None) -> bool:
        """Offer one item; True when it replaced an item still waiting at the entrance (that one is dropped).

        ``arrived``: its time.monotonic() of arrival, the start of its latency (default: when it enters). ``block``:
        wait (up to ``timeout`` s) for the entrance to be free instead of replacing (offline use: no frame dropped);
        raises TimeoutError when it does not free in time, RuntimeError after :meth:`close`.
        """
        with self._cond:
            if block and not self._cond.wait_for(lambda: self._entrance is None or self._stop.is_set(), timeout):
                raise TimeoutError(f"the stream's entrance stayed busy for {timeout} s")
            if self._stop.is_set():
                raise RuntimeError("the stream is closed")
            item = _Item(Outcome(seq=-1, payload=payload, arrived=time.monotonic() if arrived is None else arrived))
            item.outcome.seq, self._seq = self._seq, self._seq + 1
            replaced = self._entrance is not None
            self._entrance = item
            self.counters["submitted"] += 1
            self.counters["dropped"] += int(replaced)
            self._cond.notify_all()
        return replaced

    def run(self, items: Iterable[Any], timeout: float | None = None) -> Iterator[Outcome]:
        """Every item through the stream without drops (the entrance waits), outcomes yielded in order; the stream
        is closed at the end (offline use: files, bags, benchmarks, tests; only for a stream made without
        ``deliver``). Each outcome is yielded as soon as it is ready, while later items are still being decoded and
        prepared, so read the tracker's state in ``deliver``, not here. ``timeout``: seconds any one wait may take.
        """
        if self._done_q is None:
            raise RuntimeError("run() is for a stream made without deliver")
        done = self._done_q
        try:
            for item in items:
                self.submit(item, block=True, timeout=timeout)
                while not done.empty():
                    yield done.get()
            if not self.flush(timeout):
                raise TimeoutError(f"the stream did not finish within {timeout} s")
            while not done.empty():
                yield done.get()
        finally:
            self.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item that passed the entrance has been delivered; False on timeout."""
        with self._cond:
            return self._cond.wait_for(self._idle, timeout)

    def _idle(self) -> bool:
        return (self._entrance is None and self._decoded is None and self._prepared is None
                and all(t is None for t in self._started.values()))

    def counts(self) -> dict[str, int]:
        """A copy of :attr:`counters` with ``in_flight`` and ``errors_by_kind`` (as ``error_<kind>``), taken under
        the stream's lock (from any thread)."""
        with self._cond:
            c = dict(self.counters)
            c["in_flight"] = c["submitted"] - c["dropped"] - c["delivered"]
            c.update({f"error_{k}": v for k, v in self.errors_by_kind.items()})
            return c

    @property
    def in_flight(self) -> int:
        """Items submitted and neither dropped nor delivered yet."""
        with self._cond:
            c = self.counters
            return c["submitted"] - c["dropped"] - c["delivered"]

    def close(self, timeout: float = 1.0) -> bool:
        """Stop all stages; items not yet delivered are abandoned (nothing is delivered after this returns, except
        by a ``deliver`` call already running). True when every thread ended within ``timeout`` s (a stage in the
        middle of a long model call finishes it first; the threads are daemons)."""
        with self._cond:
            self._stop.set()
            self._cond.notify_all()
        self.join(timeout)
        return not any(t.is_alive() for t in self._threads if t is not threading.current_thread())

    def is_alive(self) -> bool:
        """Whether a stage's thread still runs (after :meth:`close`: one still in the middle of a model call)."""
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` s (None: no limit) for the stages' threads to end (after :meth:`close`)."""
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(None if end is None else max(0.0, end - time.monotonic()))

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- stages ---------------------------------------------------------------------------------------------------
    # Scheduling. A stage starts a frame only when its slot downstream is free, and no earlier than it needs to so
    # that the frame reaches the next stage just as that stage frees (from each stage's mean work per frame): a frame
    # then waits in no slot, its latency is about decode + prepare + track, and it is the newest frame at the
    # entrance when decoding starts. While the means are still 0 (the first frames) a stage starts as soon as it can.
    def _track_free(self, now: float) -> float:
        """When the tracking stage can take its next frame."""
        t = self._started["track"]
        return now if t is None else max(now, t + self._took["track"])

    def _prepare_at(self, now: float) -> float | None:
        """When stage 2 should start its next frame (None: it cannot before something changes)."""
        if self._prepared is not None:
            return None
        return max(now, self._track_free(now) - self._took["prepare"])

    def _decode_at(self, now: float) -> float | None:
        """When stage 1 should start its next frame: so that it is decoded when stage 2 starts its next one."""
        if self._entrance is None or self._decoded is not None:
            return None
        if self._started["prepare"] is not None or self._prepared is not None:
            # stage 2's current frame goes to tracking first: the one after starts a tracking period later
            enc = self._started["prepare"]
            first = self._track_free(now) if enc is None else max(self._track_free(now), enc + self._took["prepare"])
            start = max(first, first + self._took["track"] - self._took["prepare"])
        else:
            start = self._prepare_at(now)
        return start - self._took["decode"]

    def _take(self, stage: str, when: Callable[[float], float | None], timeout: float | None = None) -> bool:
        """Wait (under the lock) until ``when(now)`` gives a time not after now, or stop; mark the stage started
        then. False on stop or timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._stop.is_set():
                now = time.monotonic()
                at = when(now)
                if at is not None and at <= now:
                    self._started[stage] = now
                    return True
                wait = None if at is None else at - now
                if end is not None:
                    if now >= end:
                        return False
                    wait = end - now if wait is None else min(wait, end - now)
                self._cond.wait(wait)
            return False

    def _done(self, stage: str) -> None:
        """Under the lock: the stage's frame is finished; update its mean work per frame."""
        took = time.monotonic() - self._started[stage]
        self._took[stage] = took if self._took[stage] == 0.0 else 0.8 * self._took[stage] + 0.2 * took
        self._started[stage] = None

    def _hand(self, stage: str, item: _Item, slot: str) -> None:
        with self._cond:
            setattr(self, slot, item)  # free: a stage starts only when its slot downstream is
            self._done(stage)
            self._cond.notify_all()

    def _run_decode(self) -> None:
        while self._take("decode", self._decode_at):
            with self._cond:
                item, self._entrance = self._entrance, None
                self._cond.notify_all()
            out = item.outcome
            t0 = time.perf_counter()
            try:
                out.frame = check_frame(self._decode(out.payload))
            except Exception as e:  # noqa: BLE001 - delivered in the frame's place
                out.error = e
            if out.error is None and self._depth is not None:
                try:
                    item.depth = self._depth(out.payload, out.frame)
                except (GeometryError, ValueError, OSError) as e:  # the frame is tracked; its 3D is skipped
                    out.objects_error = e
            out.stage_ms["decode"] = (time.perf_counter() - t0) * 1e3
            self._hand("decode", item, "_decoded")

    def _run_prepare(self) -> None:
        while self._take("prepare", lambda now: None if self._decoded is None else self._prepare_at(now)):
            with self._cond:
                item, self._decoded = self._decoded, None
                self._cond.notify_all()
            out = item.outcome
            if out.error is None and self.ahead:
                t0 = time.perf_counter()
                try:
                    item.prepared = self.tracker.prepare(out.frame)
                except Exception as e:  # noqa: BLE001
                    out.error = e
                else:
                    out.flow_ms = item.prepared.flow_ms if item.prepared.pair is not None else 0.0
                    if item.prepared.pair is not None:
                        with self._cond:
                            self.counters["paired_ahead"] += 1
                out.stage_ms["prepare"] = (time.perf_counter() - t0) * 1e3
            self._hand("prepare", item, "_prepared")

    def _run_track(self) -> None:
        while not self._stop.is_set():
            if not self._take("track", lambda now: now if self._prepared is not None else None, timeout=0.2):
                self._call_between()  # also while no frame comes: changes take effect without one
                continue
            with self._cond:
                item, self._prepared = self._prepared, None
                self._cond.notify_all()
            try:
                self._track(item)
            finally:
                with self._cond:
                    self._done("track")
                    self._cond.notify_all()

    def _call_between(self) -> None:
        if self._between is None:
            return
        try:
            self._between()
        except Exception:  # noqa: BLE001 - the caller's hook must not stop the tracking thread
            log.exception("stream: the between-frames hook failed")

    def _track(self, item: _Item) -> None:
        out = item.outcome
        if out.error is None:
            self._call_between()  # parameter changes apply before this frame
            t0 = time.perf_counter()
            try:
                out.result = self.tracker.step(out.frame, item.prepared)
            except Exception as e:  # noqa: BLE001
                out.error = e
            out.stage_ms["track"] = (time.perf_counter() - t0) * 1e3
            if out.result is not None:
                out.matcher_ms = float(out.result.timings.get("matcher", 0.0))
                out.pair_used = out.result.pair_used
                if out.result.reset:
                    self._labels.reset()
                out.labels, out.label_of = self._labels.assign(out.result)
                self._objects(out, item.depth)
        item.prepared = item.depth = None  # the next frame's encoder may need the memory
        out.latency_ms = (time.monotonic() - out.arrived) * 1e3
        with self._cond:
            if self._stop.is_set():
                return
            c = self.counters
            c["delivered"] += 1
            if out.error is not None:
                c["errors"] += 1
                self.errors_by_kind[error_kind(out.error)] += 1
            else:
                c["pair_used" if out.pair_used else "pair_not_used"] += 1
                c["objects"] += int(out.objects is not None)
                c["objects_skipped"] += int(out.objects_error is not None)
            self._recent.append(out.figures())
        try:
            self._deliver(out)
        except Exception:  # noqa: BLE001
            with self._cond:
                self.counters["deliver_errors"] += 1
            log.exception("stream: deliver failed for item %d", out.seq)

    def _objects(self, out: Outcome, depth: Depth | None) -> None:
        """The 3D objects of a tracked frame, in the tracking thread (the matcher still holds its point map)."""
        if out.objects_error is not None:
            return
        labels = out.result.labels
        h, w = labels.shape
        try:
            if depth is not None:
                points = backproject(depth_to_metres(depth.image), depth.intrinsics)
                if points.shape[:2] != (h, w):
                    points = resize_point_map(points, (w, h))
            elif self._depth is None and self._pointmap_min_conf is not None:
                pm = self.tracker.matcher.point_map()
                if pm is None:
                    raise GeometryError("the matcher has no point map for this frame")
                points = frame_point_map(*pm, (w, h), self._pointmap_min_conf)
            else:
                if self._depth is not None:
                    raise GeometryError("no depth for this frame")
                return
            out.objects = objects_3d(labels, points, [t.id for t in out.result.tracks], self._trim)
            out.points = points
        except (GeometryError, MastSamError, ValueError) as e:
            out.objects_error = e

    def set_objects(self, *, pointmap_min_conf: float | None = None, trim: float | None = None) -> None:
        """Change the 3D settings from the next frame on (any thread; a front end's runtime parameters):
        ``pointmap_min_conf`` only where a point map is in use, ``trim`` always; None leaves one as it is."""
        with self._cond:
            if pointmap_min_conf is not None and self._pointmap_min_conf is not None:
                self._pointmap_min_conf = pointmap_min_conf
            if trim is not None:
                self._trim = trim

    # --- figures --------------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """Over the newest delivered frames: see :func:`outcome_stats`."""
        with self._cond:
            recent = list(self._recent)
        return outcome_stats(recent)


def outcome_stats(outcomes: list[Outcome]) -> dict[str, float]:
    """Figures of tracked outcomes (errors left out): latency (arrival to result) median, p95 and max in ms, each
    stage's mean work in ms, the mean wait, stage 2's matcher pair (``flow_ms_mean``, ``flow_ms_median``: part of
    prepare's time; over the frames that computed one), the matcher's work inside the step (``matcher_ms_median``:
    with the pair installed, carrying points; else also the flow) and ``pair_used`` (frames whose step installed the
    pair computed ahead); NaN (``pair_used`` 0) without frames."""
    outcomes = [o for o in outcomes if o.error is None]
    nan = float("nan")
    if not outcomes:
        return {"latency_ms_median": nan, "latency_ms_p95": nan, "latency_ms_max": nan, "wait_ms_mean": nan,
                "flow_ms_mean": nan, "flow_ms_median": nan, "matcher_ms_median": nan, "pair_used": 0,
                **{f"{s}_ms_mean": nan for s in STAGES}}
    lat = np.array([o.latency_ms for o in outcomes])
    flows = [o.flow_ms for o in outcomes if o.flow_ms > 0.0]
    return {
        "latency_ms_median": float(np.median(lat)),
        "latency_ms_p95": float(np.percentile(lat, 95)),
        "latency_ms_max": float(lat.max()),
        "wait_ms_mean": float(np.mean([o.waited_ms for o in outcomes])),
        "flow_ms_mean": float(np.mean(flows)) if flows else nan,
        "flow_ms_median": float(np.median(flows)) if flows else nan,
        "matcher_ms_median": float(np.median([o.matcher_ms for o in outcomes])),
        "pair_used": sum(o.pair_used for o in outcomes),
        **{f"{s}_ms_mean": float(np.mean([o.stage_ms.get(s, 0.0) for o in outcomes])) for s in STAGES},
    }
