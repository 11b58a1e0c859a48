"""mastsam-bag process-many: several bags on a local Ray instance, faults kept per bag, resumable, and every good bag
byte-identical to what `process` writes for it alone. No ROS install needed (rosbags); Ray is started by the command.

The Ray runs are subprocesses in a session of their own, bounded by a timeout; afterwards no Ray process they started
(raylet, gcs_server, workers) may be left. A worker's death is caused from outside, as an out-of-memory kill would
cause it: the test SIGKILLs the worker process while it holds a bag. Usage errors and Ray's own faults (an unreachable
address, `auto` without a cluster, a folder without metadata.yaml): test_bag_faults.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rosbags.rosbag2 import Reader, Writer

from mastsam_ros.cli import archives, bag, bagio
from .conftest import BEDROOM, REPO

pytest.importorskip("ray", reason="ray (requirements.txt) is needed by mastsam-bag process-many")

TOPIC = "/camera/image_raw"
FRAMES = 3
GOOD = ["good0", "good1", "good2"]
CRASH = "crash"  # a good bag, first in the job order: the first run's worker is killed while it holds a bag
SETTINGS = ["--set", "segmenter.max_side=160", "--set", "matcher.max_side=160"]
RAY_TIMEOUT = 150


def _image_bag(out: Path, first: int, tmp: Path) -> None:
    """A bag of FRAMES bedroom frames from index ``first``, 160 px wide (links to ../shared, nothing copied)."""
    files = sorted(BEDROOM.glob("*.jpg"))[first: first + FRAMES]
    if len(files) < FRAMES:
        pytest.skip(f"{BEDROOM} missing (the archive tests use real frames from ../shared/data)")
    src = tmp / f"frames_{out.name}"
    src.mkdir()
    for f in files:
        (src / f.name).symlink_to(f)
    assert bag.main(["from-images", str(src), str(out), "--max-side", "160", "--topic", TOPIC]) == 0


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """bags/: good0..2 and crash (images), corrupt (a good bag cut in half), noimg (only a String topic)."""
    tmp = tmp_path_factory.mktemp("archive")
    bags = tmp / "bags"
    bags.mkdir()
    for i, name in enumerate([*GOOD, CRASH]):
        _image_bag(bags / name, 30 * i, tmp)
    # Truncated: the copy of a good bag with its storage file cut in half (as an interrupted copy leaves it).
    shutil.copytree(bags / "good0", bags / "corrupt")
    storage = bags / "corrupt" / "good0.mcap"
    with open(storage, "r+b") as f:
        f.truncate(storage.stat().st_size // 2)
    store = bagio.typestore()
    String = store.types["std_msgs/msg/String"]
    with Writer(bags / "noimg", version=bagio.BAG_VERSION) as w:
        conn = w.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        for i in range(3):
            w.write(conn, 10**9 * (i + 1), store.serialize_cdr(String(data=f"hello {i}"), "std_msgs/msg/String"))
    return bags


@pytest.fixture(scope="module")
def alone(archive, tmp_path_factory) -> dict[str, Path]:
    """What `mastsam-bag process` writes for each image bag on its own."""
    out = tmp_path_factory.mktemp("alone")
    for name in [*GOOD, CRASH]:
        assert bag.main(["process", str(archive / name), str(out / name), "--topic", TOPIC, *SETTINGS]) == 0
    return {name: out / name for name in [*GOOD, CRASH]}


def _messages(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    """{topic: [(timestamp, raw CDR payload)]} of a bag."""
    with Reader(path) as reader:
        out: dict[str, list] = {c.topic: [] for c in reader.connections}
        for c, t, raw in reader.messages():
            out[c.topic].append((t, bytes(raw)))
    return out


def _bag_workers(exclude: set[int]) -> list[int]:
    """Pids of Ray worker processes running a BagWorker actor (``ray::BagWorker...``), those in ``exclude`` left out."""
    pids = []
    for pid in archives.ray_processes() - exclude:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::BagWorker"):
                pids.append(pid)
        except OSError:
            pass
    return pids


def _kill_worker_holding_a_bag(proc: subprocess.Popen, out: Path, before: set[int]) -> int | None:
    """Once a bag is being written (its folder under OUT/.partial exists), SIGKILL the worker process, as the kernel's
    out-of-memory killer would end it; its pid, or None when the run ended first."""
    deadline = time.monotonic() + RAY_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        partial = out / archives.PARTIAL
        workers = _bag_workers(before)
        if partial.is_dir() and any(partial.iterdir()) and len(workers) == 1:
            os.kill(workers[0], signal.SIGKILL)
            return workers[0]
        time.sleep(0.02)
    return None


def _run_ray(archive: Path, out: Path, kill: bool) -> tuple[subprocess.CompletedProcess, set[int], int | None]:
    """process-many over ``archive`` on a local Ray instance (one worker when ``kill``, which kills it while it holds a
    bag; else two); (result, Ray pids left behind, the killed worker's pid)."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    before = archives.ray_processes()
    cmd = [sys.executable, "-m", "mastsam_ros.cli.bag", "process-many", str(archive), "--output-dir", str(out),
           "--workers", "1" if kill else "2", "--cpus-per-job", "1", "--no-progress", *SETTINGS]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    killed = _kill_worker_holding_a_bag(proc, out, before) if kill else None
    try:
        stdout, stderr = proc.communicate(timeout=RAY_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    # ray.shutdown() has returned when the command exits; give its daemons a moment to go, then kill stragglers.
    deadline = time.monotonic() + 10
    while archives.ray_processes() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    left = archives.ray_processes() - before
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), left, killed


@pytest.fixture(scope="module")
def runs(archive, tmp_path_factory):
    """Two runs into one OUT: the first with one worker, killed while it holds a bag; the second (resuming) with two."""
    out = tmp_path_factory.mktemp("ray") / "out"
    first, left1, killed = _run_ray(archive, out, kill=True)
    mtimes = {n: (out / n / f"{n}.mcap").stat().st_mtime_ns for n in [*GOOD, CRASH] if (out / n).is_dir()}
    manifest1 = (out / archives.MANIFEST).read_text().splitlines() if (out / archives.MANIFEST).exists() else []
    second, left2, _ = _run_ray(archive, out, kill=False)
    return {"out": out, "first": first, "second": second, "left": left1 | left2, "mtimes": mtimes, "killed": killed,
            "manifest1": [json.loads(x) for x in manifest1],
            "manifest": [json.loads(x) for x in (out / archives.MANIFEST).read_text().splitlines()]}


def _log(r: subprocess.CompletedProcess) -> str:
    return f"rc {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-4000:]}"


def _died(records: list[dict]) -> list[dict]:
    return [r for r in records if r["status"] == "failed" and r["error"].startswith("worker died")]


def test_first_run_marks_the_bad_bags_failed_and_finishes_the_others(runs):
    first, out = runs["first"], runs["out"]
    assert runs["killed"] is not None, _log(first)
    assert first.returncode == 1, _log(first)  # some bags failed
    last = {r["name"]: r for r in runs["manifest1"]}
    assert len(runs["manifest1"]) == 6 and set(last) == {*GOOD, CRASH, "corrupt", "noimg"}, runs["manifest1"]
    died = _died(runs["manifest1"])  # the bag the killed worker held, and only that one
    assert len(died) == 1 and died[0]["worker"].startswith(f"{runs['killed']}@"), runs["manifest1"]
    for name in {*GOOD, CRASH} - {died[0]["name"]}:
        r = last[name]
        assert r["status"] == "ok" and r["frames"] == FRAMES and r["skipped"] == 0 and r["error"] is None, r
        assert r["output"] == str(out / name) and r["fps"] > 0 and r["worker"], r
    assert last["corrupt"]["status"] == "failed" and "ReaderError" in last["corrupt"]["error"], last["corrupt"]
    assert last["noimg"]["status"] == "failed", last["noimg"]
    assert "no sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage topic" in last["noimg"]["error"]
    assert "/chatter (std_msgs/msg/String)" in last["noimg"]["error"]
    assert "3 bags processed, 3 failed, 0 already done" in first.stdout, _log(first)


def test_good_bags_equal_process_alone(runs, alone):
    """Byte-identical label and instance payloads (and the input copy), at the same timestamps."""
    for name in [*GOOD, CRASH]:  # the one the killed worker held was done by the second run
        got, want = _messages(runs["out"] / name), _messages(alone[name])
        assert set(got) == {TOPIC, "/tracker/labels", "/tracker/instances", "/tracker/events"}, got.keys()
        assert len(want["/tracker/labels"]) == FRAMES
        for topic in want:
            assert got[topic] == want[topic], (name, topic)
    # Not a vacuous equality: the tracker found objects (a mono16 label image that is not all zeros).
    store = bagio.typestore()
    labels = [store.deserialize_cdr(raw, "sensor_msgs/msg/Image") for _, raw in _messages(alone["good0"])[
        "/tracker/labels"]]
    assert all(m.encoding == "mono16" for m in labels) and any(m.data.any() for m in labels)


def test_second_run_skips_done_bags_and_retries_failed_ones(runs):
    second, out = runs["second"], runs["out"]
    assert second.returncode == 1, _log(second)  # corrupt and noimg still fail
    assert "3 bags already done" in second.stdout and "1 bags processed, 2 failed" in second.stdout, _log(second)
    new = runs["manifest"][len(runs["manifest1"]):]
    died = _died(runs["manifest1"])[0]["name"]
    assert sorted(r["name"] for r in new) == sorted([died, "corrupt", "noimg"]), new
    assert {r["name"]: r["status"] for r in new}[died] == "ok"
    assert sorted(runs["mtimes"]) == sorted({*GOOD, CRASH} - {died})
    for name, mtime in runs["mtimes"].items():  # not rewritten
        assert (out / name / f"{name}.mcap").stat().st_mtime_ns == mtime


def test_no_partial_output_and_no_ray_process_left(runs):
    out = runs["out"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")) == sorted(
        [*GOOD, CRASH])
    assert list((out / archives.PARTIAL).iterdir()) == []
    assert not runs["left"], f"Ray processes left behind (killed now): {runs['left']}"


def test_in_process_run_reuses_one_worker_and_matches_process(archive, alone, tmp_path):
    """--no-ray: one worker, its models reused for every bag, still the bytes of `process` alone per bag."""
    out = tmp_path / "out"
    code = bag.main(["process-many", *(str(archive / n) for n in GOOD), "--output-dir", str(out), "--no-ray",
                     "--no-progress", *SETTINGS])
    assert code == 0
    records = [json.loads(x) for x in (out / archives.MANIFEST).read_text().splitlines()]
    assert [r["name"] for r in records] == GOOD and len({r["worker"] for r in records}) == 1
    for name in GOOD:
        assert _messages(out / name) == _messages(alone[name]), name


def test_partial_output_is_not_taken_for_done(archive, alone, tmp_path):
    """A bag left half-written under OUT/.partial (an interrupted run) is redone, not skipped."""
    out = tmp_path / "out"
    stale = out / archives.PARTIAL / "good1"
    stale.mkdir(parents=True)
    (stale / "good1.mcap").write_bytes(b"half a bag")
    assert bag.main(["process-many", str(archive / "good1"), "-o", str(out), "--no-ray", "--no-progress",
                     *SETTINGS]) == 0
    assert _messages(out / "good1") == _messages(alone["good1"])
    assert list((out / archives.PARTIAL).iterdir()) == []


def test_inputs_are_found_and_checked(archive, tmp_path):
    out = archive / "out_inside"  # an OUT inside an input folder is never read as input
    (out / "old").mkdir(parents=True)
    (out / "old" / "metadata.yaml").write_text("not read")
    try:
        found = archives.find_bags([str(archive), str(archive / "good*")], out)
        assert [p.name for p in found] == sorted([*GOOD, CRASH, "corrupt", "noimg"])
    finally:
        shutil.rmtree(out)
    with pytest.raises(FileNotFoundError, match="no such bag"):
        archives.find_bags([str(tmp_path / "nothing*")], tmp_path / "o")
    other = tmp_path / "other"
    shutil.copytree(archive / "good0", other / "good0")
    assert bag.main(["process-many", str(archive / "good0"), str(other / "good0"), "-o", str(tmp_path / "o"),
                     "--no-ray"]) == 2  # two bags named good0: refused before anything runs
    assert bag.main(["process-many", str(archive), "-o", str(tmp_path / "o"), "--no-ray", "--workers", "2"]) == 2
