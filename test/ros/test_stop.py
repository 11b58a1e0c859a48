"""Stopping the node: more signals while it tears down (``ros2 launch`` forwards the SIGINT a terminal already sent
to the whole process group, then escalates to SIGTERM) still end with exit code 0 and no traceback.

Deterministic: the node process runs ``tracker_node.main`` with a tracker whose ``close`` (the last step of the
teardown after Ctrl-C) announces itself with a file and waits for the test's file, so the second SIGINT and a
SIGTERM certainly arrive during the teardown, whatever the machine's speed; after the release, signals keep coming
every 10 ms until the process has ended (the interpreter's own exit included).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import PARAMS, REPO, Probe, bedroom_frames, image_msg, require_ros
from .test_lifecycle import LifecycleClient

pytestmark = pytest.mark.usefixtures("ros")

# The node's entry point with Tracker.close held until the file $HELD/release exists (at most 120 s).
HELD_NODE = """
import os, sys, time
from pathlib import Path
from mastsam_ros.core.tracker import Tracker
from mastsam_ros.node import frontend, tracker_node

held = Path(os.environ["HELD"])

class HeldClose(Tracker):
    def close(self):
        (held / "closing").touch()
        end = time.monotonic() + 120
        while not (held / "release").exists() and time.monotonic() < end:
            time.sleep(0.02)
        super().close()

frontend.Tracker = HeldClose
sys.exit(tracker_node.main())
"""


def _wait_file(path, proc, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.02)
    return path.exists()


@pytest.mark.parametrize("managed", [False, True], ids=["plain", "managed"])
def test_more_signals_during_teardown_still_exit_0_without_a_traceback(managed, tmp_path):
    require_ros()
    from lifecycle_msgs.msg import Transition

    name = f"tracker_stop_{int(managed)}"
    log_path = tmp_path / "node.log"
    env = dict(os.environ, HELD=str(tmp_path))
    cmd = [sys.executable, "-c", HELD_NODE, *(["--managed"] if managed else []), "--ros-args", "--params-file",
           str(PARAMS), "-r", f"__node:={name}", "-p", "node.qos:=reliable"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    probe = Probe(f"probe_stop_{int(managed)}", node_name=name)
    try:
        if managed:
            lc = LifecycleClient(probe, name)
            assert lc.transition(Transition.TRANSITION_CONFIGURE) and lc.transition(Transition.TRANSITION_ACTIVATE)
        probe.wait_connected()
        probe.send_and_wait(image_msg(bedroom_frames(1)[0], sec=10), timeout=60)  # a tracker built and used

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert _wait_file(tmp_path / "closing", proc), f"the teardown never reached Tracker.close:\n" \
                                                       f"{log_path.read_text()}"
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):  # forwarded, escalated, repeated
            proc.send_signal(sig)
            time.sleep(0.3)  # separate deliveries: pending signals of one kind would merge into one
        assert proc.poll() is None, "the node died on a signal during its teardown"
        (tmp_path / "release").touch()
        # and more until the process has ended: through the rest of the teardown and the interpreter's exit
        end = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < end:
            proc.send_signal(signal.SIGINT if int(time.monotonic() * 100) % 2 else signal.SIGTERM)
            time.sleep(0.01)
        code = proc.wait(10)
    finally:
        probe.destroy()
        (tmp_path / "release").touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log_path.read_text()
    assert code == 0, f"exit code {code} after signals during teardown:\n{out}"
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
