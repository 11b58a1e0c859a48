"""Input side of the node, without rclpy at import: QoS, Fast DDS profiles, size bounds, transport-loss counting.

- :func:`input_qos`: the image subscription's QoS (history keep-last, ``node.input_depth``, reliability by name).
- :data:`DDS_PROFILES` / :func:`dds_environment`: the Fast DDS profile XML files this package ships in ``config/``
  and the environment that selects one for a process (docs/ROS.md, "Delivery", measured them).
- :func:`compressed_size`: width and height of a PNG or JPEG from its header, before anything is decoded, so a
  decompression bomb is refused before it allocates; :func:`decode_compressed` decodes within a pixel budget.
- :func:`fit_pixels` / :func:`downscale_to`: the ``node.max_input_pixels`` bound for raw frames.
- :class:`StampGaps`: frames lost in transport, estimated from header stamps that jump by more than the stream's
  period (the one-slot buffer's own drops are counted elsewhere).
"""

from __future__ import annotations

import io
import math
import warnings
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from mastsam_ros.node.conversions import BadImage

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


# --- size bounds ---------------------------------------------------------------------------------------------------
def _pil_open(raw: bytes):
    """A lazily opened PIL image (header read, no pixels), or None when no format plugin recognises ``raw``.

    Uses PIL's format plugins the way ``PIL.Image.open`` does, but without ``open``'s own decompression-bomb check,
    which raises instead of giving the size; the caller applies ``node.max_input_pixels`` itself.
    """
    from PIL import Image as PILImage

    PILImage.init()
    for fmt in PILImage.ID:
        factory, accept = PILImage.OPEN[fmt]
        if accept is not None and not accept(raw[:16]):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return factory(io.BytesIO(raw), "")
        except Exception:  # noqa: BLE001, S112 - not this format (PIL.Image.open does the same): try the next
            continue
    return None


def compressed_size(data) -> tuple[int, int, str]:
    """(width, height, format) of a compressed image from its header only: nothing is decoded or allocated.

    Raises :class:`BadImage` (``bad_data``) when no PIL plugin recognises the header.
    """
    raw = bytes(data)
    im = _pil_open(raw)
    if im is None:
        raise BadImage("bad_data", f"unreadable compressed image header ({len(raw)} bytes, no known image format)")
    return int(im.size[0]), int(im.size[1]), str(im.format)


def fit_pixels(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest (w, h) with the same aspect ratio and at most ``max_pixels`` pixels (unchanged when it fits)."""
    if width * height <= max_pixels:
        return width, height
    s = math.sqrt(max_pixels / (width * height))
    w, h = max(1, int(width * s)), max(1, int(height * s))
    while w * h > max_pixels:  # float rounding
        w, h = max(1, w - 1), max(1, h - 1)
    return w, h


def downscale_to(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-averaged resize of an H x W x 3 uint8 image to ``size`` = (w, h)."""
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def decode_compressed(data, fmt: str, width: int, height: int, max_pixels: int) -> tuple[np.ndarray, bool]:
    """Decode a compressed image (header already read: ``width`` x ``height``, PIL ``fmt``) to H x W x 3 uint8 RGB
    with at most ``max_pixels`` pixels; returns (rgb, downscaled).

    Within the bound OpenCV decodes it. Above, only JPEG can be reduced while decoding (libjpeg's DCT scaling, by up
    to 8 per side, through PIL's ``draft``), so a JPEG up to 64 x ``max_pixels`` is decoded reduced, then resized; any
    other format, or a larger JPEG, is refused (``too_large``) before a pixel is allocated.
    """
    if width * height <= max_pixels:
        buf = np.frombuffer(data, np.uint8)
        # EXIF orientation ignored: the header's size is what was checked, and cameras send pixels as captured
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
        if bgr is None:
            raise BadImage("bad_data", f"cannot decode compressed image ({fmt}, {buf.size} bytes)")
        if bgr.shape[1] != width or bgr.shape[0] != height:
            raise BadImage("bad_data", f"decoded size {bgr.shape[1]}x{bgr.shape[0]} differs from the header's "
                                       f"{width}x{height}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), False
    if fmt != "JPEG" or width * height > 64 * max_pixels:
        raise BadImage("too_large", f"compressed {fmt} image of {width}x{height} pixels is over node.max_input_pixels "
                                    f"({max_pixels}) and cannot be reduced while decoding: refused undecoded")
    target = fit_pixels(width, height, max_pixels)
    try:
        im = _pil_open(bytes(data))
        if im is None or im.format != "JPEG":
            raise ValueError("not a JPEG")
        with im:
            im.draft("RGB", target)  # decodes at the smallest 1/1..1/8 scale still >= target
            rgb = np.asarray(im.convert("RGB"))
    except Exception as e:  # noqa: BLE001
        raise BadImage("bad_data", f"cannot decode compressed image ({fmt}: {type(e).__name__}: {e})") from None
    return downscale_to(rgb, target), True


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
