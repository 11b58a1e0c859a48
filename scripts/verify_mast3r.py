#!/usr/bin/env python3
"""Run the project's ``mast3r`` matcher through a real naver/mast3r clone, with random weights.

No MASt3R weights are needed: the script builds upstream's ``AsymmetricMASt3R`` with the published architecture
(``MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric``; ``--arch tiny`` for a seconds-long smoke run), initialises it
randomly, saves it in upstream's checkpoint format (``{'model': state_dict, 'args': Namespace(model=spec)}``) to a
temporary directory, and loads it back through ``matcher.checkpoint`` / ``matcher.mast3r_path`` like a user would.
Then it pushes consecutive real frames and carries a grid of points through each pair, printing the number of
matches and the time per pair. Random weights make the matches meaningless; what is verified is that the project's
code drives the upstream model correctly (shapes, caching, coordinate mapping, loading) and how long it takes.

    python scripts/verify_mast3r.py --mast3r-path /path/to/mast3r \\
        --frames ../shared/data/davis2016/JPEGImages/480p/car-roundabout --pairs 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mastsam_ros.core.config import MatcherSection  # noqa: E402
from mastsam_ros.core.matchers import build_matcher  # noqa: E402
from mastsam_ros.core.matchers.mast3r import PUBLISHED_MODEL, import_mast3r, parse_model_spec  # noqa: E402

#: Same layout as the published model, scaled down (the DPT head needs a decoder of at least 10 blocks).
TINY_MODEL = PUBLISHED_MODEL.replace(
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16", "enc_embed_dim=64, enc_depth=2, enc_num_heads=4"
).replace("dec_embed_dim=768, dec_depth=12, dec_num_heads=12", "dec_embed_dim=64, dec_depth=10, dec_num_heads=4")


def save_random_checkpoint(mast3r_path: str, spec: str, out: Path, seed: int = 0) -> Path:
    """Build ``spec`` with upstream's class, random weights, saved like upstream's training checkpoints."""
    import torch

    model_cls = import_mast3r(mast3r_path)
    torch.manual_seed(seed)
    model = model_cls(**parse_model_spec(spec))
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(model=spec)}, out)
    return out


def read_frames(source: Path, n: int) -> list[np.ndarray]:
    import cv2

    files = sorted(source.glob("*.jpg")) if source.is_dir() else [source]
    if len(files) < n:
        raise SystemExit(f"need {n} frames in {source}, found {len(files)}")
    return [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files[:n]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mast3r-path", required=True, help="naver/mast3r clone with dust3r and dust3r/croco inside")
    ap.add_argument("--frames", required=True, type=Path, help="directory of consecutive .jpg frames")
    ap.add_argument("--pairs", type=int, default=1, help="consecutive frame pairs to run")
    ap.add_argument("--arch", choices=("published", "tiny"), default="published")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--grid", type=int, default=10, help="carry a grid x grid set of points (the tracker: ~100)")
    ap.add_argument("--min-confidence", type=float, default=0.3, help="tracker.min_match_confidence default")
    args = ap.parse_args(argv)

    import torch

    frames = read_frames(args.frames, args.pairs + 1)
    h, w = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ckpt = save_random_checkpoint(args.mast3r_path, PUBLISHED_MODEL if args.arch == "published" else TINY_MODEL,
                                      Path(tmp) / "random_mast3r.pth")
        size_mib = ckpt.stat().st_size / 2**20
        print(f"random {args.arch} checkpoint: {size_mib:.0f} MiB in {time.perf_counter() - t:.1f} s")
        cfg = MatcherSection(backend="mast3r", checkpoint=str(ckpt), mast3r_path=args.mast3r_path, device=args.device)
        t = time.perf_counter()
        matcher = build_matcher(cfg)
        print(f"loaded through the project's matcher in {time.perf_counter() - t:.1f} s; "
              f"{sum(p.numel() for p in matcher.model.parameters()) / 1e6:.0f} M parameters; device {matcher.device}; "
              f"torch threads {torch.get_num_threads()}")

    xs = (np.arange(args.grid) + 0.5) * w / args.grid
    ys = (np.arange(args.grid) + 0.5) * h / args.grid
    points = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(np.float32)
    matcher.push(frames[0])
    print(f"frame 0 {w}x{h}: encode {matcher.timings['encode']:.2f} s")
    for i in range(1, args.pairs + 1):
        t = time.perf_counter()
        matcher.push(frames[i])
        cur, conf = matcher.carry(points)
        dt = time.perf_counter() - t
        tm = matcher.timings
        assert cur.shape == points.shape and conf.shape == (len(points),)
        assert np.all((conf >= 0) & (conf <= 1))
        kept = int((conf > 0).sum())
        # What random weights give, stage by stage: descriptor confidences, and how many points pass the
        # reciprocal and border checks alone (confidences set to 1).
        from mastsam_ros.core.matchers.mast3r import match_points, to_model

        d1, c1, d2, c2 = matcher._pair
        with torch.inference_mode():
            _, geo = match_points(d1, torch.ones_like(c1), d2, torch.ones_like(c2),
                                  to_model(points, matcher._prev["scale"]), matcher.max_error)
        print(f"  descriptor maps {tuple(d1.shape)} / {tuple(d2.shape)}; desc confidence median "
              f"{float(c1.median()):.3f} / {float(c2.median()):.3f}; reciprocal + border checks passed by "
              f"{int((geo > 0).sum())} of {len(points)} points")
        matched = cur[conf > 0]
        inside = bool(np.all((matched >= -0.5) & (matched <= [w - 0.5, h - 0.5])))
        print(f"pair {i - 1}->{i}: {dt:.2f} s (encode {tm['encode']:.2f} s + decode/heads {tm['decode']:.2f} s + "
              f"match {tm['match'] * 1000:.0f} ms); {len(points)} points, {kept} matched with confidence > 0, "
              f"{int((conf >= args.min_confidence).sum())} at >= {args.min_confidence}; "
              f"matched points inside the frame: {inside}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
