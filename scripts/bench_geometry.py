"""Per-frame cost of the 3D side on real tracker labels: prints milliseconds, no pass/fail.

    PYTHONPATH=$PWD .venv/bin/python scripts/bench_geometry.py [--frames 3] [--repeat 20]

Labels: the classical tracker on the first frames of DAVIS car-roundabout (../shared), 854x480; depth: a synthetic
16UC1 ramp (2 m at the top, +5 mm a row) through pinhole intrinsics f = 600 px. Prints the cost of each step the node
runs per frame after the 2D outputs, and of the tracker step itself for scale.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mastsam_ros.cli.frames import iter_frames, shared_dir
from mastsam_ros.core.config import Config
from mastsam_ros.core.geometry import (
    Intrinsics, backproject, depth_to_metres, labelled_points, objects_3d, objects_from_depth,
)
from mastsam_ros.core.tracker import Tracker


def ms(f, repeat: int) -> float:
    f()
    t = time.perf_counter()
    for _ in range(repeat):
        f()
    return (time.perf_counter() - t) / repeat * 1e3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args()
    src = shared_dir() / "data" / "davis2016" / "JPEGImages" / "480p" / "car-roundabout"
    if not src.is_dir():
        print(f"{src} missing")
        return 1
    tracker, steps, result = Tracker(Config()), [], None
    for _, rgb in iter_frames(Path(src), args.frames):
        t = time.perf_counter()
        result = tracker.step(rgb)
        steps.append((time.perf_counter() - t) * 1e3)
    labels = result.labels
    h, w = labels.shape
    k = Intrinsics(600.0, 600.0, (w - 1) / 2, (h - 1) / 2)
    depth = np.broadcast_to(2000 + 5 * np.arange(h)[:, None], (h, w)).astype(np.uint16).copy()
    pts = backproject(depth_to_metres(depth), k)
    ids = [t.id for t in result.tracks]
    print(f"{w}x{h}, {len(ids)} tracks, {int((labels > 0).sum())} foreground pixels, {args.repeat} repeats")
    for name, f in (
        ("objects_from_depth (16UC1 -> metres -> points -> records)",
         lambda: objects_from_depth(labels, depth, k, ids)),
        ("  depth_to_metres + backproject", lambda: backproject(depth_to_metres(depth), k)),
        ("  objects_3d", lambda: objects_3d(labels, pts, ids)),
        ("  objects_3d, extent_trim 0.02", lambda: objects_3d(labels, pts, ids, 0.02)),
        ("labelled_points, stride 4 (~/points)", lambda: labelled_points(labels, pts, 4)),
    ):
        print(f"{name:60s} {ms(f, args.repeat):8.2f} ms")
    step = "Tracker.step (classical, flow), median after the first frame"
    print(f"{step:60s} {np.median(steps[1:]):8.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
