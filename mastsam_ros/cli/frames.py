"""Frame sources for the offline front ends: an image directory, a video file, or generated demo frames."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..core.frames import read_rgb

__all__ = ["demo_source", "iter_frames", "list_images", "read_rgb", "shared_dir", "synthetic_frames"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def shared_dir() -> Path:
    """``../shared`` beside the repository (data for the demo, tests and evaluation; never shipped)."""
    return Path(__file__).resolve().parents[2].parent / "shared"


def demo_source() -> Path | None:
    """The embedded default input: a DAVIS sequence from ../shared if present, else None (use synthetic frames)."""
    seq = shared_dir() / "data" / "davis2016" / "JPEGImages" / "480p" / "car-roundabout"
    return seq if seq.is_dir() else None


def list_images(directory: Path) -> list[Path]:
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {directory}")
    return files


def iter_frames(source: Path, max_frames: int | None = None) -> Iterator[tuple[str, np.ndarray | None]]:
    """Yield ``(name, rgb or None)`` from an image directory (name = file stem) or a video (name = 00000...)."""
    if source.is_dir():
        for i, path in enumerate(list_images(source)):
            if max_frames is not None and i >= max_frames:
                return
            yield path.stem, read_rgb(path)
        return
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open {source} as an image directory or a video file")
    try:
        i = 0
        while max_frames is None or i < max_frames:
            ok, bgr = cap.read()
            if not ok:
                return
            yield f"{i:05d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()


def count_frames(source: Path) -> int | None:
    if source.is_dir():
        return len(list_images(source))
    cap = cv2.VideoCapture(str(source))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return n if n > 0 else None


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
