"""The figures behind object permanence's two defaults (mastsam_ros/core/dormant.py), on the shared DAVIS sequences:

- ``tracker.cut_distance``: the cut detector's distance between consecutive frames of one sequence (largest), and
  between frames of two different sequences (smallest, frames 0 and 30 of every ordered pair);
- ``tracker.cut_max_correlation``: the peak of the phase correlation of those pairs of different sequences
  (largest), and of the consecutive frames of the pan edits (``evaluation/leave_return.py``, K = 10 and 30) whose
  histograms differ by more than ``cut_distance`` (smallest);
- ``tracker.reid_min_score``: the colour descriptor's similarity (1 - Bhattacharyya of hue-saturation histograms at
  the working size) of one object with itself 10, 30 and 45 frames later, with the objects of the other sequences,
  and with background boxes of its own size in the same frame (percentiles).

    .venv/bin/python scripts/permanence_thresholds.py [--davis ../shared/data/davis2016]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import cv2
import numpy as np

from mastsam_ros.core.config import Config
from mastsam_ros.core.dormant import CutDetector, hist_distance, hs_histogram
from mastsam_ros.evaluation import leave_return

W, H = 256, 144  # the working size of an 854x480 frame


def _sampled(frame: np.ndarray) -> np.ndarray:
    """The pixels the cut detector samples (every step-th, about 128 x 72)."""
    step = max(1, max(frame.shape[:2]) // 128)
    return np.ascontiguousarray(frame[::step, ::step])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--davis", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/davis2016")
    args = ap.parse_args()
    images, notes = args.davis / "JPEGImages/480p", args.davis / "Annotations/480p"
    seqs = sorted(p.name for p in images.iterdir())
    frames = {s: [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in sorted((images / s).glob("*.jpg"))]
              for s in seqs}

    inside, across, across_peak = 0.0, [], []
    for s in seqs:
        detect = CutDetector()
        inside = max([inside] + [detect(f, 1.0)[1] for f in frames[s]])
    for a, b in itertools.permutations(seqs, 2):
        for i in (0, 30):
            detect = CutDetector()
            detect(frames[a][i], 1.0)
            across.append(detect(frames[b][i], 1.0)[1])
            across_peak.append(detect.correlation(_sampled(frames[a][i]), _sampled(frames[b][i])))
    print(f"cut distance: within a sequence at most {inside:.3f}; across sequences at least {min(across):.3f} "
          f"({len(across)} pairs)")
    threshold, pan_peak = Config().tracker.cut_distance, []
    for s in seqs:
        for K in (10, 30):
            try:
                clip = leave_return.build_clip(str(args.davis), s, "pan", K, seqs)
            except leave_return.EditImpossible:
                continue
            detect = CutDetector()
            for before, f in zip([None] + clip.frames[:-1], clip.frames):
                if detect(f, threshold)[1] > threshold:
                    pan_peak.append(detect.correlation(_sampled(before), _sampled(f)))
    print(f"phase correlation peak: across sequences at most {max(across_peak):.3f}; pan frames farther than "
          f"{threshold:g} ({len(pan_peak)} pairs) at least {min(pan_peak):.3f}")

    def hist(rgb, mask):
        hsv = cv2.cvtColor(cv2.resize(rgb, (W, H), interpolation=cv2.INTER_NEAREST), cv2.COLOR_RGB2HSV)
        return hs_histogram(hsv, mask)

    same, other, background, objects = [], [], [], {}
    for s in seqs:
        gt = [cv2.resize((cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8), (W, H),
                         interpolation=cv2.INTER_NEAREST) for f in sorted((notes / s).glob("*.png"))]
        idx = list(range(0, len(gt), 5))
        h = {i: hist(frames[s][i], gt[i]) for i in idx if gt[i].any()}
        objects[s] = list(h.values())
        same += [1 - hist_distance(h[i], h[j]) for i in h for j in h if j - i in (10, 30, 45)]
        for i in h:
            ys, xs = np.nonzero(gt[i])
            bh, bw = int(np.ptp(ys)) + 1, int(np.ptp(xs)) + 1
            for y, x in ((0, 0), (0, W - bw), (H - bh, 0), (H - bh, W - bw)):
                box = np.zeros_like(gt[i])
                box[y:y + bh, x:x + bw] = 1
                box &= 1 - gt[i]
                if box.sum() > 0.3 * gt[i].sum():
                    background.append(1 - hist_distance(h[i], hist(frames[s][i], box)))
    for a, b in itertools.combinations(seqs, 2):
        other += [1 - hist_distance(x, y) for x in objects[a][::3] for y in objects[b][::3]]
    for name, v in (("same object, 10-45 frames apart", same), ("objects of other sequences", other),
                    ("background boxes, same frame", background)):
        v = np.asarray(v)
        print(f"colour similarity, {name} ({len(v)}): p5 {np.percentile(v, 5):.3f} median {np.median(v):.3f} "
              f"p95 {np.percentile(v, 95):.3f} max {v.max():.3f}")


if __name__ == "__main__":
    main()
