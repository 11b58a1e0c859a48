"""The node's ``~/events`` over real DDS against the offline tracker: the same frames, sent to a node process one at
a time and written as PNGs for ``mastsam-track`` with the same config, give the same track events (kinds, ids,
frames away, merged into) and scene cuts, frame by frame; every born or re-identified id is one of the frame's
``~/instances`` ``new_ids``; the diagnostics count the events by kind.

The frames: real bedroom frames, a look away to another real sequence (a scene cut: every track goes dormant), and
back (a second cut: the bedroom objects re-identified). ``tracker.dormant_max_age`` is short so that dormant
signatures age out (retired) within the clip. All six kinds occur (checked, so the comparison covers each).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import cv2
import pytest

from .conftest import REPO, SHARED, Probe, bedroom_frames, image_msg, node_process, require_ros

pytestmark = pytest.mark.usefixtures("ros")
NAME = "tracker"
SETTINGS = {"tracker.dormant_max_age": 8}
KINDS = ("born", "hidden", "dormant", "reidentified", "merged", "retired")


def _look_away_frames() -> list:
    """8 bedroom frames, 6 of DAVIS soapbox, then 16 more bedroom frames; 320 x 180 RGB."""
    bedroom = bedroom_frames(24)
    files = sorted((SHARED / "data" / "davis2016" / "JPEGImages" / "480p" / "soapbox").glob("*.jpg"))[:6]
    if len(files) < 6:
        pytest.skip("../shared/data/davis2016 soapbox is missing")
    away = [cv2.cvtColor(cv2.resize(cv2.imread(str(f)), bedroom[0].shape[1::-1], interpolation=cv2.INTER_AREA),
                         cv2.COLOR_BGR2RGB) for f in files]
    return bedroom[:8] + away + bedroom[8:]


def _offline(frames, tmp_path) -> list[dict]:
    """tracks.jsonl of ``mastsam-track`` on ``frames`` written as PNG (lossless: the node's pixels exactly)."""
    src, out = tmp_path / "frames", tmp_path / "out"
    src.mkdir()
    for i, rgb in enumerate(frames):
        assert cv2.imwrite(str(src / f"{i:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    sets = [a for k, v in SETTINGS.items() for a in ("--set", f"{k}={v}")]
    run = subprocess.run([sys.executable, "-m", "mastsam_ros.cli.track", "--image-dir", str(src), "-o", str(out),
                          "--quiet", *sets], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in (out / "tracks.jsonl").read_text().splitlines()]


def _same_events(msg, written: list[dict]) -> bool:
    """A TrackEventArray's events equal tracks.jsonl's (TrackEvent.as_dict): kind, id, frames away and into exactly,
    the score within the float32 of the message and the 4 decimals of the file."""
    if len(msg.events) != len(written):
        return False
    for e, w in zip(msg.events, written):
        if (e.kind, e.id, e.frames_away, e.into) != (w["kind"], w["id"], w.get("frames_away", 0), w.get("into", 0)):
            return False
        if abs(e.score - w.get("score", 0.0)) > 1e-4:
            return False
    return True


@pytest.fixture(scope="module")
def events_node(ros, tmp_path_factory):
    yield from node_process(tmp_path_factory.mktemp("events") / "tracker.log",
                            *[a for k, v in SETTINGS.items() for a in ("-p", f"{k}:={v}")])


def test_events_topic_carries_the_offline_trackers_events_frame_by_frame(events_node, tmp_path):
    require_ros()
    frames = _look_away_frames()
    expected = _offline(frames, tmp_path)
    assert len(expected) == len(frames)
    kinds = Counter(e["kind"] for r in expected for e in r["events"])
    assert all(kinds[k] > 0 for k in KINDS) and sum(r["cut"] for r in expected) == 2, kinds

    probe = Probe("probe_events")
    received = []
    probe.node.create_subscription(probe_types().TrackEventArray, f"/{NAME}/events", received.append, 100)
    try:
        probe.wait_connected(events_node)
        assert probe.spin_until(lambda: probe.node.count_publishers(f"/{NAME}/events") > 0, 10)
        base = 5000
        answers = [probe.send_and_wait(image_msg(rgb, sec=base + i), timeout=60) for i, rgb in enumerate(frames)]
        assert [a.frame_index for a in answers] == list(range(len(frames)))
        with_events = [i for i, r in enumerate(expected) if r["events"] or r["cut"]]
        assert probe.spin_until(lambda: len(received) >= len(with_events), 20), (len(received), with_events)
        probe.spin_until(lambda: False, 0.5)  # anything more the node would send
        by_frame = {m.header.stamp.sec - base: m for m in received}
        assert len(by_frame) == len(received) and sorted(by_frame) == with_events, sorted(by_frame)
        for i, r in enumerate(expected):
            new_ids = sorted(answers[i].new_ids)
            if i not in by_frame:
                assert new_ids == [], (i, new_ids)
                continue
            m = by_frame[i]
            assert (m.frame_index, m.cut, m.header.frame_id) == (i, r["cut"], "cam"), i
            assert _same_events(m, r["events"]), (i, m.events, r["events"])
            # a born or re-identified id is new on ~/instances in that frame, and every new id is one of them
            assert sorted(e.id for e in m.events if e.kind in ("born", "reidentified")) == new_ids, i

        probe.spin_until(lambda: False, 0.6)  # a diagnostics period after the last frame
        c = probe.counters()
        for k in KINDS:
            assert int(c[f"events_{k}"]) == kinds[k], (k, c)
        assert int(c["cuts"]) == 2 and int(c["frames_processed"]) == len(frames), c
    finally:
        probe.destroy()


def probe_types():
    from .conftest import MSGS

    return MSGS
