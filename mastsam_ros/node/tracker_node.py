"""The ``tracker`` node: images in, stable instance masks out. A thin rclpy front end on the ROS-free stream.

Everything the node does (topics, services, parameters, the stream, counters, diagnostics) lives in one front-end
object, :class:`mastsam_ros.node.frontend.TrackerFrontEnd`; this module holds the plain node that drives it (all
phases at once: configure and activate in the constructor) and the entry point, which starts either this node or,
with ``--managed``, the lifecycle node of mastsam_ros/node/lifecycle.py that drives the same object on transitions.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from mastsam_ros.core.errors import MastSamError
from mastsam_ros.node import inputs
from mastsam_ros.node.frontend import TrackerFrontEnd
from mastsam_ros.node.launch_args import rmem_warning
from mastsam_ros.node.lifecycle import ManagedTrackerNode
from mastsam_ros.node.parameters import NodeSection

__all__ = ["NodeSection", "StopSignals", "TrackerNode", "main"]  # NodeSection: defined in node/parameters.py


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


class StopSignals:
    """SIGINT and SIGTERM for :func:`main`: the first one stops the node, later ones are ignored.

    rclpy's own handler (installed by ``rclpy.init``) shuts the context down on either signal and then calls the
    Python handler that was in place before it, this one: the first signal raises KeyboardInterrupt in the main thread
    (so that building the models is interrupted too); a later one does nothing. :meth:`stopping` then ignores both
    signals in the process itself (``SIG_IGN``), which also holds while the interpreter finalizes (Python resets its
    own handlers to the default there, and a signal would then kill the process). Under ``ros2 launch`` a Ctrl-C
    reaches the node twice (the terminal signals the whole process group, and launch forwards SIGINT to the node when
    its stdin is not a terminal), and launch escalates to SIGTERM: a second signal must neither interrupt the teardown
    with a KeyboardInterrupt nor kill the process (``process has died [exit code -2]``).
    """

    def __init__(self) -> None:
        self._stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def stopping(self) -> None:
        """From here on every SIGINT and SIGTERM is ignored (the teardown runs to its end). Call it again after
        ``rclpy.shutdown``, which puts back the handler it found at ``rclpy.init``."""
        self._stopping.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)

    def _on_signal(self, signum, frame) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        raise KeyboardInterrupt


def main(args=None) -> int:
    """Entry point of ``ros2 run mastsam_ros tracker`` and the ``tracker`` console script.

    ``tracker --managed``: the lifecycle node (mastsam_ros/node/lifecycle.py), which starts unconfigured. Ctrl-C or
    SIGTERM stops it with exit code 0, however many signals arrive while it stops (:class:`StopSignals`). The
    process loads the package's Fast DDS profile unless its environment names one (:func:`inputs.apply_dds_profile`:
    ``udp_input``, as the launch file's default, or ``MASTSAM_DDS_PROFILE``).
    """
    signals = StopSignals()  # before rclpy.init: its handler calls this one after shutting the context down
    node = None
    code = 0
    try:
        try:
            profile = inputs.apply_dds_profile(os.environ)  # before rclpy.init: Fast DDS reads it then
        except ValueError as e:
            print(f"[FATAL] [tracker]: {e}", file=sys.stderr)
            return 1
        rclpy.init(args=args)
        warning = rmem_warning(profile) if profile else None
        if warning:
            rclpy.logging.get_logger("tracker").warning(warning)
        managed = "--managed" in rclpy.utilities.remove_ros_args(sys.argv if args is None else args)[1:]
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
        signals.stopping()
        abandoned = False
        if node is not None:
            abandoned = not node.close()
            if abandoned:
                # Straight to stderr: the signal already shut the context down, so /rosout is gone.
                print("[WARN] [tracker]: stopping in the middle of a frame: that frame is abandoned", file=sys.stderr)
            node.destroy_node()
        rclpy.try_shutdown()
        signals.stopping()
    if abandoned:
        # The stream's tracking thread is still inside the tracker (numpy / OpenCV / torch); interpreter teardown
        # would wait for it or tear modules down under it. Nothing is left to publish or save: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
