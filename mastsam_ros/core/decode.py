"""Bounded, safe decoding of compressed images (a file, a ROS ``CompressedImage``'s bytes), written once for every
front end: the node, ``mastsam-track``, ``mastsam-bag``, the evaluation's frame reader (through
:func:`~mastsam_ros.core.frames.read_rgb`).

- :func:`compressed_size`: width and height of a PNG, JPEG, ... from its header, before anything is decoded, so a
  decompression bomb is refused before it allocates;
- :func:`truncated`: a JPEG without its end-of-image marker or a PNG without its IEND chunk, from its structure, so
  a cut file is refused the same way whatever the OpenCV build does with it (some fill the rest grey);
- :func:`decode_compressed`: decodes within a pixel budget (``max_input_pixels``); :func:`fit_pixels` /
  :func:`downscale_to`: the same bound for raw frames (video, ROS ``Image``);
- :func:`read_image_bytes` / :func:`load_image`: any file name (bytes, or a ``str`` holding bytes that are not UTF-8:
  OpenCV's path functions crash on those, so files are read by Python and decoded from memory);
- :func:`cv2_path`: a path OpenCV can take for files only OpenCV can open (a video, a video being written).

Every refusal is a :class:`~mastsam_ros.core.errors.BadImage` whose ``kind`` is its counter: ``bad_data``
(unrecognised, undecodable or truncated), ``too_large`` (over the bound and not reducible while decoding),
``unreadable`` (the file cannot be read).
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from .errors import BadImage

#: The default bound of the pixels of one input frame (the node's ``node.max_input_pixels``, ``mastsam-track``'s
#: ``--max-input-pixels``): 1920 x 1080.
MAX_INPUT_PIXELS = 1920 * 1080
#: A JPEG can be reduced while decoding by up to 8 per side: up to this many times the bound it is decoded reduced.
JPEG_REDUCIBLE = 64


def _pil_open(raw: bytes):
    """A lazily opened PIL image (header read, no pixels), or None when no format plugin recognises ``raw``.

    Uses PIL's format plugins the way ``PIL.Image.open`` does, but without ``open``'s own decompression-bomb check,
    which raises instead of giving the size; the caller applies its pixel bound itself.
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


def _jpeg_complete(raw: bytes) -> bool:
    """Whether a JPEG reaches its end-of-image marker (EOI), walking its segments by their lengths and its scans'
    entropy-coded data to the next marker, as a decoder does: an EOI inside a thumbnail or a comment does not
    count, data after the EOI does not matter. Bytes where a marker should be are skipped as libjpeg skips them."""
    buf = np.frombuffer(raw, np.uint8)
    n = buf.size
    ff = np.flatnonzero(buf[:-1] == 0xFF)
    code = buf[ff + 1]
    # Markers: 0xFF then a code other than 0x00 (a stuffed 0xFF in entropy-coded data), 0xFF (a fill byte), TEM
    # and RST0-7 (markers without a length, inside scans). Candidates inside a segment's payload are jumped over.
    markers = ff[(code != 0x00) & (code != 0xFF) & (code != 0x01) & ((code < 0xD0) | (code > 0xD7))]
    pos = 2
    while True:
        k = int(np.searchsorted(markers, pos))
        if k == markers.size:
            return False
        i = int(markers[k])
        c = raw[i + 1]
        if c == 0xD9:
            return True
        pos = i + 2
        if c == 0xD8:
            continue
        if pos + 2 > n:
            return False
        pos += int.from_bytes(raw[pos:pos + 2], "big")  # the length counts its own two bytes


def _png_complete(raw: bytes) -> bool:
    """Whether a PNG's chunks, walked by their lengths, reach the IEND chunk within the data."""
    n, pos = len(raw), 8
    while pos + 8 <= n:
        length = int.from_bytes(raw[pos:pos + 4], "big")
        if raw[pos + 4:pos + 8] == b"IEND":
            return True
        pos += 12 + length  # length, type, data, CRC
    return False


def truncated(data, fmt: str) -> bool:
    """Whether a compressed image of PIL format ``fmt`` is cut short: a JPEG without its end-of-image marker, a PNG
    without its IEND chunk (other formats: False, their decoders refuse a cut file themselves)."""
    raw = data if isinstance(data, bytes | memoryview) else bytes(data)
    if fmt in ("JPEG", "MPO"):
        return not _jpeg_complete(bytes(raw))
    if fmt == "PNG":
        return not _png_complete(bytes(raw))
    return False


def decode_compressed(data, fmt: str, width: int, height: int, max_pixels: int) -> tuple[np.ndarray, bool]:
    """Decode a compressed image (header already read: ``width`` x ``height``, PIL ``fmt``) to H x W x 3 uint8 RGB
    with at most ``max_pixels`` pixels; returns (rgb, downscaled).

    A truncated JPEG or PNG (:func:`truncated`) is refused (``bad_data``) before decoding. Within the bound OpenCV
    decodes it. Above, only JPEG can be reduced while decoding (libjpeg's DCT scaling, by up to 8 per side, through
    PIL's ``draft``), so a JPEG up to 64 x ``max_pixels`` is decoded reduced, then resized; any other format, or a
    larger JPEG, is refused (``too_large``) before a pixel is allocated.
    """
    if width * height > max_pixels and (fmt != "JPEG" or width * height > JPEG_REDUCIBLE * max_pixels):
        raise BadImage("too_large", f"compressed {fmt} image of {width}x{height} pixels is over the input bound of "
                                    f"{max_pixels} pixels (max_input_pixels) and cannot be reduced while decoding: "
                                    "refused undecoded")
    if truncated(data, fmt):
        raise BadImage("bad_data", f"truncated {fmt} image ({len(data)} bytes, its end marker is missing)")
    if width * height <= max_pixels:
        buf = np.frombuffer(data, np.uint8)
        # EXIF orientation ignored: the header's size is what was checked, and cameras send pixels as captured
        try:
            bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
        except cv2.error:  # some codecs raise on damaged data where others return None
            bgr = None
        if bgr is None:
            raise BadImage("bad_data", f"cannot decode compressed image ({fmt}, {buf.size} bytes)")
        if bgr.shape[1] != width or bgr.shape[0] != height:
            raise BadImage("bad_data", f"decoded size {bgr.shape[1]}x{bgr.shape[0]} differs from the header's "
                                       f"{width}x{height}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), False
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


def read_image_bytes(path: str | bytes | os.PathLike, max_pixels: int | None = None) -> bytes:
    """The bytes of an image file, any file name (``str``, ``bytes`` or a path; names that are not UTF-8 too).

    With ``max_pixels``, a file larger than any image within that bound could be (3 bytes a pixel, times
    :data:`JPEG_REDUCIBLE`) is refused (``too_large``) before it is read. Raises :class:`BadImage`
    (``unreadable``) when the file cannot be read.
    """
    try:
        with open(path, "rb") as f:
            if max_pixels is not None:
                size = os.fstat(f.fileno()).st_size
                if size > 3 * JPEG_REDUCIBLE * max_pixels + (1 << 20):
                    raise BadImage("too_large", f"{os.fsdecode(path)!a}: a file of {size} bytes is over what an "
                                                f"image within {max_pixels} pixels can take: not read")
            return f.read()
    except OSError as e:
        raise BadImage("unreadable", f"cannot read {os.fsdecode(path)!a}: {e.strerror or e}") from None


def decode_image(data, max_pixels: int | None = None) -> tuple[np.ndarray, bool, tuple[int, int]]:
    """Compressed image bytes -> (H x W x 3 uint8 RGB, downscaled, (width, height) from the header).

    The header is read first (:func:`compressed_size`) and the image decoded within ``max_pixels`` (None: no
    bound) by :func:`decode_compressed`. Raises :class:`BadImage`.
    """
    width, height, fmt = compressed_size(data)
    rgb, downscaled = decode_compressed(data, fmt, width, height, max_pixels or width * height)
    return rgb, downscaled, (width, height)


def load_image(path: str | bytes | os.PathLike,
               max_pixels: int | None = None) -> tuple[np.ndarray, bool, tuple[int, int]]:
    """An image file -> (H x W x 3 uint8 RGB, downscaled, (width, height) of the file): :func:`read_image_bytes`
    then :func:`decode_image`. Raises :class:`BadImage` (its message names the file)."""
    data = read_image_bytes(path, max_pixels)
    try:
        return decode_image(data, max_pixels)
    except BadImage as e:
        raise BadImage(e.kind, f"{os.fsdecode(path)!a}: {e}") from None


def opencv_safe(path: str | bytes | os.PathLike) -> bool:
    """Whether OpenCV's path functions can take ``path`` (its Python binding crashes on a name that is not UTF-8)."""
    try:
        os.fsdecode(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def cv2_path(path: str | bytes | os.PathLike) -> Iterator[str]:
    """A path string OpenCV can take for the existing file or folder ``path``: the path itself when its name is
    UTF-8, else a symbolic link to it with an ASCII name in a temporary folder (the file's suffix kept, for the
    container's sake), removed on exit. Keep the context open while OpenCV uses the file."""
    text = os.fsdecode(path)
    if opencv_safe(text):
        yield text
        return
    target = Path(text).absolute()
    suffix = target.suffix if opencv_safe(target.suffix) else ""
    with tempfile.TemporaryDirectory(prefix="mastsam-") as tmp:
        link = os.path.join(tmp, "path" + suffix)
        os.symlink(target, link)
        yield link
