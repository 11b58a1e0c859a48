"""mastsam-track end to end: real frames in, DAVIS-format label PNGs out; bad files are skipped and counted."""

import json
import shutil

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

        def step(self, rgb):
            result = super().step(rgb)
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
