"""3D instances as ROS messages: ``mastsam_ros/Object3DArray``, ``visualization_msgs/MarkerArray`` and a labelled
``sensor_msgs/PointCloud2``. No rclpy import: the node and ``mastsam-bag process`` share these, each passing its
own message classes (:class:`Types3D`), as :mod:`mastsam_ros.node.conversions` does for the 2D outputs.

Frame: every message carries the input image's header, so ``frame_id`` is the camera's optical frame (x right,
y down, z forward) and the points are in metres (from depth) or in the model's units (from a point map).
Colours: :func:`mastsam_ros.core.render.id_colours`, the overlay's palette, so an object has one colour everywhere.
"""

from __future__ import annotations

import array
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mastsam_ros.core.geometry import Object3D
from mastsam_ros.core.render import id_colours

# visualization_msgs/Marker constants (the values are fixed by the message definition)
CUBE, TEXT_VIEW_FACING = 1, 9
ADD, DELETEALL = 0, 3
MIN_BOX_SIDE = 0.01  # metres: a flat object (a wall, a table top) still gets a visible box
TEXT_HEIGHT = 0.08  # metres, height of the id text
INT32_MAX = 2**31 - 1
# sensor_msgs/PointField datatypes
FLOAT32, UINT32 = 7, 6
POINT_STEP = 20  # x y z rgb id, 4 bytes each


@dataclass
class Types3D:
    """The message classes one ROS Python flavour (rclpy or rosbags) offers for the 3D outputs."""

    Object3D: type
    Object3DArray: type
    Point: type
    Vector3: type
    Marker: type | None = None
    MarkerArray: type | None = None
    ColorRGBA: type | None = None
    Pose: type | None = None
    Quaternion: type | None = None
    Duration: type | None = None
    PointCloud2: type | None = None
    PointField: type | None = None
    bytes_field: Any = None  # uint8[] value from bytes


def rclpy_types_3d(msg_module: Any) -> Types3D:
    """Types for rclpy: ``msg_module`` is the generated ``mastsam_ros.msg``."""
    from builtin_interfaces.msg import Duration
    from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
    from sensor_msgs.msg import PointCloud2, PointField
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray

    return Types3D(
        Object3D=msg_module.Object3D, Object3DArray=msg_module.Object3DArray, Point=Point, Vector3=Vector3,
        Marker=Marker, MarkerArray=MarkerArray, ColorRGBA=ColorRGBA, Pose=Pose, Quaternion=Quaternion,
        Duration=Duration, PointCloud2=PointCloud2, PointField=PointField,
        bytes_field=lambda b: array.array("B", b),
    )


def _f(v: float) -> float:
    return float(v) if math.isfinite(v) else math.nan


def object_array_msg(T: Types3D, header: Any, frame_index: int, objects: list[Object3D],
                     label_of: dict[int, int], source: str) -> Any:
    """Records from :mod:`mastsam_ros.core.geometry` -> ``mastsam_ros/Object3DArray`` stamped ``header``."""
    out = []
    for o in objects:
        out.append(T.Object3D(
            id=int(o.id), label=int(label_of.get(o.id, 0)),
            centroid=T.Point(x=_f(o.centroid[0]), y=_f(o.centroid[1]), z=_f(o.centroid[2])),
            bbox_min=T.Point(x=_f(o.min[0]), y=_f(o.min[1]), z=_f(o.min[2])),
            bbox_max=T.Point(x=_f(o.max[0]), y=_f(o.max[1]), z=_f(o.max[2])),
            extent=T.Vector3(x=_f(o.extent[0]), y=_f(o.extent[1]), z=_f(o.extent[2])),
            points=int(o.points), pixels=int(o.pixels), valid_fraction=float(o.valid_fraction),
        ))
    return T.Object3DArray(header=header, frame_index=int(frame_index), source=source, objects=out)


def marker_id(object_id: int) -> int:
    """Marker.id is int32: ids beyond it wrap (only after 2^31 objects)."""
    return int(object_id) % INT32_MAX


def marker_array_msg(T: Types3D, header: Any, objects: list[Object3D], ns: str = "mastsam") -> Any:
    """One DELETEALL (objects that retired disappear), then per object with valid points a translucent CUBE over its
    axis-aligned bounds (namespace ``<ns>/boxes``) and its id as TEXT_VIEW_FACING above the box
    (``<ns>/ids``); both have marker id = object id and the overlay's colour for that id."""
    colours = id_colours(np.array([o.id for o in objects], np.uint64)) if objects else np.zeros((0, 3), np.uint8)
    identity = T.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)
    forever = T.Duration(sec=0, nanosec=0)
    markers = [T.Marker(header=header, ns=ns, id=0, action=DELETEALL)]
    for o, rgb in zip(objects, colours):
        if o.points == 0:
            continue
        lo, hi = np.array(o.min), np.array(o.max)
        centre = (lo + hi) / 2
        size = np.maximum(hi - lo, MIN_BOX_SIDE)
        r, g, b = (float(c) / 255.0 for c in rgb)
        markers.append(T.Marker(
            header=header, ns=f"{ns}/boxes", id=marker_id(o.id), type=CUBE, action=ADD,
            pose=T.Pose(position=T.Point(x=float(centre[0]), y=float(centre[1]), z=float(centre[2])),
                        orientation=identity),
            scale=T.Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2])),
            color=T.ColorRGBA(r=r, g=g, b=b, a=0.4), lifetime=forever, frame_locked=False,
        ))
        # y is down in the optical frame: "above the box" is its smallest y.
        markers.append(T.Marker(
            header=header, ns=f"{ns}/ids", id=marker_id(o.id), type=TEXT_VIEW_FACING, action=ADD,
            pose=T.Pose(position=T.Point(x=float(o.centroid[0]), y=float(lo[1]) - TEXT_HEIGHT, z=float(o.centroid[2])),
                        orientation=identity),
            scale=T.Vector3(x=0.0, y=0.0, z=TEXT_HEIGHT), color=T.ColorRGBA(r=r, g=g, b=b, a=1.0),
            text=str(int(o.id)), lifetime=forever, frame_locked=False,
        ))
    return T.MarkerArray(markers=markers)


def pointcloud_msg(T: Types3D, header: Any, xyz: np.ndarray, ids: np.ndarray) -> Any:
    """(N, 3) float32 points and (N,) uint32 object ids -> an unordered PointCloud2 with fields x, y, z (float32),
    rgb (float32-packed 0x00RRGGBB, PCL's convention, the overlay's colour of the id) and id (uint32)."""
    n = len(xyz)
    rec = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4"), ("id", "<u4")])
    rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if n:
        uniq, inv = np.unique(ids, return_inverse=True)
        c = id_colours(uniq.astype(np.uint64)).astype(np.uint32)
        rec["rgb"] = ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2])[inv]
    rec["id"] = ids
    fields = [T.PointField(name=name, offset=4 * i, datatype=FLOAT32 if name != "id" else UINT32, count=1)
              for i, name in enumerate(("x", "y", "z", "rgb", "id"))]
    return T.PointCloud2(
        header=header, height=1, width=n, fields=fields, is_bigendian=False, point_step=POINT_STEP,
        row_step=POINT_STEP * n, data=T.bytes_field(rec.tobytes()), is_dense=True,
    )


def read_pointcloud(msg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cloud written by :func:`pointcloud_msg` -> ((N, 3) float32 xyz, (N,) uint32 0x00RRGGBB, (N,) uint32 ids)."""
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4"), ("id", "<u4")])
    rec = np.frombuffer(bytes(msg.data), dtype=dt, count=msg.width * msg.height)
    return np.stack([rec["x"], rec["y"], rec["z"]], axis=1), rec["rgb"].copy(), rec["id"].copy()
