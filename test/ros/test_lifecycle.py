"""The managed (lifecycle) node over real DDS: configure loads the model and creates the outputs, activate
subscribes, deactivate stops (nothing answered), cleanup closes the tracker and removes the outputs, and a second
configure + activate tracks again with a fresh tracker. test_frontend.py checks in-process that cleanup closes and
frees the tracker and that parameters are applied once; scripts/node_memory.py prints RSS over such cycles.

MobileSAM (ViT-T) with random weights saved here (40 MB checkpoint, no download) gives the node a real model to load
and release; ``segmenter.points_per_side: 2`` keeps a frame at a few seconds on a CPU (its masks are meaningless,
the answers are what is checked).
"""

from __future__ import annotations

import pytest

from .conftest import NodeProcess, Probe, image_msg, require_ros

pytestmark = pytest.mark.usefixtures("ros")
NAME = "tracker_lc"


@pytest.fixture(scope="module")
def vit_t_checkpoint(tmp_path_factory):
    pytest.importorskip("mobile_sam", reason="mobile_sam (requirements.txt, models) is not installed")
    from mastsam_ros.cli.bench_runs import random_checkpoint

    return random_checkpoint("mobile_sam", "vit_t", tmp_path_factory.mktemp("vit_t"))


class LifecycleClient:
    def __init__(self, probe: Probe, name: str):
        from lifecycle_msgs.srv import ChangeState, GetState

        self.probe = probe
        self.change = probe.node.create_client(ChangeState, f"/{name}/change_state")
        self.get = probe.node.create_client(GetState, f"/{name}/get_state")
        assert self.change.wait_for_service(timeout_sec=30) and self.get.wait_for_service(timeout_sec=30)

    def _call(self, client, request, timeout=120.0):
        future = client.call_async(request)
        assert self.probe.spin_until(future.done, timeout), "no answer from the lifecycle service"
        return future.result()

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        return self._call(self.change, ChangeState.Request(transition=Transition(id=transition_id))).success


def test_lifecycle_transitions_load_and_release_the_model(vit_t_checkpoint, tmp_path):
    from lifecycle_msgs.msg import Transition

    require_ros()
    from .conftest import bedroom_frames

    frame = bedroom_frames(1)[0]
    proc = NodeProcess("-r", f"__node:={NAME}", "-p", "node.qos:=reliable", "-p", "segmenter.backend:=mobile_sam",
                       "-p", f"segmenter.checkpoint:={vit_t_checkpoint}", "-p", "segmenter.points_per_side:=2",
                       log_path=tmp_path / "lc.log", args=("--managed",))
    probe = Probe("probe_lc", node_name=NAME)
    try:
        lc = LifecycleClient(probe, NAME)
        assert lc.state() == "unconfigured"
        probe.spin_until(lambda: False, 0.5)
        assert probe.sub_instances.get_publisher_count() == 0 and probe.pub.get_subscription_count() == 0

        assert lc.transition(Transition.TRANSITION_CONFIGURE) and lc.state() == "inactive"
        assert probe.spin_until(lambda: probe.sub_instances.get_publisher_count() > 0, 10), proc.log()
        assert probe.pub.get_subscription_count() == 0  # inactive: not subscribed yet

        assert lc.transition(Transition.TRANSITION_ACTIVATE) and lc.state() == "active"
        probe.wait_connected(proc)
        probe.spin_until(lambda: False, 0.5)
        first = probe.send_and_wait(image_msg(frame, sec=10), timeout=120)
        assert first.reset and first.frame_index == 0

        assert lc.transition(Transition.TRANSITION_DEACTIVATE) and lc.state() == "inactive"
        assert probe.spin_until(lambda: probe.pub.get_subscription_count() == 0, 10)
        probe.pub.publish(image_msg(frame, sec=11))
        probe.spin_until(lambda: False, 3.0)
        assert not any(m.header.stamp.sec == 11 for m in probe.instances)  # deactivated: no answer

        assert lc.transition(Transition.TRANSITION_CLEANUP) and lc.state() == "unconfigured"
        assert probe.spin_until(lambda: probe.sub_instances.get_publisher_count() == 0, 10)

        # Again: configure, activate, and the fresh tracker answers (a new tracker: reset, frame 0).
        assert lc.transition(Transition.TRANSITION_CONFIGURE)
        assert lc.transition(Transition.TRANSITION_ACTIVATE) and lc.state() == "active"
        probe.wait_connected(proc)
        probe.spin_until(lambda: False, 0.5)
        again = probe.send_and_wait(image_msg(frame, sec=12), timeout=120)
        assert again.reset and again.frame_index == 0
        assert lc.transition(Transition.TRANSITION_DEACTIVATE) and lc.transition(Transition.TRANSITION_CLEANUP)

        assert lc.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN) and lc.state() == "finalized"
        log = proc.log()
        assert "configured: models loaded" in log and "cleaned up: tracker closed, models released" in log
        assert log.count("configured: models loaded") == 2 and log.count("cleaned up: tracker closed") == 2
    finally:
        probe.destroy()
        code = proc.stop()
    assert code == 0, proc.log()


def test_configure_failure_leaves_the_node_unconfigured_and_alive(tmp_path):
    from lifecycle_msgs.msg import Transition

    require_ros()
    proc = NodeProcess("-r", "__node:=tracker_lc_bad", "-p", "segmenter.backend:=sam",
                       "-p", f"segmenter.checkpoint:={tmp_path / 'missing.pth'}",
                       log_path=tmp_path / "bad.log", args=("--managed",))
    probe = Probe("probe_lc_bad", node_name="tracker_lc_bad")
    try:
        lc = LifecycleClient(probe, "tracker_lc_bad")
        assert not lc.transition(Transition.TRANSITION_CONFIGURE)
        assert lc.state() == "unconfigured" and proc.proc.poll() is None
        assert "configure failed" in proc.log() and "missing.pth" in proc.log()
    finally:
        probe.destroy()
        code = proc.stop()
    assert code == 0, proc.log()
