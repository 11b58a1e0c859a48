"""The node's front end in this process, with a segmenter held on an event where order matters: a burst while the
tracker is busy is dropped at the stream's entrance, every frame is counted once (received = processed + failed +
dropped + refused + abandoned + in flight), a deactivation in the middle of a frame publishes nothing after it, and
the managed node applies parameters once and closes and frees its tracker on cleanup. Nothing here depends on how
fast the machine is: the frames wait for the test, not for the clock."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from mastsam_ros.core.segmenters.base import Segmenter

from .conftest import Probe, bedroom_frames, image_msg, require_ros

pytestmark = pytest.mark.usefixtures("ros")
FRAMES = ("received", "processed", "failed", "dropped", "refused", "abandoned", "in_flight")


class GatedSegmenter(Segmenter):
    """The real segmenter, except that making a frame current (what a tracker step does first with the segmenter)
    sets ``entered`` and waits for ``gate``: while the gate is shut, the tracking stage holds its frame."""

    def __init__(self, inner: Segmenter, gate: threading.Event, entered: threading.Event):
        self.inner, self.gate, self.entered = inner, gate, entered
        self.name, self.embeds_ahead = inner.name, inner.embeds_ahead

    @property
    def mask_shape(self):
        return self.inner.mask_shape

    @mask_shape.setter
    def mask_shape(self, shape):
        self.inner.mask_shape = shape

    def settings(self) -> dict:
        return self.inner.settings()

    def _wait(self) -> None:
        self.entered.set()
        assert self.gate.wait(120), "the test never opened the gate"

    def embed(self, image):
        return self.inner.embed(image)

    def set_embedding(self, embedding) -> None:
        self._wait()
        self.inner.set_embedding(embedding)

    def set_image(self, image) -> None:
        self._wait()
        self.inner.set_image(image)

    def generate(self, region=None, seeds=None):
        return self.inner.generate(region, seeds)

    def predict(self, prompts):
        return self.inner.predict(prompts)


@pytest.fixture
def gate(monkeypatch):
    """The front end's trackers get a GatedSegmenter; yields (gate, entered), the gate open at the end."""
    from mastsam_ros.core.segmenters import build_segmenter
    from mastsam_ros.core.tracker import Tracker
    from mastsam_ros.node import frontend

    g, entered = threading.Event(), threading.Event()
    monkeypatch.setattr(frontend, "Tracker", lambda cfg: Tracker(
        cfg, segmenter=GatedSegmenter(build_segmenter(cfg.segmenter), g, entered)))
    yield g, entered
    g.set()


def _node(name: str, pipeline: bool, managed: bool = False):
    from rclpy.parameter import Parameter

    from mastsam_ros.node.lifecycle import ManagedTrackerNode
    from mastsam_ros.node.tracker_node import TrackerNode

    cls = ManagedTrackerNode if managed else TrackerNode
    return cls(cli_args=["--ros-args", "-r", f"__node:={name}"],
               parameter_overrides=[Parameter("node.pipeline", value=pipeline),
                                    Parameter("node.diagnostics_period", value=60.0)])


def _settled(front, timeout: float = 120.0) -> dict[str, int]:
    """The front end's counts once nothing is in flight (the frames' work, not the clock, decides when)."""
    end = time.monotonic() + timeout
    while (c := front.counts())["in_flight"] and time.monotonic() < end:
        time.sleep(0.02)
    assert c["in_flight"] == 0, c
    return c


def _conserved(c: dict[str, int]) -> bool:
    return c["received"] == sum(c[k] for k in FRAMES[1:])


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipeline", "serial"])
def test_a_burst_while_the_tracker_is_held_is_dropped_at_the_entrance_and_every_frame_counted(gate, pipeline):
    require_ros()
    g, entered = gate
    name = f"tracker_burst_{int(pipeline)}"
    node = _node(name, pipeline)
    probe = Probe(f"probe_burst_{int(pipeline)}", node_name=name)
    try:
        probe.wait_connected(publishing=False)
        front = node.front
        frames = bedroom_frames(2)
        front._on_image(image_msg(frames[0], sec=1))
        assert entered.wait(60), "the first frame never reached the tracker's step"
        # While frame 1 is held in the step: bad input refused in the callback, then a burst. Past the entrance at
        # most one frame waits per stage (decode, prepare) and one at the entrance, so at least 20 - 3 are dropped.
        bad = image_msg(frames[1], sec=2)
        bad.encoding = "32FC1"
        front._on_image(bad)
        front._on_image(image_msg(frames[1], sec=1))  # a repeated stamp
        burst = [image_msg(frames[i % 2], sec=10 + i) for i in range(20)]
        for msg in burst:
            front._on_image(msg)
        held = front.counts()
        assert _conserved(held), held
        assert held["received"] == 23 and held["refused"] == 2 and held["dropped"] >= 17, held
        assert held["bad_encoding"] == 1 and held["stamp_repeated"] == 1, held
        g.set()
        c = _settled(front)
        assert _conserved(c), c
        assert c["received"] == 23 and c["refused"] == 2 and c["failed"] == 0 and c["abandoned"] == 0, c
        assert c["dropped"] >= 17 and c["processed"] == 21 - c["dropped"], c
        assert probe.spin_until(lambda: len(probe.instances) == c["processed"], 30), (len(probe.instances), c)
        stamps = [m.header.stamp.sec for m in probe.instances]
        # in frame order, each answered once, the newest of the burst among them (the entrance keeps the newest)
        assert stamps[0] == 1 and stamps == sorted(set(stamps)) and stamps[-1] == 29, stamps
        assert [m.frame_index for m in probe.instances] == list(range(len(stamps)))
        d = {kv.key: kv.value for kv in front.diagnostics().values}
        assert all(d[f"frames_{k}"] == str(c[k]) for k in FRAMES), d
        assert d["pipeline"] == str(pipeline).lower() and int(d["tracker_errors"]) == 0, d
    finally:
        g.set()
        probe.destroy()
        assert node.close(timeout=60)
        node.destroy_node()


def test_deactivating_in_the_middle_of_a_frame_publishes_nothing_after_it(gate):
    require_ros()
    g, entered = gate
    node = _node("tracker_mid", pipeline=True)
    probe = Probe("probe_mid", node_name="tracker_mid")
    try:
        probe.wait_connected(publishing=False)
        front = node.front
        frames = bedroom_frames(3)
        for i, rgb in enumerate(frames):
            front._on_image(image_msg(rgb, sec=100 + i))
            if i == 0:
                assert entered.wait(60)
        assert not front.deactivate(timeout=0.2, warn=False)  # the frame held in the step does not end in time
        c = front.counts()
        assert c["in_flight"] == 0 and c["abandoned"] >= 1 and _conserved(c), c
        front._on_image(image_msg(frames[0], sec=200))  # inactive now: refused, counted
        g.set()  # the held frame finishes its step: its outcome is neither delivered nor published
        node.front._retired.join(timeout=60)
        assert not front._retired.is_alive()
        probe.spin_until(lambda: False, 0.5)
        assert probe.instances == [], [m.header.stamp.sec for m in probe.instances]
        after = front.counts()
        assert _conserved(after) and after["inactive"] == 1 and after["processed"] == 0, after
        assert after["abandoned"] == after["received"] - after["refused"] - after["dropped"], after
    finally:
        g.set()
        probe.destroy()
        node.close(timeout=60)
        node.destroy_node()


def test_managed_node_applies_parameters_once_and_closes_its_tracker_on_cleanup(monkeypatch):
    require_ros()
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from mastsam_ros.core.tracker import Tracker
    from mastsam_ros.node import frontend

    SUCCESS = TransitionCallbackReturn.SUCCESS
    built, closed = [], []

    class Recorded(Tracker):
        def __init__(self, cfg):
            super().__init__(cfg)
            built.append(weakref.ref(self))

        def close(self):
            closed.append(id(self))
            super().close()

    monkeypatch.setattr(frontend, "Tracker", Recorded)
    node = _node("tracker_managed", pipeline=True, managed=True)
    front = node.front
    frame = bedroom_frames(1)[0]
    try:
        for cycle in range(2):
            # set while unconfigured: in the tracker configure builds, and never applied to it again
            assert node.set_parameters([Parameter("matcher.max_side", value=96 + cycle)])[0].successful
            assert node.trigger_configure() == SUCCESS and len(built) == cycle + 1
            tracker = front.tracker
            assert tracker.matcher.settings()["max_side"] == 96 + cycle
            assert node.trigger_activate() == SUCCESS
            front._on_image(image_msg(frame, sec=10 * cycle + 1))
            c = _settled(front)
            assert c["processed"] == 2 * cycle + 1 and c["parameter_changes"] == c["backend_rebuilds"] == cycle, c
            # set while active: applied once, between two frames, rebuilding the matcher
            assert node.set_parameters([Parameter("matcher.max_side", value=200)])[0].successful
            front._on_image(image_msg(frame, sec=10 * cycle + 2))
            c = _settled(front)
            assert c["parameter_changes"] == c["backend_rebuilds"] == cycle + 1 and _conserved(c), c
            assert tracker.matcher.settings()["max_side"] == 200
            assert node.trigger_deactivate() == SUCCESS and front.stream is None
            assert node.trigger_cleanup() == SUCCESS
            assert front.tracker is None and closed[-1] == id(tracker)
            del tracker
            gc.collect()
            assert built[-1]() is None, "something still holds the cleaned-up tracker"
        assert len(closed) == 2
    finally:
        node.close()
        node.destroy_node()


def test_frames_the_middleware_reports_lost_are_counted_and_raise_a_warning():
    """The image subscription carries rclpy's message-lost event (rmw_fastrtps reports it); what it reports is
    counted as frames_lost_transport and makes the next diagnostics WARN, the one after OK again."""
    require_ros()
    from types import SimpleNamespace

    from diagnostic_msgs.msg import DiagnosticStatus

    node = _node("tracker_lost", pipeline=False)
    try:
        front = node.front
        first = front.diagnostics()
        values = {kv.key: kv.value for kv in first.values}
        assert values["lost_transport_source"] == "middleware" and values["frames_lost_transport"] == "0", values
        assert values["dds_profile"].endswith(".xml"), values  # conftest's profile, from the environment
        front._on_message_lost(SimpleNamespace(total_count=3, total_count_change=3))
        warned = front.diagnostics()
        values = {kv.key: kv.value for kv in warned.values}
        assert warned.level == DiagnosticStatus.WARN and "frames lost in transport: +3" in warned.message
        assert values["frames_lost_transport"] == "3", values
        assert front.diagnostics().level == DiagnosticStatus.OK  # nothing new since
        # the stamps are not counted as well: a gap in them is the middleware's business here
        frames = bedroom_frames(1)
        for sec in (1, 2, 3, 4, 5, 6, 7, 10):  # by the stamps: 2 lost before the last
            front._on_image(image_msg(frames[0], sec=sec))
        assert front.counts()["lost_transport"] == 3
    finally:
        node.close(timeout=60)
        node.destroy_node()
