"""The launch file builds its description; needs ROS 2 `launch` and `launch_ros`, which no registry here offers."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

from .conftest import REPO

LAUNCH_FILE = REPO / "launch" / "tracker.launch.py"


def _launch_module():
    """launch/tracker.launch.py as a module; the test skips where the ROS 2 launch packages are missing."""
    for module in ("launch.actions", "launch_ros.actions"):
        # Import a submodule: the repository's own launch/ folder would pass for a namespace package `launch`.
        try:
            importlib.import_module(module)
        except ImportError:
            pytest.skip(f"ROS 2 `{module.split('.')[0]}` is not installed (it comes with a ROS 2 install, not PyPI)")
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
