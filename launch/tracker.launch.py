"""Start the mastsam_ros tracker node: ``ros2 launch mastsam_ros tracker.launch.py image:=/camera/image_raw``.

Defaults come from the params file only (config/tracker.yaml unless ``params_file:=`` names another); an argument
left empty here changes nothing, so the launch file cannot drift from the node's defaults.

Arguments: image, params_file (absolute, relative to the working directory, or relative to the package share, e.g.
config/cpu.yaml), device (segmenter and matcher), segmenter, matcher, use_compressed, qos (sensor_data or
reliable), dds_profile (a Fast DDS profile for the node's process: udp_input (default; frames from a camera driver
on Fast DDS's defaults arrive, given net.core.rmem_max >= 4 MiB), large_data, data_sharing, a path to an .xml, or
none), rviz; for 3D instances depth, camera_info (topics) and depth_enabled (docs/ROS.md, "3D instances"); managed
(default true: the lifecycle node, `tracker --managed`) and autostart (default true: configure, then activate, as
soon as it starts, so a one-line launch tracks at once; false: it waits unconfigured for a lifecycle manager).

Every check (booleans, params file, topics, qos, profile, rviz2 installed) runs before anything starts, in
``mastsam_ros.node.launch_args.plan``; a bad argument stops the launch with a message and no process left behind.
A CUDA device asked for where none is usable gives a warning.
"""

from pathlib import Path

import launch.logging
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from mastsam_ros.node.launch_args import DEFAULT_DDS_PROFILE, choices, plan


def _share_dir() -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("mastsam_ros"))
    except Exception:  # noqa: BLE001 - run from a source checkout, not an install
        return Path(__file__).resolve().parents[1]


SHARE = _share_dir()
ARGS = ("image", "params_file", "device", "segmenter", "matcher", "use_compressed", "qos", "dds_profile", "rviz",
        "depth", "camera_info", "depth_enabled", "managed", "autostart")


def _start(context):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGS}
    # A LaunchArgumentError raised here ends the launch with its message and exit code 1, before any process starts.
    p = plan(values, SHARE)
    for w in p.warnings:
        launch.logging.get_logger("tracker.launch").warning(w)
    common = dict(
        package="mastsam_ros",
        executable="tracker",
        name="tracker",
        output="screen",
        emulate_tty=True,
        parameters=[str(p.params_file), *([p.overrides] if p.overrides else [])],
        remappings=list(p.remappings.items()),
        additional_env=p.env,
    )
    rviz = [Node(package="rviz2", executable="rviz2", name="rviz2",
                 arguments=["-d", str(SHARE / "config" / "tracker.rviz")])] if p.rviz else []
    if not p.managed:
        return [Node(**common), *rviz]
    node = LifecycleNode(namespace="", arguments=["--managed"], **common)
    if not p.autostart:
        return [node, *rviz]

    def change(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    # Activate once configuring has succeeded (start_state: not again after a later deactivate).
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[change(Transition.TRANSITION_ACTIVATE)],
    ))
    return [node, activate, change(Transition.TRANSITION_CONFIGURE), *rviz]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="Input sensor_msgs/Image topic."),
        DeclareLaunchArgument(
            "params_file", default_value=str(SHARE / "config" / "tracker.yaml"),
            description="Parameters file (absolute, or relative to the working directory or the package share).",
        ),
        DeclareLaunchArgument("device", default_value="", description="Torch device (cpu, cuda, cuda:N); empty: file."),
        DeclareLaunchArgument(
            "segmenter", default_value="", description=f"{', '.join(choices('segmenter.backend'))}; empty: file."
        ),
        DeclareLaunchArgument(
            "matcher", default_value="", description=f"{', '.join(choices('matcher.backend'))}; empty: file."
        ),
        DeclareLaunchArgument(
            "use_compressed", default_value="", description="true: subscribe <image>/compressed; empty: file."
        ),
        DeclareLaunchArgument(
            "qos", default_value="", description="Input reliability: sensor_data or reliable; empty: file."
        ),
        DeclareLaunchArgument(
            "dds_profile", default_value=DEFAULT_DDS_PROFILE,
            description="Fast DDS profile for the node's process: udp_input (any camera driver, needs "
                        "net.core.rmem_max >= 4 MiB), large_data (the driver must load it too), data_sharing, a path "
                        "to an .xml, or none (docs/ROS.md, Delivery).",
        ),
        DeclareLaunchArgument(
            "depth", default_value="/camera/aligned_depth_to_color/image_raw",
            description="Registered depth topic (16UC1 mm or 32FC1 m), used with depth_enabled.",
        ),
        DeclareLaunchArgument(
            "camera_info", default_value="/camera/color/camera_info",
            description="The colour camera's camera_info topic, used with depth_enabled.",
        ),
        DeclareLaunchArgument(
            "depth_enabled", default_value="", description="true: pair image, depth and camera_info; empty: file."
        ),
        DeclareLaunchArgument(
            "managed", default_value="true", description="true: the lifecycle node; false: the plain node."
        ),
        DeclareLaunchArgument(
            "autostart", default_value="true", description="Managed only: configure and activate at start."
        ),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz with config/tracker.rviz."),
        OpaqueFunction(function=_start),
    ])
