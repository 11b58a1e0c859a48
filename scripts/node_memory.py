"""Resident memory of the managed tracker node over configure / activate / frames / deactivate / cleanup cycles.

A figure, not a test: the node runs in this process (rclpy, no other process), its frames are handed to its image
callback directly, and this prints the process's RSS after each phase of each cycle, then how far every cleanup
ends above the first one (flat: at most 20 MiB above it).

    .venv/bin/python scripts/node_memory.py                                   # classical segmenter (no weights)
    .venv/bin/python scripts/node_memory.py --segmenter mobile_sam --random-weights
    .venv/bin/python scripts/node_memory.py --segmenter sam --checkpoint sam_vit_b.pth --set segmenter.model_type=vit_b

Frames: the bedroom sequence from ../shared/data (320x180), or generated ones where it is absent.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
BEDROOM = REPO.parent / "shared" / "data" / "bedroom"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def frames(n: int, size=(320, 180)) -> list[np.ndarray]:
    files = sorted(BEDROOM.glob("*.jpg"))[:n]
    if len(files) == n:
        return [cv2.cvtColor(cv2.resize(cv2.imread(str(f)), size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
                for f in files]
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (18, 32, 3), np.uint8), size, interpolation=cv2.INTER_NEAREST)
    return [np.roll(base, 2 * i, axis=1) for i in range(n)]


def image_msg(rgb: np.ndarray, sec: int):
    import array

    from sensor_msgs.msg import Image

    m = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3,
              data=array.array("B", rgb.tobytes()))
    m.header.stamp.sec, m.header.frame_id = sec, "cam"
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--frames", type=int, default=20, help="frames per cycle")
    ap.add_argument("--segmenter", default="classical")
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--random-weights", action="store_true", help="mobile_sam (vit_t) with random weights saved here")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another parameter")
    args = ap.parse_args(argv)

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from mastsam_ros.node.lifecycle import ManagedTrackerNode

    checkpoint = args.checkpoint
    tmp = tempfile.TemporaryDirectory()
    if args.random_weights:
        from mastsam_ros.cli.bench import random_checkpoint

        if args.segmenter != "mobile_sam":
            ap.error("--random-weights is for --segmenter mobile_sam")
        checkpoint = str(random_checkpoint("mobile_sam", "vit_t", Path(tmp.name)))
    overrides = [Parameter("segmenter.backend", value=args.segmenter), Parameter("node.diagnostics_period", value=60.0)]
    if checkpoint:
        overrides.append(Parameter("segmenter.checkpoint", value=checkpoint))
    if args.segmenter != "classical":
        overrides.append(Parameter("segmenter.points_per_side", value=2))  # a frame in seconds on a CPU
    for kv in args.set:
        key, value = kv.split("=", 1)
        overrides.append(Parameter(key, value=type_of(value)))

    rclpy.init()
    node = ManagedTrackerNode(cli_args=["--ros-args", "-r", "__node:=tracker_memory"], parameter_overrides=overrides)
    front = node.front
    images = frames(args.frames)
    ok = TransitionCallbackReturn.SUCCESS
    print(f"segmenter {args.segmenter}, {args.frames} frames of {images[0].shape[1]}x{images[0].shape[0]} a cycle; "
          f"RSS in MiB (this process), python {sys.version.split()[0]}")
    print(f"{'cycle':>5} {'start':>8} {'configured':>11} {'frames':>8} {'cleaned up':>11} {'processed':>10}")
    cleaned = []
    sec = 0
    try:
        for cycle in range(args.cycles):
            start = rss_mib()
            assert node.trigger_configure() == ok, "configure failed (see the log)"
            configured = rss_mib()
            assert node.trigger_activate() == ok
            for rgb in images:
                sec += 1
                front._on_image(image_msg(rgb, sec))
                while front.counts()["in_flight"]:  # one frame at a time: none dropped
                    time.sleep(0.005)
            after_frames = rss_mib()
            processed = front.counts()["processed"]
            assert node.trigger_deactivate() == ok and node.trigger_cleanup() == ok
            cleaned.append(rss_mib())
            print(f"{cycle + 1:>5} {start:>8.0f} {configured:>11.0f} {after_frames:>8.0f} {cleaned[-1]:>11.0f} "
                  f"{processed:>10}")
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
        tmp.cleanup()
    growth = [c - cleaned[0] for c in cleaned]
    print("after cleanup, relative to the first: " + ", ".join(f"{g:+.1f}" for g in growth) + " MiB; "
          f"most grown {max(growth):+.1f} MiB ({'flat' if max(growth) <= 20 else 'NOT flat'}: at most 20 MiB above)")
    return 0


def type_of(text: str):
    """A --set value as the parameter type it reads as: bool, int, float, else str."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


if __name__ == "__main__":
    sys.exit(main())
