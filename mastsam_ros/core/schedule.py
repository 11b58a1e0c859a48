"""When the tracker segments without prompts: full re-segmentation, its slices, and newly visible area.

A keyframe is the first frame (no tracks), a requested one, or every ``tracker.keyframe_interval`` frames; each one
starts a re-segmentation. The first frame, a requested keyframe, or any keyframe with
``tracker.resegment_seeds_per_frame`` 0 decodes the whole automatic grid at once. A scheduled one is spread over the
frames up to the next keyframe, so the stream never stalls and it always ends before the next one starts: it decodes
:func:`seeds_per_frame` grid seeds a frame, at least ``tracker.resegment_seeds_per_frame`` and at least the grid
divided by the interval. Every ``tracker.new_region_interval`` frames, uncovered area is searched for new objects,
also while a re-segmentation is spread (not on a frame that decodes the whole grid); the tracker adds a search on
the frame after the uncovered area grew (``Tracker._watch_uncovered``). The config section is read at
every call, so run-time changes apply; a spread re-segmentation keeps the seeds and rate it started with, and a
keyframe that falls due before it ends (a request, or a scheduled one after a run-time change of the interval) drops
it and starts anew.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import TrackerSection


def seeds_per_frame(cfg: TrackerSection, grid_size: int) -> int:
    """Grid seeds a frame of a scheduled re-segmentation of ``grid_size`` seeds; 0 = the whole grid at once."""
    floor = cfg.resegment_seeds_per_frame
    if floor == 0 or cfg.keyframe_interval == 0:  # at once, or no scheduled keyframes to end before
        return floor
    return max(floor, math.ceil(grid_size / cfg.keyframe_interval))


@dataclass
class Action:
    """What one frame does besides prompting its tracks."""

    kind: str  # "automatic" (the whole grid now), "slice" (``seeds`` of a spread re-segmentation) or "none"
    keyframe: bool = False  # a re-segmentation started in this frame
    seeds: np.ndarray | None = None  # (N, 2) float32 x y frame pixels, for "slice"
    new_area: bool = False  # search uncovered area for new objects (after the slice, if any)


class Resegmentation:
    """The schedule; ``grid`` is the whole automatic grid ((N, 2) x y frame pixels) of the current frame size."""

    def __init__(self, cfg: TrackerSection):
        self.cfg = cfg
        self._pending: np.ndarray | None = None  # grid seeds of a spread re-segmentation still to decode
        self._per_frame = 0  # its seeds a frame, fixed when it started

    def reset(self) -> None:
        self._pending = None

    def next(self, index: int, has_tracks: bool, requested: bool, grid: np.ndarray) -> Action:
        cfg = self.cfg
        keyframe = not has_tracks or requested or (cfg.keyframe_interval > 0 and index % cfg.keyframe_interval == 0)
        if keyframe:
            self._pending = None
            per_frame = seeds_per_frame(cfg, len(grid))
            if per_frame == 0 or per_frame >= len(grid) or not has_tracks or requested:
                return Action("automatic", keyframe=True)
            self._pending, self._per_frame = np.asarray(grid, np.float32).reshape(-1, 2), per_frame
        new_area = cfg.new_region_interval > 0 and index % cfg.new_region_interval == 0
        if self._pending is None:
            return Action("none", new_area=new_area)
        chunk, rest = self._pending[: self._per_frame], self._pending[self._per_frame:]
        self._pending = rest if len(rest) else None
        return Action("slice", keyframe=keyframe, seeds=chunk, new_area=new_area)
