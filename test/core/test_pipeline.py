"""The frame pipeline (decode, encode, track in three threads) and the segmenters' embed / set_embedding."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from mastsam_ros.core.config import Config
from mastsam_ros.core.errors import FrameError, MastSamError
from mastsam_ros.core.pipeline import Pipeline, run_pipelined
from mastsam_ros.core.segmenters.base import Segmenter
from mastsam_ros.core.segmenters.classical import ClassicalSegmenter
from mastsam_ros.core.tracker import Tracker
from mastsam_ros.core.types import PointPrompt, Proposal
from flowcount import count_flow

SIZE = (320, 180)  # classical segmenter answers in a fraction of a second at this size on 2 cores


@pytest.fixture(scope="module")
def small_frames(car_frames):
    return [cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in car_frames[0]]


def test_pipelined_results_equal_the_serial_ones(small_frames):
    """Same frames, same config: the pipeline (embedding computed ahead in another thread) changes nothing."""
    encoded = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1] for f in small_frames]

    def decode(jpeg):
        return cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    serial = Tracker(Config())
    expected = [serial.step(decode(e)) for e in encoded]
    tracker = Tracker(Config())
    matcher = count_flow(tracker.matcher)  # DIS calls counted by thread: the flow of every pair is computed in stage 2
    outcomes = list(run_pipelined(tracker, encoded, decode=decode, timeout=60))
    assert matcher._dis.threads == []  # nothing computed in stage 3
    assert len(matcher._ahead_dis.threads) == 2 * (len(encoded) - 1)  # forward and backward of each pair
    assert all(name.startswith("mastsam-offline-encode") for name in matcher._ahead_dis.threads)
    assert [o.seq for o in outcomes] == list(range(len(encoded)))
    assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
    for want, got in zip(expected, outcomes):
        assert np.array_equal(want.labels, got.result.labels)
        assert [t.id for t in want.tracks] == [t.id for t in got.result.tracks]
        assert set(got.stage_ms) == {"decode", "encode", "track"} and got.latency_ms >= sum(got.stage_ms.values())
    assert len({t.id for r in expected for t in r.tracks}) > 1  # the sequence tracks something
    assert serial._pool is not None and tracker._pool is None  # stage 3 installs the embedding: no matcher thread
    tracker.close()


class _Slow(Segmenter):
    """Four fixed boxes; ``embed`` sleeps like a GPU encoder call (the GIL is released) and counts the calls during
    which a tracker step (from ``set_embedding`` to the end of ``predict``) was running."""

    name = "slow"
    embeds_ahead = True

    def __init__(self, shape=(120, 160), encode_s=0.03):
        self.boxes = []
        for y, x in [(10, 10), (10, 90), (70, 10), (70, 90)]:
            m = np.zeros(shape, bool)
            m[y : y + 40, x : x + 60] = True
            self.boxes.append(m)
        self.encode_s = encode_s
        self.stepping = threading.Event()
        self.embeds_during_step = 0
        self.current = None

    def embed(self, image):
        overlapped = False
        end = time.monotonic() + self.encode_s
        while time.monotonic() < end:
            overlapped |= self.stepping.is_set()
            time.sleep(0.001)
        self.embeds_during_step += int(overlapped)
        return ("slow", int(image[0, 0, 0]))

    def set_embedding(self, embedding):
        if not (isinstance(embedding, tuple) and embedding[0] == "slow"):
            raise MastSamError("not mine")
        self.stepping.set()  # a step runs from here to the end of its predict call
        self.current = embedding[1]

    def set_image(self, image):
        self.set_embedding(self.embed(image))

    def generate(self, region=None, seeds=None):
        return [Proposal(m.copy(), 0.9, 0.9) for m in self.boxes]

    def predict(self, prompts):
        time.sleep(self.encode_s)
        self.stepping.clear()
        out = []
        for p in prompts:
            xy = np.round(p.points[p.labels == 1]).astype(int)
            k = int(np.argmax([m[xy[:, 1], xy[:, 0]].sum() for m in self.boxes]))
            out.append(Proposal(self.boxes[k].copy(), 0.9, 0.9))
        return out


def _frame(v: int) -> np.ndarray:
    f = np.full((120, 160, 3), 40, np.uint8)
    f[0, 0, 0] = v  # which frame this is, read back by _Slow.set_embedding
    return f


def test_order_errors_in_place_and_encoding_beside_tracking():
    seg = _Slow()
    tracker = Tracker(Config(), segmenter=seg)
    seen = []

    def decode(v):
        if v == 3:
            raise FrameError("frame 3 is broken")
        return _frame(v)

    def deliver(o):
        seen.append((o.seq, o.error, None if o.result is None else (o.result.index, seg.current)))

    pipe = Pipeline(tracker, deliver, decode=decode)
    try:
        for v in range(8):
            pipe.submit(v, block=True, timeout=30)
        assert pipe.flush(timeout=60)
    finally:
        assert pipe.close()
    assert [s[0] for s in seen] == list(range(8))
    assert isinstance(seen[3][1], FrameError) and seen[3][2] is None
    good = [s for s in seen if s[1] is None]
    # each step ran on its own frame's embedding, in order; the broken frame took no step
    assert [s[2] for s in good] == [(i, v) for i, v in enumerate([0, 1, 2, 4, 5, 6, 7])]
    assert pipe.counters["errors"] == 1 and pipe.counters["dropped"] == 0 and pipe.counters["delivered"] == 8
    assert seg.embeds_during_step >= 1  # frame n+1 was encoded while frame n was being tracked
    stats = pipe.stats()
    assert stats["latency_ms_max"] >= stats["latency_ms_median"] > 0 and stats["encode_ms_mean"] > 0


def test_drops_only_at_the_entrance_and_outputs_in_order():
    seg = _Slow(encode_s=0.02)
    tracker = Tracker(Config(), segmenter=seg)
    seen = []
    pipe = Pipeline(tracker, lambda o: seen.append(o.seq))
    try:
        for v in range(40):  # far faster than the pipeline: most wait at the entrance and are replaced
            pipe.submit(_frame(v))
            time.sleep(0.002)
        assert pipe.flush(timeout=60)
    finally:
        pipe.close()
    c = pipe.counters
    assert c["submitted"] == 40 and c["dropped"] > 0
    assert c["delivered"] == len(seen) == 40 - c["dropped"]  # everything that passed the entrance came out
    assert seen == sorted(seen) and seen[-1] == 39  # in order, and the newest frame is never the one dropped


def test_an_embedding_of_a_replaced_segmenter_is_not_used():
    """A parameter change that rebuilds the segmenter between two frames: the frame encoded by the old one is
    encoded again by the new one."""
    old, new = _Slow(encode_s=0.0), _Slow(encode_s=0.0)
    tracker = Tracker(Config(), segmenter=old)
    swapped = []
    results = []

    def between():
        if len(results) == 2 and not swapped:
            tracker.segmenter = new
            swapped.append(True)

    pipe = Pipeline(tracker, lambda o: results.append((o.error, new.current)), between=between)
    try:
        for v in range(5):
            pipe.submit(_frame(10 + v), block=True, timeout=30)
        assert pipe.flush(timeout=60)
    finally:
        pipe.close()
    assert all(e is None for e, _ in results)
    assert pipe.counters["reencoded"] >= 1
    assert [cur for _, cur in results[2:]] == [12, 13, 14]  # the new segmenter saw every later frame


def test_pairs_ahead_across_a_rebuilt_matcher_and_a_failed_frame(car_frames):
    """The matcher is rebuilt (``matcher.max_side``) between two frames while stage 2 holds pairs from the old one,
    and a frame fails to decode: every result still equals the serial tracker's, with the same change at the same
    frame."""
    frames = [cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for f in car_frames[0]]
    frames += frames[-2::-1]
    broken = 6

    serial = Tracker(Config(), segmenter=_Slow(encode_s=0.0))
    expected = []
    for i, f in enumerate(frames):
        if i == 3:
            assert serial.configure({"matcher.max_side": 100}) == ["matcher"]
        if i != broken:
            expected.append(serial.step(f).labels)

    tracker = Tracker(Config(), segmenter=_Slow(encode_s=0.0))
    results = []

    def decode(i):
        if i == broken:
            raise FrameError("broken frame")
        return frames[i]

    def deliver(o):
        results.append(o)
        if len(results) == 3:
            time.sleep(0.5)  # stage 2 meanwhile computes the next frame's pair with the matcher about to be replaced

    def between():
        if len(results) == 3 and tracker.cfg.matcher.max_side != 100:
            tracker.configure({"matcher.max_side": 100})

    pipe = Pipeline(tracker, deliver, decode=decode, between=between)
    try:
        for i in range(len(frames)):
            pipe.submit(i, block=True, timeout=30)
        assert pipe.flush(timeout=60)
    finally:
        pipe.close()
    assert [o.seq for o in results] == list(range(len(frames)))
    assert [o.seq for o in results if o.error is not None] == [broken]
    got = [o.result.labels for o in results if o.error is None]
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(expected, got))
    c = pipe.counters
    assert c["rematched"] >= 1 and c["paired_ahead"] == len(frames) - 1 and c["pair_failed"] == 0
    assert tracker.matcher.max_side == 100 and all(a.max() > 0 for a in expected)  # the rebuilt one, tracking


def test_close_abandons_what_is_in_flight():
    seg = _Slow(encode_s=0.2)
    tracker = Tracker(Config(), segmenter=seg)
    seen = []
    pipe = Pipeline(tracker, lambda o: seen.append(o.seq))
    pipe.submit(_frame(1))
    pipe.submit(_frame(2))
    assert pipe.close(timeout=5.0)
    n = len(seen)
    with pytest.raises(RuntimeError, match="closed"):
        pipe.submit(_frame(3))
    time.sleep(0.3)
    assert len(seen) == n  # nothing delivered after close returned


def test_default_embed_defers_to_set_image():
    class Plain(_Slow):
        embeds_ahead = False
        embed = Segmenter.embed
        set_embedding = Segmenter.set_embedding

        def set_image(self, image):
            self.current = int(image[0, 0, 0])

    seg = Plain()
    e = seg.embed(_frame(7))
    assert seg.current is None  # nothing made current by embed
    seg.set_embedding(e)
    assert seg.current == 7
    with pytest.raises(MastSamError, match="not an embedding"):
        seg.set_embedding(object())


def test_classical_embed_ahead_leaves_the_current_image(small_frames):
    a, b = small_frames[0], small_frames[3]
    ref = ClassicalSegmenter(Config().segmenter)
    ref.set_image(a)
    want = ref.generate()
    seg = ClassicalSegmenter(Config().segmenter)
    seg.set_image(a)
    eb = seg.embed(b)  # frame n+1 prepared while frame n is current
    got = seg.generate()
    assert len(got) == len(want) and all(np.array_equal(x.mask, y.mask) for x, y in zip(got, want))
    seg.set_embedding(eb)
    ref.set_image(b)
    prompt = [PointPrompt(np.array([[160.0, 90.0]], np.float32), np.array([1], np.int32))]
    assert np.array_equal(seg.predict(prompt)[0].mask, ref.predict(prompt)[0].mask)
    with pytest.raises(MastSamError):
        seg.set_embedding(("slow", 1))


def test_sam_embed_ahead_leaves_the_current_embedding(tmp_path):
    torch = pytest.importorskip("torch")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mobile_sam = pytest.importorskip("mobile_sam")
    from mastsam_ros.core.segmenters import build_segmenter

    torch.manual_seed(0)
    path = tmp_path / "random_vit_t.pth"
    torch.save(mobile_sam.sam_model_registry["vit_t"]().state_dict(), path)
    cfg = Config().segmenter
    cfg.backend, cfg.checkpoint = "mobile_sam", str(path)
    seg = build_segmenter(cfg)
    assert seg.embeds_ahead
    a = np.zeros((96, 128, 3), np.uint8)
    a[20:60, 30:90] = 200
    b = np.ascontiguousarray(a[::-1, ::-1])
    prompt = [PointPrompt(np.array([[60.0, 40.0]], np.float32), np.array([1], np.int32))]
    seg.set_image(a)
    want = seg.predict(prompt)[0]
    eb = seg.embed(b)
    got = seg.predict(prompt)[0]  # still frame a
    assert np.array_equal(got.mask, want.mask) and got.score == pytest.approx(want.score)
    seg.set_embedding(eb)
    seg2 = build_segmenter(cfg)
    seg2.set_image(b)
    assert np.array_equal(seg.predict(prompt)[0].mask, seg2.predict(prompt)[0].mask)
    with pytest.raises(MastSamError, match="SamEmbedding"):
        seg.set_embedding(object())


def test_a_stage_in_a_long_call_outlives_close_and_can_be_joined():
    seg = _Slow(encode_s=0.5)
    tracker = Tracker(Config(), segmenter=seg)
    pipe = Pipeline(tracker, lambda o: None)
    pipe.submit(_frame(1))
    deadline = time.monotonic() + 5
    while pipe._started["encode"] is None and time.monotonic() < deadline:  # wait until the encoder call began
        time.sleep(0.005)
    assert not pipe.close(timeout=0.01) and pipe.is_alive()  # abandoned in the middle of the encoder call
    pipe.join(10)
    assert not pipe.is_alive()
