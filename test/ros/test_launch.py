"""The launch file: its description, and `ros2 launch mastsam_ros tracker.launch.py` run the way a user runs it.

Needs ROS 2 `launch`, `launch_ros` and `ros2launch`, which no registry here offers: scripts/setup.sh installs them
into the venv from ../shared/ros2 when that is beside the checkout; a ROS 2 install provides them otherwise.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, Probe, bedroom_frames, image_msg, labels_of

LAUNCH_FILE = REPO / "launch" / "tracker.launch.py"
HOW_TO_GET = ("bash scripts/setup.sh installs it into the venv from ../shared/ros2 when that is beside the checkout; "
              "otherwise it comes with a ROS 2 install (docs/ROS.md, \"Install\")")


def _launch_module():
    """launch/tracker.launch.py as a module; the test skips where the ROS 2 launch packages are missing."""
    for module in ("launch.actions", "launch_ros.actions"):
        # Import a submodule: the repository's own launch/ folder would pass for a namespace package `launch`.
        try:
            importlib.import_module(module)
        except ImportError:
            pytest.skip(f"ROS 2 `{module.split('.')[0]}` is not installed: {HOW_TO_GET}")
    spec = importlib.util.spec_from_file_location("tracker_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_description_declares_the_documented_arguments():
    module = _launch_module()
    from launch.actions import DeclareLaunchArgument

    description = module.generate_launch_description()
    declared = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert {"image", "params_file", "device", "segmenter", "matcher", "use_compressed", "qos", "dds_profile",
            "rviz", "depth", "camera_info", "depth_enabled", "managed", "autostart"} <= declared
    assert {a for a in declared if a not in module.ARGS} == set()  # every declared argument reaches the checks


def test_launch_file_is_valid_python():
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")


@pytest.mark.parametrize("managed, autostart, expected", [
    ("true", "true", ["LifecycleNode", "RegisterEventHandler", "EmitEvent"]),
    ("true", "false", ["LifecycleNode"]),
    ("false", "true", ["Node"]),
])
def test_managed_and_autostart_choose_the_node(managed, autostart, expected):
    module = _launch_module()
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch.utilities import perform_substitutions

    context = LaunchContext()
    for a in module.generate_launch_description().entities:
        if isinstance(a, DeclareLaunchArgument):
            context.launch_configurations[a.name] = perform_substitutions(context, a.default_value)
    context.launch_configurations.update(managed=managed, autostart=autostart)
    actions = module._start(context)
    assert [type(a).__name__ for a in actions] == expected
    if managed == "true":
        assert "--managed" in [perform_substitutions(context, a) for a in actions[0].cmd[1:2]]


def test_the_node_process_gets_the_default_dds_profile():
    module = _launch_module()
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch.utilities import perform_substitutions

    context = LaunchContext()
    for a in module.generate_launch_description().entities:
        if isinstance(a, DeclareLaunchArgument):
            context.launch_configurations[a.name] = perform_substitutions(context, a.default_value)
    node = module._start(context)[0]
    env = {perform_substitutions(context, k): perform_substitutions(context, v) for k, v in node.additional_env}
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds_udp_input.xml"), env


def _venv_ros2() -> Path:
    """The venv running the tests, which must hold `ros2` with its launch command; the test skips otherwise."""
    venv = Path(sys.prefix)
    if sys.prefix == sys.base_prefix or not (venv / "bin" / "activate").is_file():
        pytest.skip("the tests do not run from a venv: `ros2 launch` is tested from the README's .venv")
    if not (venv / "bin" / "ros2").is_file() or importlib.util.find_spec("ros2launch") is None:
        pytest.skip(f"`ros2 launch` is not installed in {venv}: {HOW_TO_GET}")
    return venv


@pytest.mark.parametrize("terminal", [True, False], ids=["tty", "no_tty"])
def test_ros2_launch_from_the_venv_tracks_and_ends_cleanly_on_ctrl_c(ros, tmp_path, terminal):
    """What a robot user does first, from the README: activate the venv, `ros2 launch mastsam_ros tracker.launch.py`
    (the default managed node, autostarted, with the default DDS profile), see a frame come back on ~/labels, press
    Ctrl-C and read "process has finished cleanly". The SIGINT goes to the whole process group, as from a terminal.
    With stdin a terminal ros2 launch is interactive and leaves the SIGINT to the terminal; without one (a script, a
    service) it forwards its own SIGINT too, so the node gets two (test_stop.py holds the teardown for that)."""
    venv = _venv_ros2()
    frame = bedroom_frames(1)[0]
    env = dict(os.environ)  # the session's ROS_DOMAIN_ID and localhost-only discovery
    env.pop("AMENT_PREFIX_PATH", None)  # a fresh shell: the activation alone must make the package findable
    log_path = tmp_path / "launch.log"
    if terminal:
        terminal, tty = pty.openpty()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["bash", "-c", f'. "{venv}/bin/activate" && exec ros2 launch mastsam_ros tracker.launch.py image:=/image'],
            cwd=REPO, env=env, stdin=tty if terminal else subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    if terminal:
        os.close(tty)
    probe = Probe("probe_launch")
    try:
        assert probe.spin_until(lambda: probe.sub_instances.get_publisher_count() > 0
                                and probe.pub.get_subscription_count() > 0, 120), \
            f"the launched node did not connect; the launch output:\n{log_path.read_text()}"
        # The input is best effort (sensor_data) and the node may still be activating: publish a new frame every few
        # seconds until one comes back.
        sent = set()
        for i in range(12):
            probe.pub.publish(image_msg(frame, sec=700 + i))
            sent.add(700 + i)
            if probe.spin_until(lambda: any(m.header.stamp.sec in sent for m in probe.labels), 5.0):
                break
        labels = [m for m in probe.labels if m.header.stamp.sec in sent]
        assert labels, f"no frame came back on /tracker/labels; the launch output:\n{log_path.read_text()}"
        label_map = labels_of(labels[0])
        assert label_map.shape == frame.shape[:2] and label_map.max() > 0
    finally:
        probe.destroy()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
        if terminal:
            os.close(terminal)
    out = log_path.read_text()
    assert code == 0, f"ros2 launch exited with {code} after Ctrl-C:\n{out}"
    assert "process has finished cleanly" in out and "process has died" not in out, out
