"""Route the core's Python ``logging`` records to the node's ROS logger (formatted, on /rosout, throttled).

The core logs through ``logging.getLogger("mastsam_ros.core...")`` and knows nothing of ROS. Inside the node, a
:class:`RosLogHandler` on the ``mastsam_ros`` logger hands each record to the rclpy logger at the same severity.
rclpy throttles per call site, and every record would come from the one call site in ``emit``, so the handler
throttles itself per origin (logger name, file, line): a message from one place in the core appears at most once
every ``throttle_s`` seconds, and messages from different places do not silence each other.
"""

from __future__ import annotations

import logging
import threading
import time


class RosLogHandler(logging.Handler):
    """A logging.Handler that forwards to an rclpy logger (anything with debug/info/warning/error/fatal)."""

    def __init__(self, ros_logger, throttle_s: float = 5.0, clock=time.monotonic):
        super().__init__(level=logging.DEBUG)
        self._ros = ros_logger
        self._throttle_s = throttle_s
        self._clock = clock
        self._last: dict[tuple[str, str, int], float] = {}
        self._suppressed: dict[tuple[str, str, int], int] = {}
        self._mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            key = (record.name, record.pathname, record.lineno)
            now = self._clock()
            with self._mutex:
                last = self._last.get(key)
                if last is not None and now - last < self._throttle_s:
                    self._suppressed[key] = self._suppressed.get(key, 0) + 1
                    return
                self._last[key] = now
                skipped = self._suppressed.pop(key, 0)
            text = f"[{record.name}] {record.getMessage()}"
            if skipped:
                text += f" ({skipped} more like this in the last {self._throttle_s:g} s)"
            if record.levelno >= logging.CRITICAL:
                self._ros.fatal(text)
            elif record.levelno >= logging.ERROR:
                self._ros.error(text)
            elif record.levelno >= logging.WARNING:
                self._ros.warning(text)
            elif record.levelno >= logging.INFO:
                self._ros.info(text)
            else:
                self._ros.debug(text)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def install(ros_logger, throttle_s: float = 5.0, name: str = "mastsam_ros") -> RosLogHandler:
    """Attach a :class:`RosLogHandler` to the ``name`` logger (not propagated further, so nothing prints twice)."""
    handler = RosLogHandler(ros_logger, throttle_s)
    log = logging.getLogger(name)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handler


def uninstall(handler: RosLogHandler, name: str = "mastsam_ros") -> None:
    log = logging.getLogger(name)
    log.removeHandler(handler)
    log.propagate = True
