"""Input side of the node, without rclpy at import: QoS, Fast DDS profiles, size bounds, transport-loss counting.

- :func:`input_qos`: the image subscription's QoS (history keep-last, ``node.input_depth``, reliability by name).
- :data:`DDS_PROFILES` / :func:`dds_environment`: the Fast DDS profile XML files this package ships in ``config/``
  and the environment that selects one for a process (docs/ROS.md, "Delivery", measured them).
- :func:`compressed_size`, :func:`decode_compressed`, :func:`fit_pixels`, :func:`downscale_to`: the
  ``node.max_input_pixels`` bound (header read before decoding, truncated images refused), written once in
  :mod:`mastsam_ros.core.decode` for every front end and imported here under the same names.
- :class:`StampGaps`: frames lost in transport, estimated from header stamps that jump by more than the stream's
  period (the one-slot buffer's own drops are counted elsewhere).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from mastsam_ros.core.decode import (  # noqa: F401 - the node's names for the core's bounded decoding
    _pil_open, compressed_size, decode_compressed, downscale_to, fit_pixels,
)

# name -> (file in the package's config/, extra environment); see the comments inside each file.
DDS_PROFILES: dict[str, tuple[str, dict[str, str]]] = {
    "large_data": ("fastdds_large_data.xml", {}),
    "data_sharing": ("fastdds_data_sharing.xml", {"RMW_FASTRTPS_USE_QOS_FROM_XML": "1"}),
    "udp_input": ("fastdds_udp_input.xml", {}),
}


def config_dir() -> Path:
    """The package's config/ directory: the installed share (colcon) when there is one, else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("mastsam_ros")) / "config"
        if share.is_dir():
            return share
    except Exception:  # noqa: BLE001 - no ament index (venv) or package not installed there
        pass
    return Path(__file__).resolve().parents[2] / "config"


def dds_environment(profile: str, directory: Path | None = None) -> dict[str, str]:
    """Environment variables that make Fast DDS load ``profile`` (a name in :data:`DDS_PROFILES`, or a path to an
    XML file). Raises ValueError naming the choices when the name is unknown or the file missing."""
    if profile in DDS_PROFILES:
        name, extra = DDS_PROFILES[profile]
        path = (directory or config_dir()) / name
    elif profile.endswith(".xml"):
        path, extra = Path(profile).expanduser().resolve(), {}
    else:
        raise ValueError(f"unknown DDS profile [{profile}] (one of: {', '.join(DDS_PROFILES)}, or a path to an .xml)")
    if not path.is_file():
        raise ValueError(f"DDS profile file {path} does not exist")
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(path), **extra}


# Default depth of the image subscription (node.input_depth): measured in docs/ROS.md, "Delivery" (1920x1080 at
# 30 Hz into the node: 93-96% reached the callback at depth 1, 100% at depth 5).
INPUT_DEPTH = 5


def input_qos(name: str, depth: int = INPUT_DEPTH):
    """The image subscription's QoS: keep-last ``depth``; ``sensor_data`` = best effort, ``reliable`` = reliable.

    A best-effort reader matches both kinds of publisher; a reliable one never matches a best-effort publisher.
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliability = {"sensor_data": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}[name]
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


# --- transport loss ------------------------------------------------------------------------------------------------
class StampGaps:
    """Frames lost before the callback, estimated from input header stamps.

    The stream's period is the median of the last ``window`` stamp steps; a step longer than ``1.5`` periods counts
    ``round(step / period) - 1`` lost frames. Steps that go backwards or repeat are the stamp checks' business and
    are ignored here, as are the first frames (no period yet) and stamps of 0 (drivers without a clock).
    """

    def __init__(self, window: int = 30, min_steps: int = 5):
        self._steps: deque[int] = deque(maxlen=window)
        self._min_steps = min_steps
        self._last: int | None = None

    def reset(self) -> None:
        self._steps.clear()
        self._last = None

    def update(self, stamp_ns: int) -> int:
        """Feed one frame's stamp; return how many frames are estimated lost just before it."""
        last, self._last = self._last, stamp_ns
        if last is None or stamp_ns <= last or stamp_ns == 0:
            if last is not None and stamp_ns < last:
                self._steps.clear()  # a new stream (bag looped): the old period no longer applies
            return 0
        step = stamp_ns - last
        lost = 0
        if len(self._steps) >= self._min_steps:
            period = float(np.median(self._steps))
            if period > 0 and step > 1.5 * period:
                lost = int(round(step / period)) - 1
        if lost == 0:
            self._steps.append(step)  # a gap is not a period sample
        return lost
