"""Start the mastsam_ros tracker node: ``ros2 launch mastsam_ros tracker.launch.py image:=/camera/image_raw``.

Defaults come from the params file only (config/tracker.yaml unless ``params_file:=`` names another); an argument
left empty here changes nothing, so the launch file cannot drift from the node's defaults.

Arguments: image, params_file, device (segmenter and matcher), segmenter, matcher, use_compressed, rviz; for 3D
instances depth, camera_info (topics) and depth_enabled (docs/ROS.md, "3D instances"); managed (default true: the
lifecycle node, `tracker --managed`) and autostart (default true: configure, then activate, as soon as it starts,
so a one-line launch tracks at once; false: it waits unconfigured for a lifecycle manager).
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition


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
    common = dict(
        package="mastsam_ros",
        executable="tracker",
        name="tracker",
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), *([overrides] if overrides else [])],
        remappings=[("image", LaunchConfiguration("image")), ("depth", LaunchConfiguration("depth")),
                    ("camera_info", LaunchConfiguration("camera_info"))],
    )
    if not _true(LaunchConfiguration("managed").perform(context)):
        return [Node(**common)]
    node = LifecycleNode(namespace="", arguments=["--managed"], **common)
    if not _true(LaunchConfiguration("autostart").perform(context)):
        return [node]

    def change(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    # Activate once configuring has succeeded (start_state: not again after a later deactivate).
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[change(Transition.TRANSITION_ACTIVATE)],
    ))
    return [node, activate, change(Transition.TRANSITION_CONFIGURE)]


def _true(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


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
        DeclareLaunchArgument(
            "managed", default_value="true", description="true: the lifecycle node; false: the plain node."
        ),
        DeclareLaunchArgument(
            "autostart", default_value="true", description="Managed only: configure and activate at start."
        ),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz with config/tracker.rviz."),
        OpaqueFunction(function=_tracker),
        Node(
            package="rviz2", executable="rviz2", name="rviz2",
            arguments=["-d", str(SHARE / "config" / "tracker.rviz")],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
    ])
