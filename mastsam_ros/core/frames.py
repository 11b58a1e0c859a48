"""Validation of the frames the core accepts."""

from __future__ import annotations

import numpy as np

from .errors import FrameError

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
        raise FrameError(f"frame of {w}x{h} pixels is empty or too small (at least {MIN_SIDE}x{MIN_SIDE})")
    return np.ascontiguousarray(frame)
