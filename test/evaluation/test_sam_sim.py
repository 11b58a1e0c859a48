"""The evaluation-only ``sam_sim`` segmenter on real frames: each failure mode at its rate, none at severity 0.

Every test compares a mode switched on (severity 1, that mode's rate only) against severity 0 or the mode's absence,
so a mode that stopped firing, or one that fired when it should not, fails here.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mastsam_ros.core.segmenters import SEGMENTERS
from mastsam_ros.core.types import PointPrompt
from mastsam_ros.evaluation.sam_sim import MODES, SamSimRates, SamSimSegmenter


@pytest.fixture(scope="module")
def car(car_frames):
    frames, gts = car_frames
    return frames, [g.astype(np.uint8) for g in gts]


def sim(car, severity=1.0, **rates):
    frames, gts = car
    s = SamSimSegmenter(gts, frames=frames, severity=severity, rates=SamSimRates.only(**rates) if rates else None)
    s.set_image(frames[0])
    return s


def inner_points(mask: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` pixels well inside ``mask`` (x, y float32)."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    ys, xs = np.nonzero(inner)
    pick = np.random.default_rng(seed).choice(len(xs), n, replace=False)
    return np.stack([xs[pick], ys[pick]], 1).astype(np.float32)


def prompt(pts: np.ndarray) -> PointPrompt:
    return PointPrompt(pts.astype(np.float32), np.ones(len(pts), np.int32))


def car_mask(car) -> np.ndarray:
    return car[1][0] > 0


def answer(s, pts):
    (p,) = s.predict([prompt(pts)])
    return p


def test_never_selectable_by_the_node_or_the_offline_runner():
    from mastsam_ros.core.config import Config, ConfigError

    assert "sam_sim" not in SEGMENTERS.names() and "oracle" not in SEGMENTERS.names()
    with pytest.raises(ConfigError):
        Config().set("segmenter.backend", "sam_sim")


def test_severity_zero_answers_like_the_oracle(car):
    s = sim(car, severity=0.0)  # default rates, all scaled to 0
    obj = car_mask(car)
    for seed in range(5):
        p = answer(s, inner_points(obj, 4, seed))
        assert np.array_equal(p.mask, obj) and p.score >= 0.88
    auto = s.generate()
    cover = np.sum([p.mask for p in auto], axis=0)
    assert cover.max() == 1  # a partition: no overlap, no nesting
    assert any(np.array_equal(p.mask, obj) for p in auto)
    assert sum(s.fired.values()) == 0


def test_part_granularity(car):
    obj = car_mask(car)
    s = sim(car, part=1.0)
    assert len(s._s.parts[0]) >= 2, "the car must split into parts along its internal edges"
    pts = inner_points(obj, 1)  # a single point: ambiguous between part and whole
    p = answer(s, pts)
    assert p.mask.sum() < 0.9 * obj.sum() and not (p.mask & ~obj).any()
    multi = s.predict_multimask([prompt(pts)])[0]
    assert len(multi) == 3 and multi[0].mask.sum() == p.mask.sum()
    assert any(np.array_equal(m.mask, obj) for m in multi[1:])  # the whole is there, ranked lower
    assert multi[0].score >= multi[1].score >= multi[2].score
    assert np.array_equal(answer(sim(car, severity=0.0, part=1.0), pts).mask, obj)


def test_leak_into_a_neighbour(car):
    obj = car_mask(car)
    s = sim(car, leak=1.0)
    pts = inner_points(obj, 4)
    m = answer(s, pts).mask
    extra = m & ~obj
    assert obj[m].all() or (m & obj).sum() == obj.sum()  # the whole object is kept
    assert extra.sum() > 0.02 * obj.sum()
    # the extra pixels lie in one background region that touches the car
    regions = np.unique(s._s.index[extra])
    assert len(regions) == 1 and regions[0] in [j for j, _ in s._s.neighbours[0]]
    assert not (answer(sim(car, severity=0.0, leak=1.0), pts).mask & ~obj).any()


def test_collapse_joins_the_largest_neighbour(car):
    obj = car_mask(car)
    s = sim(car, collapse=1.0)
    biggest = max((j for j, _ in s._s.neighbours[0]), key=lambda j: s._s.wholes[j].sum())
    m = answer(s, inner_points(obj, 4)).mask
    assert np.array_equal(m, obj | s._s.wholes[biggest])


def test_positives_in_two_regions_return_their_union(car):
    obj = car_mask(car)
    s = sim(car, union=1.0)
    j = s._s.neighbours[0][0][0]
    road = s._s.wholes[j]
    pts = np.concatenate([inner_points(obj, 5), inner_points(road, 1)])  # one stray point on the neighbour
    assert np.array_equal(answer(s, pts).mask, obj | road)
    assert np.array_equal(answer(sim(car, severity=0.0, union=1.0), pts).mask, obj)  # majority region only
    assert np.array_equal(answer(s, inner_points(obj, 5)).mask, obj)  # one region: nothing to join


def test_miss(car):
    obj = car_mask(car)
    p = answer(sim(car, miss=1.0), inner_points(obj, 4))
    assert not p.mask.any() and p.score < 0.5


def test_thin_parts_dropped(car):
    obj = car_mask(car)
    s = sim(car, thin=1.0)
    m = answer(s, inner_points(obj, 4)).mask
    assert not (m & ~obj).any() and 0.5 * obj.sum() < m.sum() < obj.sum()
    # what is lost is narrow: none of it lies deeper than the opening radius inside the object
    depth = cv2.distanceTransform(obj.astype(np.uint8), cv2.DIST_L2, 3)
    lost = obj & ~m
    assert depth[lost].max() <= 2 * s.thin_px + 2


def test_boundary_jitter(car):
    obj = car_mask(car)
    s = sim(car, jitter=1.0)
    m = answer(s, inner_points(obj, 4)).mask
    changed = m ^ obj
    assert changed.sum() > 0.005 * obj.sum()
    # only near the outline: within the jitter amplitude (plus a pixel) of the true boundary
    inside = cv2.distanceTransform(obj.astype(np.uint8), cv2.DIST_L2, 3)
    outside = cv2.distanceTransform((~obj).astype(np.uint8), cv2.DIST_L2, 3)
    assert np.maximum(inside, outside)[changed].max() <= s.jitter_px + 1.5


def test_misrank_scores_a_wrong_mask_first(car):
    obj = car_mask(car)
    pts = inner_points(obj, 1)
    honest = answer(sim(car, part=1.0), pts)
    lying = answer(sim(car, part=1.0, misrank=1.0), pts)
    assert not np.array_equal(honest.mask, obj) and not np.array_equal(lying.mask, obj)
    assert honest.score < 0.88 <= lying.score


def test_rates_are_observed_and_scale_with_severity(car):
    obj = car_mask(car)
    frames, gts = car
    fired = {}
    for sev in (0.0, 0.5, 1.0):
        s = SamSimSegmenter(gts, frames=frames, severity=sev, rates=SamSimRates.only(leak=0.6))
        s.set_image(frames[0])
        n = 120
        for k in range(n):
            answer(s, inner_points(obj, 3, seed=k))
        fired[sev] = s.fired["leak"] / n
    assert fired[0.0] == 0.0
    assert abs(fired[0.5] - 0.3) < 0.1 and abs(fired[1.0] - 0.6) < 0.1


def test_automatic_masks_nest_and_overlap(car):
    obj = car_mask(car)
    s = sim(car, nested=1.0, auto_leak=1.0)
    auto = s.generate()
    cover = np.sum([p.mask for p in auto], axis=0)
    assert cover.max() >= 3  # whole, part and leaked superset over the same pixels
    parts = [p.mask for p in auto if p.mask.sum() < obj.sum() and not (p.mask & ~obj).any()]
    assert len(parts) >= 2
    # seeds select the masks holding them, as SAM decodes masks at its seed points
    seed = inner_points(obj, 1)
    assert all(p.mask[int(seed[0, 1]), int(seed[0, 0])] for p in s.generate(seeds=seed))


def test_automatic_set_flickers_between_frames(car):
    frames, gts = car

    def object_masks(severity):
        s = SamSimSegmenter(gts, frames=frames, severity=severity, rates=SamSimRates.only(drop=0.4, split=0.4))
        out = []
        for f in frames:
            s.set_image(f)
            out.append(sorted(k for k, w, _ in s.automatic() if w == 0))
        return out

    calm = object_masks(0.0)
    assert all(k == ["whole"] for k in calm)
    wild = object_masks(1.0)
    assert len({tuple(k) for k in wild}) >= 2  # the object's masks change from frame to frame


def test_deterministic_per_seed(car):
    frames, gts = car
    obj = car_mask(car)
    pts = inner_points(obj, 4)

    def run(seed):
        s = SamSimSegmenter(gts, frames=frames, severity=1.0, seed=seed)
        out = []
        for f in frames:
            s.set_image(f)
            out.append((answer(s, pts).mask.sum(), len(s.generate())))
        return out

    assert run(0) == run(0)
    assert run(0) != run(1) or run(0) != run(2)


def test_active_frames_limit_the_failures(car):
    frames, gts = car
    s = SamSimSegmenter(gts, frames=frames, severity=1.0, rates=SamSimRates.only(collapse=1.0), active=range(2, 4))
    obj0 = gts[0] > 0
    pts = inner_points(obj0, 4)
    grew = []
    for f, g in zip(frames, gts):
        s.set_image(f)
        grew.append(bool((answer(s, pts).mask & ~(g > 0)).any()))
    assert grew == [False, False, True, True, False, False]


def test_modes_are_named_rates():
    assert set(MODES) == {"part", "leak", "collapse", "union", "miss", "thin", "jitter", "misrank", "nested",
                          "auto_leak", "split", "merge", "drop"}
    with pytest.raises(ValueError):
        SamSimSegmenter([np.zeros((4, 4), np.uint8)], severity=1.5)
