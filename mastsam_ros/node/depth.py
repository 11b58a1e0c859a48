"""Depth input: checks and conversions of depth images and camera_info (ROS-free, shared with ``mastsam-bag``), and
the node's synchronised image + depth + camera_info input (:class:`SyncedInput`, rclpy and message_filters).

Depth: ``16UC1`` (uint16 millimetres, 0 = no measurement) or ``32FC1`` (float32 metres, NaN/inf/<= 0 invalid),
registered to the colour image (same size, same pixel grid: e.g. a RealSense ``aligned_depth_to_color`` topic), rows
padded to ``step`` allowed, either byte order. camera_info: the colour camera's; only ``k`` is used (images are
assumed rectified), and a camera_info for another image size is refused.

Pairing: message_filters' ApproximateTimeSynchronizer over the three topics (``node.depth.slop`` seconds). An image
that finds no partners within ``node.depth.wait`` seconds is still tracked, without 3D objects, and counted
(``depth_unsynced``): a missing depth or camera_info stream, or stamps that never match, never stop the node.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from mastsam_ros.core.geometry import GeometryError, Intrinsics

DEPTH_ENCODINGS = {"16UC1": np.dtype("<u2"), "32FC1": np.dtype("<f4")}


class BadDepth(ValueError):
    """A depth image or camera_info the node cannot use; ``kind`` names the diagnostics counter."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def check_depth(depth: Any, image: Any) -> None:
    """O(1) checks of a sensor_msgs/Image depth against its colour image; raise :class:`BadDepth`."""
    if depth.encoding not in DEPTH_ENCODINGS:
        raise BadDepth("depth_bad_encoding",
                       f"unsupported depth encoding [{depth.encoding}] (supported: {', '.join(DEPTH_ENCODINGS)})")
    if (depth.height, depth.width) != (image.height, image.width):
        raise BadDepth("depth_size_mismatch",
                       f"depth is {depth.width}x{depth.height} but the image is {image.width}x{image.height}; "
                       "the depth must be registered to the image (e.g. aligned_depth_to_color)")
    item = DEPTH_ENCODINGS[depth.encoding].itemsize
    if depth.step < depth.width * item or len(depth.data) < depth.step * depth.height:
        raise BadDepth("depth_bad_data", f"depth data has {len(depth.data)} bytes for step {depth.step} x "
                       f"height {depth.height} (width {depth.width} x {item} bytes per pixel)")


def depth_to_array(msg: Any) -> np.ndarray:
    """A checked depth Image -> H x W uint16 (mm) or float32 (m), native byte order, padding dropped, a copy."""
    dt = DEPTH_ENCODINGS[msg.encoding]
    if msg.is_bigendian:
        dt = dt.newbyteorder(">")
    h, w, step = msg.height, msg.width, msg.step
    rows = np.frombuffer(msg.data, np.uint8, count=step * h).reshape(h, step)[:, : w * dt.itemsize]
    return np.ascontiguousarray(rows).view(dt).reshape(h, w).astype(dt.newbyteorder("="))


def camera_info_intrinsics(info: Any, width: int, height: int) -> Intrinsics:
    """The pinhole intrinsics of a sensor_msgs/CameraInfo for an image of ``width`` x ``height``; raise
    :class:`BadDepth` (``camera_info_bad``) when k is not a camera matrix or the info is for another size."""
    if info.width and info.height and (info.width, info.height) != (width, height):
        raise BadDepth("camera_info_bad", f"camera_info is for {info.width}x{info.height} images, the image is "
                       f"{width}x{height}")
    try:
        return Intrinsics.from_k(info.k)
    except GeometryError as e:
        raise BadDepth("camera_info_bad", f"camera_info k is not usable: {e}") from None


def message_filters_module():
    """``message_filters`` or None, with the reason, when it does not import (no ROS 2 install)."""
    try:
        import message_filters  # noqa: PLC0415 - optional: only a ROS 2 install provides it

        return message_filters, None
    except ImportError as e:
        return None, str(e)


class SyncedInput:
    """Image, depth and camera_info subscriptions paired by message_filters' ApproximateTimeSynchronizer.

    ``on_frame(image, depth_or_None, info_or_None)`` is called in the executor thread for every image, at most once
    and in stamp order: with its partners when the synchroniser pairs it, or alone once ``wait`` seconds have
    passed without partners (then counted as ``depth_unsynced``). An image older than one already delivered is
    dropped (counted ``depth_unsynced`` too): delivering it later would look like time going backwards.
    """

    MAX_PENDING = 100

    def __init__(self, node, message_filters, on_frame: Callable, count: Callable[[str], None], *, qos,
                 slop: float, queue_size: int, wait: float, image_topic: str = "image", depth_topic: str = "depth",
                 info_topic: str = "camera_info", image_events=None):
        """``image_events``: rclpy SubscriptionEventCallbacks for the image subscription (the node's message-lost
        count), or None."""
        from sensor_msgs.msg import CameraInfo, Image  # noqa: PLC0415

        self._node, self._on_frame, self._count, self._wait = node, on_frame, count, wait
        self._lock = threading.Lock()
        self._pending: OrderedDict[tuple[int, int], tuple[Any, float]] = OrderedDict()  # stamp -> (image, t)
        self._last_delivered: tuple[int, int] | None = None
        mf = message_filters
        self.subs = [
            mf.Subscriber(node, Image, image_topic, qos_profile=qos, event_callbacks=image_events),
            mf.Subscriber(node, Image, depth_topic, qos_profile=qos),
            mf.Subscriber(node, CameraInfo, info_topic, qos_profile=qos),
        ]
        self.subs[0].registerCallback(self._on_image)
        self.sync = mf.ApproximateTimeSynchronizer(self.subs, queue_size, slop)
        self.sync.registerCallback(self._on_synced)
        self.timer = node.create_timer(min(0.05, max(wait / 4, 0.01)), self._expire)
        self.topics = [s.sub.topic_name for s in self.subs]

    @staticmethod
    def _key(msg) -> tuple[int, int]:
        return (msg.header.stamp.sec, msg.header.stamp.nanosec)

    def _on_image(self, image) -> None:
        with self._lock:
            self._pending[self._key(image)] = (image, time.monotonic())
            while len(self._pending) > self.MAX_PENDING:
                self._pending.popitem(last=False)
                self._count("depth_unsynced")

    def _on_synced(self, image, depth, info) -> None:
        key = self._key(image)
        with self._lock:
            if key not in self._pending:
                return  # already delivered alone (its partners came too late) or dropped
            self._drop_older(key)
            del self._pending[key]
            self._last_delivered = key
        self._on_frame(image, depth, info)

    def _drop_older(self, key) -> None:
        for k in [k for k in self._pending if k < key]:
            del self._pending[k]
            self._count("depth_unsynced")

    def _expire(self) -> None:
        now = time.monotonic()
        due = []
        with self._lock:
            for k, (image, t) in list(self._pending.items()):
                if now - t < self._wait:
                    continue
                del self._pending[k]
                self._count("depth_unsynced")
                if self._last_delivered is None or k > self._last_delivered:
                    self._last_delivered = k
                    due.append(image)
        if due:
            self._node.get_logger().warning(
                f"{len(due)} image(s) found no depth and camera_info within the sync slop after {self._wait:.2f} s: "
                f"tracked without 3D objects (topics {', '.join(self.topics)})", throttle_duration_sec=5.0)
        for image in due:
            self._on_frame(image, None, None)
