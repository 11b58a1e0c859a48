"""The ``tracker`` node: images in, stable instance masks out. A thin rclpy front end on the ROS-free stream.

Everything the node does (topics, services, parameters, the stream, counters, diagnostics) lives in one front-end
object, :class:`mastsam_ros.node.frontend.TrackerFrontEnd`; this module holds the plain node that drives it (all
phases at once: configure and activate in the constructor) and the entry point, which starts either this node or,
with ``--managed``, the lifecycle node of mastsam_ros/node/lifecycle.py that drives the same object on transitions.
"""

from __future__ import annotations

import os
import sys

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from mastsam_ros.core.errors import MastSamError
from mastsam_ros.node.frontend import TrackerFrontEnd
from mastsam_ros.node.lifecycle import ManagedTrackerNode
from mastsam_ros.node.parameters import NodeSection

__all__ = ["NodeSection", "TrackerNode", "main"]  # NodeSection: mastsam_ros/node/params_file.py imports it from here


class TrackerNode(Node):
    """The plain node: configured and active from construction. Raises ConfigError (a ValueError) on an invalid
    parameter set, and what the backends raise when they cannot be built."""

    def __init__(self, **kwargs) -> None:
        super().__init__("tracker", **kwargs)
        self.front = TrackerFrontEnd(self)
        self.front.configure()
        self.front.activate()

    def close(self, timeout: float = 1.0) -> bool:
        """Stop the stream and release the tracker (see :meth:`TrackerFrontEnd.close`); True when no frame was
        left in the tracker after ``timeout`` s."""
        return self.front.close(timeout)


def main(args=None) -> int:
    """Entry point of ``ros2 run mastsam_ros tracker`` and the ``tracker`` console script.

    ``tracker --managed``: the lifecycle node (mastsam_ros/node/lifecycle.py), which starts unconfigured.
    """
    rclpy.init(args=args)
    node = None
    code = 0
    managed = "--managed" in rclpy.utilities.remove_ros_args(sys.argv if args is None else args)[1:]
    try:
        node = ManagedTrackerNode() if managed else TrackerNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or SIGTERM: rclpy's signal handler shut the context down; fall through to cleanup
    except RCLError:
        # The signal can land while the executor builds its wait set: rcl then reports the context it just lost.
        # That is the same clean stop; any other rcl failure is not.
        if rclpy.ok():
            raise
    except (MastSamError, ParameterException, ImportError) as e:
        # Invalid parameters, a missing backend or unbuilt messages: say what, and exit non-zero without a trace.
        (node.get_logger() if node else rclpy.logging.get_logger("tracker")).fatal(str(e))
        code = 1
    finally:
        abandoned = False
        if node is not None:
            abandoned = not node.close()
            if abandoned:
                # Straight to stderr: the signal already shut the context down, so /rosout is gone.
                print("[WARN] [tracker]: stopping in the middle of a frame: that frame is abandoned", file=sys.stderr)
            node.destroy_node()
        rclpy.try_shutdown()
    if abandoned:
        # The stream's tracking thread is still inside the tracker (numpy / OpenCV / torch); interpreter teardown
        # would wait for it or tear modules down under it. Nothing is left to publish or save: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
