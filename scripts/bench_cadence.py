"""Per-frame matcher time of the cadence matcher, ``anchor_mode`` sync against async, side by side in one run.

    PYTHONPATH=$PWD .venv/bin/python scripts/bench_cadence.py [--frames 60] [--interval 5] [--sleep 0.15] [--fps 30]
        [--anchor sleep|xfeat]

Frames: DAVIS car-roundabout (../shared), 854x480. Per frame it times what the tracker asks of its matcher:
``push``, ``prepare`` and one ``carry`` of 256 points. The anchor is a stand-in that sleeps ``--sleep`` seconds in
its pair work (``prepare``: the GPU time of a MASt3R pair, which frees the CPU as a CUDA wait does) and answers the
points unchanged, or XFeat on this CPU (``--anchor xfeat``: its pair work competes with the flow for the cores).
``--fps`` paces the frames as a camera would (0: as fast as they go); the pacing wait is not counted. Prints
milliseconds and the matcher's counters; no pass/fail.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mastsam_ros.cli.frames import iter_frames, shared_dir
from mastsam_ros.core.config import MatcherSection
from mastsam_ros.core.matchers import Matcher, build_matcher
from mastsam_ros.core.matchers.cadence import CadenceMatcher


class SleepingAnchor(Matcher):
    """Anchor stand-in: ``prepare`` of a pair sleeps; ``carry`` answers the points where they were, confidence 0.9."""

    name = "sleeping"

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.count = 0

    def push(self, image):
        self.count += 1

    def prepare(self):
        if self.count >= 2:
            time.sleep(self.seconds)

    def carry(self, points):
        conf = 0.9 if self.count >= 2 else 0.0
        return points.astype(np.float32).copy(), np.full(len(points), conf, np.float32)

    def reset(self):
        self.count = 0


def run(frames, mode: str, args) -> tuple[np.ndarray, dict]:
    cfg = MatcherSection(backend="cadence", anchor_backend="xfeat", anchor_interval=args.interval, anchor_mode=mode)
    anchor = SleepingAnchor(args.sleep) if args.anchor == "sleep" else build_matcher(
        MatcherSection(backend="xfeat"))
    m = CadenceMatcher(cfg, anchor=anchor)
    rng = np.random.default_rng(0)
    h, w = frames[0].shape[:2]
    pts = (rng.random((256, 2)) * [w - 1, h - 1]).astype(np.float32)
    times = []
    period = 1.0 / args.fps if args.fps > 0 else 0.0
    tick = time.perf_counter()
    try:
        for f in frames:
            t = time.perf_counter()
            m.push(f)
            m.prepare()
            m.carry(pts)
            times.append(time.perf_counter() - t)
            tick += period
            time.sleep(max(0.0, tick - time.perf_counter()))
    finally:
        m.close()
    return np.array(times) * 1e3, dict(m.stats)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--interval", type=int, default=5)
    p.add_argument("--sleep", type=float, default=0.15, help="seconds the stand-in anchor's pair takes")
    p.add_argument("--fps", type=float, default=30.0, help="frame pacing (0: none)")
    p.add_argument("--anchor", choices=("sleep", "xfeat"), default="sleep")
    args = p.parse_args()
    src = shared_dir() / "data" / "davis2016" / "JPEGImages" / "480p" / "car-roundabout"
    if not src.is_dir():
        print(f"{src} missing")
        return 1
    frames = [rgb for _, rgb in iter_frames(Path(src), args.frames) if rgb is not None]
    what = f"{args.sleep * 1e3:.0f} ms sleeping anchor" if args.anchor == "sleep" else "XFeat anchor (CPU)"
    print(f"{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, anchor_interval {args.interval}, {what}, "
          f"pacing {args.fps:g} fps; per frame push + prepare + carry(256 points), ms")
    print("| mode | median | p90 | max | anchor frames | frames over 100 ms | pairs applied | mean lag (frames) |"
          " skipped |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in ("sync", "async"):
        t, s = run(frames, mode, args)
        row = [mode, f"{np.median(t):.1f}", f"{np.percentile(t, 90):.1f}", f"{t.max():.1f}", s["anchor_frames"],
               int((t > 100).sum())]
        if mode == "async":
            row += [s["anchor_applied"], f"{s['anchor_lag_frames'] / max(1, s['anchor_applied']):.1f}",
                    s["anchor_skipped"]]
        else:
            row += ["-", "-", "-"]
        print("| " + " | ".join(str(v) for v in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
