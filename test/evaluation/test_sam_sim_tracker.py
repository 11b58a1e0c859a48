"""The collapse case through the tracker: a leak joins the tracked car to the road for several frames.

``sam_sim`` answers every prompt of frames 5-14 of car-roundabout with the object plus its largest neighbour entire
(``collapse``; the car and the road as one mask, as a stray point on the road makes SAM do), and every automatic mask
of those frames of an object merged with that neighbour (``merge``). The track must keep its object and its id
while the leak lasts: the id that covers the car before the leak still covers it, and only it, in every leaking frame.
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


@pytest.mark.xfail(
    strict=True,
    reason="tracker at git 9f4e429 accepts the collapsed answer: the neighbour (a road segment about as large as the "
    "car) doubles the mask, within tracker.max_area_ratio 2.5 and max_shift_fraction, so the track takes car+road "
    "from frame 5 (IoU with the car 0.50); to be fixed in the tracker",
)
def test_car_keeps_its_id_and_shape_while_it_leaks_into_the_road(davis_root):
    frames = davis.load_frames(davis_root, "car-roundabout", limit=LEAK.stop + 2)
    _, gt = davis.load_gt(davis_root, "car-roundabout", limit=len(frames))
    seg = SamSimSegmenter(gt, frames=frames, severity=1.0, rates=SamSimRates.only(collapse=1.0, merge=1.0),
                          active=LEAK)
    tracker = Tracker(Config(), segmenter=seg)
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
