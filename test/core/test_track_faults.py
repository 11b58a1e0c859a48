"""mastsam-track (and mastsam-eval) under hostile input: each case ends with its documented exit code and one line
naming the problem, never a traceback, and leaves an earlier run's outputs intact; bad frames are skipped and
counted; outputs stay consistent (tracks.jsonl lists exactly the PNGs present), also when SIGTERM or SIGINT
arrives mid-run. Frames are generated (no ../shared needed)."""

from __future__ import annotations

import json
import logging
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from mastsam_ros.cli import track
from mastsam_ros.cli.frames import synthetic_frames
from mastsam_ros.core.decode import cv2_path, load_image
from mastsam_ros.core.errors import BadImage
from mastsam_ros.core.frames import read_rgb
from mastsam_ros.evaluation import cli as eval_cli
from mastsam_ros.labels_io import load_track_ids

REPO = Path(__file__).resolve().parents[2]


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit grey PNG of ``width`` x ``height`` zeros, built row by row (never held decoded here)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def write_frames(directory: Path, n: int, ext: str = ".jpg", size=(120, 160)) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rgb in enumerate(synthetic_frames(n, size=size)):
        paths.append(directory / f"{i:05d}{ext}")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return paths


def listed(out: Path) -> list[str]:
    return [json.loads(x)["frame"] for x in (out / "tracks.jsonl").read_text().splitlines()]


def pngs(out: Path) -> list[str]:
    return sorted(p.stem for p in out.glob("*.png"))


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def one_error_line(err: str, code_name: str = "mastsam-track") -> str:
    """The one line naming the problem; nothing else of the tool's own on stderr, and no traceback."""
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith(f"{code_name}:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO)


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("frames") / "in"
    write_frames(d, 4)
    return d


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, frames_dir) -> tuple[Path, dict[str, bytes]]:
    """An earlier run's output folder (4 frames, debug outputs) and its exact contents."""
    out = tmp_path_factory.mktemp("earlier") / "out"
    assert track.main(["--image-dir", str(frames_dir), "--output-dir", str(out), "--quiet", "--debug"]) == 0
    return out, snapshot(out)


# --- usage errors: exit 2, one line, nothing touched -------------------------------------------------------------
def _usage_cases(tmp: Path, frames_dir: Path) -> dict[str, tuple[list[str], str]]:
    empty = tmp / "empty"
    empty.mkdir()
    (tmp / "clip.mp4").write_bytes(b"not a video at all" * 100)
    (tmp / "list.yaml").write_text("- tracker.max_age: 3\n- 4\n")
    dup = tmp / "dup"
    write_frames(dup, 2)
    cv2.imwrite(str(dup / "00000.png"), np.zeros((120, 160, 3), np.uint8))
    src = ["--image-dir", str(frames_dir)]
    return {
        "empty image folder": (["--image-dir", str(empty)], "no images"),
        "missing input": (["--image-dir", str(tmp / "nope")], "input not found"),
        "unopenable video": (["--video", str(tmp / "clip.mp4")], "cannot open"),
        "config whose top level is a list": ([*src, "--config", str(tmp / "list.yaml")], "must hold a mapping"),
        "config that is a folder": ([*src, "--config", str(tmp)], "cannot be read"),
        "bad --set": ([*src, "--set", "tracker.max_age=-3"], "tracker.max_age"),
        "two files, one stem": (["--image-dir", str(dup)], "would both write 00000.png"),
        "fps 0": ([*src, "--fps", "0", "--debug"], "--fps"),
        "fps negative": ([*src, "--fps", "-5", "--debug"], "--fps"),
        "fps nan": ([*src, "--fps", "nan", "--debug"], "--fps"),
        "fps inf": ([*src, "--fps", "inf", "--debug"], "--fps"),
        "max-input-pixels 0": ([*src, "--max-input-pixels", "0"], "--max-input-pixels"),
        "depth without intrinsics": ([*src, "--depth-dir", str(tmp)], "--intrinsics"),
    }


@pytest.mark.parametrize("case", ["empty image folder", "missing input", "unopenable video",
                                  "config whose top level is a list", "config that is a folder", "bad --set",
                                  "two files, one stem", "fps 0", "fps negative", "fps nan", "fps inf",
                                  "max-input-pixels 0", "depth without intrinsics"])
def test_usage_errors_leave_the_earlier_outputs_intact(case, tmp_path, frames_dir, earlier, capsys):
    """Even with --overwrite, a run refused for its inputs or options leaves the earlier outputs byte for byte."""
    out, before = earlier
    argv, words = _usage_cases(tmp_path, frames_dir)[case]
    capsys.readouterr()
    assert track.main([*argv, "--output-dir", str(out), "--overwrite", "--quiet"]) == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert snapshot(out) == before


@pytest.mark.parametrize("where", ["a file", "under a file", "not creatable", "read-only"])
def test_output_paths_that_cannot_be_written(where, tmp_path, frames_dir, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("mine")
    out = {"a file": blocker, "under a file": blocker / "out", "not creatable": Path("/proc/mastsam-track-out"),
           "read-only": tmp_path / "ro"}[where]
    if where == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder")
        out.mkdir()
        out.chmod(0o555)
    assert track.main(["--image-dir", str(frames_dir), "--output-dir", str(out), "--quiet"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert ("is a file" if where == "a file" else "output folder") in line, line
    assert blocker.read_text() == "mine"


def test_output_folder_is_the_input_folder(frames_dir, capsys):
    before = snapshot(frames_dir)
    assert track.main(["--image-dir", str(frames_dir), "--output-dir", str(frames_dir), "--overwrite"]) == 2
    assert "is the input folder" in one_error_line(capsys.readouterr().err)
    assert snapshot(frames_dir) == before


# --- the output folder: refused unless --overwrite, which removes only an earlier run's outputs ------------------
def test_non_empty_output_folder(tmp_path, frames_dir, capsys):
    out = tmp_path / "out"
    assert track.main(["--image-dir", str(frames_dir), "--output-dir", str(out), "--quiet", "--debug"]) == 0
    (out / "notes.txt").write_text("kept")
    before = snapshot(out)
    capsys.readouterr()
    # without --overwrite: refused, nothing touched
    assert track.main(["--image-dir", str(frames_dir), "--output-dir", str(out), "--quiet"]) == 2
    assert "not empty" in one_error_line(capsys.readouterr().err)
    assert snapshot(out) == before
    # --overwrite with fewer frames: the earlier run's PNGs, records, debug/ and video go, other files stay
    assert track.main(["--image-dir", str(frames_dir), "--output-dir", str(out), "--quiet", "--overwrite",
                       "--max-frames", "2"]) == 0
    assert pngs(out) == listed(out) == ["00000", "00001"]
    assert not (out / "debug").exists() and not (out / "overlay.mp4").exists()
    assert (out / "notes.txt").read_text() == "kept"
    # a PNG its tracks.jsonl does not list is not an earlier run's output: refused even with --overwrite
    (out / "00007.png").write_bytes((out / "00000.png").read_bytes())
    before = snapshot(out)
    capsys.readouterr()
    assert track.main(["--image-dir", str(frames_dir), "--output-dir", str(out), "--quiet", "--overwrite"]) == 2
    assert "00007.png" in one_error_line(capsys.readouterr().err)
    assert snapshot(out) == before


def test_mastsam_eval_refuses_pngs_tracks_jsonl_does_not_list(tmp_path, frames_dir, capsys):
    pred = tmp_path / "pred"
    seq = pred / "seq"
    assert track.main(["--image-dir", str(frames_dir), "--output-dir", str(seq), "--quiet"]) == 0
    eval_cli.check_listed(pred, "seq")  # consistent: accepted
    # an interrupted rerun: its tracks.jsonl lists 2 frames, the earlier run's 4 PNGs are still there
    lines = (seq / "tracks.jsonl").read_text().splitlines()
    (seq / "tracks.jsonl").write_text("\n".join(lines[:2]) + "\n")
    capsys.readouterr()
    assert eval_cli.main(["--pred", str(pred), "--gt", str(tmp_path / "gt"), "--sequences", "seq"]) == 2
    line = one_error_line(capsys.readouterr().err, "mastsam-eval")
    assert "2 label PNGs that its tracks.jsonl does not list (first: 00002.png)" in line, line


def test_results_with_a_wrong_davis_root(tmp_path, capsys):
    from mastsam_ros.evaluation import results

    assert results.main(["--davis", str(tmp_path), "--out", str(tmp_path / "r.md")]) == 2
    assert "no DAVIS annotations" in one_error_line(capsys.readouterr().err, "python -m mastsam_ros.evaluation.results")
    assert not (tmp_path / "r.md").exists()


# --- bad frames: skipped and counted, the same way by every reader -----------------------------------------------
def test_truncated_jpeg_is_skipped_and_counted(tmp_path, capsys, caplog):
    src = tmp_path / "in"
    paths = write_frames(src, 4)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 3])
    # the core's reader (mastsam-bag, the evaluation, the bench) refuses it as mastsam-track does
    assert read_rgb(paths[2]) is None
    with pytest.raises(BadImage, match="truncated JPEG") as e:
        load_image(paths[2])
    assert e.value.kind == "bad_data"
    for flag in ([], ["--pipeline"]):
        out = tmp_path / f"out{len(flag)}"
        caplog.clear()
        assert track.main(["--image-dir", str(src), "--output-dir", str(out), "--quiet", *flag]) == 0
        assert pngs(out) == listed(out) == ["00000", "00001", "00003"]
        assert "(1 skipped)" in capsys.readouterr().out
        assert "1 skipped (bad_data 1)" in caplog.text and "truncated JPEG" in caplog.text


def test_png_bomb_is_refused_from_its_header(tmp_path, monkeypatch, capsys, caplog):
    """A 20000 x 20000 PNG of 1 MB is refused undecoded (no decoder ever sees its bytes); the other frames are
    tracked. A JPEG over --max-input-pixels is decoded reduced instead."""
    src = tmp_path / "in"
    write_frames(src, 3, ".png")
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 2_000_000
    (src / "00001.png").write_bytes(bomb)
    decoded = []
    real = cv2.imdecode

    def spy(buf, flags):
        decoded.append(len(buf))
        return real(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", spy)
    out = tmp_path / "out"
    assert track.main(["--image-dir", str(src), "--output-dir", str(out), "--quiet"]) == 0
    assert len(bomb) not in decoded and len(decoded) == 2
    assert pngs(out) == listed(out) == ["00000", "00002"]
    assert "too_large 1" in caplog.text and "refused undecoded" in caplog.text
    # a JPEG over the bound: downscaled while decoding, tracked at the smaller size
    big = tmp_path / "big"
    write_frames(big, 2, ".jpg", size=(480, 640))
    caplog.clear()
    assert track.main(["--image-dir", str(big), "--output-dir", str(tmp_path / "o2"), "--quiet",
                       "--max-input-pixels", "40000"]) == 0
    labels = load_track_ids(tmp_path / "o2")["00000"]
    assert labels.shape[0] * labels.shape[1] <= 40000 and abs(labels.shape[1] / labels.shape[0] - 4 / 3) < 0.02
    assert "2 frames over --max-input-pixels=40000 were downscaled" in caplog.text


def test_video_cut_short_is_warned(tmp_path, caplog):
    clip = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for rgb in synthetic_frames(10, size=(120, 160)):
        w.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    w.release()
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert track.main(["--video", str(clip), "--output-dir", str(out), "--quiet"]) == 0
    n = len(listed(out))
    assert 0 < n < 10 and pngs(out) == listed(out)
    assert f"ended after {n} frames of the 10 its header declares" in caplog.text


def test_depth_out_of_range_and_two_depth_files(tmp_path, caplog):
    src, depth, out = tmp_path / "in", tmp_path / "depth", tmp_path / "out"
    write_frames(src, 4)
    depth.mkdir()
    np.save(depth / "00000.npy", np.full((120, 160), 1e30, np.float32))  # absurd: invalid, counted
    np.save(depth / "00001.npy", np.full((120, 160), 2.0, np.float32))
    cv2.imwrite(str(depth / "00002.png"), np.full((120, 160), 3000, np.uint16))  # 3 m; used
    np.save(depth / "00002.npy", np.full((120, 160), 9.0, np.float32))  # beside it: warned, not used
    (depth / "00003.npy").write_bytes(b"")  # damaged: that frame's 3D is skipped, the frame tracked
    assert track.main(["--image-dir", str(src), "--output-dir", str(out), "--quiet", "--depth-dir", str(depth),
                       "--intrinsics", "100,100,80,60"]) == 0
    rec = {r["frame"]: r["objects"] for r in map(json.loads, (out / "objects.jsonl").read_text().splitlines())}
    assert sorted(rec) == ["00000", "00001", "00002"] and listed(out) == ["00000", "00001", "00002", "00003"]
    assert "frame 00003: no 3D objects: depth 00003.npy: EOFError" in caplog.text
    assert rec["00000"] and all(o["points"] == 0 and o["centroid"] == [None] * 3 for o in rec["00000"])
    assert all(abs(o["centroid"][2] - 2.0) < 1e-3 for o in rec["00001"] if o["points"])
    assert all(abs(o["centroid"][2] - 3.0) < 1e-3 for o in rec["00002"] if o["points"])
    assert "beyond 1000 m made invalid" in caplog.text and "1 frames had depth beyond 1000 m" in caplog.text
    assert "1 frames have several depth files (first: 00002 with .npy, .png): the first of .png" in caplog.text


# --- subprocesses: any file name, signals ---------------------------------------------------------------------
def _track(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "mastsam_ros.cli.track", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.parametrize("mode", ["images", "images --pipeline", "video"])
def test_file_names_that_are_not_utf8(mode, tmp_path):
    """Input files, a video and an output folder whose names hold bytes that are not UTF-8 (OpenCV's path
    functions crash on them): tracked, written and decoded back like any other."""
    base = os.fsencode(tmp_path)
    src = base + b"/in\xff"
    os.mkdir(src)
    names = [b"fr\xe9\xff_0", b"fr\xe9\xff_1", b"plain_2"]
    for name, rgb in zip(names, synthetic_frames(3, size=(120, 160))):
        with open(src + b"/" + name + b".jpg", "wb") as f:
            f.write(cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes())
    out = base + b"/out\xfe"
    if mode == "video":
        tmp_avi = tmp_path / "clip.avi"
        w = cv2.VideoWriter(str(tmp_avi), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
        for rgb in synthetic_frames(3, size=(120, 160)):
            w.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        w.release()
        os.rename(tmp_avi, src + b"/clip\xff.avi")
        args = ["--video", os.fsdecode(src + b"/clip\xff.avi")]
        expected = ["00000", "00001", "00002"]
    else:
        args = ["--image-dir", os.fsdecode(src), *mode.split()[1:]]
        expected = sorted(os.fsdecode(n) for n in names)
    p = _track(*args, "--output-dir", os.fsdecode(out), "--quiet", "--debug")
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr.decode(errors="replace")
    out_dir = Path(os.fsdecode(out))
    assert pngs(out_dir) == listed(out_dir) == expected
    assert sorted(load_track_ids(out_dir)) == expected
    assert _overlay_frames(out_dir / "overlay.mp4") == 3
    assert len(list((out_dir / "debug").glob("overlay_*.jpg"))) == 3


def _overlay_frames(path: Path) -> int:
    with cv2_path(path) as name:
        cap = cv2.VideoCapture(name)
        n = 0
        while cap.read()[0]:
            n += 1
        cap.release()
    return n


@pytest.mark.parametrize("sig, flags", [(signal.SIGTERM, []), (signal.SIGTERM, ["--pipeline"]),
                                        (signal.SIGINT, [])])
def test_signal_mid_run_leaves_consistent_outputs(sig, flags, tmp_path):
    """SIGTERM (a service stop) is handled as Ctrl-C: the frames written so far are whole (tracks.jsonl lists
    exactly the PNGs present, the overlay video is finalised and holds as many frames), one line, exit 128 + n."""
    src, out = tmp_path / "in", tmp_path / "out"
    write_frames(src, 60, size=(240, 320))
    p = _track("--image-dir", str(src), "--output-dir", str(out), "--quiet", "--debug", *flags)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and p.poll() is None:
        jsonl = out / "tracks.jsonl"
        if jsonl.is_file() and len(jsonl.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert p.poll() is None, "the run ended before the signal could be sent"
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=60)
    err = stderr.decode()
    assert p.returncode == 128 + sig, err
    line = one_error_line(err)
    assert f"interrupted by {signal.Signals(sig).name}" in line, line
    frames = listed(out)
    assert 2 <= len(frames) < 60 and pngs(out) == frames
    assert not list(out.glob(".*.tmp.png"))
    assert _overlay_frames(out / "overlay.mp4") == len(frames)
