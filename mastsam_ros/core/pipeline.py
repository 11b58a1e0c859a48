"""A three-stage frame pipeline around one :class:`~mastsam_ros.core.tracker.Tracker`: results in frame order.

Stages, one thread each:

1. ``decode``: takes the newest submitted item from the entrance, decodes it (``decode``: a ROS message, a JPEG...
   to H x W x 3 uint8 RGB) and checks it (:func:`~mastsam_ros.core.frames.check_frame`);
2. ``encode``: the segmenter's embedding of that frame, computed ahead (:meth:`Segmenter.embed`): on a GPU the
   encoder of frame n+1 runs while frame n is tracked; beside it (a second thread when the segmenter embeds ahead)
   the matcher's pair (frame n, frame n+1), computed ahead too (:meth:`Matcher.pair_ahead`: for the flow matcher the
   grey downscaled frame and both DIS flows), without touching the pair (n-1, n) that stage 3 is reading;
3. ``track``: ``Tracker.step(frame, embedding, pair)`` (the pair installed by ``Matcher.push_ahead``, prompts,
   bookkeeping), then ``deliver`` with the outcome, in this same thread, so the tracker and its matcher still hold
   that frame's state while the front end publishes it.

Between two stages one slot (a queue of depth 1). A stage starts a frame only when its slot downstream is free
and, from each stage's mean work per frame, just early enough that the frame reaches the next stage as that one
frees: the slowest stage never waits for the others (on a GPU, stage 2 encodes while stage 3 tracks), and a frame
spends little time in slots, so its latency stays near decode + encode + track and the frame decoded is the newest
at the entrance when decoding starts. The entrance is one slot too: a newer item replaces one
still waiting there, and that is counted as dropped; past the entrance no frame is dropped, and since every frame
passes every stage in turn, outcomes come out in submission order, a failed frame included (its error is
delivered in its place).

The matcher's state (the pair (previous, current) that stage 3 reads) changes only in stage 3: stage 2 hands the
pair it computed to the step, and ``push_ahead`` installs it only where its previous frame is the one the matcher
holds (after a reset, a failed frame or a rebuilt matcher it computes the pair again, as without a pipeline; a pair
made by a matcher the tracker has since replaced is not passed at all, counted as ``rematched``). The previous frame
of stage 2's pair is the last frame it passed on without error. A matcher that computes nothing ahead (the default
``pair_ahead``) does its work in stage 3. With a segmenter whose ``embeds_ahead`` is False (the default
:meth:`Segmenter.embed`) stage 2 passes the frame on and the encoding happens in stage 3, as without a pipeline.

Control between frames: ``between`` is called in the tracking thread before every step and while it waits for a
frame (the node applies parameter changes there). An embedding made by a segmenter the tracker has since replaced
(a parameter change rebuilt it) is not used: that frame is encoded again in stage 3.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

import numpy as np

from .errors import FrameError
from .frames import check_frame
from .tracker import Tracker
from .types import FrameResult

log = logging.getLogger(__name__)

STAGES = ("decode", "encode", "track")


@dataclass
class Outcome:
    """One submitted item's answer, delivered in submission order."""

    seq: int  # submission number (0, 1, ...), dropped items included: gaps are the entrance's drops
    payload: Any  # what was submitted
    arrived: float  # time.monotonic() of arrival (given at submit, else the submit time)
    frame: np.ndarray | None = None  # the decoded, checked frame (None when decoding failed)
    result: FrameResult | None = None  # None when a stage failed
    error: BaseException | None = None  # the first stage's exception, if any
    stage_ms: dict[str, float] = field(default_factory=dict)  # decode, encode, track: work only, no waiting
    flow_ms: float = 0.0  # the matcher's pair computed in stage 2 (inside its encode time; 0: none computed)
    pair_used: bool = False  # the step installed that pair (its flow not computed again in stage 3)
    matcher_ms: float = 0.0  # the matcher's work inside the step (``FrameResult.timings["matcher"]``)
    latency_ms: float = 0.0  # arrival to result (waiting included), before ``deliver`` runs

    @property
    def waited_ms(self) -> float:
        """Time spent waiting at the entrance and between stages."""
        return self.latency_ms - sum(self.stage_ms.values())


class _Item:
    __slots__ = ("outcome", "embedding", "segmenter", "pair", "matcher")

    def __init__(self, outcome: Outcome):
        self.outcome = outcome
        self.embedding: object = None
        self.segmenter: object = None
        self.pair: object = None  # the matcher's pair (previous frame, this frame), computed ahead
        self.matcher: object = None  # the matcher that computed it


class Pipeline:
    """Decode, encode and track in three threads (module docstring). Thread-safe: :meth:`submit` from any thread.

    ``deliver(outcome)`` runs in the tracking thread for every item that passed the entrance, in order; an exception
    it raises is logged and counted (``deliver_errors``), never stops the pipeline. ``decode(payload)`` runs in the
    decoding thread (identity by default: the payload is already a frame); whatever it raises is delivered as the
    outcome's error. The tracker belongs to the pipeline's tracking thread while the pipeline runs.
    """

    def __init__(
        self,
        tracker: Tracker,
        deliver: Callable[[Outcome], None],
        decode: Callable[[Any], np.ndarray] | None = None,
        between: Callable[[], None] | None = None,
        name: str = "mastsam",
        history: int = 300,
    ):
        self.tracker = tracker
        self._deliver = deliver
        self._decode = decode or (lambda payload: payload)
        self._between = between
        self._cond = threading.Condition()
        self._entrance: _Item | None = None
        self._decoded: _Item | None = None
        self._encoded: _Item | None = None
        self._started: dict[str, float | None] = dict.fromkeys(STAGES)  # monotonic start of the frame in work
        self._took = dict.fromkeys(STAGES, 0.0)  # running mean of each stage's work per frame (s)
        self._stop = threading.Event()
        self._seq = 0
        self.counters = {"submitted": 0, "dropped": 0, "delivered": 0, "errors": 0, "deliver_errors": 0,
                         "reencoded": 0, "paired_ahead": 0, "pair_failed": 0, "rematched": 0,
                         "pair_used": 0, "pair_not_used": 0}
        self._flow_pool: ThreadPoolExecutor | None = None  # stage 2's second thread: the pair beside the encoder
        self._recent: deque[Outcome] = deque(maxlen=history)  # newest outcomes (their arrays dropped), for stats
        self._threads = [threading.Thread(target=run, name=f"{name}-{stage}", daemon=True)
                         for stage, run in zip(STAGES, (self._run_decode, self._run_encode, self._run_track))]
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
                raise TimeoutError(f"the pipeline's entrance stayed busy for {timeout} s")
            if self._stop.is_set():
                raise RuntimeError("the pipeline is closed")
            item = _Item(Outcome(seq=-1, payload=payload, arrived=time.monotonic() if arrived is None else arrived))
            item.outcome.seq, self._seq = self._seq, self._seq + 1
            replaced = self._entrance is not None
            self._entrance = item
            self.counters["submitted"] += 1
            self.counters["dropped"] += int(replaced)
            self._cond.notify_all()
        return replaced

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item that passed the entrance has been delivered; False on timeout."""
        with self._cond:
            return self._cond.wait_for(self._idle, timeout)

    def _idle(self) -> bool:
        return (self._entrance is None and self._decoded is None and self._encoded is None
                and all(t is None for t in self._started.values()))

    def counts(self) -> dict[str, int]:
        """A copy of :attr:`counters`, taken under the pipeline's lock (from any thread)."""
        with self._cond:
            return dict(self.counters)

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
        end = time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, end - time.monotonic()))
        if self._flow_pool is not None:
            self._flow_pool.shutdown(wait=False)
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

    # --- stages ---------------------------------------------------------------------------------------------------
    # Scheduling. A stage starts a frame only when its slot downstream is free, and no earlier than it needs to so
    # that the frame reaches the next stage just as that stage frees (from each stage's mean work per frame): a frame
    # then waits in no slot, its latency is about decode + encode + track, and it is the newest frame at the entrance
    # when decoding starts. While the means are still 0 (the first frames) a stage starts as soon as it can.
    def _track_free(self, now: float) -> float:
        """When the tracking stage can take its next frame."""
        t = self._started["track"]
        return now if t is None else max(now, t + self._took["track"])

    def _encode_at(self, now: float) -> float | None:
        """When stage 2 should start its next frame (None: it cannot before something changes)."""
        if self._encoded is not None:
            return None
        return max(now, self._track_free(now) - self._took["encode"])

    def _decode_at(self, now: float) -> float | None:
        """When stage 1 should start its next frame: so that it is decoded when stage 2 starts its next one."""
        if self._entrance is None or self._decoded is not None:
            return None
        if self._started["encode"] is not None or self._encoded is not None:
            # stage 2's current frame goes to tracking first: the one after starts a tracking period later
            enc = self._started["encode"]
            first = self._track_free(now) if enc is None else max(self._track_free(now), enc + self._took["encode"])
            start = max(first, first + self._took["track"] - self._took["encode"])
        else:
            start = self._encode_at(now)
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
            out.stage_ms["decode"] = (time.perf_counter() - t0) * 1e3
            self._hand("decode", item, "_decoded")

    def _run_encode(self) -> None:
        previous = None  # the last frame passed on without error: the previous frame of the next pair
        while self._take("encode", lambda now: None if self._decoded is None else self._encode_at(now)):
            with self._cond:
                item, self._decoded = self._decoded, None
                self._cond.notify_all()
            out = item.outcome
            if out.error is None:
                t0 = time.perf_counter()
                segmenter, matcher = self.tracker.segmenter, self.tracker.matcher
                pair = None
                if segmenter.embeds_ahead:  # the encoder releases the GIL (a GPU call): the pair beside it
                    if self._flow_pool is None:
                        self._flow_pool = ThreadPoolExecutor(1, thread_name_prefix=f"{self._threads[1].name}-flow")
                    pair = self._flow_pool.submit(self._pair_ahead, matcher, previous, out)
                try:
                    item.embedding, item.segmenter = segmenter.embed(out.frame), segmenter
                except Exception as e:  # noqa: BLE001
                    out.error = e
                if pair is not None:
                    item.pair = pair.result()  # waited for even after an error: one pair at a time
                elif out.error is None:
                    item.pair = self._pair_ahead(matcher, previous, out)
                item.matcher = matcher
                out.stage_ms["encode"] = (time.perf_counter() - t0) * 1e3
                if out.error is None:
                    previous = out.frame
            self._hand("encode", item, "_encoded")

    def _pair_ahead(self, matcher, previous: np.ndarray | None, out: Outcome) -> object:
        """The matcher's pair (``previous``, this frame) computed ahead, or None (none computed ahead, or it failed:
        the step then computes it, and raises where the frame itself is bad)."""
        t0 = time.perf_counter()
        try:
            pair = matcher.pair_ahead(previous, out.frame)
        except Exception as e:  # noqa: BLE001 - stage 3 computes the pair itself and reports a bad frame
            if not isinstance(e, FrameError):
                log.warning("pipeline: computing the matcher's pair ahead failed (%s); the step computes it", e)
            pair = None
            with self._cond:
                self.counters["pair_failed"] += 1
        else:
            if pair is not None:
                with self._cond:
                    self.counters["paired_ahead"] += 1
        if pair is not None:
            out.flow_ms = (time.perf_counter() - t0) * 1e3
        return pair

    def _hand(self, stage: str, item: _Item, slot: str) -> None:
        with self._cond:
            setattr(self, slot, item)  # free: a stage starts only when its slot downstream is
            self._done(stage)
            self._cond.notify_all()

    def _run_track(self) -> None:
        while not self._stop.is_set():
            if not self._take("track", lambda now: now if self._encoded is not None else None, timeout=0.2):
                self._call_between()  # also while no frame comes: changes take effect without one
                continue
            with self._cond:
                item, self._encoded = self._encoded, None
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
            log.exception("pipeline: the between-frames hook failed")

    def _track(self, item: _Item) -> None:
        out = item.outcome
        if out.error is None:
            self._call_between()  # parameter changes apply before this frame, as without a pipeline
            embedding = item.embedding
            if item.segmenter is not self.tracker.segmenter:  # rebuilt meanwhile: encode with the new one
                embedding = None
                with self._cond:
                    self.counters["reencoded"] += 1
            pair = item.pair
            if pair is not None and item.matcher is not self.tracker.matcher:  # rebuilt meanwhile: computed again
                pair = None
                with self._cond:
                    self.counters["rematched"] += 1
            matcher = self.tracker.matcher
            t0 = time.perf_counter()
            try:
                out.result = self.tracker.step(out.frame, embedding, pair)
            except Exception as e:  # noqa: BLE001
                out.error = e
            out.stage_ms["track"] = (time.perf_counter() - t0) * 1e3
            if out.result is not None:
                # push_ahead (called by the step only with a pair) tells the matcher whether it installed it
                out.pair_used = pair is not None and bool(getattr(matcher, "ahead_used", False))
                out.matcher_ms = float(out.result.timings.get("matcher", 0.0))
        item.embedding = item.pair = None  # the next frame's encoder may need the memory
        out.latency_ms = (time.monotonic() - out.arrived) * 1e3
        with self._cond:
            if self._stop.is_set():
                return
            self.counters["delivered"] += 1
            self.counters["errors"] += int(out.error is not None)
            if out.error is None:
                self.counters["pair_used" if out.pair_used else "pair_not_used"] += 1
            self._recent.append(Outcome(out.seq, None, out.arrived, error=out.error, stage_ms=dict(out.stage_ms),
                                        flow_ms=out.flow_ms, pair_used=out.pair_used, matcher_ms=out.matcher_ms,
                                        latency_ms=out.latency_ms))
        try:
            self._deliver(out)
        except Exception:  # noqa: BLE001
            with self._cond:
                self.counters["deliver_errors"] += 1
            log.exception("pipeline: deliver failed for item %d", out.seq)

    # --- figures --------------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """Over the newest delivered frames: see :func:`outcome_stats`."""
        with self._cond:
            recent = [o for o in self._recent if o.error is None]
        return outcome_stats(recent)


def outcome_stats(outcomes: list[Outcome]) -> dict[str, float]:
    """Figures of tracked outcomes (errors left out): latency (arrival to result) median, p95 and max in ms, each
    stage's mean work in ms, the mean wait, stage 2's matcher pair (``flow_ms_mean``, ``flow_ms_median``: part of
    encode's time; over the frames that computed one), the matcher's work inside the step (``matcher_ms_median``:
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


def run_pipelined(tracker: Tracker, items: Iterable[Any], decode: Callable[[Any], np.ndarray] | None = None,
                  timeout: float | None = None, on_result: Callable[[Outcome], None] | None = None,
                  counters: dict[str, int] | None = None) -> Iterator[Outcome]:
    """Every item through a :class:`Pipeline` without drops (the entrance waits), outcomes yielded in order.

    For offline use (files, benchmarks, tests): each outcome is yielded as soon as it is ready, while later items are
    still being decoded and encoded, so the tracker may already be in a later frame; ``on_result(outcome)`` runs in
    the tracking thread before the next step, for what must read the tracker's state of that very frame (a matcher's
    point map); what it raises becomes the outcome's ``error``. ``timeout``: seconds any one wait may take (None: no
    limit). ``counters``: a dict updated with the pipeline's counters (:attr:`Pipeline.counters`) when it stops.
    """
    done: SimpleQueue[Outcome] = SimpleQueue()

    def deliver(out: Outcome) -> None:
        if on_result is not None and out.error is None:
            try:
                on_result(out)
            except Exception as e:  # noqa: BLE001 - handed to the consumer with its frame
                out.error = e
        done.put(out)

    pipe = Pipeline(tracker, deliver, decode=decode, name="mastsam-offline")
    try:
        for item in items:
            pipe.submit(item, block=True, timeout=timeout)
            while not done.empty():
                yield done.get()
        if not pipe.flush(timeout):
            raise TimeoutError(f"the pipeline did not finish within {timeout} s")
        while not done.empty():
            yield done.get()
    finally:
        pipe.close()
        if counters is not None:
            counters.update(pipe.counters)
