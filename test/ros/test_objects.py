"""3D instances over real DDS: the node with ``node.depth.enabled`` fed the rendered scene of test/scene3d.py (colour,
32FC1 depth, camera_info), and every bad depth input counted while the node keeps answering.

The synchronised input needs message_filters, which comes with a ROS 2 install and from no registry these machines
can use: scripts/setup.sh installs it into the venv from ../shared/ros2 when that is beside the checkout, or point
``MASTSAM_MESSAGE_FILTERS_PATH`` at the ``src`` directory of a ros2/message_filters checkout (docs/ROS.md); otherwise
these tests skip with that reason. The point-map test needs MASt3R's code: ../shared/mast3r or MASTSAM_MAST3R_PATH.
"""

from __future__ import annotations

import array
import os
import sys

import numpy as np
import pytest
from scene3d import CX, CY, FX, FY, centroid_tolerance, render

from .conftest import NodeProcess, Probe, labels_of, node_process, require_ros

MF_PATH = os.environ.get("MASTSAM_MESSAGE_FILTERS_PATH", "")
if MF_PATH and MF_PATH not in sys.path:
    sys.path.insert(0, MF_PATH)
    # ...and for the node processes the tests start
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [MF_PATH, os.environ.get("PYTHONPATH")]))
try:
    import message_filters  # noqa: F401 - only checks that the node will find it

    MF_SKIP = None
except ImportError as e:
    MF_SKIP = (f"message_filters does not import ({e}); it comes with a ROS 2 install, or bash scripts/setup.sh "
               "installs it from ../shared/ros2 beside the checkout, or set MASTSAM_MESSAGE_FILTERS_PATH to a "
               "ros2/message_filters checkout's src/ directory")

pytestmark = pytest.mark.usefixtures("ros")
needs_mf = pytest.mark.skipif(MF_SKIP is not None, reason=str(MF_SKIP))
NAME = "tracker3d"


def depth_msg(depth: np.ndarray, sec: int, nanosec: int = 0, encoding: str = "32FC1"):
    from sensor_msgs.msg import Image

    data = np.ascontiguousarray(depth)
    m = Image(height=data.shape[0], width=data.shape[1], encoding=encoding, is_bigendian=0,
              step=data.strides[0], data=array.array("B", data.tobytes()))
    m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = sec, nanosec, "cam"
    return m


def info_msg(sec: int, nanosec: int = 0, k=(FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0)):
    from sensor_msgs.msg import CameraInfo

    m = CameraInfo(width=320, height=240, k=[float(v) for v in k])
    m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = sec, nanosec, "cam"
    return m


class Probe3D(Probe):
    def __init__(self):
        super().__init__("probe3d", node_name=NAME)
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from visualization_msgs.msg import MarkerArray

        from .conftest import MSGS

        self.pub_depth = self.node.create_publisher(Image, "/depth", 10)
        self.pub_info = self.node.create_publisher(CameraInfo, "/camera_info", 10)
        self.objects, self.markers, self.points = [], [], []
        self.node.create_subscription(MSGS.Object3DArray, f"/{NAME}/objects", self.objects.append, 50)
        self.node.create_subscription(MarkerArray, f"/{NAME}/markers", self.markers.append, 50)
        self.node.create_subscription(PointCloud2, f"/{NAME}/points", self.points.append, 50)

    def connected(self):
        return all(p.get_subscription_count() > 0 for p in (self.pub, self.pub_depth, self.pub_info))

    def send(self, image=None, depth=None, info=None):
        for pub, msg in ((self.pub_info, info), (self.pub_depth, depth), (self.pub, image)):
            if msg is not None:
                pub.publish(msg)

    def wait_for(self, collection, sec, timeout=20.0):
        assert self.spin_until(lambda: any(self._stamp_of(m) == sec for m in collection), timeout), sec
        return next(m for m in collection if self._stamp_of(m) == sec)

    @staticmethod
    def _stamp_of(m):
        header = m.markers[0].header if hasattr(m, "markers") else m.header
        return header.stamp.sec


@pytest.fixture(scope="module")
def node3d(ros, tmp_path_factory):
    env_path = os.pathsep.join(p for p in (MF_PATH, os.environ.get("PYTHONPATH", "")) if p)
    os.environ["PYTHONPATH"] = env_path  # the node process inherits it
    yield from node_process(tmp_path_factory.mktemp("node3d") / "tracker3d.log", "-r", f"__node:={NAME}",
                            "-p", "node.depth.enabled:=true", "-p", "node.depth.wait:=3.0",
                            "-p", "node.objects.publish_points:=true", "-p", "node.objects.points_stride:=2")


@pytest.fixture(scope="module")
def probe(node3d):
    require_ros()
    p = Probe3D()
    p.wait_connected(node3d, publishing=False)
    assert p.spin_until(p.connected, 30), "the node's depth input did not connect:\n" + node3d.log()
    p.spin_until(lambda: False, 0.5)  # both sides matched
    yield p
    p.destroy()


def _frame(i, sec, depth_offset_ns=0):
    from .conftest import image_msg

    rgb, depth, labels, truths = render(i)
    return (image_msg(rgb, sec=sec), depth_msg(depth, sec, depth_offset_ns), info_msg(sec)), labels, truths


@needs_mf
def test_objects_markers_and_points_carry_the_label_ids(probe, node3d):
    from mastsam_ros.core.render import id_colours
    from mastsam_ros.node.objects import read_pointcloud

    for i in range(4):
        sec = 100 + i
        (img, dep, inf), gt, truths = _frame(i, sec)
        if i == 2:
            dep.header.stamp.nanosec = 20_000_000  # 20 ms off: within the 50 ms slop
        probe.send(img, dep, inf)
        inst = probe.wait_for(probe.instances, sec)
        objs = probe.wait_for(probe.objects, sec)
        markers = probe.wait_for(probe.markers, sec)
        lab = labels_of(probe.wait_for(probe.labels, sec))

        label_ids = set(np.unique(lab).tolist()) - {0}
        assert objs.header.frame_id == "cam" and objs.source == "depth" and objs.frame_index == inst.frame_index
        assert [o.id for o in objs.objects] == [x.id for x in inst.instances]
        assert {o.label for o in objs.objects} == label_ids == {x.label for x in inst.instances}
        boxes = {m.id: m for m in markers.markers if m.ns.endswith("/boxes")}
        texts = {m.id: m for m in markers.markers if m.ns.endswith("/ids")}
        assert markers.markers[0].action == 3  # DELETEALL first: retired ids disappear
        measured = {o.id for o in objs.objects if o.points > 0}
        assert set(boxes) == set(texts) == measured == {x.id for x in inst.instances}  # all depth valid here
        for o in objs.objects:
            colour = id_colours(np.array([o.id]))[0] / 255.0
            assert np.allclose([boxes[o.id].color.r, boxes[o.id].color.g, boxes[o.id].color.b], colour, atol=1e-6)
            assert texts[o.id].text == str(o.id)
            assert o.pixels == int((lab == o.label).sum()) and o.valid_fraction == 1.0
        # The panel (known geometry): the object over most of its true mask sits at its true centre.
        panel = max(objs.objects, key=lambda o: int(((lab == o.label) & (gt == 1)).sum()))
        c = np.array([panel.centroid.x, panel.centroid.y, panel.centroid.z])
        allowed = centroid_tolerance(lab == panel.label, gt == 1)
        assert np.linalg.norm(c[:2] - truths[0].centre[:2]) < allowed and abs(c[2] - 2.0) < 0.01, (c, allowed)
        cloud = probe.wait_for(probe.points, sec)
        xyz, rgb, ids = read_pointcloud(cloud)
        assert set(ids.tolist()) <= {o.id for o in objs.objects} and len(ids) > 1000
        cols = id_colours(ids.astype(np.uint64)).astype(np.uint32)
        assert np.array_equal(rgb, (cols[:, 0] << 16) | (cols[:, 1] << 8) | cols[:, 2])


@needs_mf
def test_bad_depth_inputs_are_counted_and_the_node_keeps_answering(probe, node3d):
    base = 200
    cases = {}
    (img, dep, inf), _, _ = _frame(0, base)
    dep.encoding = "mono8"
    cases["depth_bad_encoding"] = (img, dep, inf)
    (img, dep, inf), _, _ = _frame(1, base + 1)
    _, small, _, _ = render(1)
    dep = depth_msg(small[::2, ::2], base + 1)
    cases["depth_size_mismatch"] = (img, dep, inf)
    (img, dep, inf), _, _ = _frame(2, base + 2)
    inf.k = [0.0] * 9
    cases["camera_info_bad"] = (img, dep, inf)
    (img, dep, inf), _, _ = _frame(3, base + 3)
    cases["no camera_info"] = (img, dep, None)
    (img, dep, inf), _, _ = _frame(4, base + 4)
    dep.header.stamp.sec = base + 5  # a whole second off: never paired
    cases["unsynchronisable"] = (img, dep, inf)

    for what, (img, dep, inf) in cases.items():
        probe.send(img, dep, inf)
        sec = img.header.stamp.sec
        inst = probe.wait_for(probe.instances, sec)  # still tracked, 2D outputs as usual...
        assert len(inst.instances) > 0, what
        probe.spin_until(lambda: False, 0.3)
        assert not any(m.header.stamp.sec == sec for m in probe.objects), what  # ...but no 3D objects

    # NaN depth: the objects are published, with no valid point, and counted.
    (img, dep, inf), _, _ = _frame(5, base + 10)
    _, depth, _, _ = render(5)
    dep = depth_msg(np.full_like(depth, np.nan), base + 10)
    probe.send(img, dep, inf)
    nan_objs = probe.wait_for(probe.objects, base + 10)
    assert nan_objs.objects and all(o.points == 0 and o.valid_fraction == 0.0 for o in nan_objs.objects)
    assert all(np.isnan(o.centroid.z) for o in nan_objs.objects)
    markers = probe.wait_for(probe.markers, base + 10)
    assert [m.action for m in markers.markers] == [3]  # nothing measured: only the DELETEALL

    # And a good frame afterwards: 3D again.
    (img, dep, inf), _, _ = _frame(5, base + 20)
    probe.send(img, dep, inf)
    objs = probe.wait_for(probe.objects, base + 20)
    assert all(o.points > 0 for o in objs.objects)

    probe.spin_until(lambda: False, 1.0)
    c = probe.counters()
    for key in ("depth_bad_encoding", "depth_size_mismatch", "camera_info_bad"):
        assert int(c[key]) == 1, (key, c)
    assert int(c["depth_unsynced"]) >= 2, c  # no camera_info, and the stamps a second apart
    assert int(c["objects_without_depth"]) >= len(nan_objs.objects), c
    assert int(c["tracker_errors"]) == 0 and int(c["callback_errors"]) == 0, node3d.log()
    assert c["depth_input"] == "synchronised"
    log = node3d.log()
    assert "unsupported depth encoding [mono8]" in log and "found no depth and camera_info" in log


def test_without_message_filters_depth_input_says_so_and_tracks_the_image(ros, tmp_path, monkeypatch):
    """Where message_filters is absent (no ROS 2 install, no ../shared/ros2), node.depth.enabled logs one clear error
    and the node stays the 2D tracker: it still answers every image. Where message_filters is installed, the node
    process gets a `message_filters` module that fails to import first on its PYTHONPATH, so this runs everywhere."""
    from .conftest import bedroom_frames, image_msg

    if MF_SKIP is None:
        hidden = tmp_path / "no_message_filters"
        hidden.mkdir()
        (hidden / "message_filters.py").write_text('raise ImportError("message_filters hidden by the test")\n')
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hidden), os.environ.get("PYTHONPATH")])))
    proc = NodeProcess("-r", "__node:=tracker_nomf", "-p", "node.qos:=reliable", "-p", "node.depth.enabled:=true",
                       "-p", "node.diagnostics_period:=0.5", log_path=tmp_path / "nomf.log")
    probe = Probe("probe_nomf", node_name="tracker_nomf")
    try:
        probe.wait_connected(proc)
        # /image may have matched another module's node first: send until this one answers (volatile QoS)
        rgb = bedroom_frames(1)[0]
        for i in range(20):
            probe.pub.publish(image_msg(rgb, sec=300, nanosec=i))
            if probe.spin_until(lambda: any(m.header.stamp.sec == 300 for m in probe.instances), 3.0):
                break
        assert any(m.header.stamp.sec == 300 for m in probe.instances), proc.log()
        assert probe.counters()["depth_input"].startswith("unavailable (")
        assert "message_filters does not import" in proc.log() and "depth input disabled" in proc.log()
    finally:
        probe.destroy()
        assert proc.stop() == 0, proc.log()


def _mast3r_skip() -> str | None:
    from mastsam_ros.core.errors import BackendUnavailable
    from mastsam_ros.core.matchers.mast3r import import_mast3r

    path = os.environ.get("MASTSAM_MAST3R_PATH", "")
    try:
        import_mast3r(path)
    except BackendUnavailable as e:
        return (f"mast3r not importable ({e}); put ../shared (with mast3r/) beside the checkout, or clone "
                "naver/mast3r with its submodules and set MASTSAM_MAST3R_PATH to it")
    return None


def test_pointmap_objects_from_mast3r_over_dds(ros, tmp_path):
    """No depth topic: the mast3r matcher's point map gives ~/objects (source pointmap), the ids of ~/labels.
    Upstream's model with random weights (scripts/verify_mast3r.py's tiny spec): the geometry is meaningless, the
    plumbing (ids, stamps, frame, validity) is what is checked."""
    reason = _mast3r_skip()
    if reason:
        pytest.skip(reason)
    import importlib.util

    from .conftest import REPO, bedroom_frames, image_msg

    spec = importlib.util.spec_from_file_location("verify_mast3r", REPO / "scripts" / "verify_mast3r.py")
    verify = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verify)
    mast3r_path = os.environ["MASTSAM_MAST3R_PATH"]
    ckpt = verify.save_random_checkpoint(mast3r_path, verify.TINY_MODEL, tmp_path / "tiny.pth")
    proc = NodeProcess("-r", "__node:=tracker_pm", "-p", "node.qos:=reliable", "-p", "matcher.backend:=mast3r",
                       "-p", f"matcher.checkpoint:={ckpt}", "-p", f"matcher.mast3r_path:={mast3r_path}",
                       "-p", "node.objects.pointmap:=true", "-p", "node.objects.pointmap_min_conf:=1.0",
                       log_path=tmp_path / "pm.log")
    probe = Probe("probe_pm", node_name="tracker_pm")
    objects = []
    from .conftest import MSGS

    probe.node.create_subscription(MSGS.Object3DArray, "/tracker_pm/objects", objects.append, 10)
    try:
        probe.wait_connected(proc, timeout=60)
        probe.spin_until(lambda: False, 0.5)
        for i, rgb in enumerate(bedroom_frames(2)):
            inst = probe.send_and_wait(image_msg(rgb, sec=400 + i), timeout=120)
            assert probe.spin_until(lambda: any(m.header.stamp.sec == 400 + i for m in objects), 10), proc.log()
            objs = next(m for m in objects if m.header.stamp.sec == 400 + i)
            assert objs.source == "pointmap" and objs.header.frame_id == "cam"
            assert [o.id for o in objs.objects] == [x.id for x in inst.instances] and objs.objects
            # conf_mode ('exp', 1, inf): every confidence is >= 1, so with min_conf 1.0 every pixel is a point.
            assert all(o.points == o.pixels and o.valid_fraction == 1.0 for o in objs.objects)
    finally:
        probe.destroy()
        code = proc.stop()
    assert code == 0, proc.log()
