"""Compile the tracker's numba kernels once, into numba's cache, before the timed runs of the GPU kit.

    NUMBA_CACHE_DIR=DIR python scripts/gpu/warm_numba.py --source FRAMES [--frames 36]

The kernels (``mastsam_ros/core/jit.py``, ``cache=True``) compile on their first call with each new argument type
signature; a later process loads them from the cache. The bench leaves frame 0 out of its figures, but a kernel first
called at a later frame (a newly-visible-area frame, a re-segmentation slice, a code path of one matcher kind) would
compile inside a timed frame of every bench process. So this runs, with backends that cost nothing
(``mastsam-bench``'s zero-cost segmenter, ``mastsam_ros/evaluation/instruments.py``), each run through the stream as
the bench's are:

- the tracker with the replayed dense flow, 8 and 32 tracks, ``--frames`` frames (36 covers the new-area frames and
  the re-segmentation slices after keyframe 30): the flow and cadence configurations' path;
- the tracker with a sparse matcher (no dense field: masks move by their points' displacement, as with MASt3R);
- comparison (b)'s prototype loop, 4 frames.

It prints the number of compiled signatures per kernel module. Run it with the same ``NUMBA_CACHE_DIR`` as the
benchmarks; ``run_on_device.sh`` then reports, per step, whether the cache grew during it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from numba.core.registry import CPUDispatcher  # noqa: E402

from mastsam_ros.cli.bench_baselines import BruteForceMatcher, run_prototype  # noqa: E402
from mastsam_ros.cli.bench_runs import frame_files, load_frame, run_overhead, stream_frames  # noqa: E402
from mastsam_ros.core import grid, masks, points  # noqa: E402
from mastsam_ros.core.clustering import batch  # noqa: E402
from mastsam_ros.core.config import Config  # noqa: E402
from mastsam_ros.core.matchers import flow  # noqa: E402
from mastsam_ros.core.tracker import Tracker  # noqa: E402
from mastsam_ros.evaluation.instruments import ZeroCostSegmenter  # noqa: E402


def compiled() -> dict[str, int]:
    """Compiled signatures per kernel module."""
    return {m.__name__.rsplit(".", 1)[-1]: sum(len(v.signatures) for v in vars(m).values()
                                                if isinstance(v, CPUDispatcher))
            for m in (masks, points, grid, batch, flow)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, type=Path, help="directory of consecutive frames")
    ap.add_argument("--frames", type=int, default=36, help="frames of the dense-flow runs")
    ap.add_argument("--sparse-frames", type=int, default=12, help="frames of the sparse-matcher run")
    args = ap.parse_args(argv)
    cfg = Config()
    files = frame_files(args.source, max(args.frames, args.sparse_frames))
    t0 = time.perf_counter()
    for tracks in (8, 32):
        run_overhead(cfg, files[: args.frames], None, tracks, progress=False)
        print(f"dense flow, {tracks} tracks, {args.frames} frames: {compiled()}  (+{time.perf_counter() - t0:.1f} s)")
    frames = [load_frame(f, None) for f in files[: args.sparse_frames]]
    sparse = BruteForceMatcher(cfg.matcher.max_side, cfg.matcher.max_error_px)
    tracker = Tracker(cfg, segmenter=ZeroCostSegmenter(frames[0].shape[:2], 8), matcher=sparse)
    try:
        stream_frames(tracker, frames, lambda out: None, decode=lambda frame: frame)
    finally:
        tracker.close()
    print(f"sparse matcher, 8 tracks, {len(frames)} frames: {compiled()}  (+{time.perf_counter() - t0:.1f} s)")
    run_prototype(cfg, ZeroCostSegmenter(frames[0].shape[:2], 8), tracker.kmeans, 8, files[:4], None)
    print(f"prototype loop, 4 frames: {compiled()}  (+{time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
