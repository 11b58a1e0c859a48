"""The delivery benchmark runs end to end, and the node's default Fast DDS profile (udp_input) takes full-size
frames from a publisher left on Fast DDS's defaults (docs/ROS.md, "Delivery")."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

from mastsam_ros.cli.delivery import _env, _side_settings

from .conftest import REPO, require_ros

NS = {"f": "http://www.eprosima.com"}


def _table(*args: str) -> list[list[str]]:
    """Run the benchmark's table; its rows as lists of cells."""
    out = subprocess.run([sys.executable, "-m", "mastsam_ros.cli.delivery", "table", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.stdout.splitlines()
            if line.startswith("| ") and "x" in line.split("|")[1]]
    assert rows, out.stdout
    return rows


def _counts(row: list[str]) -> tuple[int, int]:
    received, published = (int(x) for x in row[7].split(" (")[0].split(" / "))
    return received, published


def test_delivery_table_measures_one_row(ros):
    require_ros()
    rows = _table("--sizes", "320x240", "--rates", "15", "--pub-qos", "reliable", "--node-qos", "reliable",
                  "--transports", "profile:large_data", "--seconds", "1")
    assert len(rows) == 1 and rows[0][0] == "320x240", rows
    received, published = _counts(rows[0])
    assert published == 15 and 0 < received <= published, rows[0]
    assert rows[0][3] == "reliable" and rows[0][4] == "5" and rows[0][5] == "profile:large_data"


def test_udp_input_on_the_receiver_only_takes_full_size_frames_from_a_default_publisher(ros):
    """The issue's case: 1280x720 rgb8 best effort from a publisher on Fast DDS's defaults (2.7 MB a frame, more
    than its 512 KB shared-memory segment). Measured at 90/90 (docs/ROS.md); 90% here leaves room for a loaded CI
    machine while a broken profile (0-10% in the same measurement) still fails."""
    require_ros()
    rows = _table("--sizes", "1280x720", "--rates", "15", "--pub-qos", "sensor_data", "--transports",
                  "node:profile:udp_input", "--seconds", "2")
    received, published = _counts(rows[0])
    assert published == 30 and received >= 0.9 * published, rows[0]


def test_transport_settings_apply_to_the_side_they_name():
    assert _side_settings("pub:profile:large_data+node:profile:udp_input", "publisher") == ["profile:large_data"]
    assert _side_settings("pub:profile:large_data+node:profile:udp_input", "receiver") == ["profile:udp_input"]
    assert _side_settings("udp", "receiver") == _side_settings("udp", "publisher") == ["udp"]
    env = _env("node:env:RMW_FASTRTPS_PUBLICATION_MODE=ASYNCHRONOUS+node:udp", 215, "receiver", "SUBNET")
    assert env["RMW_FASTRTPS_PUBLICATION_MODE"] == "ASYNCHRONOUS" and env["FASTDDS_BUILTIN_TRANSPORTS"] == "UDPv4"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    pub = _env("node:profile:udp_input", 215, "publisher")
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in pub and pub["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    # the node loads nothing of its own unless the row is `run` (the node as `ros2 run` starts it: its own default)
    assert _env("default", 215, "receiver")["MASTSAM_DDS_PROFILE"] == "none"
    run = _env("node:run", 215, "receiver")
    assert "MASTSAM_DDS_PROFILE" not in run and "FASTDDS_DEFAULT_PROFILES_FILE" not in run
    assert _env("node:run", 215, "publisher")["MASTSAM_DDS_PROFILE"] == "none"


def test_udp_input_announces_only_udp_for_data_and_keeps_shared_memory_for_sending():
    root = ET.parse(REPO / "config" / "fastdds_udp_input.xml").getroot()
    kinds = [next(iter(loc)).tag.split("}")[1] for loc in root.findall(".//f:defaultUnicastLocatorList/f:locator", NS)]
    assert kinds == ["udpv4"]
    transports = {t.findtext("f:transport_id", namespaces=NS): t for t in root.findall(".//f:transport_descriptor", NS)}
    used = [t.text for t in root.findall(".//f:userTransports/f:transport_id", NS)]
    assert sorted(transports[u].findtext("f:type", namespaces=NS) for u in used) == ["SHM", "UDPv4"]
    assert root.findtext(".//f:useBuiltinTransports", namespaces=NS) == "false"
    udp = next(t for t in transports.values() if t.findtext("f:type", namespaces=NS) == "UDPv4")
    assert int(udp.findtext("f:receiveBufferSize", namespaces=NS)) >= 4 * 1024 * 1024


def test_camera_profile_keeps_one_udp_transport_in_both_discovery_ranges():
    """config/fastdds_camera.xml, for the camera driver towards a node on udp_input: Fast DDS's builtin transports
    (which rmw_fastrtps replaces by its own shared memory + UDPv4 under LOCALHOST) and only a large shared-memory
    segment of its own: no UDPv4 transport of its own, which would send every datagram twice under LOCALHOST."""
    root = ET.parse(REPO / "config" / "fastdds_camera.xml").getroot()
    transports = {t.findtext("f:transport_id", namespaces=NS): t for t in root.findall(".//f:transport_descriptor", NS)}
    used = [t.text for t in root.findall(".//f:userTransports/f:transport_id", NS)]
    assert [transports[u].findtext("f:type", namespaces=NS) for u in used] == ["SHM"]
    assert int(transports[used[0]].findtext("f:segment_size", namespaces=NS)) >= 64 * 1024 * 1024
    assert root.findtext(".//f:useBuiltinTransports", namespaces=NS) == "true"
    assert root.find(".//f:defaultUnicastLocatorList", NS) is None  # it announces what Fast DDS would
