"""Memory of object permanence over a long run in which tracks keep being born and leaving (issue 24).

    PYTHONPATH=$PWD .venv/bin/python scripts/soak_permanence.py --frames 20000 --json soak.json

The tracker is stepped directly (no stream, nothing kept per frame but event counters), so the RSS it prints is the
tracker's own: ``mastsam-bench --soak N --soak-churn K`` reports the same run through the stream with latency
figures, and keeps a few numbers per frame for them (about 0.1 MB per 1,000 frames). The frames are DAVIS
car-roundabout (or ``--source``) at ``--size``, played forwards then backwards; the objects are ``--tracks`` stand-in
rectangles, a new set every ``--period`` frames in the other half of the frame (``ChurningRegions``), found by the
tracker's re-segmentation and newly-visible-area search; the flow matcher is the real one. Every ``--every`` frames
it prints the frame, RSS (MiB) and the dormant set's size; at the end the track events by kind, the largest dormant
set seen (bounded by ``tracker.dormant_max``) and RSS growth from the first sample to the last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from mastsam_ros.cli.bench_runs import default_source, frame_files, load_frame, parse_size, rss_mb
from mastsam_ros.cli.track import load_config
from mastsam_ros.core.tracker import Tracker
from mastsam_ros.evaluation.instruments import ChurningRegions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=None, help="image directory (default: DAVIS car-roundabout)")
    p.add_argument("--frames", type=int, default=20000)
    p.add_argument("--size", type=parse_size, default=(160, 90), help="frame size WxH (default 160x90)")
    p.add_argument("--tracks", type=int, default=8, help="stand-in objects per set, and tracker.max_tracks")
    p.add_argument("--period", type=int, default=20, help="frames a set of objects stays (default 20)")
    p.add_argument("--every", type=int, default=1000, help="RSS sample interval in frames (default 1000)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config field, repeatable")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    source = args.source or default_source()
    if source is None or args.frames < args.every or args.every < 1:
        p.error("needs a --source (../shared/data not found) and --frames >= --every >= 1")
    cfg = load_config(None, [f"tracker.max_tracks={args.tracks}", *(args.set or [])])
    w, h = args.size
    tracker = Tracker(cfg, segmenter=ChurningRegions((h, w), args.tracks, args.period))
    files = frame_files(source, args.frames)
    cache: dict[Path, object] = {}
    events: Counter = Counter()
    samples, top, t0 = [], 0, time.perf_counter()
    for i, f in enumerate(files):
        if f not in cache:
            cache[f] = load_frame(f, args.size)
        events.update(e.kind for e in tracker.step(cache[f]).events)
        top = max(top, len(tracker.dormant))
        if (i + 1) % args.every == 0:
            samples.append((i + 1, round(rss_mb(), 2), len(tracker.dormant)))
            print(f"frame {i + 1}: RSS {samples[-1][1]} MiB, dormant {samples[-1][2]}", flush=True)
    tracker.close()
    report = {
        "command": "scripts/soak_permanence.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "source": str(source), "frames": args.frames, "size": [w, h], "tracks": args.tracks, "period": args.period,
        "seconds": round(time.perf_counter() - t0, 1),
        "samples_frame_rss_mb_dormant": samples,
        "rss_growth_mb": round(samples[-1][1] - samples[0][1], 2),
        "events": dict(sorted(events.items())),
        "dormant_max_seen": top,
        "dormant_max": cfg.tracker.dormant_max,
    }
    print(f"{args.frames} frames in {report['seconds']} s: RSS {samples[0][1]} MiB at frame {samples[0][0]} -> "
          f"{samples[-1][1]} MiB ({report['rss_growth_mb']:+} MiB); events {report['events']}; dormant at most "
          f"{top} (tracker.dormant_max {cfg.tracker.dormant_max})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
