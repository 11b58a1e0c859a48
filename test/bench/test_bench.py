"""mastsam-bench on a few small frames: the JSON carries every figure with sane values (no timing thresholds); its
measurement instruments (mastsam_ros/evaluation/instruments.py) and comparison (b)'s brute-force search."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from mastsam_ros.cli import bench
from mastsam_ros.cli.bench_baselines import BruteForceMatcher
from mastsam_ros.cli.bench_runs import MIN_SHOT, frame_files, load_frame, warmup_shots
from mastsam_ros.core.errors import MastSamError
from mastsam_ros.core.segmenters.base import Segmenter
from mastsam_ros.core.types import PointPrompt, Proposal
from mastsam_ros.evaluation.instruments import (
    ChurningRegions, DecoderClock, ReplayFlow, StandInMasks, stand_in_regions,
)

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "bench.json"
    assert bench.main([*args, "--json", str(out), "--quiet"]) == 0
    return json.loads(out.read_text())


def _sane(s: dict) -> None:
    assert s["n"] >= 1
    assert 0 < s["median_ms"] <= s["p95_ms"] <= s["max_ms"]


def test_classical_flow_report(tmp_path, source):
    r = _run(tmp_path, "--source", str(source), "--segmenter", "classical", "--matcher", "flow", "--frames", "3",
             "--size", "240x136", "--automatic-frames", "1", "--prototype-frames", "2")
    assert r["run"]["segmenter"] == "classical" and r["run"]["matcher"] == "flow"
    assert r["run"]["resolution"] == [240, 136] and r["run"]["max_tracks"] == 8
    assert r["machine"]["cpu_count"] >= 1 and len(r["machine"]["load_start"]) == 3
    tr = r["tracker"]
    assert tr["frames"] == 3 and tr["steady_frames"] == 2
    for stage in ("decode", "encoder", "matcher", "merge", "output_mono16", "output_png", "total", "end_to_end"):
        _sane(tr["stages"][stage])
    assert tr["stages"]["end_to_end"]["median_ms"] >= tr["stages"]["total"]["median_ms"]
    # the prompt decoder's time, taken per frame by the delegating clock: inside the prompt stage of the same frame
    assert tr["stages"]["decoder"]["n"] == 2 and tr["floor"]["floor_ms_median"] > 0
    assert all(f["decoder"] <= f["prompt"] for f in tr["per_frame"] if "prompt" in f)
    assert tr["fps"] > 0 and tr["total_over_encoder_median"] > 0
    assert 0 <= tr["tracks"]["min"] <= tr["tracks"]["mean"] <= tr["tracks"]["max"] <= 8
    assert "automatic" in tr["first_frame_ms"]  # the first frame segments the whole image
    assert r["memory"]["peak_rss_mb"] >= r["memory"]["max_rss_during_tracker_mb"] > 0
    assert r["memory"]["gpu_peak_mb"] is None or r["memory"]["gpu_peak_mb"] >= 0
    a, b = r["comparisons"]["automatic"], r["comparisons"]["prototype"]
    assert a["frames"] == 1 and len(a["masks_per_frame"]) == 1
    assert b["frames"] == 2 and b["steady_frames"] == 1 and len(b["masks_per_frame"]) == 1
    for c in (a, b):
        _sane(c["ms_per_frame"])
        assert c["throughput_ratio"] > 0


def test_soak_samples_rss(tmp_path, source):
    r = _run(tmp_path, "--source", str(source), "--segmenter", "classical", "--soak", "150", "--soak-size", "64x36")
    soak = r["soak"]
    assert r["run"]["mode"] == "soak" and r["run"]["resolution"] == [64, 36]
    assert [n for n, _ in soak["rss_samples_mb"]] == [100, 150]
    assert soak["rss_at_end_mb"] > 0
    assert soak["rss_at_500_mb"] is None and soak["rss_growth_500_to_end_mb"] is None  # fewer than 500 frames
    assert soak["step_ms"]["n"] == 149
    rs = soak["resegmentation"]
    assert rs["during"]["n"] + rs["steady"]["n"] == 149
    assert rs["during"]["n"] >= 4  # keyframes at 30, 60, 90, 120 (config default interval 30)


def test_frame_files_replays_forwards_then_backwards(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((4, 4, 3), np.uint8))
    names = [p.stem for p in frame_files(tmp_path, 8)]
    assert names == ["0", "1", "2", "1", "0", "1", "2", "1"]


def test_brute_force_matcher_finds_a_known_shift():
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (140, 200, 3), dtype=np.uint8), (0, 0), 1.5)
    a, b = texture[10:130, 10:170], texture[7:127, 5:165]  # content moves by (+5, +3) px from a to b
    m = BruteForceMatcher(max_side=480, max_error_px=2.0)
    m.push(np.ascontiguousarray(a))
    m.push(np.ascontiguousarray(b))
    pts = np.array([[40, 40], [80, 60], [120, 90]], np.float32)
    q, conf = m.carry(pts)
    np.testing.assert_allclose(q, pts + [5, 3], atol=1.0)
    assert (conf > 0.5).all()


class _Fake(Segmenter):
    """Counts calls; answers with full-frame masks (what the stand-in must replace)."""

    name = "fake"

    def __init__(self):
        self.calls = []

    def set_image(self, image):
        self.shape = image.shape[:2]
        self.calls.append("set_image")

    def generate(self, region=None, seeds=None):
        self.calls.append("generate")
        return [Proposal(np.ones(self.shape, bool), 0.5)]

    def predict(self, prompts):
        self.calls.append("predict")
        return [Proposal(np.ones(self.shape, bool), 0.7) for _ in prompts]


def test_stand_in_masks_run_the_real_calls_and_answer_fixed_regions():
    fake = _Fake()
    s = StandInMasks(fake, 8)
    s.set_image(np.zeros((90, 160, 3), np.uint8))
    regions = stand_in_regions((90, 160), 8)
    assert sorted(np.unique(regions)) == list(range(9))
    props = s.generate()
    assert len(props) == 8 and all(p.mask.any() for p in props)
    assert not np.logical_and(props[0].mask, props[1].mask).any()
    ys, xs = np.nonzero(regions == 3)
    inside = PointPrompt(np.array([[xs[0], ys[0]], [xs[-1], ys[-1]]], np.float32), np.ones(2, np.int32))
    gap = PointPrompt(np.array([[0, 0]], np.float32), np.ones(1, np.int32))  # top-left corner, in no region
    a, b = s.predict([inside, gap])
    assert np.array_equal(a.mask, regions == 3) and a.score == 0.7
    assert np.array_equal(b.mask, regions == 1)  # the nearest region
    assert len(s.generate(seeds=np.array([[xs[0], ys[0]]], np.float32))) == 1
    assert fake.calls == ["set_image", "generate", "predict", "generate"]
    # at the tracker's working size, as SAM answers there: the size passes on to the real segmenter, and the stand-in
    # answers at it, with probability maps
    s.mask_shape = (45, 80)
    assert fake.mask_shape == (45, 80)
    (a,) = s.predict([inside])
    assert a.mask.shape == a.soft.shape == (45, 80) and np.array_equal(a.soft >= 0.5, a.mask)
    small = regions[1::2, 1::2] == 3
    assert np.array_equal(a.mask, small)


def test_decoder_clock_delegates_and_times_predict_only():
    fake = _Fake()
    clock = DecoderClock(fake)
    clock.set_image(np.zeros((90, 160, 3), np.uint8))
    clock.generate()
    assert clock.take() == 0.0  # automatic segmentation is not the prompt decoder
    prompt = PointPrompt(np.array([[10, 10]], np.float32), np.ones(1, np.int32))
    (answer,) = clock.predict([prompt])
    assert answer.score == 0.7 and clock.take() > 0.0 and clock.take() == 0.0
    clock.mask_shape = (45, 80)
    assert fake.mask_shape == (45, 80) and clock.name == "fake" and not clock.embeds_ahead
    assert fake.calls == ["set_image", "generate", "predict"]
    assert "predict" not in vars(fake)  # the segmenter itself is left as it was


def test_stand_in_masks_embed_ahead_through_the_inner_segmenter():
    # in a pipeline the stand-in's embedding is the inner segmenter's, computed ahead; its answers are set_image's
    from mastsam_ros.core.config import Config
    from mastsam_ros.core.segmenters.classical import ClassicalSegmenter

    frames = [np.full((90, 160, 3), 40, np.uint8), np.full((90, 160, 3), 200, np.uint8)]
    frames[1][:, 80:] = 10
    ahead, plain = (StandInMasks(ClassicalSegmenter(Config().segmenter), 8, substitute=False) for _ in range(2))
    assert ahead.embeds_ahead and ClassicalSegmenter.embeds_ahead
    plain.set_image(frames[1])
    ahead.set_image(frames[0])
    ahead.set_embedding(ahead.embed(frames[1]))
    for s in (ahead, plain):
        s.inner.set_embedding = s.inner.set_image = None  # nothing may embed again below
    got, want = ahead.generate(), plain.generate()
    assert len(got) == len(want) >= 2  # the two halves of the frame embedded ahead, not the uniform first frame
    assert all(np.array_equal(g.mask, w.mask) and g.score == w.score for g, w in zip(got, want))


def test_random_weights_vit_t(tmp_path, source):
    """MobileSAM vit_t with random full-size weights through the project's loading path, 2 small frames."""
    pytest.importorskip("torch")
    pytest.importorskip("mobile_sam")
    r = _run(tmp_path, "--source", str(source), "--segmenter", "mobile_sam", "--random-weights", "--frames", "2",
             "--size", "240x136", "--compare", "a", "--automatic-frames", "1", "--automatic-points-per-side", "2",
             "--set", "segmenter.points_per_side=4")
    assert r["run"]["segmenter"] == "mobile_sam vit_t" and r["run"]["weights"].startswith("random")
    assert r["run"]["stand_in_masks"] is True and r["machine"]["torch_threads"] >= 1
    _sane(r["tracker"]["stages"]["encoder"])
    _sane(r["tracker"]["stages"]["prompt"])
    assert r["tracker"]["tracks"]["max"] == 8  # the stand-in regions hold the track count
    # comparison (a) runs the package's own generator on the grid asked for (2 x 2 here, to keep the test short)
    a = r["comparisons"]["automatic"]
    assert "SamAutomaticMaskGenerator(points_per_side=2," in a["method"] and a["frames"] == 1
    assert a["points_per_side"] == 2
    _sane(a["ms_per_frame"])
    assert set(r["comparisons"]) == {"automatic", "ratio_basis"}


def test_automatic_grid_must_be_positive(tmp_path, source, caplog):
    assert bench.main(["--source", str(source), "--segmenter", "classical", "--frames", "2",
                       "--automatic-points-per-side", "0"]) == 2
    assert "--automatic-points-per-side must be >= 1" in caplog.text


def test_overhead_mode_costs_nothing_but_the_tracker(tmp_path, source, capsys):
    """--overhead: zero-cost segmenter (every call a lookup), replayed flow (no DIS in the timed run); the tracker
    keeps the stand-in track count and the last line printed is the median overhead."""
    r = _run(tmp_path, "--overhead", "--source", str(source), "--frames", "6", "--size", "320x180", "--tracks", "4")
    o = r["overhead"]
    assert r["run"]["mode"] == "overhead" and o["frames"] == 6 and o["work_shape"] == [144, 256]
    assert o["tracks"]["min"] == o["tracks"]["max"] == 4
    assert o["stages"]["encoder"]["median_ms"] < 0.5  # the stand-in's set_image does nothing
    for stage in ("matcher", "warp", "prompt", "merge", "clustering", "publish", "total"):
        _sane(o["stages"][stage])
    assert o["overhead_ms_median"] == o["stages"]["total"]["median_ms"]
    assert 0 < o["probe_ms_median"] < 1000  # the machine probe ran before the frames
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"overhead_ms_median: {o['overhead_ms_median']}"
    assert lines[-2].startswith("machine probe") and f"median {o['probe_ms_median']:.3f} ms" in lines[-2]


def test_replayed_flow_equals_the_flow_matcher(source):
    """The overhead mode's matcher carries points exactly as the flow matcher computing its fields would."""
    from mastsam_ros.core.config import MatcherSection
    from mastsam_ros.core.matchers.flow import FlowMatcher

    frames = [load_frame(f, (320, 180)) for f in frame_files(source, 3)]
    replay, live = ReplayFlow(MatcherSection(), frames), FlowMatcher(MatcherSection())
    pts = np.array([[50, 60], [200, 100], [300, 170]], np.float32)
    for f in frames:
        replay.push(f)
        live.push(f)
    (q1, c1), (q2, c2) = replay.carry(pts), live.carry(pts)
    assert np.array_equal(q1, q2) and np.array_equal(c1, c2) and c1.max() > 0


def test_overhead_starts_the_timed_run_with_the_dormant_signatures_asked_for(tmp_path, davis_root, capsys):
    """--dormant 0,64 with 32 tracks: runs alternate; the 64 signatures come from the tracker's own path (two warm-up
    shots of other scenes, each cut sending its 32 tracks dormant) and are all there when the timed frames start."""
    car = davis_root / "JPEGImages" / "480p" / "car-roundabout"
    r = _run(tmp_path, "--overhead", "--source", str(car), "--frames", "4", "--size", "320x180", "--tracks", "32",
             "--dormant", "0,64", "--repeats", "2")
    runs = r["overhead_runs"]
    assert [(o["round"], o["dormant_requested"]) for o in runs] == [(1, 0), (1, 64), (2, 0), (2, 64)]
    for o in runs:
        assert o["frames"] == 4 and o["stages"]["total"]["n"] == 3  # the first timed frame is left out
        assert o["tracks"]["min"] == o["tracks"]["max"] == 32
        assert o["stages"]["permanence"]["n"] == 3 and "permanence" in o["first_frame_ms"]
        assert o["timed_events"] == {}  # the stand-in's 32 objects stay: nothing is born, leaves or comes back
        if o["dormant_requested"] == 0:
            assert o["warmup"]["frames"] == 0 and o["dormant_at_start"] == o["dormant_at_end"] == 0
            continue
        w = o["warmup"]
        assert w["shots"] == [15, 15] and w["frames"] == 30  # a whole keyframe interval: the same schedule
        assert "car-roundabout" not in w["scenes"] and len(set(w["scenes"])) == 2
        assert w["cuts"] == [15] and w["first_timed_frame_cut"]  # shot 1 -> shot 2, shot 2 -> the timed frames
        assert o["dormant_at_start"] == o["dormant_at_end"] == 64
    by = r["dormant_comparison"]["by_dormant"]
    assert by["0"]["dormant_at_start"] == [0, 0] and by["64"]["dormant_at_start"] == [64, 64]
    assert by["64"]["difference_ms"] == pytest.approx(by["64"]["overhead_ms_median"] - by["0"]["overhead_ms_median"],
                                                      abs=1e-3)
    assert sorted(by["64"]["overhead_ms_runs"]) == sorted(o["overhead_ms_median"] for o in runs[1::2])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("overhead_ms_median_by_dormant: 0: ") and ", 64: " in last


def test_warmup_shots_are_other_scenes_on_the_keyframe_schedule(davis_root):
    from mastsam_ros.core.config import Config

    cfg = Config()
    car = davis_root / "JPEGImages" / "480p" / "car-roundabout"
    assert warmup_shots(car.parent, car, 0, 32, cfg) == []
    shots = warmup_shots(car.parent, car, 40, 8, cfg)  # 5 shots
    assert len(shots) == 5 and sum(map(len, shots)) % 30 == 0 and min(map(len, shots)) >= MIN_SHOT
    scenes = [s[0].parent for s in shots]
    assert car not in scenes and all(a != b for a, b in zip(scenes, scenes[1:]))
    with pytest.raises(MastSamError, match="other scene"):
        warmup_shots(car, car, 64, 32, cfg)  # a folder of images, not of scenes


def test_dormant_options_are_checked(source, caplog):
    base = ["--source", str(source), "--quiet"]
    assert bench.main([*base, "--dormant", "64"]) == 2 and "--dormant needs --overhead" in caplog.text
    assert bench.main([*base, "--overhead", "--dormant", "65"]) == 2 and "tracker.dormant_max 64" in caplog.text
    assert bench.main([*base, "--overhead", "--dormant", "0,x"]) == 2
    assert bench.main([*base, "--soak-churn", "20"]) == 2 and "--soak-churn needs --soak" in caplog.text


def test_churn_soak_keeps_the_dormant_set_within_its_bound(tmp_path, source):
    """--soak-churn: stand-in objects replaced every 20 frames, so tracks keep being born and leaving; the dormant set
    fills up to tracker.dormant_max (5 here) and never holds more, the oldest forgotten (retired) first."""
    r = _run(tmp_path, "--source", str(source), "--soak", "400", "--soak-size", "96x54", "--soak-churn", "20",
             "--set", "tracker.dormant_max=5")
    soak, ev = r["soak"], r["soak"]["events"]
    assert r["run"]["segmenter"] == "churning-stand-in" and "ChurningRegions" in r["run"]["masks_note"]
    assert soak["dormant_max"] == 5 and soak["dormant_max_seen"] == 5
    assert [k for k, _ in soak["dormant_samples"]] == [100, 200, 300, 400]
    assert all(0 <= d <= 5 for _, d in soak["dormant_samples"])
    assert ev["born"] >= 40 and ev["dormant"] >= 40  # 20 sets of 8 objects came and went
    # whatever went dormant is still there, was taken back, or was forgotten (retired: each track left with a
    # signature, so every retirement is a forgetting)
    assert ev["dormant"] == soak["dormant_samples"][-1][1] + ev.get("reidentified", 0) + ev["retired"]


def test_churning_regions_come_and_go():
    s = ChurningRegions((90, 160), 6, period=3, seed=1)
    frame = np.zeros((90, 160, 3), np.uint8)
    s.set_image(frame)
    first = s.stand_in.regions.copy()
    assert sorted(np.unique(first)) == list(range(7)) and not first[:, 80:].any()  # 6 rectangles, the left half
    ys, xs = np.nonzero(first == 2)
    inside = PointPrompt(np.array([[xs[0], ys[0]]], np.float32), np.ones(1, np.int32))
    (a,) = s.predict([inside])
    assert np.array_equal(a.mask, first == 2)
    assert len(s.generate()) == 6
    s.set_image(frame)
    s.set_image(frame)
    assert np.array_equal(s.stand_in.regions, first)  # one set for `period` frames
    s.set_image(frame)
    second = s.stand_in.regions
    assert not second[:, :80].any() and len(np.unique(second)) == 7  # then a new set in the right half
    (gone,) = s.predict([inside])
    assert not gone.mask.any() and gone.score == 0.0  # the object is gone: an empty mask, not the nearest region


# --- comparison (b) with MASt3R: the prototype as it ran -------------------------------------------------------------
MAST3R_PATH = os.environ.get("MASTSAM_MAST3R_PATH", "")


def _tiny_mast3r(tmp_path) -> Path:
    """A scaled-down upstream MASt3R with random weights (scripts/verify_mast3r.py), or a skip with the reason."""
    pytest.importorskip("torch")
    from mastsam_ros.core.errors import BackendUnavailable
    from mastsam_ros.core.matchers.mast3r import import_mast3r

    try:
        import_mast3r(MAST3R_PATH)
        import mast3r.fast_nn  # noqa: F401
    except (BackendUnavailable, ImportError) as e:
        pytest.skip(f"upstream mast3r not importable (set MASTSAM_MAST3R_PATH to a naver/mast3r clone): {e}")
    spec = importlib.util.spec_from_file_location("verify_mast3r", REPO / "scripts" / "verify_mast3r.py")
    verify = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verify)
    return verify.save_random_checkpoint(MAST3R_PATH, verify.TINY_MODEL, tmp_path / "tiny_mast3r.pth")


def test_prototype_with_mast3r_runs_upstream_forward_and_all_pixel_matching(tmp_path, source):
    """--matcher mast3r: (b) runs upstream's forward and fast_reciprocal_NNs on the tracker's MASt3R model, with its
    own fp32 SAM (vit_t here to stay quick; vit_h by default), and decodes a prompt per carried mask."""
    pytest.importorskip("mobile_sam")
    ckpt = _tiny_mast3r(tmp_path)
    r = _run(tmp_path, "--source", str(source), "--segmenter", "mobile_sam", "--random-weights", "--matcher", "mast3r",
             "--set", f"matcher.checkpoint={ckpt}", "--set", f"matcher.mast3r_path={MAST3R_PATH}", "--frames", "2",
             "--size", "160x90", "--compare", "b", "--prototype-frames", "2", "--prototype-model-type", "vit_t",
             "--prototype-subsample", "16", "--set", "segmenter.points_per_side=4")
    b = r["comparisons"]["prototype"]
    assert "upstream MASt3R forward" in b["method"] and "fast_reciprocal_NNs" in b["method"]
    assert "SAM vit_t fp32" in b["method"] and "subsample 16" in b["method"]
    assert b["mast3r_forward_ms"]["n"] == 1 and b["reciprocal_nn_ms"]["n"] == 1  # one pair: frames 0 -> 1
    _sane(b["mast3r_forward_ms"])
    _sane(b["reciprocal_nn_ms"])
    # the 8 stand-in masks of frame 0 were carried and prompted (random matches may send two onto one region)
    assert len(b["masks_per_frame"]) == 1 and 1 <= b["masks_per_frame"][0] <= 8
    assert "brute_force_search_ms" not in b


def test_prototype_with_mast3r_wants_a_vit_h_checkpoint(tmp_path, source, caplog):
    """Without --random-weights, (b) with MASt3R needs the prototype's SAM: a clear error, before any work."""
    assert bench.main(["--source", str(source), "--segmenter", "classical", "--matcher", "mast3r", "--frames", "2",
                       "--compare", "b", "--quiet"]) == 2
    assert "--prototype-checkpoint" in caplog.text and "vit_h" in caplog.text
