"""Frame sources for the offline front ends: an image directory, a video file, or generated demo frames, and the
stream's ``decode`` (:class:`Decoder`) and ``depth`` (:class:`DepthReader`, a folder of depth files) for them.

Files are read and decoded by :mod:`mastsam_ros.core.decode` (any file name, the size read from the header before
decoding, within ``max_pixels``, truncated images refused); a video is opened through a path OpenCV can take and
its frames are brought within ``max_pixels``; a video that ends before the frame count its header declares is
warned about.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..core.geometry import MAX_DEPTH_M
from ..core.decode import compressed_size, cv2_path, downscale_to, fit_pixels, load_image, read_image_bytes, truncated
from ..core.errors import BadImage
from ..core.frames import read_rgb
from ..core.geometry import GeometryError, Intrinsics
from ..core.stream import Depth

__all__ = ["Decoder", "DepthReader", "Frame", "VideoFrames", "demo_source", "iter_frames",
           "list_images", "read_rgb", "shared_dir", "synthetic_frames"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".exr", ".npy")  # in the order a frame's depth file is looked for


def shared_dir() -> Path:
    """``../shared`` beside the repository (data for the demo, tests and evaluation; never shipped)."""
    return Path(__file__).resolve().parents[2].parent / "shared"


def demo_source() -> Path | None:
    """The embedded default input: a DAVIS sequence from ../shared if present, else None (use synthetic frames)."""
    seq = shared_dir() / "data" / "davis2016" / "JPEGImages" / "480p" / "car-roundabout"
    return seq if seq.is_dir() else None


def list_images(directory: Path) -> list[Path]:
    """The image files of ``directory`` (by suffix, any file name), sorted by name; FileNotFoundError when none."""
    files = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {directory}")
    return files


def shown(path) -> str:
    """A path for a message: bytes that are not UTF-8 shown as escapes (printing them as they are would fail)."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


class VideoFrames:
    """The frames of a video file, ``(name, rgb)`` with names 00000, 00001...; opened on construction
    (FileNotFoundError when OpenCV cannot open it), closed when iteration ends or by :meth:`close`.

    Frames over ``max_pixels`` are downscaled (counted in ``downscaled``). ``declared``: the frame count the
    container declares (None when it does not); a video that ends before it (and before ``max_frames``) is warned
    about and ``short`` is set.
    """

    def __init__(self, source: Path, max_frames: int | None = None, max_pixels: int | None = None):
        self.source, self.max_frames, self.max_pixels = source, max_frames, max_pixels
        self._stack = ExitStack()
        self.cap = cv2.VideoCapture(self._stack.enter_context(cv2_path(source)))
        if not self.cap.isOpened():
            self.close()
            raise FileNotFoundError(f"cannot open {shown(source)} as an image directory or a video file")
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.declared = n if n > 0 else None
        self.read = self.downscaled = 0
        self.short = False

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        try:
            while self.max_frames is None or self.read < self.max_frames:
                ok, bgr = self.cap.read()
                if not ok or bgr is None:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                h, w = rgb.shape[:2]
                if self.max_pixels is not None and w * h > self.max_pixels:
                    rgb = downscale_to(rgb, fit_pixels(w, h, self.max_pixels))
                    self.downscaled += 1
                yield f"{self.read:05d}", rgb
                self.read += 1
            wanted = self.declared if self.max_frames is None else min(self.declared or 0, self.max_frames)
            if self.declared is not None and self.read < wanted:
                self.short = True
                log.warning("video %s ended after %d frames of the %d its header declares (cut short or damaged)",
                            shown(self.source), self.read, self.declared)
        finally:
            self.close()

    def close(self) -> None:
        self.cap.release()
        self._stack.close()


@dataclass
class Frame:
    """One item through the stream: ``source`` an image file or an H x W x 3 RGB frame (video, generated); the
    decoding thread sets ``size``, the (w, h) before any downscaling."""

    name: str
    source: Path | np.ndarray
    size: tuple[int, int] | None = None


class Decoder:
    """The stream's ``decode``: a file through :func:`~mastsam_ros.core.decode.load_image`, a raw frame bounded by
    :func:`fit_pixels`, both within ``max_pixels``; raises :class:`BadImage`. Counts what it downscales."""

    def __init__(self, max_pixels: int):
        self.max_pixels = max_pixels
        self.downscaled = 0

    def __call__(self, frame: Frame) -> np.ndarray:
        if isinstance(frame.source, np.ndarray):
            rgb = frame.source
            frame.size = (rgb.shape[1], rgb.shape[0]) if rgb.ndim >= 2 else None
            if frame.size and frame.size[0] * frame.size[1] > self.max_pixels:
                rgb, small = downscale_to(rgb, fit_pixels(*frame.size, self.max_pixels)), True
            else:
                small = False
        else:
            rgb, small, frame.size = load_image(frame.source, self.max_pixels)
        if small:
            self.downscaled += 1
            (log.info if self.downscaled == 1 else log.debug)(
                "frame %s of %dx%d pixels is over the input bound (%d pixels): processed at %dx%d",
                shown(frame.name), *frame.size, self.max_pixels, rgb.shape[1], rgb.shape[0])
        return rgb


class DepthReader:
    """The stream's ``depth``: ``DEPTH/<stem>.*`` (the first of :data:`DEPTH_SUFFIXES`) of a frame, checked against
    the frame's size before it is decoded; depth beyond :data:`MAX_DEPTH_M` made invalid (frames counted)."""

    def __init__(self, directory: Path, intrinsics: Intrinsics):
        self.directory, self.k = directory, intrinsics
        self.out_of_range = 0
        stems: dict[str, list[str]] = {}
        for p in sorted(directory.iterdir()):
            if p.suffix in DEPTH_SUFFIXES:  # as looked for below
                stems.setdefault(p.stem, []).append(p.suffix)
        both = {s: v for s, v in stems.items() if len(v) > 1}
        if both:
            stem, suffixes = next(iter(both.items()))
            log.warning("%d frames have several depth files (first: %s with %s): the first of %s is used",
                        len(both), shown(stem), ", ".join(suffixes), " ".join(DEPTH_SUFFIXES))

    def __call__(self, frame: Frame, rgb: np.ndarray) -> Depth | None:
        for suffix in DEPTH_SUFFIXES:
            path = self.directory / f"{frame.name}{suffix}"
            if path.is_file():
                try:
                    depth = self._read(path, frame.size)
                except GeometryError:
                    raise
                except Exception as e:  # noqa: BLE001 - a damaged file (an empty .npy: EOFError) skips the 3D only
                    raise GeometryError(f"depth {shown(path.name)}: {type(e).__name__}: {e}") from None
                if depth.dtype.kind == "f":
                    far = np.isfinite(depth) & (depth > MAX_DEPTH_M)
                    if far.any():
                        self.out_of_range += 1
                        log.warning("frame %s: %d depth pixels beyond %g m made invalid", shown(frame.name),
                                    int(far.sum()), MAX_DEPTH_M)
                        depth = np.where(far, np.float32(np.nan), depth)
                return Depth(depth, self.k)
        raise GeometryError(f"no depth file {shown(frame.name)}.{{{','.join(s[1:] for s in DEPTH_SUFFIXES)}}}")

    @staticmethod
    def _read(path: Path, size: tuple[int, int]) -> np.ndarray:
        w, h = size

        def check(dw: int, dh: int) -> None:
            if (dw, dh) != (w, h):
                raise GeometryError(f"depth {shown(path.name)} is {dw}x{dh} but the frame is {w}x{h} (depth must "
                                    "be registered to the image, at its size)")

        if path.suffix == ".npy":
            data = np.load(path, mmap_mode="r", allow_pickle=False)  # the shape before the data is read
            if data.ndim != 2:
                raise GeometryError(f"depth {shown(path.name)} must be an H x W array, got shape {data.shape}")
            check(data.shape[1], data.shape[0])
            return np.array(data)
        try:
            raw = read_image_bytes(path, w * h)
            fmt = None
            try:
                dw, dh, fmt = compressed_size(raw)  # not every format is known to PIL (EXR): then after decoding
                check(dw, dh)
            except BadImage:
                pass
            if fmt is not None and truncated(raw, fmt):
                raise BadImage("bad_data", f"truncated {fmt}")
        except BadImage as e:
            raise GeometryError(f"depth {shown(path.name)}: {e}") from None
        depth = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise GeometryError(f"depth {shown(path.name)} is not a readable image")
        check(depth.shape[1], depth.shape[0])
        return depth


def iter_frames(source: Path, max_frames: int | None = None,
                max_pixels: int | None = None) -> Iterator[tuple[str, np.ndarray | None]]:
    """Yield ``(name, rgb or None)`` from an image directory (name = file stem; None: unreadable, truncated or too
    large, see :func:`~mastsam_ros.core.frames.read_rgb`) or a video (name = 00000...), within ``max_pixels``."""
    if source.is_dir():
        for i, path in enumerate(list_images(source)):
            if max_frames is not None and i >= max_frames:
                return
            yield path.stem, read_rgb(path, max_pixels)
        return
    yield from VideoFrames(source, max_frames, max_pixels)


def synthetic_frames(n: int = 60, size: tuple[int, int] = (480, 640), seed: int = 0) -> Iterator[np.ndarray]:
    """Generated frames (H x W x 3 uint8 RGB): textured background and three coloured shapes moving across it,
    with a slow camera pan. For the demo and tests on machines without ../shared; not a quality benchmark."""
    rng = np.random.default_rng(seed)
    h, w = size
    texture = cv2.GaussianBlur(rng.integers(60, 140, (h, w * 2, 3), dtype=np.uint8), (0, 0), 3)
    shapes = [  # colour, start centre, velocity, radius
        ((220, 40, 40), np.array([120.0, 150.0]), np.array([3.0, 1.0]), 55),
        ((40, 200, 60), np.array([400.0, 320.0]), np.array([-2.0, -1.5]), 70),
        ((50, 80, 230), np.array([520.0, 120.0]), np.array([-1.0, 2.0]), 40),
    ]
    for i in range(n):
        pan = int(i * 2) % w
        frame = np.ascontiguousarray(texture[:, pan : pan + w])
        for colour, c0, v, r in shapes:
            cx, cy = c0 + v * i
            if colour[1] > 150:
                cv2.rectangle(frame, (int(cx - r), int(cy - r // 2)), (int(cx + r), int(cy + r // 2)), colour, -1)
            else:
                cv2.circle(frame, (int(cx), int(cy)), r, colour, -1)
        yield frame
