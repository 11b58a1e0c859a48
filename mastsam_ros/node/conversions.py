"""Between ROS messages and the core's numpy world. No rclpy import: the node and the bag tool share these.

The message classes are passed in (a :class:`MsgTypes`), so the same code builds rclpy messages in the node and
rosbags dataclasses in ``mastsam-bag process``; reading needs only attribute access, which both kinds offer.

Conventions:
- the core takes H x W x 3 uint8 **RGB**; every supported encoding is converted to that;
- ``~/labels`` is ``mono16`` (little-endian uint16, 0 = background); pixel value = ``Instance.label``, from the one
  id -> value mapping of every writer (:class:`mastsam_ros.labels_io.LabelMapper`; ids > 65535 wrap);
- every output carries the input image's header unchanged (stamp and frame_id).
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from mastsam_ros.core.errors import BadImage
from mastsam_ros.core.types import FrameResult

# encoding -> (channels, cv2 conversion to RGB or None when the bytes already are RGB / grey)
ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}


def check_image(msg: Any) -> None:
    """Cheap O(1) checks of a sensor_msgs/Image (encoding, size, step, data length); raise :class:`BadImage`.

    Run in the subscription callback so that a bad frame is counted even when a newer one replaces it before
    the worker would have looked at it.
    """
    if msg.encoding not in ENCODINGS:
        raise BadImage(
            "bad_encoding", f"unsupported encoding [{msg.encoding}] (supported: {', '.join(ENCODINGS)})"
        )
    if msg.height == 0 or msg.width == 0:
        raise BadImage("bad_size", f"empty image ({msg.width}x{msg.height})")
    channels = ENCODINGS[msg.encoding][0]
    if msg.step < msg.width * channels:
        raise BadImage("bad_data", f"step {msg.step} < width {msg.width} x {channels} bytes per pixel")
    if len(msg.data) < msg.step * msg.height:
        raise BadImage(
            "bad_data", f"data has {len(msg.data)} bytes, fewer than step x height = {msg.step * msg.height}"
        )


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8; rows may be padded to ``step``) -> H x W x 3 uint8 RGB.

    Raises :class:`BadImage` for anything :func:`check_image` refuses. The result never aliases ``msg.data``.
    """
    check_image(msg)
    channels, code = ENCODINGS[msg.encoding]
    h, w, step = msg.height, msg.width, msg.step
    # frombuffer reads rclpy's array.array and rosbags' ndarray alike without a copy; slicing drops the padding.
    rows = np.frombuffer(msg.data, np.uint8, count=step * h).reshape(h, step)
    pixels = rows[:, : w * channels].reshape(h, w, channels)
    if code is None:
        return pixels.copy()
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png...) -> H x W x 3 uint8 RGB; raises :class:`BadImage` if undecodable."""
    buf = np.frombuffer(msg.data, np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise BadImage("bad_data", f"cannot decode compressed image (format [{msg.format}], {buf.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def stamp_ns(header: Any) -> int:
    """A std_msgs/Header's stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass
class MsgTypes:
    """The message classes and array constructors of one ROS Python flavour (rclpy or rosbags)."""

    Image: type
    RegionOfInterest: type
    Point32: type
    Instance: type
    InstanceArray: type
    TrackEvent: type
    TrackEventArray: type
    bytes_field: Callable[[bytes], Any]  # uint8[] value
    uint32_field: Callable[[list[int]], Any]  # uint32[] value


def rclpy_types(msg_module: Any) -> MsgTypes:
    """Types for rclpy: ``msg_module`` is the generated ``mastsam_ros.msg``."""
    from geometry_msgs.msg import Point32
    from sensor_msgs.msg import Image, RegionOfInterest

    return MsgTypes(
        Image=Image, RegionOfInterest=RegionOfInterest, Point32=Point32,
        Instance=msg_module.Instance, InstanceArray=msg_module.InstanceArray,
        TrackEvent=msg_module.TrackEvent, TrackEventArray=msg_module.TrackEventArray,
        # array.array is the one value rclpy's generated setters take without checking every element.
        bytes_field=lambda b: array.array("B", b),
        uint32_field=lambda v: array.array("I", v),
    )


def events_msg(T: MsgTypes, header: Any, result: FrameResult) -> Any:
    """FrameResult's track events -> mastsam_ros/TrackEventArray stamped ``header`` (msg/TrackEventArray.msg)."""
    return T.TrackEventArray(
        header=header, frame_index=int(result.index), cut=bool(result.cut),
        events=[T.TrackEvent(kind=e.kind, id=int(e.id), frames_away=int(e.frames_away), score=float(e.score),
                             into=int(e.into)) for e in result.events],
    )


def image_msg(T: MsgTypes, header: Any, image: np.ndarray) -> Any:
    """H x W x 3 uint8 RGB -> rgb8 Image, or H x W uint16 -> mono16 Image (little-endian), stamped ``header``."""
    if image.dtype == np.uint16 and image.ndim == 2:
        encoding, data = "mono16", image.astype("<u2", copy=False)
    elif image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        encoding, data = "rgb8", image
    else:
        raise ValueError(f"cannot publish an image of shape {image.shape} and dtype {image.dtype}")
    h, w = image.shape[:2]
    data = np.ascontiguousarray(data)
    return T.Image(
        header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
        step=data.strides[0], data=T.bytes_field(data.tobytes()),
    )


def instance_array_msg(T: MsgTypes, header: Any, result: FrameResult, label_of: dict[int, int]) -> Any:
    """FrameResult -> mastsam_ros/InstanceArray stamped ``header`` (see msg/InstanceArray.msg for the fields)."""
    h, w = result.labels.shape[:2]
    instances = []
    for t in result.tracks:
        x, y, bw, bh = (int(v) for v in t.bbox)
        instances.append(T.Instance(
            id=int(t.id), label=int(label_of.get(t.id, 0)), score=float(t.score), area=int(t.area),
            bbox=T.RegionOfInterest(x_offset=x, y_offset=y, height=bh, width=bw, do_rectify=False),
            age=int(t.age), frames_since_seen=int(t.frames_since_seen),
            points=[T.Point32(x=float(px), y=float(py), z=0.0) for px, py in np.asarray(t.points).reshape(-1, 2)],
        ))
    return T.InstanceArray(
        header=header, frame_index=int(result.index), height=h, width=w,
        keyframe=bool(result.keyframe), reset=bool(result.reset),
        new_ids=T.uint32_field([int(i) for i in result.new_ids]),
        retired_ids=T.uint32_field([int(i) for i in result.retired_ids]),
        instances=instances,
    )
