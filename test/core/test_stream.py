"""The stream (decode, prepare, track in three threads; serial = nothing prepared ahead) and the segmenters' embed /
set_embedding it relies on. Where the order of events between threads matters, the stub backends hold a call on an
event the test sets (test/fakes.py); nothing here depends on how long anything takes."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from mastsam_ros.core.config import Config
from mastsam_ros.core.errors import FrameError, MastSamError
from mastsam_ros.core.geometry import GeometryError, Intrinsics
from mastsam_ros.core.segmenters.base import Segmenter
from mastsam_ros.core.segmenters.classical import ClassicalSegmenter
from mastsam_ros.core.stream import Depth, Stream
from mastsam_ros.core.tracker import Tracker
from mastsam_ros.core.types import PointPrompt
from fakes import BoxSegmenter, StillMatcher, frame
from flowcount import count_flow

SIZE = (320, 180)  # classical segmenter answers in a fraction of a second at this size on 2 cores
WAIT = 30  # seconds any one wait for another thread may take before the test fails (never reached when it passes)


@pytest.fixture(scope="module")
def small_frames(car_frames):
    return [cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in car_frames[0]]


def _boxes_tracker(seg: BoxSegmenter | None = None) -> Tracker:
    return Tracker(Config(), segmenter=seg or BoxSegmenter(), matcher=StillMatcher())


def _run(stream: Stream, items) -> dict:
    """Every item through ``stream`` (a stream with ``deliver``), the entrance waiting; its counts at the end."""
    try:
        for item in items:
            stream.submit(item, block=True, timeout=WAIT)
        assert stream.flush(WAIT)
    finally:
        stream.close()
    return stream.counts()


def test_serial_and_ahead_give_the_same_labels_on_real_frames(small_frames):
    """Same frames, same config: the stream with the embedding and the matcher's pair prepared ahead in another
    thread gives the label maps and ids of the stream with nothing ahead, and each computes every flow once, where it
    says it does."""
    encoded = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1] for f in small_frames]

    def decode(jpeg):
        return cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    runs = {}
    for ahead in (False, True):
        tracker = Tracker(Config())
        matcher = count_flow(tracker.matcher)
        stream = Stream(tracker, decode=decode, ahead=ahead, name=f"ahead{int(ahead)}")
        outcomes = list(stream.run(encoded, timeout=120))
        tracker.close()
        runs[ahead] = (outcomes, matcher, stream)
    pairs = len(encoded) - 1
    for ahead, (outcomes, matcher, stream) in runs.items():
        assert [o.seq for o in outcomes] == list(range(len(encoded)))
        assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
        assert [o.pair_used for o in outcomes] == [False] + [ahead] * pairs
        c = stream.counts()
        n = len(encoded)
        assert (c["submitted"], c["delivered"], c["dropped"], c["errors"], c["in_flight"]) == (n, n, 0, 0, 0)
        assert c["pair_used"] == (pairs if ahead else 0)
        for o in outcomes:  # ids below 65535 are their own pixel values
            assert o.labels.dtype == np.uint16 and np.array_equal(o.labels, o.result.labels)
            assert o.label_of == {t.id: t.id for t in o.result.tracks}
            assert set(o.stage_ms) == ({"decode", "prepare", "track"} if ahead else {"decode", "track"})
        if ahead:  # the flows of every pair in stage 2 (the tracker's matcher thread beside the encoder), none in 3
            assert matcher._dis.threads == [] and len(matcher._ahead_dis.threads) == 2 * pairs
            assert stream.stats()["pair_used"] == pairs
        else:
            assert matcher._ahead_dis.threads == [] and len(matcher._dis.threads) == 2 * pairs
    serial, ahead = runs[False][0], runs[True][0]
    for a, b in zip(serial, ahead):
        assert np.array_equal(a.result.labels, b.result.labels)
        assert [t.id for t in a.result.tracks] == [t.id for t in b.result.tracks]
    assert len({t.id for o in serial for t in o.result.tracks}) > 1  # the sequence tracks something


@pytest.mark.parametrize("ahead", [False, True])
def test_outcomes_in_order_with_errors_in_their_place(ahead):
    """A frame that fails to decode, one that is not a frame and one whose step fails each come out as an error in
    their place, counted by kind; every other frame is tracked on its own image."""
    seg = BoxSegmenter()
    seg.fail.add(("set", 5))  # the step of frame 5 fails making it current
    tracker = _boxes_tracker(seg)
    seen = []

    def decode(v):
        if v == 3:
            raise FrameError("frame 3 is broken")
        if v == 6:
            return np.zeros((120, 160, 3), np.float32)  # not uint8: refused by the stream's frame check
        return frame(v)

    def deliver(o):
        seen.append((o.seq, o.error, None if o.result is None else seg.current))

    stream = Stream(tracker, deliver, decode=decode, ahead=ahead)
    c = _run(stream, range(9))
    assert [s[0] for s in seen] == list(range(9))
    errors = {s[0]: s[1] for s in seen if s[1] is not None}
    assert set(errors) == {3, 5, 6}
    assert isinstance(errors[3], FrameError) and isinstance(errors[6], FrameError)
    assert isinstance(errors[5], MastSamError) and "fails on purpose" in str(errors[5])
    assert [s[2] for s in seen if s[1] is None] == [0, 1, 2, 4, 7, 8]  # each step on its own frame's image
    assert 3 not in seg.embedded and 6 not in seg.embedded  # a frame refused before the tracker never reaches it
    assert (c["submitted"], c["delivered"], c["dropped"], c["in_flight"], c["errors"]) == (9, 9, 0, 0, 3)
    assert c["error_FrameError"] == 2 and c["error_MastSamError"] == 1
    assert c["pair_used"] + c["pair_not_used"] == 6  # the tracked frames
    assert seg.timeouts == 0


def test_frame_n_plus_1_is_prepared_while_frame_n_is_tracked():
    """The decoder call of frame 2 (in its step) is held until the embedding of frame 3 has started: only a stream
    that prepares ahead, in another thread, gets past it."""
    seg = BoxSegmenter()
    seg.hold[("predict", 2)] = seg.reached("embed", 3)
    tracker = _boxes_tracker(seg)
    stream = Stream(tracker, decode=frame, name="ahead")
    outcomes = list(stream.run(range(6), timeout=WAIT))
    assert all(o.error is None for o in outcomes) and len(outcomes) == 6
    assert seg.reached("predict", 2).is_set() and seg.timeouts == 0
    assert seg.embedded == list(range(6)) and set(seg.embed_threads) == {"ahead-prepare"}
    assert seg.stepped == list(range(6))  # each embedding made current once, in order


def test_serial_embeds_each_frame_in_its_step():
    seg = BoxSegmenter()
    tracker = _boxes_tracker(seg)
    stream = Stream(tracker, decode=frame, ahead=False, name="serial")
    outcomes = list(stream.run(range(4), timeout=WAIT))
    assert [o.seq for o in outcomes] == [0, 1, 2, 3] and all(o.error is None for o in outcomes)
    assert seg.embedded == seg.stepped == [0, 1, 2, 3] and set(seg.embed_threads) == {"serial-track"}
    assert not any(o.pair_used for o in outcomes) and all("prepare" not in o.stage_ms for o in outcomes)


@pytest.mark.parametrize("ahead", [False, True])
def test_drops_only_at_the_entrance_and_counts_add_up(ahead):
    """With the tracking stage held on frame 0, frames 1 and 2 fill the two slots behind it and every later frame
    waits at the entrance, where a newer one replaces it: exactly those are dropped, the newest is not, and what
    passed the entrance comes out, in order. The counts add up at every step."""
    seg = BoxSegmenter()
    release = threading.Event()
    seg.hold[("generate", 0)] = release  # frame 0 has no tracks yet: its step segments it automatically
    tracker = _boxes_tracker(seg)
    decoded = {v: threading.Event() for v in range(40)}
    seen = []

    def decode(v):
        decoded[v].set()
        return frame(v)

    stream = Stream(tracker, lambda o: seen.append(o.seq), decode=decode, ahead=ahead)
    try:
        assert stream.submit(0) is False
        assert seg.reached("generate", 0).wait(WAIT)  # frame 0 is being tracked
        assert stream.submit(1) is False
        assert decoded[1].wait(WAIT)
        assert stream.submit(2) is False
        assert decoded[2].wait(WAIT)  # 1 left stage 1 before 2 was decoded; 2 stays there until 1 is tracked
        replaced = [stream.submit(v) for v in range(3, 40)]
        assert replaced == [False] + [True] * 36
        c = stream.counts()
        assert (c["submitted"], c["dropped"], c["delivered"], c["in_flight"]) == (40, 36, 0, 4)
        release.set()
        assert stream.flush(WAIT)
    finally:
        release.set()
        stream.close()
    c = stream.counts()
    assert seen == [0, 1, 2, 39]  # in order; the newest frame is never the one dropped
    assert (c["submitted"], c["dropped"], c["delivered"], c["in_flight"], c["errors"]) == (40, 36, 4, 0, 0)
    assert c["dropped"] == sum(b - a - 1 for a, b in zip(seen, seen[1:]))  # the gaps in the order are the drops
    assert not any(decoded[v].is_set() for v in range(3, 39))  # dropped at the entrance: never decoded
    assert seg.timeouts == 0


def test_an_embedding_of_a_replaced_segmenter_is_not_used():
    """The segmenter is replaced between two frames (a parameter change, in the between-frames hook): a frame stage
    2 embedded with the old one is embedded again by the new one in its step."""
    old, new = BoxSegmenter(), BoxSegmenter()
    tracker = _boxes_tracker(old)
    results = []

    def between():
        if len(results) == 2 and tracker.segmenter is old:
            tracker.segmenter = new

    stream = Stream(tracker, lambda o: results.append((o.error, new.current)), decode=frame, between=between)
    _run(stream, range(10, 15))
    assert all(e is None for e, _ in results) and len(results) == 5
    assert [cur for _, cur in results[2:]] == [12, 13, 14]  # the new segmenter made every later frame current
    assert old.stepped == [10, 11] and new.stepped == [12, 13, 14]


def test_pairs_ahead_across_a_rebuilt_matcher_and_a_failed_frame(car_frames):
    """The matcher is rebuilt (``matcher.max_side``) between two frames after stage 2 computed the next frame's pair
    with the old one, and a frame fails to decode: every result still equals the serial stream's, with the same
    change before the same frame."""
    frames = [cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for f in car_frames[0]]
    frames += frames[-2::-1]
    broken, change_at = 6, 3

    def decode(i):
        if i == broken:
            raise FrameError("broken frame")
        return frames[i]

    def labels_of(ahead: bool) -> tuple[list, dict]:
        tracker = Tracker(Config(), segmenter=BoxSegmenter())
        old = tracker.matcher
        paired = threading.Event()  # the old matcher computed the pair of frame ``change_at`` ahead
        calls = []

        def pair_ahead(previous, image):  # the old matcher's, counted
            out = type(old).pair_ahead(old, previous, image)
            calls.append(image)
            if any(c is frames[change_at] for c in calls):
                paired.set()
            return out

        old.pair_ahead = pair_ahead
        results = []

        def deliver(o):
            results.append(o)
            if ahead and o.seq == change_at - 1:  # stage 2 prepares the next frame with the matcher about to go
                assert paired.wait(WAIT)

        def between():
            if len(results) == change_at and tracker.cfg.matcher.max_side != 100:
                assert tracker.configure({"matcher.max_side": 100}) == ["matcher"]

        c = _run(Stream(tracker, deliver, decode=decode, ahead=ahead, between=between), range(len(frames)))
        assert tracker.matcher is not old and tracker.matcher.max_side == 100
        tracker.close()
        assert [o.seq for o in results] == list(range(len(frames)))
        assert [o.seq for o in results if o.error is not None] == [broken]
        return [o.result.labels for o in results if o.error is None], c

    expected, serial = labels_of(ahead=False)
    got, c = labels_of(ahead=True)
    assert len(got) == len(expected) == len(frames) - 1
    assert all(np.array_equal(a, b) for a, b in zip(expected, got)) and all(a.max() > 0 for a in expected)
    assert serial["paired_ahead"] == 0 and serial["pair_used"] == 0
    assert c["paired_ahead"] == len(frames) - 1  # every good frame prepared a pair
    # the first frame has no pair, and the pair made by the replaced matcher is not installed; the others are
    assert c["pair_not_used"] >= 2 and c["pair_used"] + c["pair_not_used"] == len(frames) - 1
    assert c["pair_used"] >= len(frames) - 4


def test_close_abandons_what_is_in_flight_and_a_held_stage_can_be_joined():
    seg = BoxSegmenter()
    release = threading.Event()
    seg.hold[("generate", 0)] = release
    tracker = _boxes_tracker(seg)
    seen = []
    stream = Stream(tracker, lambda o: seen.append(o.seq), decode=frame)
    try:
        stream.submit(0)
        assert seg.reached("generate", 0).wait(WAIT)
        stream.submit(1)  # waits behind frame 0
        assert not stream.close(timeout=0.01) and stream.is_alive()  # the tracking stage is inside a model call
        with pytest.raises(RuntimeError, match="closed"):
            stream.submit(2)
    finally:
        release.set()
    stream.join(WAIT)
    assert not stream.is_alive()
    assert seen == []  # the frame in the model call finished after close: it is abandoned, not delivered
    assert stream.counts()["delivered"] == 0 and seg.timeouts == 0


def test_between_runs_in_the_tracking_thread_while_no_frame_comes():
    called = threading.Event()
    where = []

    def between():
        where.append(threading.current_thread().name)
        called.set()

    stream = Stream(_boxes_tracker(), lambda o: None, between=between, name="idle")
    try:
        assert called.wait(WAIT)
    finally:
        stream.close()
    assert set(where) == {"idle-track"}


def test_3d_objects_from_depth_and_a_counted_skip():
    """A depth image per frame gives each tracked object its 3D record; a depth that cannot be read leaves that
    frame tracked, without objects, its reason kept and counted."""
    k = Intrinsics(100.0, 100.0, 80.0, 60.0)

    def depth(v, image):
        if v == 2:
            raise GeometryError("no depth for frame 2")
        return Depth(np.full(image.shape[:2], 2000, np.uint16), k)  # 2 m everywhere, in millimetres

    stream = Stream(_boxes_tracker(), decode=frame, depth=depth)
    outcomes = list(stream.run(range(4), timeout=WAIT))
    assert all(o.error is None for o in outcomes)
    for o in outcomes:
        if o.seq == 2:
            assert o.objects is None and isinstance(o.objects_error, GeometryError)
            continue
        assert o.objects_error is None
        assert [ob.id for ob in o.objects] == [t.id for t in o.result.tracks] and len(o.objects) == 4
        assert all(ob.points == ob.pixels > 0 and ob.centroid[2] == pytest.approx(2.0) for ob in o.objects)
    c = stream.counts()
    assert c["objects"] == 3 and c["objects_skipped"] == 1


def test_default_embed_defers_to_set_image():
    class Plain(BoxSegmenter):
        embeds_ahead = False
        embed = Segmenter.embed
        set_embedding = Segmenter.set_embedding

        def set_image(self, image):
            self.current = int(image[0, 0, 0])

    seg = Plain()
    e = seg.embed(frame(7))
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
        seg.set_embedding(("boxes", 1))


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
