"""Small tracks published from the segmenter's frame-size answer (mastsam_ros/core/small.py, issue 25): the repaint
keeps the published map one partition (every label's area and box are those of its pixels), stays within the margin
of the working mask, refuses an answer that disagrees, and on a shrunken real sequence the small object's published
mask matches the ground truth better than the working resolution alone."""

from __future__ import annotations

import cv2
import numpy as np
import mastsam_ros.core.tracker as tracker_module
from mastsam_ros.core.grid import WorkGrid
from mastsam_ros.core.small import publish_small
from mastsam_ros.core.tracker import Tracker
from mastsam_ros.evaluation import davis
from mastsam_ros.evaluation import shrunken as S
from mastsam_ros.evaluation.runner import build_segmenter_for


def check_partition(labels: np.ndarray, ids, area, boxes) -> None:
    """Every index's area and box (x, y, width, height) are those of its pixels in ``labels``."""
    for k, v in enumerate(ids):
        m = labels == v
        assert area[k] == np.count_nonzero(m), (k, area[k], np.count_nonzero(m))
        assert tuple(boxes[k]) == cv2.boundingRect(m.view(np.uint8)), (k, tuple(boxes[k]))


def _scene():
    """A 40 x 80 frame at working size 10 x 20 (4 frame pixels a working pixel): track 1 small (2 x 2 working
    pixels) inside track 2 (a band around it), the rest background."""
    grid = WorkGrid((40, 80), 20)
    index = np.zeros(grid.work, np.uint16)
    index[2:8, 4:14] = 2
    index[4:6, 8:10] = 1
    prob = (index > 0).astype(np.float32)
    ids = np.array([0, 7, 9], np.uint32)
    labels, area, boxes = grid.publish(index, index, prob, ids)
    work_boxes = np.array([[4, 6, 8, 10], [2, 8, 4, 14]], np.intp)
    return grid, index, ids, labels, area, boxes, work_boxes


def test_repaint_follows_the_answer_within_the_margin_and_keeps_the_partition():
    grid, index, ids, labels, area, boxes, work_boxes = _scene()
    check_partition(labels, ids, area, boxes)
    answer = np.zeros(grid.frame, bool)
    answer[17:22, 33:40] = True  # the object: a thin bar, partly off the working mask (within 1 working pixel)
    answer[16:24, 20:24] = True  # off by 3 working pixels and more: beyond the margin (2)
    before = labels.copy()
    done = publish_small(grid, labels, area, boxes, index, work_boxes, ids,
                         [lambda y0, y1, x0, x1: answer[y0:y1, x0:x1], None], 0.5, 2)
    assert done == [0]
    check_partition(labels, ids, area, boxes)
    mine = labels == 7
    assert np.array_equal(mine[17:22, 33:40], np.ones((5, 7), bool))
    assert not mine[:, :24].any()  # the far part of the answer is beyond the margin
    assert np.count_nonzero(mine) == 35
    # what the track left went to the label most common around it (track 2); nothing else changed
    assert set(labels[before == 7][~mine[before == 7]].tolist()) == {9}
    assert np.array_equal(labels[(before != 7) & ~mine], before[(before != 7) & ~mine])


def test_repaint_takes_neighbours_pixels_and_shrinks_their_boxes():
    grid, index, ids, labels, area, boxes, work_boxes = _scene()
    index[4:6, 10] = 3  # a third track, one working column right of track 1 (frame rows 16:24, columns 40:44)
    ids = np.array([0, 7, 9, 11], np.uint32)
    labels, area, boxes = grid.publish(index, index, (index > 0).astype(np.float32), ids)
    work_boxes = np.array([[4, 6, 8, 10], [2, 8, 4, 14], [4, 6, 10, 11]], np.intp)
    assert tuple(boxes[3]) == (40, 16, 4, 8)
    answer = np.zeros(grid.frame, bool)
    answer[16:24, 32:42] = True  # all of track 1 and the left half of track 3
    done = publish_small(grid, labels, area, boxes, index, work_boxes, ids,
                         [lambda y0, y1, x0, x1: answer[y0:y1, x0:x1], None, None], 0.5, 2)
    assert done == [0]
    check_partition(labels, ids, area, boxes)
    assert np.array_equal(labels == 7, answer)
    assert boxes[3][0] == 42 and boxes[3][2] == 2 and area[3] > 0  # its box shrank to what it kept
    # an answer that takes all of track 3: its box is empty
    answer[16:24, 32:44] = True
    assert publish_small(grid, labels, area, boxes, index, work_boxes, ids,
                         [lambda y0, y1, x0, x1: answer[y0:y1, x0:x1], None, None], 0.5, 2) == [0]
    check_partition(labels, ids, area, boxes)
    assert area[3] == 0 and tuple(boxes[3]) == (0, 0, 0, 0)


def test_disagreeing_big_or_unanswered_tracks_keep_their_pixels():
    grid, index, ids, labels, area, boxes, work_boxes = _scene()
    before, area0, boxes0 = labels.copy(), area.copy(), boxes.copy()
    elsewhere = np.zeros(grid.frame, bool)
    elsewhere[0:4, 0:4] = True  # nothing near the track: the answer is about something else
    full = np.ones(grid.frame, bool)

    def crop(m):
        return lambda y0, y1, x0, x1: m[y0:y1, x0:x1]

    assert publish_small(grid, labels, area, boxes, index, work_boxes, ids, [crop(elsewhere), None], 0.5, 2) == []
    # track 2 is answered but not small (over 5 % of the frame); track 1 unanswered
    assert publish_small(grid, labels, area, boxes, index, work_boxes, ids, [None, crop(full)], 0.05, 2) == []
    assert np.array_equal(labels, before) and np.array_equal(area, area0) and np.array_equal(boxes, boxes0)


def _run(sh, overrides, spy=None):
    cfg = S.run_config("oracle", 256, overrides)
    tracker = Tracker(cfg, segmenter=S.TimedSegmenter(build_segmenter_for("oracle", cfg, sh.seg_gt, sh.frames)))
    out = []
    try:
        for rgb in sh.frames:
            res = tracker.step(rgb)
            ids = [0] + [t.id for t in res.tracks]
            area = [int(np.count_nonzero(res.labels == 0))] + [t.area for t in res.tracks]
            boxes = [cv2.boundingRect((res.labels == 0).view(np.uint8))] + [t.bbox for t in res.tracks]
            check_partition(res.labels, ids, area, boxes)  # the track records are those of the published map
            if spy is not None:
                spy.pop()
            out.append(res.labels)
    finally:
        tracker.close()
    return np.stack(out)


def test_small_object_on_real_frames_matches_the_ground_truth_better(davis_root, monkeypatch):
    """libby at a quarter of its size in car-roundabout's frames (shrunken DAVIS), oracle segmenter, 20 frames: the
    small object's published mask with the repaint is closer to the ground truth than the working resolution's."""
    sh = S.shrink_sequence(davis_root, "libby", 0.25, limit=20)
    repainted = []
    real = tracker_module.publish_small

    class Spy:
        count = 0

        def pop(self):
            got = repainted[-1] if repainted else []
            repainted.clear()
            self.count += len(got)
            return got

    def spy(*args):
        done = real(*args)
        repainted.append(done)
        return done

    monkeypatch.setattr(tracker_module, "publish_small", spy)
    seen = Spy()
    on = _run(sh, {}, seen)
    assert seen.count >= 10  # the object was repainted in most frames
    off = _run(sh, {"tracker.small_track_fraction": 0.0})
    j_on = davis.evaluate_sequence("libby", on, sh.scored_gt).J
    j_off = davis.evaluate_sequence("libby", off, sh.scored_gt).J
    assert j_on > j_off + 0.05, (j_on, j_off)
    assert j_on > 0.95, j_on
