"""What a working resolution costs before any tracking: the ground truth itself passed through it.

Each ground-truth object mask is taken to the tracker's working size and back to the frame the two ways the
tracker's published map can do it: ``nearest`` (the working mask, each working pixel repeated) and ``soft`` (the
fraction of each working pixel the mask covers, upsampled bilinearly and taken at 0.5, as the tracker's boundary
pixels are). J and F against the original ground truth are the best any tracker holding its masks at that size can
score, with a perfect segmenter and perfect tracking; detail finer than a working pixel (thin lines) is what goes.

    python -m mastsam_ros.evaluation.resolution --davis ../shared/data/davis2016 --work-max-side 256
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from .davis import f_measure, j_measure, load_gt, sequence_names


def round_trip(mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """(nearest, soft) reconstructions of ``mask`` (H x W bool) from a working size of ``max_side`` long side."""
    fh, fw = mask.shape
    s = min(1.0, max_side / max(fh, fw))
    h, w = max(1, round(fh * s)), max(1, round(fw * s))
    cover = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    cols = np.minimum(((np.arange(fw) + 0.5) * (w / fw)).astype(np.intp), w - 1)
    rows = np.minimum(((np.arange(fh) + 0.5) * (h / fh)).astype(np.intp), h - 1)
    nearest = (cover >= 0.5)[rows][:, cols]
    soft = cv2.resize(cover, (fw, fh), interpolation=cv2.INTER_LINEAR) >= 0.5
    return nearest, soft


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mastsam_ros.evaluation.resolution", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--davis", required=True, help="DAVIS root (Annotations/480p)")
    p.add_argument("--work-max-side", type=int, nargs="+", default=[256], help="working sizes to compare")
    p.add_argument("--sequences", nargs="+", default=None)
    args = p.parse_args(argv)
    seqs = args.sequences or sequence_names(args.davis)
    print("| sequence | " + " | ".join(f"{s}: J&F nearest / soft" for s in args.work_max_side) + " |")
    print("|---|" + "---|" * len(args.work_max_side))
    means = np.zeros((len(args.work_max_side), 2))
    for seq in seqs:
        _, gt = load_gt(args.davis, seq)
        cells = []
        for k, side in enumerate(args.work_max_side):
            scores = np.zeros(2)
            for frame in gt:
                obj, void = (frame > 0) & (frame != 255), frame == 255
                for m, rec in enumerate(round_trip(obj, side)):
                    scores[m] += (j_measure(rec, obj, void) + f_measure(rec, obj, void)) / 2
            scores /= len(gt)
            means[k] += scores / len(seqs)
            cells.append(f"{scores[0]:.3f} / {scores[1]:.3f}")
        print(f"| {seq} | " + " | ".join(cells) + " |")
    print("| mean | " + " | ".join(f"**{a:.3f}** / **{b:.3f}**" for a, b in means) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
