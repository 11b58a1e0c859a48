"""Validation of the frames the core accepts, and reading one from an image file (:mod:`.decode`)."""

from __future__ import annotations

import os

import numpy as np

from .decode import load_image
from .errors import BadImage, FrameError, FrameTooSmall
from .jit import kernel

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


def subsample(frame: np.ndarray, step: int) -> np.ndarray:
    """Every ``step``-th pixel of every ``step``-th row of an H x W x C image, contiguous: ``frame[::step, ::step]``
    copied in one compiled pass (:func:`take_grid`; NumPy's strided copy of 3-byte pixels costs several times as
    much)."""
    h, w = frame.shape[:2]
    return take_grid(frame, np.arange(0, h, step), np.arange(0, w, step))


def read_rgb(path: str | bytes | os.PathLike, max_pixels: int | None = None) -> np.ndarray | None:
    """An image file as H x W x 3 uint8 RGB, or None when it is unreadable, undecodable, truncated or over
    ``max_pixels`` and not reducible while decoding (the caller decides whether that is a counted skip or an error;
    :func:`~mastsam_ros.core.decode.load_image` says why). Any file name; the header is read before decoding and the
    image decoded within ``max_pixels`` (None: no bound), a JPEG reduced while decoding."""
    try:
        return load_image(path, max_pixels)[0]
    except BadImage:
        return None


def take_grid(frame: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The pixels of an H x W x C image at every (row, column) of ``rows`` x ``cols`` (integer arrays inside the
    image), contiguous: ``frame[rows[:, None], cols[None, :]]`` in one compiled pass (NumPy's fancy indexing of
    3-byte pixels costs ten times as much)."""
    h, w = frame.shape[:2]
    c = frame.shape[2] if frame.ndim == 3 else 1
    out = np.empty((rows.shape[0], cols.shape[0], *frame.shape[2:]), frame.dtype)
    _take_grid(frame.reshape(h, w, c), rows, cols, out.reshape(out.shape[0], out.shape[1], c))
    return out


@kernel
def _take_grid(frame, rows, cols, out):
    for i in range(out.shape[0]):
        src, dst = frame[rows[i]], out[i]
        if out.shape[2] == 3:
            for j in range(out.shape[1]):
                x = cols[j]
                dst[j, 0], dst[j, 1], dst[j, 2] = src[x, 0], src[x, 1], src[x, 2]
            continue
        for j in range(out.shape[1]):
            x = cols[j]
            for c in range(out.shape[2]):
                dst[j, c] = src[x, c]
