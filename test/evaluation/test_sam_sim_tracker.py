"""The collapse case through the tracker: a leak joins the tracked car to the road for several frames.

``sam_sim`` answers every prompt of frames 5-14 of car-roundabout with the object plus its largest neighbour entire
(``collapse``; the car and the road as one mask, as a stray point on the road makes SAM do), and every automatic mask
of those frames of an object merged with that neighbour (``merge``). The track must keep its object and its id
while the leak lasts: the id that covers the car before the leak still covers it, and only it, in every leaking frame.
It failed (strict xfail) until ``tracker.swallow_fraction``: the collapsed answer doubled the car's mask, within the
area and shift bounds, and the track took car and road; the control run with the rule off shows it still would.
"""

import numpy as np
import pytest

from mastsam_ros.core.config import Config
from mastsam_ros.core.tracker import Tracker
from mastsam_ros.evaluation import davis
from mastsam_ros.evaluation.sam_sim import SamSimRates, SamSimSegmenter

LEAK = range(5, 15)


def _iou(a, b):
    u = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / u if u else 1.0


def _run(davis_root, cfg):
    frames = davis.load_frames(davis_root, "car-roundabout", limit=LEAK.stop + 2)
    _, gt = davis.load_gt(davis_root, "car-roundabout", limit=len(frames))
    seg = SamSimSegmenter(gt, frames=frames, severity=1.0, rates=SamSimRates.only(collapse=1.0, merge=1.0),
                          active=LEAK)
    tracker = Tracker(cfg, segmenter=seg)
    car_id = None
    for i, (f, g) in enumerate(zip(frames, gt)):
        labels = tracker.step(f).labels
        car = g == 1
        ids, counts = np.unique(labels[car], return_counts=True)
        best = int(ids[np.argmax(counts)])
        if i == LEAK.start - 1:
            assert _iou(labels == best, car) >= 0.8, "the car is tracked before the leak"
            car_id = best
        if i in LEAK:
            assert best == car_id, f"frame {i}: the car's id changed from {car_id} to {best}"
            assert _iou(labels == car_id, car) >= 0.7, f"frame {i}: the track no longer outlines the car"
    assert seg.fired["collapse"] > 0  # the leak really happened


def test_car_keeps_its_id_and_shape_while_it_leaks_into_the_road(davis_root):
    _run(davis_root, Config())


def test_without_the_swallow_rule_the_track_takes_car_and_road(davis_root):
    """The control: the same leak with tracker.swallow_fraction at 1 (off) makes the track lose the car."""
    with pytest.raises(AssertionError, match="frame 5"):
        _run(davis_root, Config().update({"tracker.swallow_fraction": 1.0}))
