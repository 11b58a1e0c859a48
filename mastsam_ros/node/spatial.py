"""The tracker node's 3D side: parameters ``node.depth.*`` and ``node.objects.*``, the synchronised depth input, and
the ``~/objects``, ``~/markers`` and ``~/points`` outputs. The node holds one :class:`Spatial` and calls it at a few
hooks; everything 3D lives here.

Sources of 3D points, per frame:
- ``depth``: ``node.depth.enabled``: ``image``, ``depth`` and ``camera_info`` paired by message_filters
  (:class:`mastsam_ros.node.depth.SyncedInput`);
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
from typing import Any

from mastsam_ros.core.config import config_field as _param
from mastsam_ros.core.config import validate
from mastsam_ros.core.geometry import (
    GeometryError, backproject, depth_to_metres, frame_point_map, labelled_points, objects_3d,
    resize_point_map,
)
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

    def wants_objects(self, matcher) -> bool:
        return self.depth_input or (self.objects.pointmap and self._matcher_has_points(matcher))

    def _matcher_has_points(self, matcher) -> bool:
        from mastsam_ros.core.matchers.base import Matcher  # noqa: PLC0415

        has = type(matcher).point_map is not Matcher.point_map
        if not has and not self._warned_no_pointmap:
            self._warned_no_pointmap = True
            self.node.get_logger().error(
                f"node.objects.pointmap is true but the matcher {getattr(matcher, 'name', '?')} predicts no 3D points"
                " (use matcher.backend mast3r, or a depth input): no ~/objects")
        return has

    def create_publishers(self, msgs_module, qos) -> None:
        self._T = rclpy_types_3d(msgs_module)
        T = self._T
        self._pubs = {
            "objects": self.node.create_publisher(T.Object3DArray, "~/objects", qos),
            "markers": self.node.create_publisher(T.MarkerArray, "~/markers", qos),
            "points": self.node.create_publisher(T.PointCloud2, "~/points", qos),
        }

    def destroy_publishers(self) -> None:
        for pub in self._pubs.values():
            self.node.destroy_publisher(pub)
        self._pubs = {}

    def subscribe(self, on_frame, in_qos) -> None:
        """Create the synchronised input; ``on_frame(image, depth | None, info | None)`` gets every image."""
        self.sync = SyncedInput(self.node, self.message_filters, on_frame, self.count, qos=in_qos,
                                slop=self.depth.slop, queue_size=self.depth.queue_size, wait=self.depth.wait)
        self.node.get_logger().info(
            f"depth input: {', '.join(self.sync.topics)} paired within {self.depth.slop} s")

    def unsubscribe(self) -> None:
        if self.sync is None:
            return
        for s in self.sync.subs:
            self.node.destroy_subscription(s.sub)
        self.node.destroy_timer(self.sync.timer)
        self.sync = None

    # --- per frame (worker thread) ----------------------------------------------------------------------------
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

    def publish(self, header, result, label_of: dict[int, int], extra, matcher) -> None:
        """Compute and publish the 3D outputs of one frame; a bad input is counted and skipped, never raised."""
        for pub, msg in self.outputs(header, result, label_of, extra, matcher):
            pub.publish(msg)

    def outputs(self, header, result, label_of: dict[int, int], extra, matcher) -> list[tuple[Any, Any]]:
        """The 3D outputs of one frame as (publisher, message) pairs, not yet published (the node publishes them
        with the frame's other outputs, under its publish lock); a bad input is counted and skipped, never raised.

        The depth is back-projected at its own size and resized (nearest) to the labels' when the node processed a
        downscaled frame (``node.max_input_pixels``)."""
        if not self._pubs or self._T is None:
            return []
        ids = [t.id for t in result.tracks]
        h, w = result.labels.shape
        try:
            if self.depth_input:
                if extra is None:
                    return []  # counted where it happened (unsynced or a bad message)
                depth_msg, info = extra
                points = backproject(depth_to_metres(depth_to_array(depth_msg)),
                                     camera_info_intrinsics(info, depth_msg.width, depth_msg.height))
                if points.shape[:2] != (h, w):
                    points = resize_point_map(points, (w, h))
                source = "depth"
            elif self.objects.pointmap and self._matcher_has_points(matcher):
                pm = matcher.point_map()
                if pm is None:
                    raise GeometryError("the matcher has no point map for this frame")
                points = frame_point_map(*pm, (w, h), self.objects.pointmap_min_conf)
                source = "pointmap"
            else:
                return []
            objs = objects_3d(result.labels, points, ids, self.objects.extent_trim)
        except (BadDepth, GeometryError) as e:
            self.count(getattr(e, "kind", "depth_bad_data"))
            self.node.get_logger().warning(f"no 3D objects for this frame: {e}", throttle_duration_sec=THROTTLE_S)
            return []
        without = sum(1 for o in objs if o.points == 0)
        self.count("objects_published")
        if without:
            self.count("objects_without_depth", without)
        T = self._T
        out = [(self._pubs["objects"], object_array_msg(T, header, result.index, objs, label_of, source)),
               (self._pubs["markers"], marker_array_msg(T, header, objs))]
        if self.objects.publish_points and self._pubs["points"].get_subscription_count() > 0:
            xyz, pids = labelled_points(result.labels, points, self.objects.points_stride)
            out.append((self._pubs["points"], pointcloud_msg(T, header, xyz, pids)))
        return out

    # --- diagnostics ------------------------------------------------------------------------------------------
    BAD = ("depth_bad_encoding", "depth_size_mismatch", "depth_bad_data", "camera_info_bad", "depth_unsynced")
    COUNTERS = (*BAD, "objects_published", "objects_without_depth")

    def new_bad(self) -> list[str]:
        """``"counter +n"`` for each bad-input counter that grew since the last call."""
        with self._lock:
            c = dict(self.counters)
        prev, self._previous = getattr(self, "_previous", {}), c
        return [f"{k} +{c.get(k, 0) - prev.get(k, 0)}" for k in self.BAD if c.get(k, 0) > prev.get(k, 0)]

    def diagnostics(self) -> dict[str, str]:
        with self._lock:
            c = dict(self.counters)
        out = {k: str(c.get(k, 0)) for k in self.COUNTERS}
        out["depth_input"] = ("synchronised" if self.depth_input else
                              f"unavailable ({self.unavailable})" if self.depth.enabled else "off")
        return out
