"""mastsam-bag under user mistakes and faults: each case checks the exit code (2 usage, 1 failed run, 128 + signal
when interrupted), the one-line message, that no output and no temporary one is left, and that earlier outputs are
intact. In-process cases read the error from the log records (``bag.main`` returns a code instead of raising, so no
traceback); the signal and Ray cases run the command as a process and read its stderr. No ROS install needed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, Writer

from mastsam_ros.cli import archives, bag, bagio
from .conftest import BEDROOM, REPO

TOPIC = "/camera/image_raw"
SMALL = ["--set", "segmenter.max_side=160", "--set", "matcher.max_side=160"]


def _frames(tmp: Path, n: int, first: int = 0) -> Path:
    """A folder of ``n`` bedroom frames (links to ../shared, nothing copied)."""
    files = sorted(BEDROOM.glob("*.jpg"))[first: first + n]
    if len(files) < n:
        pytest.skip(f"{BEDROOM} missing (the bag tests use real frames from ../shared/data)")
    d = tmp / f"frames_{first}_{n}"
    d.mkdir()
    for f in files:
        (d / f.name).symlink_to(f)
    return d


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("small")
    out = tmp / "small"
    assert bag.main(["from-images", str(_frames(tmp, 4)), str(out), "--max-side", "160"]) == 0
    return out


@pytest.fixture(scope="module")
def long_bag(tmp_path_factory) -> Path:
    """Long enough (40 frames at 320 px) that a signal sent after the first frame arrives mid-run."""
    tmp = tmp_path_factory.mktemp("long")
    out = tmp / "long"
    assert bag.main(["from-images", str(_frames(tmp, 40)), str(out), "--max-side", "320"]) == 0
    return out


def _main(caplog, *argv) -> tuple[int, list[str]]:
    """bag.main's exit code and its error lines."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        code = bag.main([str(a) for a in argv])
    return code, [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _cli(*argv, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "mastsam_ros.cli.bag", *map(str, argv)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _one_error(stderr: str) -> str:
    """The one ERROR line of a command's stderr (and no traceback)."""
    assert "Traceback" not in stderr, stderr
    errors = [x for x in stderr.splitlines() if x.startswith("ERROR")]
    assert len(errors) == 1, stderr
    return errors[0]


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _partials(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial" in p.name]


def _count(path: Path, topic: str) -> int:
    with Reader(path) as reader:
        return sum(c.msgcount for c in reader.connections if c.topic == topic)


def _image_bag(path: Path, encodings: list[str]) -> None:
    """A bag of 160x90 frames on TOPIC, one per encoding (an unsupported one makes a frame the stream refuses)."""
    from mastsam_ros.node.conversions import image_msg

    store = bagio.typestore()
    T = bagio.bag_types(store)
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    rgb = np.zeros((90, 160, 3), np.uint8)
    rgb[20:70, 30:90] = (200, 40, 40)
    rgb[10:40, 100:150] = (40, 200, 40)
    with Writer(path, version=bagio.BAG_VERSION) as w:
        conn = w.add_connection(TOPIC, bagio.IMAGE, typestore=store)
        for i, encoding in enumerate(encodings):
            msg = image_msg(T, Header(stamp=Time(sec=i + 1, nanosec=0), frame_id="cam"), np.roll(rgb, 2 * i, 1))
            msg.encoding = encoding
            w.write(conn, (i + 1) * 10**9, store.serialize_cdr(msg, bagio.IMAGE))


# --- from-images --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [
    ("--rate", "0"), ("--rate", "-5"), ("--rate", "nan"), ("--rate", "inf"), ("--limit", "-1"), ("--start", "nan"),
    ("--max-side", "-2"),
])
def test_from_images_refuses_bad_numbers(caplog, tmp_path, option, value):
    out = tmp_path / "out"
    code, errors = _main(caplog, "from-images", _frames(tmp_path, 2), out, option, value)
    assert code == 2 and len(errors) == 1 and errors[0].startswith(option), errors
    assert not out.exists() and not _partials(tmp_path)


def test_from_images_refuses_an_empty_or_missing_folder(caplog, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no image here")
    code, errors = _main(caplog, "from-images", empty, tmp_path / "out")
    assert code == 2 and len(errors) == 1 and errors[0].startswith("no images"), errors
    code, errors = _main(caplog, "from-images", tmp_path / "nothing", tmp_path / "out")
    assert code == 2 and len(errors) == 1 and "no image folder" in errors[0], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
    # The same through the installed entry point: one line on stderr, no traceback.
    r = _cli("from-images", empty, tmp_path / "out")
    assert r.returncode == 2 and "no images" in _one_error(r.stderr), r.stderr


def test_from_images_skips_and_counts_unreadable_images(caplog, capsys, tmp_path):
    """A truncated JPEG (a third of its bytes) and a file that is no image are skipped and counted; the others kept."""
    src = _frames(tmp_path, 3)
    whole = sorted(BEDROOM.glob("*.jpg"))[10].read_bytes()
    (src / "00001a.jpg").write_bytes(whole[: len(whole) // 3])
    (src / "00002a.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    code, errors = _main(caplog, "from-images", src, out, "--max-side", "160")
    assert code == 0 and not errors
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(skipped) == 2 and "00001a.jpg" in skipped[0] and "00002a.png" in skipped[1], skipped
    assert "wrote 3 frames, 2 skipped (bad_data 2)" in capsys.readouterr().out
    assert _count(out, TOPIC) == 3


def test_from_images_reads_any_file_name(caplog, capsys, tmp_path):
    """File names that are not UTF-8 are read (not a crash), a truncated one skipped and counted like the others."""
    src = tmp_path / "odd"
    src.mkdir()
    frames = sorted(BEDROOM.glob("*.jpg"))[:2]
    if len(frames) < 2:
        pytest.skip(f"{BEDROOM} missing")
    os.symlink(frames[0], os.path.join(os.fsencode(src), b"a\xff\xfe.jpg"))
    os.symlink(frames[1], os.path.join(os.fsencode(src), b"b.jpg"))
    with open(os.path.join(os.fsencode(src), b"c\xe9.jpg"), "wb") as f:
        f.write(frames[1].read_bytes()[:5000])
    out = tmp_path / "out"
    code, errors = _main(caplog, "from-images", src, out, "--max-side", "160")
    assert code == 0 and not errors
    assert "wrote 2 frames, 1 skipped (bad_data 1)" in capsys.readouterr().out
    r = _cli("from-images", src, tmp_path / "out2", "--max-side", "160")  # the process neither crashes nor fails
    assert r.returncode == 0 and "Traceback" not in r.stderr and "Logging error" not in r.stderr, r.stderr
    assert _count(out, TOPIC) == _count(tmp_path / "out2", TOPIC) == 2


def test_from_images_bounds_the_input_size(caplog, capsys, tmp_path):
    """Over --max-input-pixels a JPEG is reduced while decoding; a PNG that cannot be is skipped (too_large)."""
    import cv2

    src = _frames(tmp_path, 2)
    cv2.imwrite(str(src / "big.png"), np.full((200, 200, 3), 90, np.uint8))
    out = tmp_path / "out"
    code, errors = _main(caplog, "from-images", src, out, "--max-input-pixels", "20000")
    assert code == 0 and not errors
    assert "wrote 2 frames, 1 skipped (too_large 1)" in capsys.readouterr().out
    store = bagio.typestore()
    with Reader(out) as reader:
        sizes = [(m.width, m.height) for m in (store.deserialize_cdr(raw, c.msgtype) for c, _, raw in
                                                reader.messages())]
    assert len(sizes) == 2 and all(0 < w * h <= 20000 for w, h in sizes), sizes


def test_from_images_with_no_readable_image_writes_nothing(caplog, tmp_path):
    src = tmp_path / "broken"
    src.mkdir()
    for name in ("a.jpg", "b.png"):
        (src / name).write_bytes(b"\xff\xd8\xff garbage")
    code, errors = _main(caplog, "from-images", src, tmp_path / "out")
    assert code == 1 and len(errors) == 1 and "none of the 2 images" in errors[0], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


def test_from_images_refuses_an_existing_output_unless_overwrite(caplog, tmp_path):
    src = _frames(tmp_path, 3)
    out = tmp_path / "out"
    assert _main(caplog, "from-images", src, out, "--limit", "2", "--max-side", "160")[0] == 0
    before = _files(out)
    code, errors = _main(caplog, "from-images", src, out, "--max-side", "160")
    assert code == 2 and len(errors) == 1 and "exists already" in errors[0] and "--overwrite" in errors[0], errors
    assert _files(out) == before  # the earlier bag is intact
    assert _main(caplog, "from-images", src, out, "--max-side", "160", "--overwrite")[0] == 0
    assert _count(out, TOPIC) == 3 and not _partials(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, errors = _main(caplog, "from-images", src, blocker / "out")
    assert code == 2 and len(errors) == 1 and "is not a folder" in errors[0], errors
    code, errors = _main(caplog, "from-images", src, tmp_path, "--overwrite")  # would remove the images
    assert code == 2 and len(errors) == 1 and "must lie outside the input" in errors[0], errors
    assert src.is_dir() and len(list(src.iterdir())) == 3


# --- process ------------------------------------------------------------------------------------------------------
def test_process_refuses_an_existing_output_unless_overwrite(caplog, small_bag, tmp_path):
    out = tmp_path / "out"
    assert _main(caplog, "process", small_bag, out, "--topic", TOPIC, *SMALL)[0] == 0
    before = _files(out)
    code, errors = _main(caplog, "process", small_bag, out, "--topic", TOPIC, *SMALL)
    assert code == 2 and len(errors) == 1 and "exists already" in errors[0], errors
    assert _files(out) == before
    assert _main(caplog, "process", small_bag, out, "--topic", TOPIC, "--overwrite", *SMALL)[0] == 0
    assert _count(out, "/tracker/labels") == 4 and not _partials(tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--topic", "/nope"], "topic /nope not in"),
    (["--topic", TOPIC, "--set", "tracker.nope=1"], "unknown config key"),
    (["--topic", TOPIC, "--slop", "nan"], "--slop"),
    (["--topic", TOPIC, "--extent-trim", "0.7"], "--extent-trim"),
    (["--topic", TOPIC, "--depth-topic", "/d"], "go together"),
    (["--topic", TOPIC, "--depth-topic", "/d", "--camera-info-topic", "/i"], "topic /d not in"),
])
def test_process_usage_errors(caplog, small_bag, tmp_path, args, message):
    out = tmp_path / "out"
    code, errors = _main(caplog, "process", small_bag, out, *args)
    assert code == 2 and len(errors) == 1 and message in errors[0], errors
    assert list(tmp_path.iterdir()) == []


def test_process_refuses_unreadable_inputs_and_outputs(caplog, small_bag, tmp_path):
    code, errors = _main(caplog, "process", tmp_path / "nothing", tmp_path / "out", "--topic", TOPIC)
    assert code == 2 and len(errors) == 1 and "no bag folder" in errors[0], errors
    cut = tmp_path / "cut"
    shutil.copytree(small_bag, cut)
    storage = next(cut.glob("*.mcap"))
    with open(storage, "r+b") as f:
        f.truncate(storage.stat().st_size // 2)
    code, errors = _main(caplog, "process", cut, tmp_path / "out", "--topic", TOPIC)
    assert code == 2 and len(errors) == 1 and "cannot read the bag" in errors[0], errors
    code, errors = _main(caplog, "process", small_bag, small_bag / "inside", "--topic", TOPIC)
    assert code == 2 and len(errors) == 1 and "outside the input" in errors[0], errors
    (tmp_path / "a_file").write_text("x")
    code, errors = _main(caplog, "process", small_bag, tmp_path / "a_file" / "out", "--topic", TOPIC)
    assert code == 2 and len(errors) == 1 and "is not a folder" in errors[0], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "cut"]


def test_process_skips_and_counts_bad_frames(caplog, capsys, tmp_path):
    src = tmp_path / "mixed"
    _image_bag(src, ["rgb8", "yuv422", "rgb8", "rgb8"])
    out = tmp_path / "out"
    code, errors = _main(caplog, "process", src, out, "--topic", TOPIC)
    assert code == 0 and not errors
    assert "processed 3 frames (1 skipped)" in capsys.readouterr().out
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "skipping" in r.getMessage()]
    assert (_count(out, TOPIC), _count(out, "/tracker/labels"), _count(out, "/tracker/instances")) == (4, 3, 3)


def test_process_bounds_and_checks_compressed_and_raw_frames(caplog, capsys, tmp_path):
    """CompressedImage: a truncated JPEG and bytes that are no image are skipped (bad_data), read from the header
    before decoding; raw frames over --max-input-pixels are tracked downscaled."""
    import cv2

    store = bagio.typestore()
    Compressed = store.types[bagio.COMPRESSED]
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    rgb = np.zeros((90, 160, 3), np.uint8)
    rgb[20:70, 30:90] = (200, 40, 40)
    jpeg = cv2.imencode(".jpg", rgb)[1].tobytes()
    src = tmp_path / "compressed"
    with Writer(src, version=bagio.BAG_VERSION) as w:
        conn = w.add_connection(TOPIC, bagio.COMPRESSED, typestore=store)
        for i, data in enumerate([jpeg, jpeg[: len(jpeg) // 2], b"no image", jpeg]):
            msg = Compressed(header=Header(stamp=Time(sec=i + 1, nanosec=0), frame_id="cam"), format="jpeg",
                             data=np.frombuffer(data, np.uint8))
            w.write(conn, (i + 1) * 10**9, store.serialize_cdr(msg, bagio.COMPRESSED))
    code, errors = _main(caplog, "process", src, tmp_path / "out", "--topic", TOPIC)
    assert code == 0 and not errors
    assert "processed 2 frames (2 skipped)" in capsys.readouterr().out
    raw = tmp_path / "raw"
    _image_bag(raw, ["rgb8", "rgb8"])
    code, errors = _main(caplog, "process", raw, tmp_path / "small", "--topic", TOPIC, "--max-input-pixels", "4000")
    assert code == 0 and not errors
    with Reader(tmp_path / "small") as reader:
        labels = [store.deserialize_cdr(r, c.msgtype) for c, _, r in reader.messages() if c.topic == "/tracker/labels"]
    assert len(labels) == 2 and all(0 < m.width * m.height <= 4000 for m in labels)
    assert any("over --max-input-pixels=4000" in r.getMessage() for r in caplog.records)


def test_process_with_no_usable_frame_writes_nothing(caplog, tmp_path):
    """A run that tracks no frame fails (exit 1) and leaves no output bag, and no temporary one."""
    src = tmp_path / "bad"
    _image_bag(src, ["yuv422", "yuv422", "bgr16"])
    code, errors = _main(caplog, "process", src, tmp_path / "out", "--topic", TOPIC)
    assert code == 1 and len(errors) == 1, errors
    assert "could be tracked (3 skipped: bad_encoding 3)" in errors[0] and "no output written" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


@pytest.mark.parametrize("signum, overwrite", [(signal.SIGINT, False), (signal.SIGTERM, True)],
                         ids=["SIGINT", "SIGTERM-overwrite"])
def test_process_interrupted_leaves_no_output(long_bag, tmp_path, signum, overwrite):
    """Interrupted mid-run: exit 128 + signal, one line, the bag only ever under its temporary name and removed; with
    --overwrite the earlier output is intact."""
    out = tmp_path / "out"
    earlier = {}
    if overwrite:
        out.mkdir()
        (out / "earlier.txt").write_text("an earlier run's output")
        earlier = _files(out)
    cmd = [sys.executable, "-m", "mastsam_ros.cli.bag", "process", str(long_bag), str(out), "--topic", TOPIC, "-v",
           *(["--overwrite"] if overwrite else [])]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # "frame 0: ..." once the first frame is written
        assert first.startswith("frame 0"), first + proc.stderr.read()
        staging = tmp_path / f"out.partial-{proc.pid}"
        assert (staging / "out").is_dir() and _files(out) == earlier  # written under the temporary name only
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, stderr
    line = _one_error(stderr)
    assert line.endswith(f"interrupted by {signal.Signals(signum).name}: unfinished outputs are not kept"), line
    assert stderr.strip().splitlines()[-1] == line
    assert not _partials(tmp_path)
    assert _files(out) == earlier if overwrite else not out.exists()


def test_play_usage_errors(caplog, small_bag, tmp_path):
    """Checked before rclpy starts (so also where ROS is missing)."""
    for args, message in (([small_bag, "--rate-scale", "0"], "--rate-scale"), ([small_bag, "--wait", "nan"], "--wait"),
                          ([tmp_path / "nothing"], "no bag folder"), ([small_bag, "--topic", "/x"], "no image topic")):
        code, errors = _main(caplog, "play", *args)
        assert code == 2 and len(errors) == 1 and message in errors[0], (args, errors)


# --- process-many -------------------------------------------------------------------------------------------------
def test_a_folder_without_metadata_is_reported_failed(small_bag, tmp_path):
    """Under a scanned folder, bag files without metadata.yaml (an interrupted recording) are a failed bag, not
    silently left out; the other bags go on."""
    root = tmp_path / "archive"
    shutil.copytree(small_bag, root / "whole")
    (root / "cut").mkdir()
    shutil.copy(small_bag / "small.mcap", root / "cut" / "cut.mcap")
    (root / "notes").mkdir()  # a folder without bag files is no bag: not reported
    (root / "notes" / "readme.txt").write_text("x")
    out = tmp_path / "out"
    r = _cli("process-many", root, "-o", out, "--no-ray", "--no-progress", *SMALL)
    assert r.returncode == 1, r.stdout + r.stderr
    records = {x["name"]: x for x in map(json.loads, (out / archives.MANIFEST).read_text().splitlines())}
    assert sorted(records) == ["cut", "whole"]
    assert records["whole"]["status"] == "ok" and records["whole"]["frames"] == 4
    assert records["cut"]["status"] == "failed" and "no metadata.yaml" in records["cut"]["error"], records["cut"]
    assert "1 bags processed, 1 failed" in r.stdout


def test_process_many_usage_errors(caplog, small_bag, tmp_path):
    out = tmp_path / "out"
    for extra, message in ((["--ray-timeout", "0"], "--ray-timeout"), (["--workers", "-1"], "must not be negative"),
                           (["--max-input-pixels", "0"], "--max-input-pixels"),
                           (["--ray-address", "nohost"], "--ray-address must be")):
        code, errors = _main(caplog, "process-many", small_bag, "-o", out, *extra)
        assert code == 2 and len(errors) == 1 and message in errors[0], (extra, errors)
    assert not out.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_address_that_refuses_fails_with_one_line(small_bag, tmp_path):
    out = tmp_path / "out"
    r = _cli("process-many", small_bag, "-o", out, "--ray-address", f"127.0.0.1:{_free_port()}", "--no-progress")
    assert r.returncode == 2 and "no Ray cluster at --ray-address 127.0.0.1:" in _one_error(r.stderr), r.stderr
    assert not out.exists()


def test_ray_address_that_never_answers_fails_with_one_line(small_bag, tmp_path):
    """An address that accepts connections but is no Ray cluster (ray.init would retry it for ever)."""
    out = tmp_path / "out"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        r = _cli("process-many", small_bag, "-o", out, "--ray-address", address, "--ray-timeout", "3",
                 "--no-progress")
    line = _one_error(r.stderr)
    assert r.returncode == 2 and line.endswith(f"the Ray cluster at --ray-address {address} did not answer within "
                                               "3 s"), r.stderr
    assert not out.exists()


def test_ray_address_auto_without_a_cluster_fails_with_one_line(small_bag, tmp_path):
    if os.environ.get("RAY_ADDRESS") or archives.ray_processes(workers=False):
        pytest.skip("a Ray instance runs on this machine (or RAY_ADDRESS is set): `auto` would find it")
    out = tmp_path / "out"
    r = _cli("process-many", small_bag, "-o", out, "--ray-address", "auto", "--ray-timeout", "10", "--no-progress")
    line = _one_error(r.stderr)
    assert r.returncode == 2 and "--ray-address auto" in line, r.stderr
    assert not out.exists()
