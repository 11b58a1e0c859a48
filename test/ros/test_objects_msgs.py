"""Conversions of 3D records to Object3DArray, MarkerArray and PointCloud2 (rclpy message classes, no graph), and
the depth message checks, on the rendered scene with known geometry (test/scene3d.py)."""

from __future__ import annotations

import array
import math

import numpy as np
import pytest
from scene3d import CX, CY, FX, FY, render

from mastsam_ros.core.geometry import Intrinsics, backproject, labelled_points, objects_from_depth
from mastsam_ros.core.render import id_colours
from mastsam_ros.node.depth import BadDepth, camera_info_intrinsics, check_depth, depth_to_array

from .conftest import require_ros

K = Intrinsics(FX, FY, CX, CY)


@pytest.fixture(scope="module")
def T():
    require_ros()
    from mastsam_ros.node.interfaces import load_messages
    from mastsam_ros.node.objects import rclpy_types_3d

    return rclpy_types_3d(load_messages())


def _header():
    from std_msgs.msg import Header

    h = Header(frame_id="cam")
    h.stamp.sec = 42
    return h


def test_object_array_and_markers(T):
    from mastsam_ros.node.objects import marker_array_msg, object_array_msg

    _, depth, labels, truths = render(0)
    depth[labels == 3] = np.nan
    objs = objects_from_depth(labels, depth, K, ids=[1, 2, 3])
    msg = object_array_msg(T, _header(), 7, objs, {1: 1, 2: 2, 3: 3}, "depth")
    assert msg.header.stamp.sec == 42 and msg.frame_index == 7 and msg.source == "depth"
    panel = msg.objects[0]
    assert (panel.id, panel.label, panel.points, panel.pixels) == (1, 1, objs[0].points, objs[0].pixels)
    assert abs(panel.centroid.z - 2.0) < 1e-5 and abs(panel.extent.x - objs[0].extent[0]) < 1e-6
    assert math.isnan(msg.objects[2].centroid.x) and msg.objects[2].points == 0

    markers = marker_array_msg(T, _header(), objs).markers
    assert markers[0].action == 3 and all(m.header.frame_id == "cam" for m in markers)
    boxes = [m for m in markers if m.ns.endswith("/boxes")]
    assert [m.id for m in boxes] == [1, 2]  # object 3 has no valid point: no box
    box = boxes[0]
    assert box.type == 1 and abs(box.pose.position.z - 2.0) < 1e-5 and box.scale.z == pytest.approx(0.01)
    assert abs(box.pose.position.x - truths[0].centre[0]) < 0.005 and abs(box.scale.x - 0.6) < 0.01
    assert np.allclose([box.color.r, box.color.g, box.color.b], id_colours(np.array([1]))[0] / 255.0)
    text = next(m for m in markers if m.ns.endswith("/ids") and m.id == 2)
    assert text.type == 9 and text.text == "2"


def test_pointcloud_layout(T):
    from mastsam_ros.node.objects import pointcloud_msg, read_pointcloud

    _, depth, labels, _ = render(0)
    xyz, ids = labelled_points(labels, backproject(depth, K), stride=3)
    msg = pointcloud_msg(T, _header(), xyz, ids)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "id"] and msg.point_step == 20
    assert msg.width == len(ids) and msg.height == 1 and msg.row_step == 20 * len(ids) and msg.is_dense
    back, rgb, back_ids = read_pointcloud(msg)
    assert np.array_equal(back, xyz) and np.array_equal(back_ids, ids)
    c = id_colours(np.array([2]))[0].astype(np.uint32)
    assert np.all(rgb[back_ids == 2] == (c[0] << 16) | (c[1] << 8) | c[2])
    assert pointcloud_msg(T, _header(), np.zeros((0, 3), np.float32), np.zeros(0, np.uint32)).width == 0


def test_depth_message_checks(T):
    from sensor_msgs.msg import CameraInfo, Image

    _, depth, _, _ = render(0)
    mm = np.round(depth * 1000).astype(np.uint16)
    image = Image(height=240, width=320, encoding="rgb8", step=960)
    padded = np.zeros((240, 330), np.uint16)
    padded[:, :320] = mm
    msg = Image(height=240, width=320, encoding="16UC1", step=660, is_bigendian=0,
                data=array.array("B", padded.tobytes()))
    check_depth(msg, image)
    assert np.array_equal(depth_to_array(msg), mm)
    big = Image(height=240, width=320, encoding="32FC1", step=1280, is_bigendian=1,
                data=array.array("B", depth.astype(">f4").tobytes()))
    assert np.array_equal(depth_to_array(big), depth)
    for bad, kind in ((dict(encoding="16SC1"), "depth_bad_encoding"), (dict(width=160), "depth_size_mismatch"),
                      (dict(data=array.array("B", bytes(100))), "depth_bad_data")):
        m = Image(height=240, width=320, encoding="16UC1", step=640, data=array.array("B", mm.tobytes()))
        for k, v in bad.items():
            setattr(m, k, v)
        with pytest.raises(BadDepth) as e:
            check_depth(m, image)
        assert e.value.kind == kind
    info = CameraInfo(width=320, height=240, k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0])
    assert camera_info_intrinsics(info, 320, 240) == K
    with pytest.raises(BadDepth, match="640x480"):
        camera_info_intrinsics(CameraInfo(width=640, height=480, k=info.k), 320, 240)
    with pytest.raises(BadDepth, match="not usable"):
        camera_info_intrinsics(CameraInfo(), 320, 240)


def test_params_file_lists_the_3d_parameters_with_their_defaults():
    import dataclasses

    import yaml

    from mastsam_ros.core.config import flatten, unwrap_ros_params
    from mastsam_ros.node.spatial import DepthSection, ObjectsSection

    from .conftest import PARAMS

    values = flatten(unwrap_ros_params(yaml.safe_load(PARAMS.read_text())))
    for prefix, section in (("node.depth", DepthSection()), ("node.objects", ObjectsSection())):
        for f in dataclasses.fields(section):
            assert values[f"{prefix}.{f.name}"] == f.default, (prefix, f.name)


def test_rviz_config_shows_markers_and_points():
    import yaml

    from .conftest import REPO

    displays = yaml.safe_load((REPO / "config" / "tracker.rviz").read_text())["Visualization Manager"]["Displays"]
    by_class = {d["Class"]: d for d in displays}
    assert by_class["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "/tracker/markers"
    cloud = by_class["rviz_default_plugins/PointCloud2"]
    assert cloud["Topic"]["Value"] == "/tracker/points" and cloud["Color Transformer"] == "RGB8"
