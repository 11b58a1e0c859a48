"""The launch file builds its description; needs ROS 2 `launch` and `launch_ros`, which no registry here offers."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

from .conftest import REPO

LAUNCH_FILE = REPO / "launch" / "tracker.launch.py"


def test_launch_description_declares_the_documented_arguments():
    for module in ("launch.actions", "launch_ros.actions"):
        # Import a submodule: the repository's own launch/ folder would pass for a namespace package `launch`.
        try:
            importlib.import_module(module)
        except ImportError:
            pytest.skip(f"ROS 2 `{module.split('.')[0]}` is not installed (it comes with a ROS 2 install, not PyPI)")
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("tracker_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    expected = {"image", "params_file", "device", "segmenter", "matcher", "depth", "camera_info", "depth_enabled"}
    assert expected <= declared


def test_launch_file_is_valid_python():
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")
