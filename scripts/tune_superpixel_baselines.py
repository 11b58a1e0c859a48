"""Grid search of the parameters of baselines (d) per-frame Felzenszwalb and (e) per-frame SLIC (greedy IoU).

    python scripts/tune_superpixel_baselines.py --davis ../shared/data/davis2016 [--limit N]

Scores every setting of a small grid by mean J&F over the annotated sequences (the six shared ones), with the same
protocol as the results command, and prints one line per setting, best last per baseline. The chosen values go into
``SUPERPIXEL_PARAMS`` (mastsam_ros/evaluation/baselines.py) by hand. Tuning on the evaluation sequences favours the
baselines: the yardstick the classical tracker must beat is the best these baselines can do there.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from mastsam_ros.evaluation import davis
from mastsam_ros.evaluation.baselines import SuperpixelIoU

GRID = {
    "felzenszwalb": {"scale": [200.0, 800.0, 3200.0], "sigma": [0.8], "min_size_fraction": [0.005, 0.05]},
    "slic": {"n_segments": [4, 16, 64], "compactness": [10.0, 40.0]},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--davis", required=True)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--kinds", nargs="+", default=list(GRID))
    args = ap.parse_args()
    seqs = davis.sequence_names(args.davis)
    data = {s: (davis.load_frames(args.davis, s, limit=args.limit), davis.load_gt(args.davis, s, limit=args.limit)[1])
            for s in seqs}
    for kind in args.kinds:
        grid = GRID[kind]
        results = []
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values))
            jfs = []
            for s, (frames, gt) in data.items():
                m = SuperpixelIoU(kind, **params)
                pred = np.stack([m.step(f) for f in frames])
                jfs.append(davis.evaluate_sequence(s, pred, gt).JF)
            results.append((float(np.mean(jfs)), params, jfs))
            print(f"{kind} {params}: mean J&F {np.mean(jfs):.3f} ({' '.join(f'{j:.3f}' for j in jfs)})", flush=True)
        best = max(results, key=lambda r: r[0])
        print(f"BEST {kind} {best[1]}: mean J&F {best[0]:.3f}", flush=True)


if __name__ == "__main__":
    main()
