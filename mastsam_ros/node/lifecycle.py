"""The managed (lifecycle) ``tracker`` node: ``tracker --managed`` or the launch file's default.

A LifecycleNode that drives the node's front end (:class:`mastsam_ros.node.frontend.TrackerFrontEnd`, the object the
plain node drives too) on transitions, as ros2/demos' lifecycle talker does (rclpy.lifecycle; lifecycle_msgs
services ``~/change_state``, ``~/get_state`` ...). Its publishers are lifecycle publishers: they publish only while
the node is active.

- created (unconfigured): parameters declared and checked; no model, no topic, no service but the lifecycle ones;
  parameters set now are in the tracker that configure builds (and not applied to it a second time);
- ``configure``: builds the tracker and loads its models, creates the publishers and ``~/reset``, ``~/resegment``;
  a failure (missing checkpoint, missing backend) is logged and the node stays unconfigured;
- ``activate``: starts the stream, subscribes to the input(s), starts the diagnostics timer;
- ``deactivate``: unsubscribes and closes the stream (after its current frame); nothing is published;
- ``cleanup``: destroys the outputs, closes the tracker and releases it and its models;
- ``shutdown`` from any state: deactivate and cleanup as far as they apply.
"""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from mastsam_ros.core.errors import MastSamError
from mastsam_ros.node.frontend import TrackerFrontEnd


class ManagedTrackerNode(LifecycleNode):
    """See the module docstring. Raises ConfigError at construction on an invalid parameter set, like TrackerNode."""

    def __init__(self, **kwargs) -> None:
        super().__init__("tracker", **kwargs)
        self.front = TrackerFrontEnd(self)
        self.get_logger().info("managed tracker node: unconfigured (configure, then activate, to start tracking)")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.front.configure()
        except (MastSamError, ImportError, OSError) as e:
            self.get_logger().error(f"configure failed: {e}")
            self.front.cleanup()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info("configured: models loaded")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # the lifecycle publishers first: the stream publishes at once
        self.front.activate()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.front.deactivate()
        self.get_logger().info("deactivated: not subscribed, not publishing")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.front.cleanup()
        self.get_logger().info("cleaned up: tracker closed, models released")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.front.close()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.front.close()
        return super().on_error(state)

    def close(self, timeout: float = 1.0) -> bool:
        """Deactivate and clean up as far as they apply (see :meth:`TrackerFrontEnd.close`)."""
        return self.front.close(timeout)
