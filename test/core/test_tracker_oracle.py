"""Identity through motion with perfect segmentation: the tracker with the evaluation-only oracle on real video.

The oracle answers from the ground truth, so any loss here is the tracker's (points lost, ids switched), not the
segmenter's. A regression guard for the J&F figures in docs/RESULTS.md, on a 30-frame prefix to stay quick.
"""

import numpy as np
import pytest

from mastsam_ros.core.config import Config
from mastsam_ros.core.tracker import Tracker
from mastsam_ros.evaluation import davis
from mastsam_ros.evaluation.oracle import OracleSegmenter


@pytest.mark.parametrize("seq", ["libby", "car-roundabout"])
def test_one_id_and_high_jf_with_the_oracle(seq, davis_root):
    frames = davis.load_frames(davis_root, seq, limit=30)
    _, gt = davis.load_gt(davis_root, seq, limit=30)
    tracker = Tracker(Config(), segmenter=OracleSegmenter(gt, frames=frames))
    pred = np.stack([tracker.step(f).labels for f in frames])
    res = davis.evaluate_sequence(seq, pred, gt)
    (obj,) = res.objects
    assert obj.ids == 1, res.as_dict()  # one predicted id covered the object over all 30 frames
    assert res.JF >= 0.9, res.as_dict()
