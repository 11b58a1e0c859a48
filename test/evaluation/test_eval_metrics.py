"""DAVIS measures and the unsupervised protocol on small synthetic arrays, and the label PNG round trip."""

from __future__ import annotations

import numpy as np
import pytest

from mastsam_ros.evaluation import davis
from mastsam_ros.labels_io import load_label_png, save_label_png


def square(h=120, w=160, y=30, x=40, s=50):
    m = np.zeros((h, w), bool)
    m[y : y + s, x : x + s] = True
    return m


def test_j_identical_disjoint_empty():
    a = square()
    assert davis.j_measure(a, a) == 1.0
    assert davis.j_measure(a, np.roll(a, 80, axis=1)) == 0.0
    empty = np.zeros_like(a)
    assert davis.j_measure(empty, empty) == 1.0  # DAVIS convention: both empty is a perfect answer
    assert davis.j_measure(empty, a) == 0.0
    half = a.copy()
    half[:, :65] = False  # keep 25 of 50 columns
    assert davis.j_measure(half, a) == pytest.approx(0.5)


def test_void_pixels_are_ignored():
    a = square()
    b = a.copy()
    b[30:40, 40:90] = False  # prediction misses the top 10 rows...
    void = np.zeros_like(a)
    void[30:40, :] = True  # ...which are void
    assert davis.j_measure(b, a) < 1.0
    assert davis.j_measure(b, a, void) == 1.0


def test_boundary_map_is_one_pixel_and_ignores_image_border():
    a = square(s=10)
    b = davis.boundary_map(a)
    # a 10x10 square: the left/top transitions mark the background pixel before the square, the right/bottom ones
    # the square's own last pixel, so the ring has 4 * 11 pixels minus the corner that no neighbour test reaches
    assert 36 <= b.sum() <= 44
    full = np.ones((20, 20), bool)
    assert davis.boundary_map(full).sum() == 0  # touching the image border is not a boundary


def test_f_of_shifted_square():
    a = square(h=480, w=854, y=100, x=100, s=200)
    tol = davis.bound_pixels(a.shape)
    assert tol == 8  # ceil(0.008 * hypot(480, 854))
    assert davis.f_measure(a, a) == 1.0
    # a shift within the tolerance leaves every boundary pixel matched
    assert davis.f_measure(np.roll(a, tol - 1, axis=1), a) == pytest.approx(1.0)
    # shifted by 20 px (beyond the tolerance) only the top and bottom edges still match, over 180 of 200 px:
    # precision = recall ~ 2 * 180 / (4 * 200) = 0.45
    f = davis.f_measure(np.roll(a, 20, axis=1), a)
    assert 0.40 < f < 0.50
    assert davis.f_measure(np.zeros_like(a), a) == 0.0
    assert davis.f_measure(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_pair_measures_match_single_mask_functions():
    rng = np.random.default_rng(1)
    T, H, W = 3, 96, 128
    gt = np.zeros((T, H, W), np.uint8)
    pred = np.zeros((T, H, W), np.uint32)
    for t in range(T):
        gt[t, 20 + t : 60 + t, 30:80] = 1
        gt[t, 70:90, 90:120] = 2
        pred[t] = rng.integers(1, 6, (H // 16, W // 16)).repeat(16, 0).repeat(16, 1)
        pred[t][np.roll(gt[t] == 1, 3, axis=1)] = 40
    gt[2][gt[2] == 2] = 0  # object 2 leaves in the last frame
    ids, objects, J, F, _ = davis.pair_measures(pred, gt)
    assert list(objects) == [1, 2]
    for t in range(T):
        for n, i in enumerate(ids):
            for k, o in enumerate(objects):
                assert J[t, n, k] == pytest.approx(davis.j_measure(pred[t] == i, gt[t] == o))
                assert F[t, n, k] == pytest.approx(davis.f_measure(pred[t] == i, gt[t] == o))


def test_hungarian_picks_the_right_id_and_counts_missing_objects():
    T, H, W = 4, 60, 80
    gt = np.zeros((T, H, W), np.uint8)
    gt[:, 10:30, 10:30] = 1
    gt[:, 35:55, 45:75] = 2
    pred = np.zeros((T, H, W), np.uint32)
    pred[:, 10:30, 10:30] = 7  # object 1 exactly
    pred[:, 10:30, 10:20] = 9  # a part of object 1, smaller overlap
    pred[:, 35:55, 45:75] = 3  # object 2 exactly
    res = davis.evaluate_sequence("toy", pred, gt)
    got = {o.object_id: o.pred_id for o in res.objects}
    assert got == {1: 7, 2: 3}
    assert res.objects[1].J == 1.0 and res.objects[1].F == 1.0
    assert res.objects[0].J == pytest.approx(0.5)  # id 9 took half of object 1
    # with no prediction for object 2 at all, it is scored against an empty mask
    pred2 = pred.copy()
    pred2[pred2 == 3] = 0
    res2 = davis.evaluate_sequence("toy", pred2, gt)
    assert res2.objects[1].J == 0.0 and res2.objects[1].F == 0.0


def test_frames_without_the_object_score_one_for_an_absent_id():
    T, H, W = 4, 60, 80
    gt = np.zeros((T, H, W), np.uint8)
    gt[:2, 10:30, 10:30] = 1  # object present in frames 0-1 only
    pred = np.zeros((T, H, W), np.uint32)
    pred[:2, 10:30, 10:30] = 5  # id present in the same frames
    res = davis.evaluate_sequence("toy", pred, gt)
    assert res.JF == 1.0
    pred[2:, 40:50, 40:50] = 5  # the id lingers after the object left: those frames score 0
    assert davis.evaluate_sequence("toy", pred, gt).JF == pytest.approx(0.5)


def test_id_switches():
    T, H, W = 6, 40, 40
    gt = np.zeros((T, H, W), np.uint8)
    gt[:, 10:30, 10:30] = 1
    pred = np.zeros((T, H, W), np.uint32)
    pred[:2][gt[:2] == 1] = 1
    pred[2:4][gt[2:4] == 1] = 2
    pred[4:][gt[4:] == 1] = 1
    pred[3, 10:30, 10:15] = 0  # still covered (IoU 0.75)
    res = davis.evaluate_sequence("toy", pred, gt)
    (o,) = res.objects
    assert (o.ids, o.switches, o.covered) == (2, 2, 1.0)
    pred[5, 10:30, 10:25] = 0  # IoU 0.25: frame 5 not covered
    (o,) = davis.evaluate_sequence("toy", pred, gt).objects
    assert o.covered == pytest.approx(5 / 6)


def test_label_png_round_trip(tmp_path):
    from PIL import Image

    small = np.random.default_rng(0).integers(0, 200, (30, 40)).astype(np.uint32)
    save_label_png(tmp_path / "a.png", small)
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "P"
    assert np.array_equal(load_label_png(tmp_path / "a.png"), small)
    big = small.copy()
    big[0, 0] = 4000
    save_label_png(tmp_path / "b.png", big)
    with Image.open(tmp_path / "b.png") as im:
        assert im.mode.startswith("I")
    assert np.array_equal(load_label_png(tmp_path / "b.png"), big)
    with pytest.raises(ValueError):
        save_label_png(tmp_path / "c.png", np.full((4, 4), 70000))


def test_gt_reader_handles_2016_and_2017(tmp_path):
    from PIL import Image

    binary = np.zeros((20, 30), np.uint8)
    binary[5:10, 5:10] = 255
    Image.fromarray(binary).save(tmp_path / "b.png")  # greyscale 0/255: DAVIS-2016
    assert set(np.unique(davis.read_gt_png(tmp_path / "b.png"))) == {0, 1}
    multi = np.zeros((20, 30), np.uint32)
    multi[5:10, 5:10] = 1
    multi[12:18, 20:28] = 2
    save_label_png(tmp_path / "m.png", multi)  # indexed: DAVIS-2017
    assert set(np.unique(davis.read_gt_png(tmp_path / "m.png"))) == {0, 1, 2}


def test_resolution_round_trip_keeps_blobs_and_loses_lines():
    """The working-resolution bound: a large blob survives 854 -> 256 -> 854 almost exactly (the soft way better
    than nearest), a 1-pixel line does not survive at all."""
    from mastsam_ros.evaluation.resolution import round_trip

    blob = np.zeros((480, 854), bool)
    blob[100:301, 200:451] = True
    nearest, soft = round_trip(blob, 256)
    iou = lambda m: (m & blob).sum() / (m | blob).sum()  # noqa: E731
    assert iou(soft) > 0.99 and iou(nearest) > 0.97 and iou(soft) >= iou(nearest)
    line = np.zeros((480, 854), bool)
    line[240, 100:700] = True
    assert not round_trip(line, 256)[1].any()
    assert np.array_equal(round_trip(blob, 854)[0], blob)  # no working-size reduction: exact
