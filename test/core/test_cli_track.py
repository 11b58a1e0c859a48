"""mastsam-track end to end: real frames in, DAVIS-format label PNGs out; bad files are skipped and counted."""

import json
import shutil
import time

import cv2
import numpy as np
import pytest

from mastsam_ros.cli import frames as frames_mod
from mastsam_ros.cli import track
from mastsam_ros.core.tracker import Tracker
from mastsam_ros.labels_io import load_label_png, load_track_ids

def test_image_dir_with_a_truncated_file(tmp_path, car_frames, davis_root):
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted((davis_root / "JPEGImages" / "480p" / "car-roundabout").glob("*.jpg"))[:4]:
        shutil.copy(f, src / f.name)
    (src / "00002.jpg").write_bytes((src / "00002.jpg").read_bytes()[:200])  # truncated
    out = tmp_path / "out"
    assert track.main(["--image-dir", str(src), "--output-dir", str(out), "--debug", "--quiet"]) == 0
    pngs = sorted(out.glob("*.png"))
    assert [p.stem for p in pngs] == ["00000", "00001", "00003"]
    labels = [load_label_png(p) for p in pngs]
    assert all(lab.shape == (480, 854) for lab in labels)
    records = [json.loads(line) for line in (out / "tracks.jsonl").read_text().splitlines()]
    assert len(records) == 3 and records[0]["keyframe"]
    # the PNG holds exactly the ids the records list
    for lab, rec in zip(labels, records):
        assert set(np.unique(lab).tolist()) - {0} == {t["id"] for t in rec["tracks"]}
    assert (out / "overlay.mp4").stat().st_size > 0 and any((out / "debug").glob("matches_*.jpg"))
    # the track events: a born event for every new id that was not re-identified, nothing born twice
    born = [e["id"] for rec in records for e in rec["events"] if e["kind"] == "born"]
    assert len(born) == len(set(born))
    for rec in records:
        back = {e["id"] for e in rec["events"] if e["kind"] == "reidentified"}
        assert sorted(e["id"] for e in rec["events"] if e["kind"] == "born") == sorted(set(rec["new_ids"]) - back)


def test_demo_runs_on_generated_frames_without_shared(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(track, "demo_source", lambda: None)
    out = tmp_path / "demo"
    assert track.main(["--demo", "--output-dir", str(out), "--max-frames", "4", "--quiet"]) == 0
    assert len(list(out.glob("*.png"))) == 4
    # the distinct-id count it prints is the number of ids in tracks.jsonl
    ids = {t["id"] for line in (out / "tracks.jsonl").read_text().splitlines() for t in json.loads(line)["tracks"]}
    assert f"distinct ids: {len(ids)} over 4 frames" in capsys.readouterr().out
    assert next(frames_mod.synthetic_frames(1)).shape == (480, 640, 3)


def test_bad_config_and_missing_input_exit_with_an_error(tmp_path):
    assert track.main(["--image-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o")]) == 2
    assert track.main(["--demo", "--output-dir", str(tmp_path / "o"), "--set", "tracker.max_age=-3"]) == 2


@pytest.mark.parametrize("first_id", [250, 65530])
def test_ids_past_255_and_65535_are_written_and_decode_back(tmp_path, monkeypatch, car_frames, first_id):
    """A long run passes id 65535 (ids are never reused): the PNGs must still be written, stay within 16 bits and,
    with tracks.jsonl, decode back to exactly the tracker's ids."""
    src = tmp_path / "in"
    src.mkdir()
    for i, rgb in enumerate(car_frames[0][:4]):
        small = cv2.resize(rgb, (427, 240), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(src / f"{i:05d}.png"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    produced = {}

    class LongRunTracker(Tracker):
        """The real tracker as it is after a long run: the next new id is ``first_id`` (test-only shortcut)."""

        def __init__(self, cfg):
            super().__init__(cfg)
            self._next_id = first_id

        def step(self, frame, prepared=None):
            result = super().step(frame, prepared)
            produced[f"{result.index:05d}"] = result.labels.copy()
            return result

    monkeypatch.setattr(track, "Tracker", LongRunTracker)
    out = tmp_path / "out"
    assert track.main(["--image-dir", str(src), "--output-dir", str(out), "--quiet",
                       "--set", "tracker.keyframe_interval=2"]) == 0
    assert sorted(produced) == ["00000", "00001", "00002", "00003"]
    ids_seen = set().union(*(np.unique(lab).tolist() for lab in produced.values())) - {0}
    assert min(ids_seen) >= first_id and max(ids_seen) > (65535 if first_id > 255 else 255), ids_seen
    values = {name: load_label_png(out / f"{name}.png") for name in produced}
    assert all(v.max() <= 65535 for v in values.values())
    decoded = load_track_ids(out)
    assert sorted(decoded) == sorted(produced)
    for name, labels in produced.items():
        assert np.array_equal(decoded[name], labels), name
        # Distinct objects keep distinct pixel values in each frame.
        assert len(np.unique(values[name])) == len(np.unique(labels)), name


def test_depth_folder_writes_3d_objects(tmp_path):
    """Rendered frames with known geometry (test/scene3d.py) and their 16-bit depth PNGs -> objects.jsonl."""
    from scene3d import CX, CY, FX, FY, centroid_tolerance, render

    rgb_dir, depth_dir, out = tmp_path / "rgb", tmp_path / "depth", tmp_path / "out"
    rgb_dir.mkdir()
    depth_dir.mkdir()
    truths = {}
    for i in range(4):
        rgb, depth, labels, truths[f"{i:05d}"] = render(i)
        cv2.imwrite(str(rgb_dir / f"{i:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        mm = np.round(depth * 1000).astype(np.uint16)
        if i == 2:
            mm = mm[::2, ::2]  # not registered to the image: this frame's objects are skipped
        if i != 3:  # frame 3 has no depth file at all
            cv2.imwrite(str(depth_dir / f"{i:05d}.png"), mm)
    args = ["--image-dir", str(rgb_dir), "--output-dir", str(out), "--quiet", "--depth-dir", str(depth_dir)]
    assert track.main(args) == 2  # no intrinsics
    assert track.main([*args, "--intrinsics", f"{FX},{FY},{CX},{CY}"]) == 0
    tracks = {r["frame"]: r for r in map(json.loads, (out / "tracks.jsonl").read_text().splitlines())}
    objects = [json.loads(line) for line in (out / "objects.jsonl").read_text().splitlines()]
    assert [o["frame"] for o in objects] == ["00000", "00001"] and len(tracks) == 4
    for rec in objects:
        assert [o["id"] for o in rec["objects"]] == [t["id"] for t in tracks[rec["frame"]]["tracks"]]
        labels = load_label_png(out / f"{rec['frame']}.png")
        panel = next(t for t in truths[rec["frame"]] if t.id == 1)
        _, _, gt, _ = render(int(rec["frame"]))
        best = max(rec["objects"], key=lambda o: ((labels == o["id"]) & (gt == 1)).sum())
        assert best["valid_fraction"] == 1.0 and best["points"] == best["pixels"]
        allowed = centroid_tolerance(labels == best["id"], gt == 1)
        assert np.linalg.norm(np.subtract(best["centroid"][:2], panel.centre[:2])) < allowed
        assert abs(best["centroid"][2] - 2.0) < 0.01


def test_pointmap_needs_a_matcher_with_points(tmp_path, davis_root):
    src = davis_root / "JPEGImages" / "480p" / "car-roundabout"
    code = track.main(["--image-dir", str(src), "--output-dir", str(tmp_path), "--pointmap", "--max-frames", "1"])
    assert code == 2


@pytest.mark.parametrize("pipeline", [False, True])
def test_pointmap_objects_through_run(tmp_path, pipeline):
    """track.run with the matcher's point map (the stream's pointmap_min_conf): a stand-in point map gives the
    rendered scene's points at half resolution with a confidence map (as MASt3R predicts them at its own size), of
    the frame the tracker holds. With the pipeline the objects are made in the tracking thread before the next
    step: still that frame's."""
    from scene3d import CX, CY, FX, FY, centroid_tolerance, render

    from mastsam_ros.core.config import Config
    from mastsam_ros.core.geometry import Intrinsics, backproject
    from mastsam_ros.core.tracker import Tracker

    k = Intrinsics(FX, FY, CX, CY)

    class PointMaps:
        frame = 0

        def point_map(self):
            _, depth, _, _ = render(self.frame)
            pts = backproject(depth, k)[1::2, 1::2]
            conf = np.full(pts.shape[:2], 3.0, np.float32)
            conf[:, : conf.shape[1] // 8] = 1.0  # the leftmost eighth is below the 1.5 threshold: no points
            return pts, conf

    source = PointMaps()

    class HoldingTracker(Tracker):
        """The point map follows the frame the tracker last stepped (as a matcher's own does)."""

        def step(self, frame, prepared=None):
            result = super().step(frame, prepared)
            source.frame = result.index
            return result

    tracker = HoldingTracker(Config())
    tracker.matcher.point_map = source.point_map
    frames = (track.Frame(f"{i:05d}", render(i)[0]) for i in range(3))
    stats = track.run(tracker, frames, tmp_path, progress=False, pointmap_min_conf=1.5, pipeline=pipeline)
    assert stats["frames"] == 3 and stats["objects_skipped"] == 0
    tracks = [json.loads(x) for x in (tmp_path / "tracks.jsonl").read_text().splitlines()]
    lines = [json.loads(x) for x in (tmp_path / "objects.jsonl").read_text().splitlines()]
    for rec, tr in zip(lines, tracks):
        assert [o["id"] for o in rec["objects"]] == [t["id"] for t in tr["tracks"]]
        _, _, gt, truths = render(rec["index"])
        labels = load_label_png(tmp_path / f"{rec['frame']}.png")
        panel = max(rec["objects"], key=lambda o: ((labels == o["id"]) & (gt == 1)).sum())
        allowed = centroid_tolerance(labels == panel["id"], gt == 1)
        assert abs(panel["centroid"][2] - 2.0) < 0.01
        assert np.linalg.norm(np.subtract(panel["centroid"][:2], truths[0].centre[:2])) < allowed
        for o in rec["objects"]:  # pixels in the unconfident strip (x < 40) are no points
            assert o["pixels"] - o["points"] == int((labels[:, :40] == o["id"]).sum()), o
        assert any(o["points"] < o["pixels"] for o in rec["objects"])  # the strip holds some object


def test_pointmap_with_upstream_mast3r(tmp_path, davis_root):
    """mastsam-track --pointmap with the mast3r matcher (upstream model, random weights) where a clone is present."""
    import importlib.util
    import os
    from pathlib import Path

    from mastsam_ros.core.errors import BackendUnavailable
    from mastsam_ros.core.matchers.mast3r import import_mast3r

    path = os.environ.get("MASTSAM_MAST3R_PATH", "")
    try:
        import_mast3r(path)
    except BackendUnavailable as e:
        pytest.skip(f"mast3r not importable (set MASTSAM_MAST3R_PATH to a naver/mast3r clone): {e}")
    script = Path(__file__).resolve().parents[2] / "scripts" / "verify_mast3r.py"
    spec = importlib.util.spec_from_file_location("verify_mast3r", script)
    verify = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verify)
    ckpt = verify.save_random_checkpoint(path, verify.TINY_MODEL, tmp_path / "tiny.pth")
    src = davis_root / "JPEGImages" / "480p" / "car-roundabout"
    out = tmp_path / "out"
    code = track.main(["--image-dir", str(src), "--output-dir", str(out), "--max-frames", "2", "--quiet",
                       "--pointmap", "--pointmap-min-conf", "1.0", "--set", "matcher.backend=mast3r",
                       "--set", f"matcher.checkpoint={ckpt}", "--set", f"matcher.mast3r_path={path}"])
    assert code == 0
    tracks = [json.loads(x) for x in (out / "tracks.jsonl").read_text().splitlines()]
    lines = [json.loads(x) for x in (out / "objects.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for rec, tr in zip(lines, tracks):
        assert [o["id"] for o in rec["objects"]] == [t["id"] for t in tr["tracks"]]
        assert all(o["points"] == o["pixels"] > 0 for o in rec["objects"])  # confidence >= 1 everywhere


def _without_timings(path):
    """tracks.jsonl's records without their timings (which differ from run to run)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        r.pop("timings_ms")
    return records


def test_pipeline_option_writes_the_serial_outputs(tmp_path, car_frames, capsys):
    """``--pipeline`` (decode, encode with the flow ahead, track in three threads): the same label PNGs and records as
    the serial run, a truncated file skipped the same way, no frame dropped although every file is offered at once,
    the flow of every pair computed ahead and used, and the figures printed."""
    src = tmp_path / "in"
    src.mkdir()
    for i, rgb in enumerate(car_frames[0]):
        small = cv2.resize(rgb, (427, 240), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(src / f"{i:05d}.png"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    (src / "00003.png").write_bytes((src / "00003.png").read_bytes()[:100])  # truncated: skipped by both
    outs = {}
    for mode in ("serial", "pipeline"):
        outs[mode] = tmp_path / mode
        flag = ["--pipeline"] if mode == "pipeline" else []
        assert track.main(["--image-dir", str(src), "--output-dir", str(outs[mode]), "--quiet", *flag]) == 0
    printed = capsys.readouterr().out
    serial, piped = sorted(outs["serial"].glob("*.png")), sorted(outs["pipeline"].glob("*.png"))
    assert [p.name for p in serial] == [p.name for p in piped] == ["00000.png", "00001.png", "00002.png",
                                                                      "00004.png", "00005.png"]
    for a, b in zip(serial, piped):
        assert np.array_equal(load_label_png(a), load_label_png(b)), a.name
    records = _without_timings(outs["serial"] / "tracks.jsonl")
    assert records == _without_timings(outs["pipeline"] / "tracks.jsonl")
    assert len({t["id"] for r in records for t in r["tracks"]}) > 1  # it tracks something
    # 6 files in, 5 tracked, none dropped; stage 2 made a pair for each of the 5 (frame 0's without a flow: no
    # previous frame); the step used the 4 with a flow (2 -> 4 too: the unreadable file never reached the matcher)
    line = next(x for x in printed.splitlines() if x.startswith("pipeline: "))
    assert line.startswith("pipeline: 5 frames in ") and "dropped 0;" in line, line
    assert "pair computed ahead 5, used 4, not used 1;" in line, line
    assert "distinct ids:" in printed.splitlines()[-1]


def test_pipeline_keeps_every_frame_and_its_order(tmp_path):
    """Offline the stream's entrance waits: with tracking far slower than reading, every frame is tracked and
    written, in order (the node's entrance would replace the waiting frame)."""
    frames = [track.Frame(f"{i:05d}", f) for i, f in enumerate(frames_mod.synthetic_frames(8, size=(120, 160)))]
    seen = []

    class SlowTracker(Tracker):
        def step(self, frame, prepared=None):
            time.sleep(0.05)
            result = super().step(frame, prepared)
            seen.append(result.index)
            return result

    stats = track.run(SlowTracker(track.load_config(None, None)), iter(frames), tmp_path, progress=False,
                      pipeline=True)
    assert seen == list(range(len(frames))) and stats["frames"] == len(frames)
    assert track.read_listed(tmp_path) == [f.name for f in frames]
    counters = stats["pipeline"]["counters"]
    assert counters["dropped"] == 0 and counters["submitted"] == counters["delivered"] == len(frames)
