"""The tracker node's 3D side: parameters ``node.depth.*`` and ``node.objects.*``, the synchronised depth input, and
the ``~/objects``, ``~/markers`` and ``~/points`` outputs. The stream (mastsam_ros/core/stream.py) computes the 3D
objects; this module tells it where the points come from, subscribes, turns ``Outcome.objects`` into messages and
counts.

Sources of 3D points, per frame (fixed at configure):
- ``depth``: ``node.depth.enabled``: ``image``, ``depth`` and ``camera_info`` paired by message_filters
  (:class:`mastsam_ros.node.depth.SyncedInput`); the stream gets a ``depth(payload, frame)`` callable that turns the
  frame's depth and camera_info messages into a :class:`~mastsam_ros.core.stream.Depth`;
- ``pointmap``: ``node.objects.pointmap`` without depth: the matcher's own point map (``matcher.backend: mast3r``);
- neither: no 3D outputs (the node is the 2D tracker it always was).

Bad depth input (wrong encoding, size mismatch, short data, a bad or absent camera_info, stamps that never pair) is
a counted, logged skip of that frame's 3D outputs; the frame's 2D outputs are published as usual.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from mastsam_ros.core.config import config_field as _param
from mastsam_ros.core.config import validate
from mastsam_ros.core.geometry import labelled_points
from mastsam_ros.core.stream import Depth, Outcome
from mastsam_ros.node.depth import (
    BadDepth, SyncedInput, camera_info_intrinsics, check_depth, depth_to_array, message_filters_module,
)
from mastsam_ros.node.objects import marker_array_msg, object_array_msg, pointcloud_msg, rclpy_types_3d

THROTTLE_S = 5.0


@dataclass
class DepthSection:
    """``node.depth.*``: the synchronised depth input."""

    enabled: bool = _param(
        False, "Subscribe depth (16UC1 mm or 32FC1 m, registered to the image) and camera_info, paired with the image"
        " by message_filters' ApproximateTimeSynchronizer; publishes ~/objects and ~/markers.", read_only=True,
    )
    slop: float = _param(0.05, "Largest stamp difference (s) between an image and its depth / camera_info.",
                         range=(0.0, 5.0), read_only=True)
    queue_size: int = _param(10, "Messages per topic the synchroniser keeps while looking for partners.",
                             range=(1, 100), read_only=True)
    wait: float = _param(0.5, "Seconds an image waits for its partners; after that it is tracked without 3D objects"
                         " (counted as depth_unsynced).", range=(0.05, 10.0), read_only=True)


@dataclass
class ObjectsSection:
    """``node.objects.*``: the 3D outputs."""

    pointmap: bool = _param(
        False, "Without depth input: 3D objects from the matcher's predicted point map (matcher.backend mast3r;"
        " camera-relative, metric only as far as the model is).", read_only=True,
    )
    pointmap_min_conf: float = _param(1.5, "Point map pixels below this model confidence are invalid (MASt3R: >= 1).",
                                      range=(0.0, 1000.0))
    extent_trim: float = _param(0.0, "Bounds are the q and 1-q quantiles per axis instead of min / max (0 = min/max).",
                                range=(0.0, 0.49))
    publish_points: bool = _param(False, "Also publish ~/points, a labelled PointCloud2 (x y z rgb id).")
    points_stride: int = _param(4, "~/points takes every n-th pixel row and column.", range=(1, 64))


def _sections():
    for prefix, section in (("node.depth", DepthSection()), ("node.objects", ObjectsSection())):
        for f in dataclasses.fields(section):
            yield prefix, section, f


class Spatial:
    """Declares its parameters on ``node`` and owns the 3D inputs and outputs (see the module docstring)."""

    def __init__(self, node, descriptor) -> None:
        self.node = node
        self.depth = DepthSection()
        self.objects = ObjectsSection()
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self._previous: dict[str, int] = {}
        for prefix, _, f in _sections():
            name = f"{prefix}.{f.name}"
            value = validate(name, f, node.declare_parameter(name, f.default, descriptor(name, f)).value)
            setattr(self.depth if prefix == "node.depth" else self.objects, f.name, value)
        self.message_filters, self.unavailable = (None, None)
        if self.depth.enabled:
            self.message_filters, self.unavailable = message_filters_module()
            if self.message_filters is None:
                node.get_logger().error(
                    "node.depth.enabled is true but message_filters does not import "
                    f"({self.unavailable}; it comes with a ROS 2 install): depth input disabled, tracking the image "
                    "alone, no ~/objects or ~/markers")
        self.sync: SyncedInput | None = None
        self.source: str | None = None  # "depth", "pointmap" or None (no 3D outputs): decided at configure
        self._T = None
        self._pubs: dict[str, Any] = {}
        self._warned_no_pointmap = False

    # --- parameters -------------------------------------------------------------------------------------------
    def names(self) -> dict[str, dataclasses.Field]:
        return {f"{p}.{f.name}": f for p, _, f in _sections()}

    def set_parameter(self, name: str, value) -> None:
        """A validated run-time change (the node's parameter callback validates with :func:`validate` first)."""
        prefix, _, key = name.rpartition(".")
        setattr(self.depth if prefix == "node.depth" else self.objects, key, value)

    # --- wiring -----------------------------------------------------------------------------------------------
    @property
    def depth_input(self) -> bool:
        """True when the image comes through the synchronised input instead of a plain subscription."""
        return self.depth.enabled and self.message_filters is not None

    def configure(self, matcher, msgs_module, qos, create_publisher: Callable) -> None:
        """Decide the source of 3D points for the tracker's ``matcher`` and create the 3D publishers (with
        ``create_publisher(type, topic, qos)``) when there is one."""
        if self.depth_input:
            self.source = "depth"
        elif self.objects.pointmap and self._matcher_has_points(matcher):
            self.source = "pointmap"
        else:
            self.source = None
            return
        self._T = T = rclpy_types_3d(msgs_module)
        self._pubs = {
            "objects": create_publisher(T.Object3DArray, "~/objects", qos),
            "markers": create_publisher(T.MarkerArray, "~/markers", qos),
            "points": create_publisher(T.PointCloud2, "~/points", qos),
        }

    def _matcher_has_points(self, matcher) -> bool:
        from mastsam_ros.core.matchers.base import Matcher  # noqa: PLC0415

        has = type(matcher).point_map is not Matcher.point_map
        if not has and not self._warned_no_pointmap:
            self._warned_no_pointmap = True
            self.node.get_logger().error(
                f"node.objects.pointmap is true but the matcher {getattr(matcher, 'name', '?')} predicts no 3D points"
                " (use matcher.backend mast3r, or a depth input): no ~/objects")
        return has

    def stream_options(self) -> dict[str, Any]:
        """The :class:`~mastsam_ros.core.stream.Stream`'s 3D keyword arguments for the configured source."""
        if self.source == "depth":
            return {"depth": self.depth_of, "trim": self.objects.extent_trim}
        if self.source == "pointmap":
            return {"pointmap_min_conf": self.objects.pointmap_min_conf, "trim": self.objects.extent_trim}
        return {}

    @staticmethod
    def depth_of(payload, frame) -> Depth | None:
        """The stream's decoding thread: the frame's :class:`Depth` from its checked (depth, camera_info) messages,
        None when it came without (unsynced or bad depth, counted where that was found). Raises :class:`BadDepth`."""
        _, extra = payload
        if extra is None:
            return None
        depth_msg, info = extra
        return Depth(depth_to_array(depth_msg), camera_info_intrinsics(info, depth_msg.width, depth_msg.height))

    def destroy_publishers(self, destroy_publisher: Callable) -> None:
        for pub in self._pubs.values():
            destroy_publisher(pub)
        self._pubs = {}
        self.source = None

    def subscribe(self, on_frame, in_qos, image_events=None) -> None:
        """Create the synchronised input; ``on_frame(image, depth | None, info | None)`` gets every image;
        ``image_events``: the image subscription's event callbacks (rclpy SubscriptionEventCallbacks) or None."""
        self.sync = SyncedInput(self.node, self.message_filters, on_frame, self.count, qos=in_qos,
                                slop=self.depth.slop, queue_size=self.depth.queue_size, wait=self.depth.wait,
                                image_events=image_events)
        self.node.get_logger().info(
            f"depth input: {', '.join(self.sync.topics)} paired within {self.depth.slop} s")

    def unsubscribe(self) -> None:
        if self.sync is None:
            return
        for s in self.sync.subs:
            self.node.destroy_subscription(s.sub)
        self.node.destroy_timer(self.sync.timer)
        self.sync = None

    # --- per frame ----------------------------------------------------------------------------------------------
    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def check(self, image, depth, info) -> tuple[Any, Any] | None:
        """Cheap checks in the executor thread: ``(depth, info)`` when usable, else None (counted, logged)."""
        if depth is None:
            return None
        try:
            check_depth(depth, image)
            camera_info_intrinsics(info, image.width, image.height)
        except BadDepth as e:
            self.count(e.kind)
            self.node.get_logger().warning(f"no 3D objects for this frame: {e}", throttle_duration_sec=THROTTLE_S)
            return None
        return depth, info

    def outputs(self, header, out: Outcome) -> list[tuple[Any, Any]]:
        """The 3D outputs of one tracked outcome as (publisher, message) pairs, not yet published (the node publishes
        them with the frame's other outputs); a frame without objects is counted (unless its depth was missing or bad
        at the input, counted there) and skipped, never raised."""
        if not self._pubs:
            return []
        if out.objects is None:
            e = out.objects_error
            if e is not None and not (self.source == "depth" and out.payload[1] is None):
                self.count(getattr(e, "kind", "depth_bad_data"))
                self.node.get_logger().warning(f"no 3D objects for this frame: {e}", throttle_duration_sec=THROTTLE_S)
            return []
        objs, result = out.objects, out.result
        without = sum(1 for o in objs if o.points == 0)
        self.count("objects_published")
        if without:
            self.count("objects_without_depth", without)
        T = self._T
        msgs = [(self._pubs["objects"], object_array_msg(T, header, result.index, objs, out.label_of, self.source)),
                (self._pubs["markers"], marker_array_msg(T, header, objs))]
        if self.objects.publish_points and out.points is not None and self._pubs["points"].get_subscription_count():
            xyz, ids = labelled_points(result.labels, out.points, self.objects.points_stride)
            msgs.append((self._pubs["points"], pointcloud_msg(T, header, xyz, ids)))
        return msgs

    # --- diagnostics ------------------------------------------------------------------------------------------
    BAD = ("depth_bad_encoding", "depth_size_mismatch", "depth_bad_data", "camera_info_bad", "depth_unsynced")
    COUNTERS = (*BAD, "objects_published", "objects_without_depth")

    def new_bad(self) -> list[str]:
        """``"counter +n"`` for each bad-input counter that grew since the last call."""
        with self._lock:
            c = dict(self.counters)
        prev, self._previous = self._previous, c
        return [f"{k} +{c.get(k, 0) - prev.get(k, 0)}" for k in self.BAD if c.get(k, 0) > prev.get(k, 0)]

    def diagnostics(self) -> dict[str, str]:
        with self._lock:
            c = dict(self.counters)
        out = {k: str(c.get(k, 0)) for k in self.COUNTERS}
        out["depth_input"] = ("synchronised" if self.depth_input else
                              f"unavailable ({self.unavailable})" if self.depth.enabled else "off")
        return out
