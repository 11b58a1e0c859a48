"""Start the mastsam_ros tracker node: ``ros2 launch mastsam_ros tracker.launch.py image:=/camera/image_raw``.

Defaults come from the params file only (config/tracker.yaml unless ``params_file:=`` names another); an argument
left empty here changes nothing, so the launch file cannot drift from the node's defaults.

Arguments: image, params_file (absolute, relative to the working directory, or relative to the package share, e.g.
config/cpu.yaml), device (segmenter and matcher), segmenter, matcher, use_compressed, qos (sensor_data or
reliable), dds_profile (a Fast DDS profile for the node: large_data (default), data_sharing, a path to an .xml, or
none), rviz.

Every check (booleans, params file, qos, profile, rviz2 installed) runs before anything starts, in
``mastsam_ros.node.launch_args.plan``; a bad argument stops the launch with a message and no process left behind.
A CUDA device asked for where none is usable gives a warning.
"""

from pathlib import Path

import launch.logging
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mastsam_ros.node.launch_args import DEFAULT_DDS_PROFILE, plan


def _share_dir() -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("mastsam_ros"))
    except Exception:  # noqa: BLE001 - run from a source checkout, not an install
        return Path(__file__).resolve().parents[1]


SHARE = _share_dir()
ARGS = ("image", "params_file", "device", "segmenter", "matcher", "use_compressed", "qos", "dds_profile", "rviz")


def _start(context):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGS}
    # A LaunchArgumentError raised here ends the launch with its message and exit code 1, before any process starts.
    p = plan(values, SHARE)
    for w in p.warnings:
        launch.logging.get_logger("tracker.launch").warning(w)
    actions = [Node(
        package="mastsam_ros",
        executable="tracker",
        name="tracker",
        output="screen",
        emulate_tty=True,
        parameters=[str(p.params_file), *([p.overrides] if p.overrides else [])],
        remappings=[("image", values["image"])],
        additional_env=p.env,
    )]
    if p.rviz:
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2",
                            arguments=["-d", str(SHARE / "config" / "tracker.rviz")]))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="Input sensor_msgs/Image topic."),
        DeclareLaunchArgument(
            "params_file", default_value=str(SHARE / "config" / "tracker.yaml"),
            description="Parameters file (absolute, or relative to the working directory or the package share).",
        ),
        DeclareLaunchArgument("device", default_value="", description="Torch device (cpu, cuda, cuda:N); empty: file."),
        DeclareLaunchArgument("segmenter", default_value="", description="sam, mobile_sam or classical; empty: file."),
        DeclareLaunchArgument("matcher", default_value="", description="flow, xfeat or mast3r; empty: file."),
        DeclareLaunchArgument(
            "use_compressed", default_value="", description="true: subscribe <image>/compressed; empty: file."
        ),
        DeclareLaunchArgument(
            "qos", default_value="", description="Input reliability: sensor_data or reliable; empty: file."
        ),
        DeclareLaunchArgument(
            "dds_profile", default_value=DEFAULT_DDS_PROFILE,
            description="Fast DDS profile for the node: large_data, data_sharing, a path to an .xml, or none. "
                        "Start the camera driver with the same FASTDDS_DEFAULT_PROFILES_FILE (docs/ROS.md).",
        ),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz with config/tracker.rviz."),
        OpaqueFunction(function=_start),
    ])
