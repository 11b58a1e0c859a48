"""Start the mastsam_ros tracker node: ``ros2 launch mastsam_ros tracker.launch.py image:=/camera/image_raw``.

Defaults come from the params file only (config/tracker.yaml unless ``params_file:=`` names another); an argument
left empty here changes nothing, so the launch file cannot drift from the node's defaults.

Arguments: image, params_file, device (segmenter and matcher), segmenter, matcher, use_compressed, rviz; for 3D
instances depth, camera_info (topics) and depth_enabled (docs/ROS.md, "3D instances").
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _share_dir() -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("mastsam_ros"))
    except Exception:  # noqa: BLE001 - run from a source checkout, not an install
        return Path(__file__).resolve().parents[1]


SHARE = _share_dir()

# launch argument -> the ROS parameters it overrides when given (non-empty)
OVERRIDES = {
    "device": ("segmenter.device", "matcher.device"),
    "segmenter": ("segmenter.backend",),
    "matcher": ("matcher.backend",),
    "use_compressed": ("node.use_compressed",),
    "depth_enabled": ("node.depth.enabled",),
}
BOOLEAN_ARGS = ("use_compressed", "depth_enabled")


def _tracker(context):
    overrides = {}
    for arg, params in OVERRIDES.items():
        value = LaunchConfiguration(arg).perform(context).strip()
        if value:
            if arg in BOOLEAN_ARGS:
                value = value.lower() in ("true", "1", "yes")
            overrides.update({p: value for p in params})
    return [
        Node(
            package="mastsam_ros",
            executable="tracker",
            name="tracker",
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"), *([overrides] if overrides else [])],
            remappings=[("image", LaunchConfiguration("image")), ("depth", LaunchConfiguration("depth")),
                        ("camera_info", LaunchConfiguration("camera_info"))],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="Input sensor_msgs/Image topic."),
        DeclareLaunchArgument(
            "params_file", default_value=str(SHARE / "config" / "tracker.yaml"),
            description="Parameters file; all defaults live there.",
        ),
        DeclareLaunchArgument("device", default_value="", description="Torch device (cpu, cuda, cuda:N); empty: file."),
        DeclareLaunchArgument("segmenter", default_value="", description="sam, mobile_sam or classical; empty: file."),
        DeclareLaunchArgument("matcher", default_value="", description="flow, xfeat or mast3r; empty: file."),
        DeclareLaunchArgument(
            "use_compressed", default_value="", description="true: subscribe <image>/compressed; empty: file."
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
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz with config/tracker.rviz."),
        OpaqueFunction(function=_tracker),
        Node(
            package="rviz2", executable="rviz2", name="rviz2",
            arguments=["-d", str(SHARE / "config" / "tracker.rviz")],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
    ])
