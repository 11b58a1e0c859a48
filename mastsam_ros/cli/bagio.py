"""The bag library of ``mastsam-bag`` (:mod:`mastsam_ros.cli.bag`) and ``process-many``
(:mod:`mastsam_ros.cli.archives`): topic and type names, the rosbags typestore with this package's messages, the
errors and their exit codes, staged output (a bag appears only complete), the image / depth / camera_info pairing and
:func:`process_bag`, one bag through the stream (:class:`~mastsam_ros.core.stream.Stream`). No ROS install needed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from mastsam_ros.core.decode import MAX_INPUT_PIXELS
from mastsam_ros.node.conversions import stamp_ns

log = logging.getLogger("mastsam-bag")

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
INSTANCES = "mastsam_ros/msg/InstanceArray"
OBJECTS = "mastsam_ros/msg/Object3DArray"
EVENTS = "mastsam_ros/msg/TrackEventArray"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
MSG_DIR = Path(__file__).resolve().parents[2] / "msg"
BAG_VERSION = 8  # rosbag2 metadata version read by Jazzy and Kilted
STORAGES = ("mcap", "sqlite3")


# --- errors: one line for the user, and an exit code ----------------------------------------------------------------
class BagError(Exception):
    """A run that failed (nothing usable written): its message is the one line shown, exit code 1."""

    exit_code = 1


class UsageError(BagError):
    """A user mistake found before any output is touched (bad option, unreadable input, existing output): exit 2."""

    exit_code = 2


class TopicError(UsageError, ValueError):
    """The bag has no usable image topic (the one asked for is missing or not an image type), or a depth /
    camera_info topic asked for is missing or of the wrong type."""


class OutputError(UsageError):
    """The output exists already (without ``--overwrite``), or cannot be written where it is asked for."""


# --- types --------------------------------------------------------------------------------------------------------
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
        TrackEvent=t["mastsam_ros/msg/TrackEvent"], TrackEventArray=t[EVENTS],
        bytes_field=lambda b: np.frombuffer(b, np.uint8), uint32_field=lambda v: np.asarray(v, np.uint32),
    )


def storage_plugin(name: str):
    from rosbags.rosbag2 import StoragePlugin

    return {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[name]


def open_reader(path: str | Path):
    """An open rosbags Reader of ``path``; :class:`UsageError` naming the bag when it is missing or unreadable."""
    from rosbags.rosbag2 import Reader, ReaderError

    if not Path(path).is_dir():
        raise UsageError(f"no bag folder at {path}")
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError) as e:
        raise UsageError(f"cannot read the bag {path}: {e}") from None
    return reader


def image_topic(reader, wanted: str | None) -> tuple[str, int]:
    """(topic, message count) of the image topic to process in an open Reader: ``wanted``, or else the first
    Image / CompressedImage topic by name; raises :class:`TopicError` listing the bag's topics."""
    images = [c for c in reader.connections if c.msgtype in (IMAGE, COMPRESSED)]
    if wanted is not None:
        images = [c for c in images if c.topic == wanted]
    if not images:
        have = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections) or "no topics"
        what = f"image topic {wanted}" if wanted else f"{IMAGE} or {COMPRESSED} topic"
        raise TopicError(f"no {what}; the bag has: {have}")
    topic = sorted({c.topic for c in images})[0]
    return topic, sum(c.msgcount for c in images if c.topic == topic)


# --- output that appears only complete ----------------------------------------------------------------------------
def check_output(path: str | Path, overwrite: bool = False) -> None:
    """Refuse (:class:`OutputError`) an output that exists (unless ``overwrite``) or whose folder cannot be written."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputError(f"{path} exists already (--overwrite replaces it)")
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {parent} is not writable")


def check_apart(source: str | Path, output: str | Path) -> None:
    """Refuse (:class:`UsageError`) an output that is the input, lies inside it or holds it (``--overwrite`` would
    remove the input)."""
    src, out = Path(source).resolve(), Path(output).resolve()
    if out == src or src in out.parents or out in src.parents:
        raise UsageError(f"the output {output} must lie outside the input {source}, and not hold it")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def staged(final: str | Path, staging: str | Path | None = None, replace: bool = False) -> Iterator[Path]:
    """Write ``final`` (a bag folder or a file) under another name and move it into place only when complete.

    Yields the path to write: ``STAGING/<final's name>``, so a bag's storage file already has its final name. When
    the block ends without an exception it is renamed to ``final`` (atomic on one file system; with ``replace`` an
    existing ``final`` is removed just before); otherwise it is removed, so a failed or interrupted run leaves
    nothing. ``staging``: a folder on ``final``'s file system, kept (``process-many``'s ``OUT/.partial``); default
    ``<final>.partial-<pid>`` beside it, made here and removed afterwards.
    """
    final = Path(os.path.abspath(final))
    own = staging is None
    folder = final.with_name(f"{final.name}.partial-{os.getpid()}") if own else Path(staging)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / final.name
    _remove(path)  # what an earlier, interrupted attempt left
    try:
        yield path
        if replace and (final.exists() or final.is_symlink()):
            _remove(final)
        os.rename(path, final)
    finally:
        _remove(path)
        if own:
            try:
                folder.rmdir()
            except OSError:
                pass


# --- pairing images with depth and camera_info --------------------------------------------------------------------
def _nearest(stamps: np.ndarray, t: int, slop_ns: int) -> int | None:
    """The stamp in sorted ``stamps`` nearest to ``t``, or None when none is within ``slop_ns``."""
    if len(stamps) == 0:
        return None
    i = int(np.searchsorted(stamps, t))
    best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(int(stamps[j]) - t))
    return int(stamps[best]) if abs(int(stamps[best]) - t) <= slop_ns else None


class DepthPairing:
    """Pairs each image of a bag with the depth and camera_info of nearest header stamp (within the slop).

    Pass 1 (the constructor) reads only the partner topics' stamps; pass 2 holds just the partner messages some image
    still needs, and images until their partners have been read, so memory stays at a few messages.
    """

    def __init__(self, store, reader, depth_conns, info_conns, slop_s: float):
        self.slop_ns = int(round(slop_s * 1e9))
        self.depth_conns, self.info_conns = depth_conns, info_conns
        self.stamps = {}
        for name, conns in (("depth", depth_conns), ("info", info_conns)):
            found = [stamp_ns(store.deserialize_cdr(raw, c.msgtype).header)
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
        key = (kind, stamp_ns(msg.header))
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


# --- process ------------------------------------------------------------------------------------------------------
@dataclass
class ProcessOptions:
    """What :func:`process_bag` does with one bag (``mastsam-bag process``'s options)."""

    input: str | Path  # input bag folder
    output: str | Path  # output bag folder (must not exist unless ``overwrite``)
    topic: str  # sensor_msgs/Image or CompressedImage topic to track
    storage: str | None = None  # "mcap" or "sqlite3"; None: the input's
    output_prefix: str = "/tracker"  # namespace of the output topics
    copy_input: bool = True  # copy the input topic into the output bag
    depth_topic: str | None = None  # registered depth (16UC1 mm or 32FC1 m): 3D objects (with camera_info_topic)
    camera_info_topic: str | None = None
    slop: float = 0.05  # largest image / depth / camera_info stamp gap, seconds
    objects_jsonl: str | Path | None = None  # 3D records (default with depth: OUTPUT.objects.jsonl)
    extent_trim: float = 0.0  # the objects' bounds from the q and 1-q quantiles
    pipeline: bool = False  # the stream prepares frames ahead (three threads); default serial
    max_input_pixels: int | None = MAX_INPUT_PIXELS  # larger frames are downscaled or refused (None: no bound)
    overwrite: bool = False  # replace an existing output (once the new one is complete)
    staging: str | Path | None = None  # see :func:`staged` (default: OUTPUT.partial-<pid> beside the output)
    verbose: bool = False  # a line per frame on stdout

    @property
    def jsonl_path(self) -> Path | None:
        if not self.depth_topic:
            return None
        return Path(self.objects_jsonl or f"{str(self.output).rstrip('/')}.objects.jsonl")

    def check(self) -> None:
        """Raise :class:`UsageError` for options that cannot work together."""
        if bool(self.depth_topic) != bool(self.camera_info_topic):
            raise UsageError("--depth-topic and --camera-info-topic go together (the depth needs the camera's "
                             "intrinsics)")
        if not (math.isfinite(self.slop) and self.slop >= 0):
            raise UsageError(f"--slop must be a finite number of seconds >= 0, got {self.slop}")
        if not 0.0 <= self.extent_trim < 0.5:
            raise UsageError(f"--extent-trim must be in [0, 0.5), got {self.extent_trim}")
        if self.max_input_pixels is not None and self.max_input_pixels <= 0:
            raise UsageError(f"--max-input-pixels must be > 0, got {self.max_input_pixels}")
        if self.storage not in (None, *STORAGES):
            raise UsageError(f"storage must be one of {', '.join(STORAGES)}, got {self.storage}")
        check_apart(self.input, self.output)
        if self.jsonl_path is not None:
            check_apart(self.input, self.jsonl_path)


@dataclass
class BagResult:
    """What :func:`process_bag` wrote."""

    frames: int  # frames tracked and written
    skipped: int  # frames the stream refused (undecodable, bad encoding, too small): logged and counted
    skipped_by_kind: Counter = field(default_factory=Counter)
    downscaled: int = 0  # frames over ``max_input_pixels`` tracked at a smaller size
    frames_3d: int = 0  # frames with 3D objects
    frames_3d_skipped: int = 0  # frames without (no partner within the slop, bad depth or camera_info)
    objects_jsonl: str | None = None


@dataclass
class _Frame:
    """One image message on its way through the stream (the stream's payload)."""

    timestamp: int
    raw: Any  # its CDR bytes, copied as they are
    msg: Any
    compressed: bool
    partners: tuple | None  # (depth msg, camera_info msg), or None when either has no partner within the slop
    size: tuple[int, int] | None = None  # (width, height) before any downscaling, set when decoded


class _Decoder:
    """The stream's ``decode`` for a bag's images, within ``max_pixels`` (None: no bound), as the node bounds them: a
    CompressedImage's size is read from its header before it is decoded (a JPEG is reduced while decoding, another
    format over the bound refused: ``too_large``), a raw Image converted and then downscaled. Raises BadImage."""

    def __init__(self, max_pixels: int | None):
        self.max_pixels = max_pixels
        self.downscaled = 0  # written by the decoding thread only; read once the stream has finished

    def __call__(self, f: _Frame) -> np.ndarray:
        from mastsam_ros.core.decode import decode_image, downscale_to, fit_pixels
        from mastsam_ros.node.conversions import image_to_rgb

        if f.compressed:
            rgb, small, f.size = decode_image(bytes(f.msg.data), self.max_pixels)
        else:
            rgb = image_to_rgb(f.msg)
            f.size = (rgb.shape[1], rgb.shape[0])
            small = self.max_pixels is not None and f.size[0] * f.size[1] > self.max_pixels
            if small:
                rgb = downscale_to(rgb, fit_pixels(*f.size, self.max_pixels))
        if small:
            self.downscaled += 1
            (log.info if self.downscaled == 1 else log.debug)(
                "the image at %d ns (%dx%d) is over --max-input-pixels=%d: tracked at %dx%d", f.timestamp, *f.size,
                self.max_pixels, rgb.shape[1], rgb.shape[0])
        return rgb


def _topics(reader, opts: ProcessOptions) -> dict[str, list]:
    """{topic: connections} of the image, depth and camera_info topics; :class:`TopicError` when one is missing or of
    the wrong type."""
    by_topic = {}
    for topic, types in ((opts.topic, (IMAGE, COMPRESSED)), (opts.depth_topic, (IMAGE,)),
                         (opts.camera_info_topic, (CAMERA_INFO,))):
        if not topic:
            continue
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            topics = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections)
            raise TopicError(f"topic {topic} not in {opts.input}; it has: {topics or 'no topics'}")
        if conns[0].msgtype not in types:
            raise TopicError(f"topic {topic} is {conns[0].msgtype}, not {' or '.join(types)}")
        by_topic[topic] = conns
    return by_topic


def check_inputs(opts: ProcessOptions) -> None:
    """What :func:`process_bag` checks before it touches any output (options, the input bag and its topics, the
    outputs), without reading a frame: for a front end to call before it builds a tracker."""
    opts.check()
    with closing(open_reader(opts.input)) as reader:
        _topics(reader, opts)
    if opts.jsonl_path is not None:
        check_output(opts.jsonl_path, opts.overwrite)
    check_output(opts.output, opts.overwrite)


def process_bag(opts: ProcessOptions, tracker, on_frame: Callable[[], None] | None = None) -> BagResult:
    """One bag through ``tracker`` (fresh: ids from 1) -> a new bag with ``<prefix>/labels`` (mono16),
    ``<prefix>/instances`` and, with depth, ``<prefix>/objects`` plus the 3D records as JSON lines; each message at
    the input's timestamp with its header. Frames go through the stream (decoding in its first stage, 3D objects from
    the paired depth); a frame the stream refuses is skipped and counted.

    Checks everything (options, input, topics, output) before any output is touched; writes through :func:`staged`,
    so the output appears only complete. ``on_frame()`` is called after each frame written. Raises
    :class:`UsageError` (bad options, unreadable input, missing topic, existing output) or :class:`BagError` (no frame
    could be tracked; a frame failed otherwise than by being refused): then nothing is left behind.
    """
    from rosbags.rosbag2 import ReaderError

    opts.check()
    with closing(open_reader(opts.input)) as reader:
        try:
            return _process(opts, tracker, on_frame, reader)
        except ReaderError as e:  # a bag whose index opened but whose data is damaged
            raise BagError(f"reading {opts.input} failed: {e}: no output written") from None


def _process(opts: ProcessOptions, tracker, on_frame, reader) -> BagResult:
    from rosbags.rosbag2 import Writer

    from mastsam_ros.core.errors import MastSamError
    from mastsam_ros.core.stream import Depth, Stream, error_kind
    from mastsam_ros.node.conversions import events_msg, image_msg, instance_array_msg
    from mastsam_ros.node.depth import BadDepth, camera_info_intrinsics, check_depth, depth_to_array
    from mastsam_ros.node.objects import Types3D, object_array_msg

    store = typestore()
    T = bag_types(store)
    prefix = opts.output_prefix.rstrip("/")
    result = BagResult(0, 0)
    by_topic = _topics(reader, opts)
    conns = by_topic[opts.topic]
    pairing = None
    jsonl_path = opts.jsonl_path
    if opts.depth_topic:
        pairing = DepthPairing(store, reader, by_topic[opts.depth_topic], by_topic[opts.camera_info_topic],
                               opts.slop)
        T3 = Types3D(Object3D=store.types["mastsam_ros/msg/Object3D"], Object3DArray=store.types[OBJECTS],
                     Point=store.types["geometry_msgs/msg/Point"], Vector3=store.types["geometry_msgs/msg/Vector3"])
        check_output(jsonl_path, opts.overwrite)
    check_output(opts.output, opts.overwrite)
    storage = opts.storage or ("mcap" if any(Path(opts.input).glob("*.mcap")) else "sqlite3")

    def frames() -> Iterator[_Frame]:
        """The image messages in bag order, each once its depth partners have been read."""
        waiting: deque = deque()
        partner_topics = {opts.depth_topic: "depth", opts.camera_info_topic: "info"} if pairing else {}
        read = [*conns, *(pairing.depth_conns + pairing.info_conns if pairing else [])]
        for conn, timestamp, raw in reader.messages(connections=read):
            try:
                msg = store.deserialize_cdr(raw, conn.msgtype)
            except Exception as e:  # noqa: BLE001 - a corrupt message: skipped and counted, as a bad image
                log.warning("skipping the undecodable %s message at %d ns: %s", conn.topic, timestamp, e)
                if conn.topic == opts.topic:
                    result.skipped += 1
                    result.skipped_by_kind["bad_message"] += 1
                continue
            if conn.topic in partner_topics:
                pairing.offer(partner_topics[conn.topic], msg)
                continue
            partners = pairing.want(stamp_ns(msg.header)) if pairing else None
            waiting.append(_Frame(timestamp, raw, msg, conn.msgtype == COMPRESSED, partners))
            while waiting and (pairing is None or pairing.ready(waiting[0].partners)):
                yield _take(waiting.popleft())
        while waiting:  # partners indexed but never read back: cannot happen with a consistent bag
            yield _take(waiting.popleft())

    def _take(f: _Frame) -> _Frame:
        f.partners = pairing.take(f.partners) if pairing else None  # released even when the image is bad
        return f

    decoder = _Decoder(opts.max_input_pixels)

    def depth(f: _Frame, frame: np.ndarray) -> Depth:
        if f.partners is None:
            raise BadDepth("depth_unsynced", f"no depth and camera_info within {opts.slop} s")
        depth_msg, info = f.partners
        w, h = f.size  # the image's own size: a downscaled frame's 3D points are brought to its size
        check_depth(depth_msg, SimpleNamespace(height=h, width=w))
        return Depth(depth_to_array(depth_msg), camera_info_intrinsics(info, w, h))

    with staged(opts.output, opts.staging, opts.overwrite) as bag_path, \
            (staged(jsonl_path, replace=opts.overwrite) if pairing else nullcontext()) as jsonl_stage, \
            Writer(bag_path, version=BAG_VERSION, storage_plugin=storage_plugin(storage)) as writer, \
            (open(jsonl_stage, "w") if pairing else nullcontext()) as jsonl, \
            Stream(tracker, decode=decoder, depth=depth if pairing else None, trim=opts.extent_trim,
                   ahead=opts.pipeline, name="mastsam-bag") as stream:
        out_in = writer.add_connection(opts.topic, conns[0].msgtype, typestore=store) if opts.copy_input else None
        out_labels = writer.add_connection(f"{prefix}/labels", IMAGE, typestore=store)
        out_inst = writer.add_connection(f"{prefix}/instances", INSTANCES, typestore=store)
        out_events = writer.add_connection(f"{prefix}/events", EVENTS, typestore=store)
        out_obj = writer.add_connection(f"{prefix}/objects", OBJECTS, typestore=store) if pairing else None
        with closing(stream.run(frames())) as outcomes:
            for out in outcomes:
                f = out.payload
                if out_in is not None:
                    writer.write(out_in, f.timestamp, f.raw)
                if out.error is not None:
                    if not isinstance(out.error, MastSamError):
                        raise BagError(f"the image at {f.timestamp} ns failed: {type(out.error).__name__}: "
                                       f"{out.error}") from out.error
                    result.skipped += 1
                    result.skipped_by_kind[error_kind(out.error)] += 1
                    log.warning("skipping the image at %d ns: %s", f.timestamp, out.error)
                    continue
                r = out.result
                writer.write(out_labels, f.timestamp,
                             store.serialize_cdr(image_msg(T, f.msg.header, out.labels), IMAGE))
                inst = instance_array_msg(T, f.msg.header, r, out.label_of)
                writer.write(out_inst, f.timestamp, store.serialize_cdr(inst, INSTANCES))
                if r.events or r.cut:  # as the node's ~/events: only frames where something happened
                    events = events_msg(T, f.msg.header, r)
                    writer.write(out_events, f.timestamp, store.serialize_cdr(events, EVENTS))
                result.frames += 1
                if on_frame is not None:
                    on_frame()
                if opts.verbose:
                    print(f"frame {r.index}: {len(r.tracks)} tracks, {r.timings.get('total', 0):.0f} ms",
                          flush=True)
                if pairing is None:
                    continue
                if out.objects is None:
                    result.frames_3d_skipped += 1
                    log.warning("no 3D objects for the image at %d ns: %s", f.timestamp, out.objects_error)
                    continue
                objs = object_array_msg(T3, f.msg.header, r.index, out.objects, out.label_of, "depth")
                writer.write(out_obj, f.timestamp, store.serialize_cdr(objs, OBJECTS))
                jsonl.write(json_line(stamp_ns(f.msg.header), r.index, out.objects) + "\n")
                result.frames_3d += 1
        result.downscaled = decoder.downscaled
        if result.frames == 0:
            raise BagError(f"no frame of {opts.topic} in {opts.input} could be tracked ({result.skipped} "
                           f"skipped{_kinds(result.skipped_by_kind)}): no output written")
    if pairing is not None:
        result.objects_jsonl = str(jsonl_path)
    return result


def json_line(stamp: int, index: int, objects) -> str:
    """One line of the objects file: the image's stamp, the frame index and its 3D objects."""
    return json.dumps({"stamp_ns": stamp, "index": index, "objects": [o.as_dict() for o in objects]})


def _kinds(by_kind: Counter) -> str:
    return ": " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())) if by_kind else ""
