"""The MASt3R part of the model floor, synchronised: what the project's ``mast3r`` matcher's networks cost per frame.

    python scripts/gpu/floors.py --checkpoint CKPT --mast3r-path CLONE --device cuda --source FRAMES --json OUT

``mastsam-bench`` measures the segmenter's floor (encoder + prompt decoder) inside its own run; its MASt3R matcher
runs in the tracker's matcher thread beside the encoder, so the bench cannot split the matcher's network time from
the encoder's. This measures it alone, on the same device and in the same device call, through the same code
(:class:`Mast3rMatcher` built by ``build_matcher`` with ``matcher.precision`` as configured, ``auto``: fp16 autocast
on CUDA): per frame ``push`` (encoder, once per frame), ``prepare`` (joint decoder and heads of the pair) and
``carry`` of ``--points`` points, each between ``torch.cuda.synchronize`` calls. The first ``--warmup`` frames
(CUDA kernel selection, allocator growth) are left out. A cadence matcher with interval N pays ``push`` +
``prepare`` once every N frames (its anchor sees anchor frames only), so its floor share is this per-frame figure / N.
Prints the figures and writes them as JSON; no pass/fail.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mastsam_ros.cli.bench_runs import frame_files, load_frame, parse_size, stats  # noqa: E402
from mastsam_ros.core.config import MatcherSection  # noqa: E402
from mastsam_ros.core.matchers import build_matcher  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="MASt3R checkpoint (upstream's training format)")
    ap.add_argument("--mast3r-path", required=True, help="naver/mast3r clone with dust3r and dust3r/croco inside")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="auto", help="matcher.precision (auto: fp16 on CUDA, fp32 elsewhere)")
    ap.add_argument("--source", required=True, type=Path, help="directory of consecutive frames")
    ap.add_argument("--frames", type=int, default=12, help="timed frames")
    ap.add_argument("--warmup", type=int, default=3, help="frames run before the timed ones")
    ap.add_argument("--size", type=parse_size, default=None, help="resize frames to WxH (default: as stored)")
    ap.add_argument("--points", type=int, default=128, help="points carried per frame (8 tracks x 16 points)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.frames < 1 or args.warmup < 1 or args.points < 1:
        ap.error("--frames, --warmup and --points must be >= 1")

    import torch

    files = frame_files(args.source, args.warmup + args.frames)
    frames = [load_frame(f, args.size) for f in files]
    cfg = MatcherSection(backend="mast3r", checkpoint=args.checkpoint, mast3r_path=args.mast3r_path,
                         device=args.device, precision=args.precision)
    t = time.perf_counter()
    matcher = build_matcher(cfg)
    load_s = time.perf_counter() - t
    sync = torch.cuda.synchronize if matcher.device.type == "cuda" else (lambda: None)
    h, w = frames[0].shape[:2]
    rng = np.random.default_rng(0)
    points = (rng.random((args.points, 2)) * [w - 1, h - 1]).astype(np.float32)

    parts: dict[str, list[float]] = {"push": [], "prepare": [], "carry": [], "per_frame": []}
    for i, frame in enumerate(frames):
        sync()
        t0 = time.perf_counter()
        matcher.push(frame)
        sync()
        t1 = time.perf_counter()
        matcher.prepare()
        sync()
        t2 = time.perf_counter()
        matcher.carry(points)
        sync()
        t3 = time.perf_counter()
        if i >= args.warmup:
            for k, v in (("push", t1 - t0), ("prepare", t2 - t1), ("carry", t3 - t2), ("per_frame", t3 - t0)):
                parts[k].append(v * 1e3)
    report = {
        "what": "project Mast3rMatcher per frame, synchronised: push (encoder) + prepare (decoder, heads) + carry",
        "device": str(matcher.device),
        "gpu": torch.cuda.get_device_name(0) if matcher.device.type == "cuda" else None,
        "precision": args.precision,
        "autocast_dtype": str(matcher.amp_dtype),
        "rope": matcher.rope,
        "resolution": [w, h],
        "points": args.points,
        "frames": args.frames,
        "warmup": args.warmup,
        "load_s": round(load_s, 1),
        "parameters_m": round(sum(p.numel() for p in matcher.model.parameters()) / 1e6, 1),
        "mast3r": {k: stats(v) for k, v in parts.items()},
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    m = report["mast3r"]
    print(f"MASt3R matcher per frame on {report['gpu'] or report['device']} ({report['parameters_m']} M parameters, "
          f"autocast {report['autocast_dtype']}, RoPE {report['rope']}, {w}x{h}, {args.points} points), median ms: "
          f"push {m['push']['median_ms']}, prepare {m['prepare']['median_ms']}, carry {m['carry']['median_ms']}, "
          f"per frame {m['per_frame']['median_ms']} over {args.frames} frames")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
