"""SAM / MobileSAM backends with random-initialised checkpoints saved here (no weights are downloaded).

The architectures come from the real packages' registries (segment_anything vit_b, mobile_sam vit_t), the
checkpoints are plain state dicts written with ``torch.save``, and everything is loaded through the project's code.
Random weights give meaningless masks, so the tests check the plumbing: shapes, dtypes, counts, batching, filtering,
the one-encoder-pass contract and the checkpoint errors. Cost on 2 CPU cores: one vit_b encoder pass (~20-30 s) and
one vit_t pass (~2 s); decoder calls are kept to a handful of prompts.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mastsam_ros.core.config import SegmenterSection  # noqa: E402
from mastsam_ros.core.errors import BackendUnavailable, CheckpointError, FrameError, MastSamError  # noqa: E402
from mastsam_ros.core.segmenters import build_segmenter  # noqa: E402
from mastsam_ros.core.types import PointPrompt  # noqa: E402

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def real_frame() -> np.ndarray:
    """A bedroom frame from ../shared/data (960 x 540 RGB), or a synthetic one of the same size without it."""
    frames = sorted((SHARED / "bedroom").glob("*.jpg"))
    if frames:
        import cv2

        return np.ascontiguousarray(cv2.imread(str(frames[0]))[:, :, ::-1])
    img = np.zeros((540, 960, 3), np.uint8)
    img[100:300, 200:500] = (200, 40, 40)
    img[250:500, 600:900] = (30, 180, 60)
    return img


def _quiet_import(name: str):
    with warnings.catch_warnings():  # mobile_sam re-registers timm models with a warning on import
        warnings.simplefilter("ignore")
        return pytest.importorskip(name)


def _save_random(tmp_dir: Path, package: str, model_type: str) -> Path:
    pkg = _quiet_import(package)
    torch.manual_seed(0)
    model = pkg.sam_model_registry[model_type]()
    path = tmp_dir / f"random_{model_type}.pth"
    torch.save(model.state_dict(), path)
    return path


def _cfg(**kw) -> SegmenterSection:
    base = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    base.update(kw)
    return SegmenterSection(**base)


@pytest.fixture(scope="module")
def frame():
    return real_frame()


@pytest.fixture(scope="module")
def vit_t_ckpt(tmp_path_factory):
    return _save_random(tmp_path_factory.mktemp("mobile_sam"), "mobile_sam", "vit_t")


@pytest.fixture(scope="module")
def mobile(vit_t_ckpt, frame):
    """A MobileSAM segmenter with ``frame`` embedded once for the whole module."""
    seg = build_segmenter(_cfg(backend="mobile_sam", checkpoint=str(vit_t_ckpt)))
    seg.set_image(frame)
    return seg


def _check_proposals(props, shape):
    for p in props:
        assert p.mask.shape == shape and p.mask.dtype == np.bool_
        assert isinstance(p.score, float) and 0.0 <= p.score <= 1.0
        assert isinstance(p.stability, float) and 0.0 <= p.stability <= 1.0


# --- full path with segment_anything vit_b --------------------------------------------------------------------------
def test_vit_b_random_checkpoint_end_to_end(tmp_path, frame):
    ckpt = _save_random(tmp_path, "segment_anything", "vit_b")
    seg = build_segmenter(_cfg(backend="sam", model_type="vit_b", checkpoint=str(ckpt)))
    assert seg.name == "sam" and not seg.is_fallback
    seg.set_image(frame)
    h, w = frame.shape[:2]

    props = seg.generate()
    # 2 x 2 seed points, 3 multimask outputs each; NMS at 1.0 keeps every non-empty mask.
    assert 1 <= len(props) <= 12
    _check_proposals(props, (h, w))
    assert [p.score for p in props] == sorted((p.score for p in props), reverse=True)

    prompts = [
        PointPrompt(np.array([[480, 270]], np.float32), np.array([1], np.int32)),
        PointPrompt(np.array([[100, 100], [150, 120], [900, 500]], np.float32), np.array([1, 1, 0], np.int32)),
    ]
    out = seg.predict(prompts)
    assert len(out) == 2
    _check_proposals(out, (h, w))


# --- MobileSAM: generate ----------------------------------------------------------------------------------------
def test_mobile_sam_generate_shapes_and_order(mobile, frame):
    assert mobile.name == "mobile_sam"
    props = mobile.generate()
    assert 1 <= len(props) <= 3 * 4
    _check_proposals(props, frame.shape[:2])
    assert [p.score for p in props] == sorted((p.score for p in props), reverse=True)


def test_generate_filters_by_score_and_nms(mobile):
    all_props = mobile.generate()
    cfg = mobile.cfg
    try:
        mobile.cfg = dataclasses.replace(cfg, pred_iou_thresh=1.0)  # random-weight IoU predictions are far below 1
        assert mobile.generate() == []
        mobile.cfg = dataclasses.replace(cfg, stability_score_thresh=1.01)
        assert mobile.generate() == []
        mobile.cfg = dataclasses.replace(cfg, box_nms_thresh=0.0)  # any overlapping boxes suppress each other
        assert 1 <= len(mobile.generate()) <= len(all_props)
    finally:
        mobile.cfg = cfg


def test_mask_shape_answers_at_the_decoder_resolution(mobile, frame):
    """With mask_shape set to the frame at 256 on its long side (the tracker's default working size), SAM answers
    from its decoder's own low-resolution output: the frame's part of it, never upscaled. Those masks agree with the
    full-size ones (the same logits, bilinearly upscaled) taken down to that size."""
    h, w = frame.shape[:2]
    small = (round(h * 256 / max(h, w)), round(w * 256 / max(h, w)))
    prompts = [PointPrompt(np.array([[480, 270], [500, 260]], np.float32), np.array([1, 1], np.int32))]
    answer = mobile.predict(prompts)[0]
    full = answer.mask
    try:
        mobile.mask_shape = small
        low_answer = mobile.predict(prompts)[0]
        low = low_answer.mask
        auto = mobile.generate()
    finally:
        mobile.mask_shape = None
    assert low.shape == small and low.dtype == np.bool_
    _check_proposals(auto, small)
    # at the working size each answer also carries its probabilities (the sigmoid of the same logits); at the frame
    # size none (a full-size float map each)
    assert answer.soft is None
    for p in [low_answer, *auto]:
        assert p.soft.shape == small and p.soft.dtype == np.float32
        assert np.array_equal(p.soft > 0.5, p.mask)
        assert 0.0 <= p.soft.min() and p.soft.max() <= 1.0
    # the full-size mask at the centre of each working pixel: the same logits, so nearly the same answers (random
    # weights give noisy, high-frequency masks, hence agreement per pixel rather than IoU)
    rows = np.minimum(((np.arange(small[0]) + 0.5) * h / small[0]).astype(int), h - 1)
    cols = np.minimum(((np.arange(small[1]) + 0.5) * w / small[1]).astype(int), w - 1)
    agree = float((full[rows][:, cols] == low).mean())
    assert agree > 0.9, agree


def test_generate_in_region_reuses_the_embedding(mobile, frame):
    h, w = frame.shape[:2]
    calls = []
    hook = mobile.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        region = np.zeros((h, w), bool)
        region[: h // 2, : w // 2] = True  # holds exactly one of the 2 x 2 grid points
        seeds = mobile.seed_points(region)
        assert len(seeds) == 1 and region[int(seeds[0, 1]), int(seeds[0, 0])]
        props = mobile.generate(region)
        assert 1 <= len(props) <= 3

        tiny = np.zeros((h, w), bool)
        tiny[10:20, 30:44] = True  # no grid point falls inside: its innermost pixel seeds instead
        seeds = mobile.seed_points(tiny)
        assert seeds.shape == (1, 2) and tiny[int(seeds[0, 1]), int(seeds[0, 0])]
        assert mobile.seed_points(np.zeros((h, w), bool)).shape == (0, 2)
        assert mobile.generate(np.zeros((h, w), bool)) == []
        assert 1 <= len(mobile.generate(seeds=np.array([[100.0, 80.0]], np.float32))) <= 3  # explicit seeds
    finally:
        hook.remove()
    assert calls == [], "generate() must not run the image encoder again"
    with pytest.raises(MastSamError, match="region shape"):
        mobile.generate(np.ones((10, 10), bool))


# --- MobileSAM: predict ------------------------------------------------------------------------------------------
def test_predict_batches_prompts_of_different_lengths_in_one_call(mobile, frame, monkeypatch):
    decoder = mobile.model.mask_decoder
    real = decoder.predict_masks
    batches = []

    def spy(**kw):
        batches.append(kw["sparse_prompt_embeddings"].shape)
        return real(**kw)

    monkeypatch.setattr(decoder, "predict_masks", spy)
    prompts = [
        PointPrompt(np.array([[480, 270]], np.float32), np.array([1], np.int32)),
        PointPrompt(np.array([[100, 100], [150, 120], [800, 400]], np.float32), np.array([1, 1, 0], np.int32)),
        PointPrompt(np.array([[700, 300], [720, 310]], np.float32), np.array([1, 1], np.int32)),
    ]
    out = mobile.predict(prompts)
    assert len(out) == 3
    _check_proposals(out, frame.shape[:2])
    # one decoder call; 3 prompts x (3 points, the longest, + SAM's own padding point)
    assert len(batches) == 1 and tuple(batches[0][:2]) == (3, 4)


def test_single_point_takes_best_multimask_output(mobile):
    prompt = PointPrompt(np.array([[480, 270]], np.float32), np.array([1], np.int32))
    with torch.inference_mode():
        _, iou = mobile._decode(prompt.points[None], prompt.labels[None].astype(np.int64))
    (p,) = mobile.predict([prompt])
    assert p.score == pytest.approx(min(max(iou[0, 1:].max().item(), 0.0), 1.0), abs=1e-6)


def test_predict_edge_cases(mobile):
    assert mobile.predict([]) == []
    with pytest.raises(MastSamError, match="prompt 0"):
        mobile.predict([PointPrompt(np.zeros(2, np.float32), np.ones(1, np.int32))])
    with pytest.raises(MastSamError, match="prompt 0"):
        mobile.predict([PointPrompt(np.zeros((2, 2), np.float32), np.ones(3, np.int32))])


def test_bad_frames_and_order_of_calls(vit_t_ckpt):
    seg = build_segmenter(_cfg(backend="mobile_sam", checkpoint=str(vit_t_ckpt)))
    with pytest.raises(MastSamError, match="set_image"):
        seg.generate()
    with pytest.raises(MastSamError, match="set_image"):
        seg.predict([PointPrompt(np.zeros((1, 2), np.float32), np.ones(1, np.int32))])
    for bad in (np.zeros((10, 10, 3), np.float32), np.zeros((10, 10), np.uint8), np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(FrameError):
            seg.set_image(bad)


def test_half_precision_is_ignored_on_cpu(vit_t_ckpt):
    seg = build_segmenter(_cfg(backend="mobile_sam", checkpoint=str(vit_t_ckpt), half_precision=True))
    assert seg.half is False
    assert next(seg.model.image_encoder.parameters()).dtype == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
def test_cuda_device_without_cuda(vit_t_ckpt):
    with pytest.raises(BackendUnavailable, match="CUDA"):
        build_segmenter(_cfg(backend="mobile_sam", checkpoint=str(vit_t_ckpt), device="cuda"))


# --- checkpoint and package errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "backend, model_type, official",
    [("sam", "vit_h", "sam_vit_h_4b8939.pth"), ("sam", "vit_l", "sam_vit_l_0b3195.pth"),
     ("sam", "vit_b", "sam_vit_b_01ec64.pth"), ("mobile_sam", "vit_b", "mobile_sam.pt")],
)
def test_missing_checkpoint_names_the_official_file(tmp_path, backend, model_type, official):
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError) as err:
        build_segmenter(_cfg(backend=backend, model_type=model_type, checkpoint=str(missing)))
    msg = str(err.value)
    assert official in msg and str(missing) in msg and "segmenter.checkpoint" in msg
    assert ("MobileSAM" if backend == "mobile_sam" else "facebookresearch/segment-anything") in msg


def test_empty_checkpoint_setting():
    with pytest.raises(CheckpointError, match="segmenter.checkpoint is empty"):
        build_segmenter(_cfg(backend="sam", model_type="vit_b", checkpoint=""))


def test_checkpoint_with_a_missing_key(tmp_path, vit_t_ckpt):
    state = torch.load(vit_t_ckpt, weights_only=True)
    dropped = next(k for k in state if k.startswith("mask_decoder."))
    del state[dropped]
    bad = tmp_path / "missing_key.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="1 missing keys") as err:
        build_segmenter(_cfg(backend="mobile_sam", checkpoint=str(bad)))
    assert dropped in str(err.value)


def test_checkpoint_for_another_architecture(vit_t_ckpt):
    # a MobileSAM file given to the vit_b backend: the image encoder keys do not match
    with pytest.raises(CheckpointError, match="model_type"):
        build_segmenter(_cfg(backend="sam", model_type="vit_b", checkpoint=str(vit_t_ckpt)))


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"not a torch file" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        build_segmenter(_cfg(backend="mobile_sam", checkpoint=str(bad)))


def test_missing_package_names_the_pip_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "segment_anything", None)
    with pytest.raises(BackendUnavailable, match="pip install segment-anything"):
        build_segmenter(_cfg(backend="sam", checkpoint=str(tmp_path / "x.pth")))
    monkeypatch.setitem(sys.modules, "mobile_sam", None)
    with pytest.raises(BackendUnavailable, match="pip install mobilesam-mirror"):
        build_segmenter(_cfg(backend="mobile_sam", checkpoint=str(tmp_path / "x.pth")))


def test_pool_embedding_averages_the_encoder_cells_under_the_mask(mobile, frame):
    """Re-identification's embedding descriptor: the mean of the encoder's cells a mask covers, at any mask size."""
    import numpy as np

    assert mobile.pools_embedding
    mobile.set_image(frame)
    feats = mobile._embedding[0].cpu().numpy()  # 256 x 64 x 64; the frame covers its top-left part
    h, w = frame.shape[:2]
    gh, gw = -(-mobile._input_size[0] * 64 // 1024), -(-mobile._input_size[1] * 64 // 1024)
    whole = mobile.pool_embedding(np.ones((h, w), bool))
    np.testing.assert_allclose(whole, feats[:, :gh, :gw].mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    left = np.zeros((h // 4, w // 4), bool)  # a working-size mask: the left half
    left[:, : w // 8] = True
    np.testing.assert_allclose(mobile.pool_embedding(left), feats[:, :gh, : gw // 2].mean(axis=(1, 2)), rtol=0.05,
                               atol=1e-3)
    assert mobile.pool_embedding(np.zeros((h, w), bool)) is None


# --- small tracks: the answer at the frame size in a box (core/small.py) ----------------------------------------------
def test_fine_answer_is_the_full_size_answer_in_any_box(mobile, frame):
    """At the working size each prompted answer also gives itself at the frame size inside a box on demand
    (``Proposal.fine``): SAM's own full-size answer there (postprocess_masks of the same logits), up to float
    rounding at the threshold, whatever the working size."""
    h, w = frame.shape[:2]
    prompts = [PointPrompt(np.array([[480, 270], [500, 260]], np.float32), np.array([1, 1], np.int32)),
               PointPrompt(np.array([[100, 100]], np.float32), np.array([1], np.int32))]
    full = mobile.predict(prompts)
    assert all(p.fine is None for p in full)  # at the frame size the mask is the answer
    try:
        for shape in [(round(h * 256 / w), 256), (60, 107)]:  # the decoder's own size, and a smaller working size
            mobile.mask_shape = shape
            low = mobile.predict(prompts)
            for a, b in zip(full, low):
                whole = b.fine(0, h, 0, w)
                assert whole.shape == (h, w) and whole.dtype == np.bool_
                assert np.count_nonzero(whole != a.mask) <= 1e-4 * h * w
                for y0, y1, x0, x1 in [(200, 260, 430, 520), (0, 1, 0, 1), (h - 7, h, w - 30, w)]:
                    np.testing.assert_array_equal(b.fine(y0, y1, x0, x1), whole[y0:y1, x0:x1])
    finally:
        mobile.mask_shape = None


def test_tracker_with_sam_publishes_small_tracks_from_its_logits(vit_t_ckpt, car_frames, monkeypatch):
    """The tracker with (random-weight) MobileSAM at its working size: with every track counted small, answered
    tracks are repainted from SAM's frame-size logits, and the published map stays one partition whose areas and boxes
    are the track records'."""
    import cv2

    import mastsam_ros.core.tracker as tracker_module
    from mastsam_ros.core.config import Config

    repainted = []
    real = tracker_module.publish_small

    def spy(*args):
        repainted.append(real(*args))
        return repainted[-1]

    monkeypatch.setattr(tracker_module, "publish_small", spy)
    cfg = Config().update({
        "segmenter.backend": "mobile_sam", "segmenter.checkpoint": str(vit_t_ckpt), "segmenter.points_per_side": 2,
        "segmenter.pred_iou_thresh": 0.0, "segmenter.stability_score_thresh": 0.0, "matcher.backend": "flow",
        "tracker.small_track_fraction": 1.0,
    })
    tracker = tracker_module.Tracker(cfg)
    count = 0  # tracks repainted
    try:
        for rgb in car_frames[0][:3]:
            repainted.clear()
            res = tracker.step(rgb)
            for t in res.tracks:
                m = res.labels == t.id
                assert t.area == np.count_nonzero(m) and t.bbox == cv2.boundingRect(m.view(np.uint8))
            count += len(repainted[-1]) if repainted else 0
    finally:
        tracker.close()
    assert count >= 1
