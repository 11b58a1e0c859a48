"""Input side of the node, without rclpy at import: QoS, Fast DDS profiles, size bounds, transport-loss counting.

- :func:`input_qos`: the image subscription's QoS (history keep-last, ``node.input_depth``, reliability by name).
- :data:`DDS_PROFILES` / :func:`dds_environment`: the Fast DDS profile XML files this package ships in ``config/``
  and the environment that selects one for a process (docs/ROS.md, "Delivery", measured them);
  :func:`apply_dds_profile`: the node's own process gets :data:`DEFAULT_DDS_PROFILE` however it is started, unless
  the environment chose otherwise; :func:`dds_profile_in_use` says which profile the process runs with.
- :func:`compressed_size`, :func:`decode_compressed`, :func:`fit_pixels`, :func:`downscale_to`: the
  ``node.max_input_pixels`` bound (header read before decoding, truncated images refused), written once in
  :mod:`mastsam_ros.core.decode` for every front end and imported here under the same names.
- :class:`StampGaps`: frames lost in transport, estimated from header stamps, where the middleware does not report
  lost messages itself (the one-slot buffer's own drops are counted elsewhere).
"""

from __future__ import annotations

from collections import deque
from collections.abc import MutableMapping
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
    "camera": ("fastdds_camera.xml", {}),  # for the camera driver's process, towards a node on udp_input
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


# The profile the node's process loads unless told otherwise (the launch file's dds_profile default too): any camera
# driver's full-size frames reach the node (docs/ROS.md, "Delivery").
DEFAULT_DDS_PROFILE = "udp_input"
# Names the node's profile for a process started without the launch file: a name in DDS_PROFILES, a path to an .xml,
# or "none" (Fast DDS's defaults). The launch file sets it for dds_profile:=none.
PROFILE_ENV = "MASTSAM_DDS_PROFILE"
# Where Fast DDS (and, by its older name, Fast RTPS) reads its profile file from.
PROFILE_FILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
NO_PROFILE = ("none: Fast DDS's defaults, full-size frames from a publisher on Fast DDS's defaults are mostly lost "
              "(docs/ROS.md, \"Delivery\")")


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


def apply_dds_profile(environ: MutableMapping[str, str]) -> str | None:
    """Before ``rclpy.init``: give this process the node's Fast DDS profile, whatever started it (``ros2 launch``,
    ``ros2 run``, the ``tracker`` script). Kept as it is: a profile file the environment already names
    (:data:`PROFILE_FILE_VARS`: the launch file's ``dds_profile``, or the user's own), or an RMW other than Fast DDS
    (``RMW_IMPLEMENTATION``). Otherwise :data:`PROFILE_ENV` (``none``: nothing set) or :data:`DEFAULT_DDS_PROFILE`
    is set in ``environ``. Returns the profile name set, or None. Raises ValueError for an unknown profile."""
    if any(environ.get(v) for v in PROFILE_FILE_VARS) or "fastrtps" not in environ.get("RMW_IMPLEMENTATION",
                                                                                          "rmw_fastrtps_cpp"):
        return None
    profile = environ.get(PROFILE_ENV, "").strip() or DEFAULT_DDS_PROFILE
    if profile == "none":
        return None
    try:
        environ.update(dds_environment(profile))
    except ValueError as e:
        raise ValueError(f"{PROFILE_ENV}={profile}: {e} (or none)") from None
    return profile


def dds_profile_in_use(environ: MutableMapping[str, str]) -> str:
    """The Fast DDS profile file this process runs with, for the log and the diagnostics; :data:`NO_PROFILE` when
    none, or the RMW's name where it is not Fast DDS."""
    rmw = environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if "fastrtps" not in rmw:
        return f"not Fast DDS ({rmw})"
    return next((environ[v] for v in PROFILE_FILE_VARS if environ.get(v)), NO_PROFILE)


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
    """Frames lost before the callback, estimated from input header stamps: the fallback where the middleware does
    not report lost messages (the front end counts rclpy's message-lost event where the RMW supports it).

    The stream's period is the median of the recent single steps: the steps of the last ``window`` shorter than 1.5
    times the shortest of them, so that heavy loss (most steps several periods long) does not stretch it. A step of
    ``k`` periods (rounded) counts ``k - 1`` lost frames, except:

    - a step longer than ``pause_s`` seconds and ``pause_periods`` periods: the publisher paused, a bag jumped ahead
      or the stamps changed clocks (bag time to wall clock). Counted in :attr:`pauses`, not as loss; a loss that long
      in one piece is not told apart from a pause, and is not counted;
    - a step backwards or a repeated stamp (counted by the stamp checks): the period is learnt again after it;
    - stamps of 0 (drivers without a clock): ignored;
    - across :meth:`reset` (a lifecycle activation, ``~/reset``, a new tracker): nothing before it is compared.

    The period needs ``min_steps`` steps; the steps seen until then are counted once it is known.
    """

    def __init__(self, window: int = 30, min_steps: int = 5, pause_s: float = 1.0, pause_periods: int = 10):
        self._steps: deque[int] = deque(maxlen=window)
        self._pending: list[int] = []  # steps seen before the period was known
        self._min_steps = min_steps
        self._pause_ns = pause_s * 1e9
        self._pause_periods = pause_periods
        self._last: int | None = None
        self.pauses = 0

    def reset(self) -> None:
        """Forget the previous stamp and the period (nothing before this is compared with what follows)."""
        self._last = None
        self._relearn()

    def _relearn(self) -> None:
        self._steps.clear()
        self._pending.clear()

    def period_ns(self) -> float | None:
        """The stream's period, or None while it is being learnt."""
        if len(self._steps) < self._min_steps:
            return None
        shortest = min(self._steps)
        return float(np.median([s for s in self._steps if s < 1.5 * shortest]))

    def _lost(self, step: int, period: float) -> int:
        if step > max(self._pause_ns, self._pause_periods * period):
            self.pauses += 1
            return 0
        return max(0, int(round(step / period)) - 1)

    def update(self, stamp_ns: int) -> int:
        """Feed one frame's stamp; return how many frames are estimated lost just before it (and, when this stamp
        completes the period, before the earlier ones since it was being learnt)."""
        if stamp_ns == 0:
            return 0
        last, self._last = self._last, stamp_ns
        if last is None or stamp_ns == last:
            return 0
        if stamp_ns < last:
            self._relearn()  # a new stream (a bag looped or restarted): the old period no longer applies
            return 0
        step = stamp_ns - last
        period = self.period_ns()
        if period is None:
            self._steps.append(step)
            self._pending.append(step)
            period = self.period_ns()
            if period is None:
                return 0
            pending, self._pending = self._pending, []
            return sum(self._lost(s, period) for s in pending)
        pauses = self.pauses
        lost = self._lost(step, period)
        if self.pauses == pauses:
            self._steps.append(step)
        return lost
