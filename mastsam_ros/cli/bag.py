"""``mastsam-bag``: ROS 2 bags without a ROS install (rosbags), and a player for machines without ``ros2 bag``.

- ``from-images DIR OUT``: an image sequence (sorted file names) -> a bag with one sensor_msgs/Image topic;
- ``process IN OUT --topic T``: every frame of an Image or CompressedImage topic through the core tracker, in order
  and deterministically, -> a bag with ``/tracker/labels`` (mono16) and ``/tracker/instances``
  (mastsam_ros/msg/InstanceArray), the same topics and types the node publishes, plus a copy of the input topic.
  The custom types are registered from msg/*.msg text, so neither this nor ``ros2 bag``/Foxglove reading the result
  needs our messages built;
- ``process ... --depth-topic D --camera-info-topic C``: also 3D instances (mastsam_ros/core/geometry.py) from a
  registered depth topic (16UC1 mm or 32FC1 m) and the colour camera's camera_info, each paired with the image of
  the nearest header stamp within ``--slop`` seconds: ``/tracker/objects`` (mastsam_ros/msg/Object3DArray) and
  one JSON line per frame in ``--objects-jsonl`` (default ``OUT.objects.jsonl``, beside the output bag). An image
  without a usable partner is tracked as usual and its 3D objects are skipped (logged and counted). The pairing
  lives in ``process_bag``; ``process-many`` does not offer the depth options yet (2D only);
- ``process-many INPUT... --output-dir OUT``: many bags, one job each, on Ray (mastsam_ros/cli/archives.py);
- ``play IN``: publishes a bag's image topic over rclpy at its recorded rate (needs rclpy; raw CDR is sent as is).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("mastsam-bag")

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
INSTANCES = "mastsam_ros/msg/InstanceArray"
OBJECTS = "mastsam_ros/msg/Object3DArray"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
MSG_DIR = Path(__file__).resolve().parents[2] / "msg"
BAG_VERSION = 8  # rosbag2 metadata version read by Jazzy and Kilted


def msg_definitions() -> dict[str, str]:
    """{type name: .msg text} of this package's messages, from msg/ in the source tree or the ament share dir."""
    candidates = [MSG_DIR]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("mastsam_ros")) / "msg")
    except Exception:  # noqa: BLE001 - no ament index (plain venv without ROS): the source tree is enough
        pass
    for d in candidates:
        files = sorted(d.glob("*.msg"))
        if files:
            return {f"mastsam_ros/msg/{f.stem}": f.read_text() for f in files}
    raise FileNotFoundError(f"mastsam_ros message definitions not found in {', '.join(map(str, candidates))}")


def typestore():
    """A rosbags typestore of ROS 2 Kilted's standard types plus mastsam_ros/msg/*."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for name, text in msg_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def bag_types(store):
    """conversions.MsgTypes backed by rosbags dataclasses (arrays as numpy, as rosbags serialises them)."""
    from mastsam_ros.node.conversions import MsgTypes

    t = store.types
    return MsgTypes(
        Image=t[IMAGE], RegionOfInterest=t["sensor_msgs/msg/RegionOfInterest"], Point32=t["geometry_msgs/msg/Point32"],
        Instance=t["mastsam_ros/msg/Instance"], InstanceArray=t[INSTANCES],
        bytes_field=lambda b: np.frombuffer(b, np.uint8), uint32_field=lambda v: np.asarray(v, np.uint32),
    )


def _storage(name: str):
    from rosbags.rosbag2 import StoragePlugin

    return {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[name]


# --- from-images --------------------------------------------------------------------------------------------------
def from_images(args) -> int:
    from rosbags.rosbag2 import Writer

    from mastsam_ros.cli.frames import list_images, read_rgb
    from mastsam_ros.core.matchers.flow import downscale
    from mastsam_ros.node.conversions import image_msg

    files = list_images(Path(args.dir))[: args.limit or None]
    store = typestore()
    T = bag_types(store)
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    period_ns = int(round(1e9 / args.rate))
    start_ns = int(args.start * 1e9)
    with Writer(args.out, version=BAG_VERSION, storage_plugin=_storage(args.storage)) as writer:
        conn = writer.add_connection(args.topic, IMAGE, typestore=store)
        written = 0
        for i, f in enumerate(files):
            rgb = read_rgb(f)
            if rgb is None:
                log.warning("skipping unreadable image %s", f)
                continue
            if args.max_side:
                rgb, _ = downscale(rgb, args.max_side)
            ns = start_ns + i * period_ns
            header = Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=args.frame_id)
            msg = image_msg(T, header, rgb)
            writer.write(conn, ns, store.serialize_cdr(msg, IMAGE))
            written += 1
    skipped = f", {len(files) - written} unreadable skipped" if written < len(files) else ""
    print(f"wrote {written} frames{skipped} to {args.out} ({args.topic}, {args.storage}, {args.rate:g} Hz)")
    return 0


# --- process ------------------------------------------------------------------------------------------------------
class TopicError(ValueError):
    """The bag has no usable image topic (the one asked for is missing or not an image type), or a depth /
    camera_info topic asked for is missing or of the wrong type."""


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _nearest(stamps: np.ndarray, t: int, slop_ns: int) -> int | None:
    """The stamp in sorted ``stamps`` nearest to ``t``, or None when none is within ``slop_ns``."""
    if len(stamps) == 0:
        return None
    i = int(np.searchsorted(stamps, t))
    best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(int(stamps[j]) - t))
    return int(stamps[best]) if abs(int(stamps[best]) - t) <= slop_ns else None


class DepthPairing:
    """Pairs each image of a bag with the depth and camera_info of nearest header stamp (within the slop).

    Pass 1 (:meth:`index`) reads only the partner topics' stamps; pass 2 holds just the partner messages some image
    still needs, and images until their partners have been read, so memory stays at a few messages.
    """

    def __init__(self, store, reader, depth_conns, info_conns, slop_s: float):
        self.store, self.slop_ns = store, int(round(slop_s * 1e9))
        self.depth_conns, self.info_conns = depth_conns, info_conns
        self.stamps = {}
        for name, conns in (("depth", depth_conns), ("info", info_conns)):
            found = [_stamp_ns(store.deserialize_cdr(raw, c.msgtype).header)
                     for c, _, raw in reader.messages(connections=conns)]
            self.stamps[name] = np.array(sorted(found), np.int64)
        self.held: dict[tuple[str, int], object] = {}
        self.needed: dict[tuple[str, int], int] = {}  # partner -> images still waiting for it

    def want(self, image_stamp: int) -> tuple[int | None, int | None]:
        """The partner stamps of an image (None: no partner within the slop); marks them as needed."""
        d, i = (_nearest(self.stamps[k], image_stamp, self.slop_ns) for k in ("depth", "info"))
        for key in (("depth", d), ("info", i)):
            if key[1] is not None:
                self.needed[key] = self.needed.get(key, 0) + 1
        return d, i

    def offer(self, kind: str, msg) -> None:
        key = (kind, _stamp_ns(msg.header))
        if key in self.needed:
            self.held[key] = msg

    def ready(self, partners) -> bool:
        d, i = partners
        return (d is None or ("depth", d) in self.held) and (i is None or ("info", i) in self.held)

    def take(self, partners):
        """(depth msg, info msg) or None when either is missing; releases what no other image needs."""
        out = []
        for kind, stamp in zip(("depth", "info"), partners):
            key = (kind, stamp)
            out.append(self.held.get(key))
            if stamp is not None:
                self.needed[key] -= 1
                if self.needed[key] == 0:
                    del self.needed[key]
                    self.held.pop(key, None)
        return None if out[0] is None or out[1] is None else tuple(out)


def process(args) -> int:
    from mastsam_ros.core.config import Config, parse_overrides
    from mastsam_ros.core.tracker import Tracker

    if bool(args.depth_topic) != bool(args.camera_info_topic):
        log.error("--depth-topic and --camera-info-topic go together (the depth needs the camera's intrinsics)")
        return 2
    overrides = parse_overrides(args.set)
    cfg = Config.from_yaml(args.config, overrides) if args.config else Config().update(overrides)
    stats: dict[str, Any] = {}
    try:
        n_ok, n_bad = process_bag(args, Tracker(cfg), stats=stats)
    except TopicError as e:
        log.error("%s", e)
        return 2
    print(f"processed {n_ok} frames ({n_bad} skipped) from {args.input}:{args.topic} into {args.output}")
    if "objects_jsonl" in stats:
        print(f"3D objects for {stats['frames_3d']} frames ({stats['frames_3d_skipped']} without: see warnings) "
              f"-> {stats['objects_jsonl']}")
    return 0 if n_ok else 1


def process_bag(args, tracker, on_frame=None, stats: dict | None = None) -> tuple[int, int]:
    """One bag through ``tracker`` (fresh: ids from 1) -> (frames written, frames skipped); the body of ``process``.

    ``args`` carries ``input``, ``output``, ``topic``, ``storage``, ``output_prefix``, ``copy_input``, ``verbose``
    (``process``'s options) and optionally the 3D ones ``depth_topic``, ``camera_info_topic``, ``slop``,
    ``objects_jsonl``, ``extent_trim`` (absent or None: 2D only, as ``process-many`` runs it); ``on_frame()`` is
    called after each frame written; ``stats``, when given, receives the 3D counts (``frames_3d``,
    ``frames_3d_skipped``, ``objects_jsonl``). Raises TopicError, and rosbags' ReaderError / WriterError for
    unreadable input or an existing output.
    """
    from rosbags.rosbag2 import Reader, Writer

    from mastsam_ros.core.errors import MastSamError
    from mastsam_ros.core.geometry import GeometryError, objects_from_depth
    from mastsam_ros.labels_io import LabelMapper
    from mastsam_ros.node.conversions import compressed_to_rgb, image_msg, image_to_rgb, instance_array_msg
    from mastsam_ros.node.depth import BadDepth, camera_info_intrinsics, check_depth, depth_to_array
    from mastsam_ros.node.objects import Types3D, object_array_msg

    depth_topic = getattr(args, "depth_topic", None)
    info_topic = getattr(args, "camera_info_topic", None)
    slop = getattr(args, "slop", 0.05)
    if bool(depth_topic) != bool(info_topic):
        raise ValueError("depth_topic and camera_info_topic go together (the depth needs the camera's intrinsics)")
    store = typestore()
    T = bag_types(store)
    mapper = LabelMapper()
    prefix = args.output_prefix.rstrip("/")
    n_ok = n_bad = n_3d = n_3d_skipped = 0
    with Reader(args.input) as reader:
        by_topic = {}
        for topic, types in ((args.topic, (IMAGE, COMPRESSED)), (depth_topic, (IMAGE,)), (info_topic, (CAMERA_INFO,))):
            if not topic:
                continue
            conns = [c for c in reader.connections if c.topic == topic]
            if not conns:
                topics = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections)
                raise TopicError(f"topic {topic} not in {args.input}; it has: {topics or 'no topics'}")
            if conns[0].msgtype not in types:
                raise TopicError(f"topic {topic} is {conns[0].msgtype}, not {' or '.join(types)}")
            by_topic[topic] = conns
        conns = by_topic[args.topic]
        pairing = jsonl_path = None
        if depth_topic:
            pairing = DepthPairing(store, reader, by_topic[depth_topic], by_topic[info_topic], slop)
            T3 = Types3D(Object3D=store.types["mastsam_ros/msg/Object3D"], Object3DArray=store.types[OBJECTS],
                         Point=store.types["geometry_msgs/msg/Point"], Vector3=store.types["geometry_msgs/msg/Vector3"])
            jsonl_path = Path(getattr(args, "objects_jsonl", None) or f"{str(args.output).rstrip('/')}.objects.jsonl")
        storage = args.storage or ("mcap" if any(Path(args.input).glob("*.mcap")) else "sqlite3")
        with Writer(args.output, version=BAG_VERSION, storage_plugin=_storage(storage)) as writer, \
                (open(jsonl_path, "w") if pairing else _NullFile()) as jsonl:
            out_in = writer.add_connection(args.topic, conns[0].msgtype, typestore=store) if args.copy_input else None
            out_labels = writer.add_connection(f"{prefix}/labels", IMAGE, typestore=store)
            out_inst = writer.add_connection(f"{prefix}/instances", INSTANCES, typestore=store)
            out_obj = writer.add_connection(f"{prefix}/objects", OBJECTS, typestore=store) if pairing else None

            def track(conn, timestamp, msg, partners):
                nonlocal n_ok, n_bad, n_3d, n_3d_skipped
                found = pairing.take(partners) if pairing else None  # released even when the image is bad
                try:
                    rgb = compressed_to_rgb(msg) if conn.msgtype == COMPRESSED else image_to_rgb(msg)
                    result = tracker.step(rgb)
                except MastSamError as e:  # BadImage (the conversions) or the tracker refusing a frame
                    n_bad += 1
                    log.warning("skipping the message at %d ns: %s", timestamp, e)
                    return
                if result.reset:
                    mapper.reset()
                labels16, label_of = mapper.assign(result)
                writer.write(out_labels, timestamp, store.serialize_cdr(image_msg(T, msg.header, labels16), IMAGE))
                inst = instance_array_msg(T, msg.header, result, label_of)
                writer.write(out_inst, timestamp, store.serialize_cdr(inst, INSTANCES))
                n_ok += 1
                if on_frame is not None:
                    on_frame()
                if args.verbose:
                    print(f"frame {result.index}: {len(result.tracks)} tracks, {result.timings.get('total', 0):.0f} ms")
                if pairing is None:
                    return
                try:
                    if found is None:
                        raise BadDepth("depth_unsynced", f"no depth and camera_info within {slop} s")
                    depth, info = found
                    check_depth(depth, msg)
                    h, w = result.labels.shape
                    objs = objects_from_depth(result.labels, depth_to_array(depth), camera_info_intrinsics(info, w, h),
                                              [t.id for t in result.tracks], getattr(args, "extent_trim", 0.0))
                except (BadDepth, GeometryError) as e:
                    n_3d_skipped += 1
                    log.warning("no 3D objects for the image at %d ns: %s", timestamp, e)
                    return
                out = object_array_msg(T3, msg.header, result.index, objs, label_of, "depth")
                writer.write(out_obj, timestamp, store.serialize_cdr(out, OBJECTS))
                jsonl.write(json.dumps({"stamp_ns": _stamp_ns(msg.header), "index": result.index,
                                        "objects": [o.as_dict() for o in objs]}) + "\n")
                n_3d += 1

            waiting: list = []  # images (in bag order) whose partners have not all been read yet
            partner_topics = {depth_topic: "depth", info_topic: "info"} if pairing else {}
            read = [*conns, *(pairing.depth_conns + pairing.info_conns if pairing else [])]
            for conn, timestamp, raw in reader.messages(connections=read):
                msg = store.deserialize_cdr(raw, conn.msgtype)
                if conn.topic in partner_topics:
                    pairing.offer(partner_topics[conn.topic], msg)
                else:
                    if out_in is not None:
                        writer.write(out_in, timestamp, raw)
                    partners = pairing.want(_stamp_ns(msg.header)) if pairing else None
                    waiting.append((conn, timestamp, msg, partners))
                while waiting and (pairing is None or pairing.ready(waiting[0][3])):
                    track(*waiting.pop(0))
            for item in waiting:  # partners indexed but never read back: cannot happen with a consistent bag
                track(*item)
    if stats is not None and pairing is not None:
        stats.update(frames_3d=n_3d, frames_3d_skipped=n_3d_skipped, objects_jsonl=str(jsonl_path))
    return n_ok, n_bad


class _NullFile:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --- play ---------------------------------------------------------------------------------------------------------
def play(args) -> int:
    import importlib

    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.rosbag2 import Reader

    rclpy.init(args=args.ros_args)
    node = rclpy.create_node("mastsam_bag_player")
    sent = 0
    try:
        with Reader(args.input) as reader:
            conns = [c for c in reader.connections if args.topic is None or c.topic == args.topic]
            conns = [c for c in conns if c.msgtype in (IMAGE, COMPRESSED)]
            if not conns:
                node.get_logger().error(f"no image topic {args.topic or ''} in {args.input}")
                return 2
            conn = conns[0]
            pkg, _, name = conn.msgtype.split("/")
            msg_class = getattr(importlib.import_module(f"{pkg}.msg"), name)
            topic = args.remap or conn.topic
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
    except (KeyboardInterrupt, ExternalShutdownException):
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
    a.add_argument("out", help="output bag folder (must not exist)")
    a.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    a.add_argument("--rate", type=float, default=30.0, help="frames per second of the stamps (default 30)")
    a.add_argument("--topic", default="/camera/image_raw")
    a.add_argument("--frame-id", default="camera")
    a.add_argument("--start", type=float, default=1.0, help="stamp of the first frame, seconds (default 1.0)")
    a.add_argument("--max-side", type=int, default=0, help="downscale so the longer side is at most this (0 = keep)")
    a.add_argument("--limit", type=int, default=0, help="only the first N images (0 = all)")
    a.set_defaults(func=from_images)

    b = sub.add_parser("process", help="run every frame of an image topic through the tracker into a new bag")
    b.add_argument("input", help="input bag folder")
    b.add_argument("output", help="output bag folder (must not exist)")
    b.add_argument("--topic", required=True, help="sensor_msgs/Image or CompressedImage topic to process")
    b.add_argument("--config", help="params file (config/tracker.yaml format); default: built-in defaults")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    b.add_argument("--storage", choices=("mcap", "sqlite3"), help="output storage (default: the input's)")
    b.add_argument("--output-prefix", default="/tracker", help="namespace of the output topics (default /tracker)")
    b.add_argument("--no-copy-input", dest="copy_input", action="store_false", help="do not copy the input topic")
    b.add_argument("--depth-topic", help="registered depth (16UC1 mm or 32FC1 m) for 3D objects")
    b.add_argument("--camera-info-topic", help="the colour camera's camera_info (with --depth-topic)")
    b.add_argument("--slop", type=float, default=0.05, help="largest image / depth / camera_info stamp gap, s")
    b.add_argument("--objects-jsonl", help="3D records, one JSON line per frame (default: OUTPUT.objects.jsonl)")
    b.add_argument("--extent-trim", type=float, default=0.0, help="bounds from the q and 1-q quantiles (default 0)")
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

    try:
        return args.func(args)
    except (MastSamError, ReaderError, WriterError, FileNotFoundError, FileExistsError) as e:
        log.error("%s", e)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
