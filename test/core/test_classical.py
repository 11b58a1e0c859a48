import numpy as np

from mastsam_ros.core.config import Config
from mastsam_ros.core.segmenters import build_segmenter
from mastsam_ros.core.types import PointPrompt


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_prompts_recover_the_car_on_a_real_frame(car_frames):
    frames, gts = car_frames
    seg = build_segmenter(Config().segmenter)
    assert seg.is_fallback  # it must never pass for SAM
    seg.set_image(frames[0])
    ys, xs = np.nonzero(gts[0])
    pick = np.random.default_rng(0).choice(xs.size, 4, replace=False)
    car = PointPrompt(np.stack([xs[pick], ys[pick]], 1).astype(np.float32), np.ones(4, np.int32))
    road = PointPrompt(np.array([[400, 440]], np.float32), np.ones(1, np.int32))
    out = seg.predict([car, road])
    assert len(out) == 2 and out[0].mask.shape == gts[0].shape and out[0].mask.dtype == bool
    assert iou(out[0].mask, gts[0]) > 0.5  # a colour-edge fallback, not SAM: the bound is loose on purpose
    assert iou(out[1].mask, gts[0]) < 0.1  # the road prompt does not take the car


def test_automatic_masks_and_region_limit(car_frames):
    frames, gts = car_frames
    seg = build_segmenter(Config().segmenter)
    seg.set_image(frames[0])
    props = seg.generate()
    assert len(props) >= 10
    assert all(p.mask.shape == frames[0].shape[:2] and 0.0 <= p.score <= 1.0 for p in props)
    region = np.zeros(gts[0].shape, bool)
    region[:, :100] = True
    limited = seg.generate(region)
    assert 0 < len(limited) < len(props)
    assert all((p.mask & region).any() for p in limited)


def test_busy_frame_merges_down_to_max_regions(car_frames):
    """car-roundabout's first frame has far more than ``max_regions`` regions at ``level`` (47): the cap merges them
    down (across the weakest boundaries) to at most ``max_regions`` masks, which still cover the frame."""
    frames, _ = car_frames
    seg = build_segmenter(Config().segmenter)
    seg.set_image(frames[0])
    capped = seg.generate()
    seg.max_regions = 10**6  # the instance only: the partition at ``level`` alone
    seg.set_image(frames[0])
    free = seg.generate()
    assert len(capped) <= type(seg).max_regions < len(free)
    cover = np.logical_or.reduce([p.mask for p in capped])
    assert cover.mean() > 0.9  # merged, not dropped
