"""Fixtures for the ROS tests: the node as a separate process, a probe node in the test process, real frames.

Every test process and node runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a domain id of its own, so they
see only each other and send nothing off the machine. Tests skip with a reason when rclpy or the built messages are
missing (scripts/setup_ros.sh installs both; CI runs it through scripts/setup.sh).
"""

from __future__ import annotations

import array
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
BEDROOM = SHARED / "data" / "bedroom"
PARAMS = REPO / "config" / "tracker.yaml"
SIZE = (320, 180)  # frames are downscaled: the classical segmenter then answers in a few hundred ms on 2 cores

# One domain per test session (0-101 and 215-232 are the valid ranges for the default port mapping).
os.environ["ROS_DOMAIN_ID"] = str(20 + os.getpid() % 80)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# Both ends load the large_data Fast DDS profile (shared memory both ways, as docs/ROS.md "Delivery" describes for a
# driver that loads it too): with Fast DDS's own defaults a best-effort writer loses most frames over 512 KB, and the
# launch default udp_input cannot take the 36 MB frame of test_robust_input. test_delivery covers udp_input.
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_large_data.xml")

try:
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from mastsam_ros.node.interfaces import load_messages

    MSGS = load_messages()
    ROS_SKIP = None
except ImportError as e:  # pragma: no cover - depends on the machine
    ROS_SKIP = f"rclpy or the mastsam_ros messages are not importable ({e}); run scripts/setup_ros.sh"


def require_ros():
    if ROS_SKIP:
        pytest.skip(ROS_SKIP)


def bedroom_frames(n: int, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """First ``n`` bedroom frames as H x W x 3 uint8 RGB, resized to ``size`` (w, h)."""
    files = sorted(BEDROOM.glob("*.jpg"))[:n]
    if len(files) < n:
        pytest.skip(f"{BEDROOM} missing (the ROS tests publish real frames from ../shared/data)")
    return [cv2.cvtColor(cv2.resize(cv2.imread(str(f)), size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            for f in files]


def image_msg(rgb: np.ndarray, sec: int, nanosec: int = 0, encoding: str = "rgb8", frame_id: str = "cam",
              pad: int = 0) -> "Image":
    """An rclpy sensor_msgs/Image of ``rgb`` (H x W x 3 uint8 RGB) in ``encoding``, rows padded by ``pad`` bytes."""
    conv = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA, "bgra8": cv2.COLOR_RGB2BGRA,
            "mono8": cv2.COLOR_RGB2GRAY}[encoding]
    px = rgb if conv is None else cv2.cvtColor(rgb, conv)
    px = px.reshape(px.shape[0], -1)
    rows = np.zeros((px.shape[0], px.shape[1] + pad), np.uint8)
    rows[:, : px.shape[1]] = px
    m = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=rows.shape[1],
              data=array.array("B", rows.tobytes()))
    m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = sec, nanosec, frame_id
    return m


def labels_of(msg) -> np.ndarray:
    """mono16 sensor_msgs/Image -> H x W uint16."""
    assert msg.encoding == "mono16" and msg.is_bigendian == 0
    return np.frombuffer(msg.data, "<u2").reshape(msg.height, msg.step // 2)[:, : msg.width]


class NodeProcess:
    """The tracker node started as ``python -m mastsam_ros.node.tracker_node --ros-args ...`` in its own process."""

    def __init__(self, *ros_args: str, log_path: Path, args: tuple[str, ...] = ()):
        self.log_path = log_path
        self._log = open(log_path, "w")
        cmd = [sys.executable, "-m", "mastsam_ros.node.tracker_node", *args, "--ros-args", "--params-file",
               str(PARAMS), *ros_args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def rss_kib(self, field: str = "VmRSS") -> int:
        """Resident memory in KiB; ``field="VmHWM"`` gives the peak since the process started."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Probe:
    """A node in the test process that publishes images and records everything the tracker sends back."""

    def __init__(self, name: str, node_name: str = "tracker"):
        self.node = Node(name)
        self.pub = self.node.create_publisher(Image, "/image", 10)
        self.instances, self.labels, self.overlays, self.diagnostics = [], [], [], []
        from diagnostic_msgs.msg import DiagnosticArray

        self.sub_instances = self.node.create_subscription(
            MSGS.InstanceArray, f"/{node_name}/instances", self.instances.append, 50)
        self.node.create_subscription(Image, f"/{node_name}/labels", self.labels.append, 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)
        self._node_name = node_name

    def watch_overlay(self):
        self.node.create_subscription(Image, f"/{self._node_name}/overlay", self.overlays.append, 10)

    def spin_until(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return predicate()

    def wait_connected(self, proc: NodeProcess | None = None, timeout: float = 30.0, publishing: bool = True):
        """Wait until the tracker's ~/instances matched this probe and, if ``publishing``, our images match its input.

        Answers sent before the probe's subscription matched would be lost (volatile QoS), hence both directions.
        """
        ok = self.spin_until(lambda: self.sub_instances.get_publisher_count() > 0 and (
            not publishing or self.pub.get_subscription_count() > 0), timeout)
        assert ok, "the tracker node did not connect" + (f"; its log:\n{proc.log()}" if proc else "")

    def send_and_wait(self, msg, timeout: float = 20.0) -> object:
        """Publish one image and wait for the InstanceArray with its stamp."""
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.pub.publish(msg)
        found = self.spin_until(lambda: any(self._stamp(m) == stamp for m in self.instances), timeout)
        assert found, f"no instances for stamp {stamp}"
        return next(m for m in self.instances if self._stamp(m) == stamp)

    def counters(self, timeout: float = 5.0) -> dict[str, str]:
        """The probed node's newest diagnostics values (waits for a fresh message; other nodes' are skipped)."""
        # Only a message stamped after this call counts: older ones may still sit in the subscription's queue.
        asked = time.time()
        name = f"{self._node_name}: tracker"

        def fresh():
            for m in reversed(self.diagnostics):
                if m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 <= asked:
                    return None
                for s in m.status:
                    if s.name == name:
                        return {kv.key: kv.value for kv in s.values}
            return None

        assert self.spin_until(lambda: fresh() is not None, timeout), f"no fresh /diagnostics from {name}"
        return fresh()

    def set_parameter(self, name: str, value, timeout: float = 10.0):
        """Set one parameter of the probed node over its set_parameters service; returns its SetParametersResult.
        The value's Python type (bool, int, float, str) gives the parameter type."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters, f"/{self._node_name}/set_parameters")
        try:
            assert client.wait_for_service(timeout_sec=timeout)
            request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
            future = client.call_async(request)
            assert self.spin_until(future.done, timeout)
            return future.result().results[0]
        finally:
            self.node.destroy_client(client)

    @staticmethod
    def _stamp(m):
        return (m.header.stamp.sec, m.header.stamp.nanosec)

    def destroy(self):
        self.node.destroy_node()


@pytest.fixture(scope="session")
def ros():
    require_ros()
    rclpy.init()
    yield
    rclpy.try_shutdown()


def node_process(log_path: Path, *ros_args: str):
    """For a fixture to ``yield from``: a tracker node (reliable QoS, diagnostics every 0.5 s, plus ``ros_args``),
    stopped with SIGTERM at the end, which must exit cleanly."""
    proc = NodeProcess("-p", "node.qos:=reliable", "-p", "node.diagnostics_period:=0.5", *ros_args, log_path=log_path)
    yield proc
    code = proc.stop()
    assert code == 0, f"the node did not exit cleanly on SIGTERM (code {code}):\n{proc.log()}"


def connected_probe(proc: NodeProcess, name: str):
    """For a fixture to ``yield from``: a Probe connected to ``proc``'s topics, destroyed at the end."""
    require_ros()
    p = Probe(name)
    p.wait_connected(proc)
    yield p
    p.destroy()


@pytest.fixture(scope="module")
def tracker_node(ros, tmp_path_factory):
    """One tracker node per test module (start-up costs about 2 s), stopped with SIGTERM at the end."""
    yield from node_process(tmp_path_factory.mktemp("node") / "tracker.log")
