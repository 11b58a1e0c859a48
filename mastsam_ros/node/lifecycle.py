"""The managed (lifecycle) ``tracker`` node: ``tracker --managed`` or the launch file's default.

The same node as :class:`mastsam_ros.node.tracker_node.TrackerNode`, with its three phases run on lifecycle
transitions (rclpy.lifecycle; lifecycle_msgs services ``~/change_state``, ``~/get_state`` ...):

- created (unconfigured): parameters declared and checked; no model, no topic, no service but the lifecycle ones;
- ``configure``: builds the tracker and loads its models, creates the publishers and ``~/reset``, ``~/resegment``;
  a failure (missing checkpoint, missing backend) is logged and the node stays unconfigured;
- ``activate``: subscribes to the input(s), starts the diagnostics timer and the worker thread;
- ``deactivate``: unsubscribes and stops the worker (after its current frame); nothing is published;
- ``cleanup``: destroys the outputs and releases the tracker and its models (and torch's cached CUDA memory);
- ``shutdown`` from any state: deactivate and cleanup as far as they apply.
"""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from mastsam_ros.core.errors import MastSamError
from mastsam_ros.node.tracker_node import TrackerNode


class ManagedTrackerNode(TrackerNode, LifecycleNode):
    """See the module docstring. Raises ConfigError at construction on an invalid parameter set, like TrackerNode."""

    def __init__(self, **kwargs) -> None:
        LifecycleNode.__init__(self, "tracker", **kwargs)
        self._setup()
        self._configured = self._active = False
        self.get_logger().info("managed tracker node: unconfigured (configure, then activate, to start tracking)")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except (MastSamError, ImportError, OSError) as e:
            self.get_logger().error(f"configure failed: {e}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        self.get_logger().info("configured: models loaded")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        self._active = True
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._active = False
        self.get_logger().info("deactivated: not subscribed, not publishing")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        self._configured = False
        self.get_logger().info("cleaned up: models released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self, timeout: float = 1.0) -> bool:
        """Deactivate and clean up as far as they apply; True when the worker ended within ``timeout`` seconds
        (as TrackerNode.close: a frame still in the tracker then is abandoned, and the models are not released
        under it)."""
        ended = True
        if self._active:
            ended = self._deactivate(timeout=timeout, warn=False)
            self._active = False
        elif self._worker is not None:  # a worker abandoned by an earlier close
            ended = not self._worker.is_alive()
        if self._configured and ended:
            self._cleanup()
            self._configured = False
        self._uninstall_log_bridge()
        return ended
