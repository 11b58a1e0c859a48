"""mastsam-bag: from-images -> play -> the node (over DDS), and process -> read back with rosbags (no ROS needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from mastsam_ros.cli import bag
from .conftest import BEDROOM, REPO, NodeProcess, Probe, require_ros

N = 5
TOPIC = "/camera/image_raw"


@pytest.fixture(scope="module")
def image_bag(tmp_path_factory) -> Path:
    if not BEDROOM.is_dir():
        pytest.skip(f"{BEDROOM} missing (bag tests use real frames from ../shared/data)")
    out = tmp_path_factory.mktemp("bags") / "bedroom"
    assert bag.main(["from-images", str(BEDROOM), str(out), "--max-side", "320", "--limit", str(N),
                     "--rate", "2", "--topic", TOPIC]) == 0
    return out


def _read(path: Path, topic: str):
    store = bag.typestore()
    with Reader(path) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t, store.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages(connections=conns)]


def test_from_images_writes_stamped_frames(image_bag):
    msgs = _read(image_bag, TOPIC)
    assert len(msgs) == N
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in msgs]
    assert stamps == [t for t, _ in msgs] and np.allclose(np.diff(stamps), 0.5e9)
    m = msgs[0][1]
    assert (m.encoding, m.width, m.height, m.step) == ("rgb8", 320, 180, 960)


def test_process_writes_labels_and_instances_deterministically(image_bag, tmp_path):
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        code = bag.main(["process", str(image_bag), str(out), "--topic", TOPIC,
                         "--config", str(REPO / "config" / "tracker.yaml")])
        assert code == 0
        outs.append(out)
    inputs = _read(outs[0], TOPIC)
    labels = _read(outs[0], "/tracker/labels")
    instances = _read(outs[0], "/tracker/instances")
    assert len(inputs) == len(labels) == len(instances) == N
    for (t_in, m_in), (t_l, m_l), (t_i, m_i) in zip(inputs, labels, instances):
        assert t_in == t_l == t_i and m_l.header.stamp == m_in.header.stamp == m_i.header.stamp
        lab = np.frombuffer(m_l.data.tobytes(), "<u2").reshape(m_l.height, m_l.width)
        assert m_l.encoding == "mono16" and lab.shape == (180, 320)
        assert {int(x.label) for x in m_i.instances} == set(np.unique(lab)) - {0}
    assert instances[0][1].keyframe and instances[0][1].frame_index == 0
    # Deterministic: a second run writes the same labels and instances.
    for topic in ("/tracker/labels", "/tracker/instances"):
        a, b = _read(outs[0], topic), _read(outs[1], topic)
        store = bag.typestore()
        assert [store.serialize_cdr(m, m.__msgtype__) for _, m in a] == [
            store.serialize_cdr(m, m.__msgtype__) for _, m in b]


def test_bag_types_match_the_built_messages():
    """rosbags' type hash of our messages equals rosidl's, so ros2 bag and Foxglove accept the bags we write."""
    require_ros()
    described = Path(sys.prefix, "share", "mastsam_ros", "msg", "InstanceArray.json")  # written by the msg build
    if not described.is_file():
        pytest.skip(f"{described} missing: messages not built into this venv (scripts/setup_ros.sh)")
    hashes = {h["type_name"]: h["hash_string"] for h in json.loads(described.read_text())["type_hashes"]}
    store = bag.typestore()
    for name in ("mastsam_ros/msg/InstanceArray", "mastsam_ros/msg/Instance"):
        assert store.hash_rihs01(name) == hashes[name]
    described = Path(sys.prefix, "share", "mastsam_ros", "msg", "Object3DArray.json")
    hashes = {h["type_name"]: h["hash_string"] for h in json.loads(described.read_text())["type_hashes"]}
    for name in ("mastsam_ros/msg/Object3DArray", "mastsam_ros/msg/Object3D"):
        assert store.hash_rihs01(name) == hashes[name]


def test_play_feeds_the_node(ros, image_bag, tmp_path):
    require_ros()
    node = NodeProcess("-r", f"image:={TOPIC}", "-r", "__node:=bag_tracker", "-p", "node.qos:=reliable",
                       log_path=tmp_path / "node.log")
    probe = Probe("bag_probe", node_name="bag_tracker")
    try:
        probe.wait_connected(node, publishing=False)  # the player publishes, not the probe
        # Played at its recorded 2 Hz; the node may drop a frame when a step takes longer than 0.5 s on a busy
        # machine, but it always answers the newest one, and every frame is accounted for in its diagnostics.
        player = subprocess.run(
            [sys.executable, "-m", "mastsam_ros.cli.bag", "play", str(image_bag), "--wait", "30"],
            cwd=REPO, capture_output=True, text=True, timeout=90,
        )
        assert player.returncode == 0, player.stdout + player.stderr
        assert f"published {N} messages on {TOPIC}" in player.stdout
        expected = [(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in _read(image_bag, TOPIC)]

        def stamps():
            return [(m.header.stamp.sec, m.header.stamp.nanosec) for m in probe.instances]

        assert probe.spin_until(lambda: expected[-1] in stamps(), 20), node.log()
        got = stamps()
        assert got == [s for s in expected if s in got] and len(got) >= N // 2, (got, expected)
        probe.spin_until(lambda: False, 0.2)  # the worker counts a frame just after publishing its answer
        c = probe.counters()
        assert int(c["frames_received"]) == N, (c, node.log())
        assert int(c["frames_processed"]) + int(c["frames_dropped"]) == N, c
    finally:
        probe.destroy()
        assert node.stop() == 0, node.log()
