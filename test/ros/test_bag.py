"""mastsam-bag: from-images -> play -> the node (over DDS), and process (serial and --pipeline, through the stream)
-> read back with rosbags (no ROS needed). Faults and usage errors: test_bag_faults.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from mastsam_ros.cli import bag, bagio
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
    store = bagio.typestore()
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
    # track events: a born event for every new id, at the same stamps as the instances that list it
    events = {t: m for t, m in _read(outs[0], "/tracker/events")}
    assert events and set(events) <= {t for t, _ in instances}
    for t, m_i in instances:
        born = sorted(e.id for e in events[t].events if e.kind == "born") if t in events else []
        reidentified = {e.id for e in events[t].events if e.kind == "reidentified"} if t in events else set()
        assert born == sorted(set(m_i.new_ids) - reidentified)
    # Deterministic: a second run writes the same labels and instances.
    for topic in ("/tracker/labels", "/tracker/instances"):
        a, b = _read(outs[0], topic), _read(outs[1], topic)
        store = bagio.typestore()
        assert [store.serialize_cdr(m, m.__msgtype__) for _, m in a] == [
            store.serialize_cdr(m, m.__msgtype__) for _, m in b]


def _label_images(path: Path) -> list[np.ndarray]:
    return [np.frombuffer(m.data.tobytes(), "<u2").reshape(m.height, m.width).copy()
            for _, m in _read(path, "/tracker/labels")]


def test_pipeline_gives_the_serial_outputs(image_bag, tmp_path):
    """`process --pipeline` (the stream preparing frames ahead) writes the label images and instances of the serial
    run; both are the stream's outcomes, and no output is left under a temporary name."""
    outs = {}
    for mode in ("serial", "pipeline"):
        out = tmp_path / mode
        extra = ["--pipeline"] if mode == "pipeline" else []
        assert bag.main(["process", str(image_bag), str(out), "--topic", TOPIC, *extra]) == 0
        outs[mode] = out
    serial, pipelined = _label_images(outs["serial"]), _label_images(outs["pipeline"])
    assert len(serial) == N and any(lab.any() for lab in serial)  # not a vacuous equality: objects were found
    assert all(np.array_equal(a, b) for a, b in zip(serial, pipelined, strict=True))
    store = bagio.typestore()
    a, b = _read(outs["serial"], "/tracker/instances"), _read(outs["pipeline"], "/tracker/instances")
    assert [store.serialize_cdr(m, m.__msgtype__) for _, m in a] == [
        store.serialize_cdr(m, m.__msgtype__) for _, m in b]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline", "serial"]


def test_process_bag_takes_typed_options(image_bag, tmp_path):
    """The library call both CLIs make: options as a dataclass, a tracker, a callback per frame written."""
    from mastsam_ros.core.config import Config
    from mastsam_ros.core.tracker import Tracker

    written = []
    opts = bagio.ProcessOptions(input=image_bag, output=tmp_path / "out", topic=TOPIC, copy_input=False,
                                output_prefix="/seg")
    r = bagio.process_bag(opts, Tracker(Config()), on_frame=lambda: written.append(1))
    assert (r.frames, r.skipped, len(written), r.objects_jsonl) == (N, 0, N, None)
    with Reader(tmp_path / "out") as reader:
        assert sorted(c.topic for c in reader.connections) == ["/seg/events", "/seg/instances", "/seg/labels"]
    with pytest.raises(bagio.OutputError, match="exists already"):
        bagio.process_bag(opts, Tracker(Config()))
    with pytest.raises(bagio.UsageError, match="go together"):
        bagio.process_bag(bagio.ProcessOptions(input=image_bag, output=tmp_path / "o2", topic=TOPIC,
                                               depth_topic="/d"), Tracker(Config()))
    assert not (tmp_path / "o2").exists()


def test_bag_types_match_the_built_messages():
    """rosbags' type hash of our messages equals rosidl's, so ros2 bag and Foxglove accept the bags we write."""
    require_ros()
    described = Path(sys.prefix, "share", "mastsam_ros", "msg", "InstanceArray.json")  # written by the msg build
    if not described.is_file():
        pytest.skip(f"{described} missing: messages not built into this venv (scripts/setup_ros.sh)")
    hashes = {h["type_name"]: h["hash_string"] for h in json.loads(described.read_text())["type_hashes"]}
    store = bagio.typestore()
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


def test_process_with_depth_writes_3d_objects(tmp_path):
    """A bag of the rendered scene (test/scene3d.py): colour, 16UC1 depth and camera_info with known geometry."""
    from rosbags.rosbag2 import Writer
    from scene3d import CX, CY, FX, FY, centroid_tolerance, render

    from mastsam_ros.node.conversions import image_msg

    store = bagio.typestore()
    T = bagio.bag_types(store)
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    CameraInfo = store.types["sensor_msgs/msg/CameraInfo"]
    src = tmp_path / "scene"
    truths = {}
    with Writer(src, version=bagio.BAG_VERSION) as w:
        c_img = w.add_connection("/cam/color", bagio.IMAGE, typestore=store)
        c_dep = w.add_connection("/cam/depth", bagio.IMAGE, typestore=store)
        c_inf = w.add_connection("/cam/info", bagio.CAMERA_INFO, typestore=store)
        for i in range(5):
            rgb, depth, _, truths[i] = render(i)
            ns = (10 + i) * 10**9

            def header(offset=0):
                t = ns + offset
                return Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="cam")

            mm = np.round(depth * 1000).astype(np.uint16)
            if i == 3:
                mm = mm[::2, ::2]  # not registered: this frame's objects are skipped
            dep = T.Image(header=header(15_000_000), height=mm.shape[0], width=mm.shape[1], encoding="16UC1",
                          is_bigendian=0, step=mm.shape[1] * 2, data=np.frombuffer(mm.tobytes(), np.uint8))
            info = CameraInfo(header=header(-5_000_000), height=240, width=320, distortion_model="plumb_bob",
                              d=np.zeros(5), k=np.array([FX, 0, CX, 0, FY, CY, 0, 0, 1.0]), r=np.eye(3).ravel(),
                              p=np.zeros(12), binning_x=0, binning_y=0,
                              roi=store.types["sensor_msgs/msg/RegionOfInterest"](0, 0, 0, 0, False))
            # Depth after the image in the bag for odd frames, before it for even ones; frame 1 has no depth.
            items = [(c_img, ns, image_msg(T, header(), rgb), bagio.IMAGE), (c_inf, ns, info, bagio.CAMERA_INFO)]
            if i != 1:
                items.insert(0 if i % 2 == 0 else 2, (c_dep, ns + 1, dep, bagio.IMAGE))
            for conn, t, msg, typ in items:
                w.write(conn, t, store.serialize_cdr(msg, typ))

    out = tmp_path / "out"
    assert bag.main(["process", str(src), str(out), "--topic", "/cam/color", "--depth-topic", "/cam/depth"]) == 2
    assert bag.main(["process", str(src), str(out), "--topic", "/cam/color", "--depth-topic", "/cam/depth",
                     "--camera-info-topic", "/cam/info", "--slop", "0.02"]) == 0
    instances = {m.header.stamp.sec: m for _, m in _read(out, "/tracker/instances")}
    objects = {m.header.stamp.sec: m for _, m in _read(out, "/tracker/objects")}
    lines = [json.loads(x) for x in Path(f"{out}.objects.jsonl").read_text().splitlines()]
    assert len(instances) == 5 and sorted(objects) == [10, 12, 14]  # 11: no depth, 13: wrong size
    assert [x["stamp_ns"] // 10**9 for x in lines] == [10, 12, 14]
    labels = {m.header.stamp.sec: m for _, m in _read(out, "/tracker/labels")}
    for sec, objs in objects.items():
        assert [o.id for o in objs.objects] == [x.id for x in instances[sec].instances]
        lab = np.frombuffer(labels[sec].data, "<u2").reshape(240, 320)
        _, _, gt, _ = render(sec - 10)
        panel = max(objs.objects, key=lambda o: int(((lab == o.label) & (gt == 1)).sum()))
        c = np.array([panel.centroid.x, panel.centroid.y, panel.centroid.z])
        allowed = centroid_tolerance(lab == panel.label, gt == 1)
        assert np.linalg.norm(c[:2] - truths[sec - 10][0].centre[:2]) < allowed and abs(c[2] - 2.0) < 0.002
    # The stream preparing frames ahead gives the same 3D records.
    assert bag.main(["process", str(src), str(tmp_path / "piped"), "--topic", "/cam/color", "--depth-topic",
                     "/cam/depth", "--camera-info-topic", "/cam/info", "--slop", "0.02", "--pipeline"]) == 0
    assert Path(f"{tmp_path / 'piped'}.objects.jsonl").read_text().splitlines() == [json.dumps(x) for x in lines]
    # Frames over --max-input-pixels are tracked downscaled; the full-size depth still gives their 3D objects.
    assert bag.main(["process", str(src), str(tmp_path / "small"), "--topic", "/cam/color", "--depth-topic",
                     "/cam/depth", "--camera-info-topic", "/cam/info", "--slop", "0.02",
                     "--max-input-pixels", "19200"]) == 0
    small = {m.header.stamp.sec: m for _, m in _read(tmp_path / "small", "/tracker/objects")}
    assert sorted(small) == [10, 12, 14]
    assert {(m.width, m.height) for _, m in _read(tmp_path / "small", "/tracker/labels")} == {(160, 120)}
    instances = {m.header.stamp.sec: m for _, m in _read(tmp_path / "small", "/tracker/instances")}
    for sec, objs in small.items():  # the ids of the frame's instances, the panel 2 m away among them
        assert [o.id for o in objs.objects] == [x.id for x in instances[sec].instances]
        assert any(abs(o.centroid.z - 2.0) < 0.01 and o.points > 0 for o in objs.objects), (sec, objs.objects)
