"""Config changes at run time reach the backends: a field a backend copies when it is built is read-only or marked
``rebuild``, and after :meth:`Tracker.configure` the rebuilt backend holds the new value (read back from it)."""

from __future__ import annotations

import dataclasses

import pytest

from mastsam_ros.core.clustering import build_clustering
from mastsam_ros.core.config import ClusteringSection, Config, MatcherSection, SegmenterSection
from mastsam_ros.core.errors import BackendUnavailable
from mastsam_ros.core.matchers import build_matcher
from mastsam_ros.core.segmenters import build_segmenter
from mastsam_ros.core.tracker import Tracker


class Recording:
    """A config section that records which of its fields are read (a backend under construction reads it)."""

    def __init__(self, section):
        object.__setattr__(self, "_section", section)
        object.__setattr__(self, "read", set())

    def __getattr__(self, name):
        if name in {f.name for f in dataclasses.fields(self._section)}:
            self.read.add(name)
        return getattr(self._section, name)


def _mast3r(cfg):
    torch = pytest.importorskip("torch")
    from mastsam_ros.core.matchers.mast3r import Mast3rMatcher

    return Mast3rMatcher(cfg, model=torch.nn.Identity())  # any module: only what __init__ reads matters here


def _mobile_sam(cfg, tmp_path):
    pytest.importorskip("mobile_sam")
    from mastsam_ros.cli.bench_runs import random_checkpoint
    from mastsam_ros.core.segmenters.sam import SamSegmenter

    cfg._section.checkpoint = str(random_checkpoint("mobile_sam", "vit_t", tmp_path))
    return SamSegmenter.from_config(cfg, mobile=True)


BUILDS = {
    "matcher flow": (MatcherSection(backend="flow"), build_matcher),
    "matcher xfeat": (MatcherSection(backend="xfeat"), build_matcher),
    "matcher mast3r": (MatcherSection(backend="mast3r"), _mast3r),
    "matcher cadence": (MatcherSection(backend="cadence", anchor_backend="xfeat"), build_matcher),
    "segmenter classical": (SegmenterSection(backend="classical"), build_segmenter),
    "segmenter mobile_sam": (SegmenterSection(backend="mobile_sam"), "mobile_sam"),
    "clustering scipy": (ClusteringSection(backend="scipy"), build_clustering),
    "clustering sklearn": (ClusteringSection(backend="sklearn"), build_clustering),
}


@pytest.mark.parametrize("name", list(BUILDS))
def test_fields_read_while_a_backend_is_built_are_read_only_or_rebuild(name, tmp_path):
    """Guard: a field copied at build time and neither read-only nor ``rebuild`` would be a runtime parameter the node
    accepts with no effect. Which fields the backend reads while it is built is recorded, not listed by hand."""
    section, build = BUILDS[name]
    cfg = Recording(section)
    try:
        backend = _mobile_sam(cfg, tmp_path) if build == "mobile_sam" else build(cfg)
    except BackendUnavailable as e:
        pytest.skip(f"{name}: {e}")
    assert cfg.read, name
    meta = {f.name: f.metadata for f in dataclasses.fields(section)}
    loose = [f for f in sorted(cfg.read) if not (meta[f]["read_only"] or meta[f]["rebuild"])]
    assert not loose, f"{name} copies {loose} when built: mark them rebuild (or read_only) in core/config.py"
    # What a backend reports as copied is exactly such a field.
    assert all(meta[k]["rebuild"] or meta[k]["read_only"] for k in backend.settings()), backend.settings()


@pytest.mark.parametrize("field,value,backends", [
    ("matcher.max_side", 64, {}),
    ("matcher.max_error_px", 0.5, {}),
    ("matcher.flow_preset", "ultrafast", {}),
    ("matcher.top_k", 256, {"matcher.backend": "xfeat"}),
    ("matcher.anchor_interval", 2, {"matcher.backend": "cadence", "matcher.anchor_backend": "flow"}),
    ("segmenter.max_side", 128, {}),
    ("clustering.seed", 7, {"clustering.backend": "scipy"}),
])
def test_each_rebuild_field_reaches_the_rebuilt_backend(field, value, backends, car_frames):
    section, key = field.split(".")
    try:
        tracker = Tracker(Config().update(backends))
    except BackendUnavailable as e:
        pytest.skip(str(e))
    backend = {"segmenter": "segmenter", "matcher": "matcher", "clustering": "kmeans"}[section]
    tracker.step(car_frames[0][0])
    before = getattr(tracker, backend)
    assert before.settings()[key] != value
    assert tracker.configure({field: value}) == [section]
    after = getattr(tracker, backend)
    assert after is not before and after.settings()[key] == value
    assert tracker.step(car_frames[0][1]).tracks  # and it still tracks


def test_a_change_rebuilds_only_a_backend_that_uses_the_changed_value():
    """A rebuild field changes only the backend whose ``settings()`` hold it, only when its value changed, and the
    replaced backend is closed."""
    t = Tracker(Config())  # classical segmenter, flow matcher, batch k-means
    matcher, segmenter = t.matcher, t.segmenter
    closed = []
    matcher.close = lambda: closed.append("matcher")  # the flow matcher holds nothing to close: record the call
    assert t.configure({"matcher.top_k": 1024}) == []  # xfeat's field: the flow matcher does not use it
    assert t.configure({"matcher.max_side": matcher.settings()["max_side"]}) == []  # same value
    assert t.configure({"segmenter.points_per_side": 8}) == []  # read at call time, no backend copies it
    assert t.matcher is matcher and t.segmenter is segmenter and closed == []
    assert t.configure({"matcher.flow_preset": "fast"}) == ["matcher"]
    assert t.matcher is not matcher and t.matcher.settings()["flow_preset"] == "fast" and closed == ["matcher"]
    assert t.configure({"segmenter.max_side": 320}) == ["segmenter"]  # the classical backend copies it
    assert t.segmenter is not segmenter and t.segmenter.settings()["max_side"] == 320
    t.close()
