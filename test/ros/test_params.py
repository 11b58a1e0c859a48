"""Parameters of the node over real DDS: a change at run time reaches the tracker between two frames, including the
fields a backend copies when it is built (the backend is rebuilt), and shows in the output and the diagnostics."""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest

from mastsam_ros.core.config import Config

from .conftest import PARAMS, bedroom_frames, connected_probe, image_msg, labels_of

pytestmark = pytest.mark.usefixtures("ros")

# (parameter, new value). Six fields a backend may copy at build time, then one the tracker reads every frame.
CHANGES = [
    ("matcher.max_side", 96),  # 320x180 -> 96x54: small, yet what OpenCV DIS ultrafast still accepts
    ("matcher.max_error_px", 0.02),
    ("matcher.flow_preset", "ultrafast"),
    ("matcher.top_k", 256),  # XFeat's keypoint count: the flow matcher does not use it, nothing is rebuilt
    ("segmenter.max_side", 128),
    ("clustering.seed", 7),
    ("tracker.max_tracks", 4),
]
WARMUP = 2  # frames before the first change


@pytest.fixture(scope="module")
def probe(tracker_node):
    yield from connected_probe(tracker_node, "params_probe")


def _diagnostics_until(probe, predicate, timeout=10.0) -> dict:
    values = {}

    def check():
        nonlocal values
        values = probe.counters()
        return predicate(values)

    assert probe.spin_until(check, timeout), values
    return values


def _fingerprint(labels: np.ndarray, tracks) -> tuple:
    """What a consumer sees of one frame: digests of the label map and of each track's mask points, by id."""
    def digest(a):
        return hashlib.sha1(a.tobytes()).hexdigest()[:12]

    return digest(labels.astype(np.uint16)), tuple((int(i), digest(np.asarray(p, np.float32))) for i, p in tracks)


def _reference(frames, changes_before: int, final_change: bool):
    """The core alone on the same frames: change j applied before frame WARMUP + j, for j < ``changes_before``, and
    change ``changes_before`` before the last frame too when ``final_change``. Returns the last FrameResult."""
    from mastsam_ros.core.tracker import Tracker

    tracker = Tracker(copy.deepcopy(Config.from_yaml(PARAMS)))
    last = WARMUP + changes_before
    for i in range(last + 1):
        j = i - WARMUP
        if 0 <= j < changes_before or (j == changes_before and final_change):
            tracker.configure(dict([CHANGES[j]]))
        result = tracker.step(frames[i])
    return result


def test_each_runtime_parameter_changes_the_output_or_the_backend(probe, tracker_node):
    frames = bedroom_frames(WARMUP + len(CHANGES))

    def send(i):
        inst = probe.send_and_wait(image_msg(frames[i], sec=6000 + i))
        assert probe.spin_until(lambda: any(m.header.stamp.sec == 6000 + i for m in probe.labels), 5)
        lab = next(m for m in probe.labels if m.header.stamp.sec == 6000 + i)
        points = [[(p.x, p.y) for p in x.points] for x in inst.instances]
        return inst, _fingerprint(labels_of(lab), [(x.id, pts) for x, pts in zip(inst.instances, points)])

    for i in range(WARMUP):
        send(i)
    diag = probe.counters()
    assert diag["matcher.max_side"] == "480" and diag["matcher.flow_preset"] == "medium", diag
    changes, rebuilds = int(diag["parameter_changes"]), int(diag["backend_rebuilds"])

    for k, (name, value) in enumerate(CHANGES):
        answer = probe.set_parameter(name, value)
        assert answer.successful, (name, answer.reason)
        rebuild = name not in ("tracker.max_tracks", "matcher.top_k")  # only a value a built backend uses
        changes, rebuilds = changes + 1, rebuilds + int(rebuild)
        # Diagnostics read the value back from the rebuilt backend (the flow matcher has no top_k to show).
        diag = _diagnostics_until(probe, lambda d: int(d["parameter_changes"]) == changes and (
            name not in d or d[name] == str(value)))
        assert int(diag["backend_rebuilds"]) == rebuilds, (name, diag)
        assert name in diag or name in ("matcher.top_k", "tracker.max_tracks"), (name, diag)

        inst, seen = send(WARMUP + k)
        # The node answers exactly what the core answers with the change applied before this frame...
        ref = _reference(frames, k, final_change=True)
        assert seen == _fingerprint(ref.labels, [(t.id, t.points) for t in ref.tracks]), f"{name}: not the core's"
        # ...and not what it answers without it: the change had an effect (top_k cannot, with the flow matcher).
        without = _reference(frames, k, final_change=False)
        differs = seen != _fingerprint(without.labels, [(t.id, t.points) for t in without.tracks])
        assert differs == (name != "matcher.top_k"), name
        if name == "tracker.max_tracks":
            assert len(inst.instances) <= value < len(without.tracks)
    assert "rebuilt matcher" in tracker_node.log()


def test_params_file_is_generated_from_the_metadata_including_the_node_section():
    from mastsam_ros.node import params_file

    assert PARAMS.read_text() == params_file.render(), "stale: run python -m mastsam_ros.node.params_file"
    assert params_file.main(["--check"]) == 0


def test_cpu_params_file_node_keys_are_node_parameters():
    # config/cpu.yaml turns the node's pipeline off (on by default, for a GPU); its node keys must be real ones
    import dataclasses

    import yaml

    from mastsam_ros.node.parameters import NodeSection

    node = yaml.safe_load((PARAMS.parent / "cpu.yaml").read_text())["/**"]["ros__parameters"]["node"]
    fields = {f.name for f in dataclasses.fields(NodeSection)}
    assert set(node) <= fields, set(node) - fields
    assert NodeSection().pipeline is True and node["pipeline"] is False
