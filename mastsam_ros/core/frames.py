"""Validation of the frames the core accepts, and reading one from an image file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import FrameError, FrameTooSmall

MIN_SIDE = 8


def check_frame(frame: object) -> np.ndarray:
    """Return ``frame`` as a contiguous H x W x 3 uint8 RGB array, or raise :class:`FrameError` saying what is wrong.

    Grey frames (H x W or H x W x 1, uint8) are accepted and replicated to three channels. Anything else with a
    channel count other than 3 is refused: the caller knows its colour order, the core cannot guess it.
    """
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"expected a numpy array (H x W x 3 uint8 RGB), got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise FrameError(f"expected dtype uint8 (H x W x 3 RGB), got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"expected H x W x 3 RGB (or H x W grey), got shape {frame.shape}; convert RGBA/BGRA first")
    h, w = frame.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise FrameTooSmall(f"frame of {w}x{h} pixels is empty or too small (at least {MIN_SIDE}x{MIN_SIDE})")
    return np.ascontiguousarray(frame)


def read_rgb(path: str | Path) -> np.ndarray | None:
    """An image file as H x W x 3 uint8 RGB, or None when it is unreadable or truncated (the caller decides whether
    that is a counted skip or an error)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None or bgr.size == 0 else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
