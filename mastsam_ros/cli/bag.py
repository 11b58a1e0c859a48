"""``mastsam-bag``: ROS 2 bags without a ROS install (rosbags), and a player for machines without ``ros2 bag``.

- ``from-images DIR OUT``: an image sequence (sorted file names) -> a bag with one sensor_msgs/Image topic;
  unreadable or truncated images are skipped and counted;
- ``process IN OUT --topic T``: every frame of an Image or CompressedImage topic through the stream
  (:mod:`mastsam_ros.core.stream`), in order, -> a bag with ``/tracker/labels`` (mono16) and ``/tracker/instances``
  (mastsam_ros/msg/InstanceArray), the same topics and types the node publishes, plus a copy of the input topic.
  Serial by default (deterministic); ``--pipeline`` prepares frames ahead in the stream's threads, with the same
  outputs. The custom types are registered from msg/*.msg text, so neither this nor ``ros2 bag``/Foxglove reading
  the result needs our messages built;
- ``process ... --depth-topic D --camera-info-topic C``: also 3D instances (mastsam_ros/core/geometry.py) from a
  registered depth topic (16UC1 mm or 32FC1 m) and the colour camera's camera_info, each paired with the image of
  the nearest header stamp within ``--slop`` seconds: ``/tracker/objects`` (mastsam_ros/msg/Object3DArray) and
  one JSON line per frame in ``--objects-jsonl`` (default ``OUT.objects.jsonl``, beside the output bag). An image
  without a usable partner is tracked as usual and its 3D objects are skipped (logged and counted);
- ``process-many INPUT... --output-dir OUT``: many bags, one job each, on Ray (mastsam_ros/cli/archives.py);
- ``play IN``: publishes a bag's image topic over rclpy at its recorded rate (needs rclpy; raw CDR is sent as is).

The library part (types, pairing, :func:`~mastsam_ros.cli.bagio.process_bag`) is :mod:`mastsam_ros.cli.bagio`.
Outputs are written under ``OUT.partial-<pid>`` and renamed to ``OUT`` when complete, with their metadata: a failed,
empty or interrupted run leaves no output. An existing OUT is refused unless ``--overwrite`` (replaced once the new
one is complete). Exit codes: 0 done; 1 the run failed (no frame could be used, a file system error); 2 a usage
error (bad option, unreadable input, missing topic, existing output), reported before any output is touched;
130 / 143 interrupted by SIGINT / SIGTERM. Each error is one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

from mastsam_ros.cli.bagio import (
    BAG_VERSION, COMPRESSED, IMAGE, STORAGES, BagError, ProcessOptions, TopicError, UsageError, bag_types,
    check_apart, check_inputs, check_output, open_reader, process_bag, staged, storage_plugin, typestore,
)
from mastsam_ros.core.decode import MAX_INPUT_PIXELS

log = logging.getLogger("mastsam-bag")


# --- from-images --------------------------------------------------------------------------------------------------
def from_images(args) -> int:
    from rosbags.rosbag2 import Writer

    from mastsam_ros.cli.frames import list_images, shown
    from mastsam_ros.core.decode import load_image
    from mastsam_ros.core.errors import BadImage
    from mastsam_ros.core.matchers.flow import downscale
    from mastsam_ros.node.conversions import image_msg

    if not (math.isfinite(args.rate) and args.rate > 0):
        raise UsageError(f"--rate must be a finite number of frames per second > 0, got {args.rate}")
    if not (math.isfinite(args.start) and args.start >= 0):
        raise UsageError(f"--start must be a finite number of seconds >= 0, got {args.start}")
    if args.limit < 0:
        raise UsageError(f"--limit must be >= 0 (0 = all images), got {args.limit}")
    if args.max_side < 0:
        raise UsageError(f"--max-side must be >= 0 (0 = keep the size), got {args.max_side}")
    if args.max_input_pixels <= 0:
        raise UsageError(f"--max-input-pixels must be > 0, got {args.max_input_pixels}")
    src = Path(args.dir)
    if not src.is_dir():
        raise UsageError(f"no image folder at {shown(src)}")
    try:
        files = list_images(src)[: args.limit or None]
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    check_apart(src, args.out)
    check_output(args.out, args.overwrite)
    store = typestore()
    T = bag_types(store)
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    period_ns = int(round(1e9 / args.rate))
    start_ns = int(round(args.start * 1e9))
    written, skipped, downscaled = 0, Counter(), 0
    with staged(args.out, replace=args.overwrite) as path, \
            Writer(path, version=BAG_VERSION, storage_plugin=storage_plugin(args.storage)) as writer:
        conn = writer.add_connection(args.topic, IMAGE, typestore=store)
        for i, f in enumerate(files):
            try:
                rgb, small, _ = load_image(f, args.max_input_pixels)
            except BadImage as e:  # unreadable, truncated, not an image, too large: skipped and counted by kind
                skipped[e.kind] += 1
                log.warning("skipping an image: %s", e)
                continue
            downscaled += small
            if args.max_side:
                rgb, _ = downscale(rgb, args.max_side)
            ns = start_ns + i * period_ns
            header = Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=args.frame_id)
            writer.write(conn, ns, store.serialize_cdr(image_msg(T, header, rgb), IMAGE))
            written += 1
        if not written:
            raise BagError(f"none of the {len(files)} images in {shown(src)} could be read ({_kinds(skipped)}): "
                           "no output written")
    if downscaled:
        log.info("%d images over --max-input-pixels=%d were read downscaled", downscaled, args.max_input_pixels)
    counted = f", {sum(skipped.values())} skipped ({_kinds(skipped)})" if skipped else ""
    print(f"wrote {written} frames{counted} to {shown(args.out)} ({args.topic}, {args.storage}, {args.rate:g} Hz)")
    return 0


def _kinds(counts: Counter) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))


# --- process ------------------------------------------------------------------------------------------------------
def process(args) -> int:
    from mastsam_ros.core.config import Config, parse_overrides
    from mastsam_ros.core.tracker import Tracker

    opts = ProcessOptions(
        input=args.input, output=args.output, topic=args.topic, storage=args.storage,
        output_prefix=args.output_prefix, copy_input=args.copy_input, depth_topic=args.depth_topic,
        camera_info_topic=args.camera_info_topic, slop=args.slop, objects_jsonl=args.objects_jsonl,
        extent_trim=args.extent_trim, pipeline=args.pipeline, max_input_pixels=args.max_input_pixels,
        overwrite=args.overwrite, verbose=args.verbose,
    )
    check_inputs(opts)  # before the tracker is built: its models may take long to load
    overrides = parse_overrides(args.set)
    cfg = Config.from_yaml(args.config, overrides) if args.config else Config().update(overrides)
    tracker = Tracker(cfg)
    try:
        r = process_bag(opts, tracker)
    finally:
        tracker.close()
    if r.downscaled:
        log.info("%d frames over --max-input-pixels=%d were tracked downscaled", r.downscaled, args.max_input_pixels)
    print(f"processed {r.frames} frames ({r.skipped} skipped) from {args.input}:{args.topic} into {args.output}")
    if r.objects_jsonl is not None:
        print(f"3D objects for {r.frames_3d} frames ({r.frames_3d_skipped} without: see warnings) "
              f"-> {r.objects_jsonl}")
    return 0


# --- play ---------------------------------------------------------------------------------------------------------
def play(args) -> int:
    import importlib

    if not (math.isfinite(args.rate_scale) and args.rate_scale > 0):
        raise UsageError(f"--rate-scale must be a finite number > 0, got {args.rate_scale}")
    if not (math.isfinite(args.wait) and args.wait >= 0):
        raise UsageError(f"--wait must be a finite number of seconds >= 0, got {args.wait}")
    reader = open_reader(args.input)
    conns = [c for c in reader.connections if args.topic is None or c.topic == args.topic]
    conns = [c for c in conns if c.msgtype in (IMAGE, COMPRESSED)]
    if not conns:
        reader.close()
        raise TopicError(f"no image topic {args.topic or ''} in {args.input}")

    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    rclpy.init(args=args.ros_args)
    node = rclpy.create_node("mastsam_bag_player")
    sent, conn = 0, conns[0]
    topic = args.remap or conn.topic
    try:
        with closing(reader):
            pkg, _, name = conn.msgtype.split("/")
            msg_class = getattr(importlib.import_module(f"{pkg}.msg"), name)
            pub = node.create_publisher(msg_class, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
            deadline = time.monotonic() + args.wait
            while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            if args.wait and pub.get_subscription_count():
                # Our side sees the subscriber before its side has matched us; a volatile reader misses whatever
                # is sent in between, so give discovery a moment to finish both ways.
                time.sleep(0.5)
            t_wall0 = t_bag0 = None
            for _, timestamp, raw in reader.messages(connections=[conn]):
                if t_bag0 is None:
                    t_wall0, t_bag0 = time.monotonic(), timestamp
                # Sleep until this message's recorded offset (scaled); never catch up by bursting.
                delay = t_wall0 + (timestamp - t_bag0) / 1e9 / args.rate_scale - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if not rclpy.ok():
                    break
                pub.publish(bytes(raw))  # raw CDR, exactly as recorded
                sent += 1
            time.sleep(0.2)  # let the last reliable message leave before the publisher goes away
        print(f"published {sent} messages on {topic}")
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):  # the usual way to stop playing
        print(f"stopped: published {sent} messages on {topic}")
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


# --- command line -------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mastsam-bag", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("from-images", help="image sequence -> ROS 2 bag with one sensor_msgs/Image topic")
    a.add_argument("dir", help="folder of images (jpg, png...), taken in sorted name order")
    a.add_argument("out", help="output bag folder (must not exist, unless --overwrite)")
    a.add_argument("--storage", choices=STORAGES, default="mcap")
    a.add_argument("--rate", type=float, default=30.0, help="frames per second of the stamps, > 0 (default 30)")
    a.add_argument("--topic", default="/camera/image_raw")
    a.add_argument("--frame-id", default="camera")
    a.add_argument("--start", type=float, default=1.0, help="stamp of the first frame, seconds >= 0 (default 1.0)")
    a.add_argument("--max-side", type=int, default=0, help="downscale so the longer side is at most this (0 = keep)")
    a.add_argument("--limit", type=int, default=0, help="only the first N images (0 = all)")
    a.add_argument("--max-input-pixels", type=int, default=MAX_INPUT_PIXELS,
                   help=f"larger images are read downscaled (a JPEG while decoding) or, if that cannot be done while "
                   f"decoding, skipped (default {MAX_INPUT_PIXELS})")
    a.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (once the new bag is complete)")
    a.set_defaults(func=from_images)

    b = sub.add_parser("process", help="run every frame of an image topic through the tracker into a new bag")
    b.add_argument("input", help="input bag folder")
    b.add_argument("output", help="output bag folder (must not exist, unless --overwrite)")
    b.add_argument("--topic", required=True, help="sensor_msgs/Image or CompressedImage topic to process")
    b.add_argument("--config", help="params file (config/tracker.yaml format); default: built-in defaults")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    b.add_argument("--storage", choices=STORAGES, help="output storage (default: the input's)")
    b.add_argument("--output-prefix", default="/tracker", help="namespace of the output topics (default /tracker)")
    b.add_argument("--no-copy-input", dest="copy_input", action="store_false", help="do not copy the input topic")
    b.add_argument("--pipeline", action="store_true",
                   help="prepare frames ahead in the stream's threads (same outputs; default: serial)")
    b.add_argument("--max-input-pixels", type=int, default=MAX_INPUT_PIXELS,
                   help=f"larger frames are tracked downscaled, a compressed one over it that cannot be reduced while "
                   f"decoding is skipped (default {MAX_INPUT_PIXELS}, the node's)")
    b.add_argument("--depth-topic", help="registered depth (16UC1 mm or 32FC1 m) for 3D objects")
    b.add_argument("--camera-info-topic", help="the colour camera's camera_info (with --depth-topic)")
    b.add_argument("--slop", type=float, default=0.05, help="largest image / depth / camera_info stamp gap, s")
    b.add_argument("--objects-jsonl", help="3D records, one JSON line per frame (default: OUTPUT.objects.jsonl)")
    b.add_argument("--extent-trim", type=float, default=0.0, help="bounds from the q and 1-q quantiles (default 0)")
    b.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT (and the objects file) if it exists, once the new one is complete")
    b.add_argument("-v", "--verbose", action="store_true")
    b.set_defaults(func=process)

    from mastsam_ros.cli import archives

    archives.add_parser(sub)  # process-many

    c = sub.add_parser("play", help="publish a bag's image topic over rclpy at its recorded rate")
    c.add_argument("input", help="bag folder")
    c.add_argument("--topic", help="image topic to play (default: the first image topic)")
    c.add_argument("--remap", help="publish on this topic instead of the recorded one")
    c.add_argument("--rate-scale", type=float, default=1.0, help="playback speed factor (2 = twice as fast)")
    c.add_argument("--wait", type=float, default=0.0, help="wait up to this many seconds for a subscriber first")
    c.set_defaults(func=play)
    return p


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) received: unwinds like Ctrl-C, so staged outputs are removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupted(signum, frame) -> None:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Anything after --ros-args belongs to rclpy (play only).
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    argv = argv[: len(argv) - len(ros_args)] if ros_args else argv
    args = build_parser().parse_args(argv)
    args.ros_args = ["mastsam-bag", *ros_args]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from rosbags.rosbag2 import ReaderError, WriterError

    from mastsam_ros.core.errors import MastSamError

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupted) if main_thread else None
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        log.error("interrupted by %s: unfinished outputs are not kept", signal.Signals(signum).name)
        return 128 + signum
    except BagError as e:
        log.error("%s", e)
        return e.exit_code
    except (MastSamError, FileNotFoundError, ReaderError) as e:  # config values, files, checkpoints, backends
        log.error("%s", e)
        return 2
    except (OSError, WriterError) as e:  # the file system failed the run (full disk, a folder removed underneath...)
        log.error("%s", e)
        return 1
    finally:
        if main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
