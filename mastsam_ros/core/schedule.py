"""When the tracker segments without prompts: full re-segmentation, its slices, and newly visible area.

A keyframe is the first frame (no tracks), a requested one, or every ``tracker.keyframe_interval`` frames. A
requested keyframe, the first one, or any keyframe with ``tracker.resegment_seeds_per_frame`` 0 decodes the whole
automatic grid at once. A scheduled one is spread over the next frames, that many grid seeds a frame, so the stream
never stalls; it is not restarted before it has finished. Between them, every ``tracker.new_region_interval`` frames,
uncovered area is searched for new objects. The config section is read at every call, so run-time changes apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import TrackerSection


@dataclass
class Action:
    """What one frame does besides prompting its tracks."""

    kind: str  # "automatic" (the whole grid now), "slice" (``seeds`` of a spread one), "new_area" or "none"
    keyframe: bool = False  # a re-segmentation started in this frame
    seeds: np.ndarray | None = None  # (N, 2) float32 x y frame pixels, for "slice"


class Resegmentation:
    """The schedule; ``grid`` is the whole automatic grid ((N, 2) x y frame pixels) of the current frame size."""

    def __init__(self, cfg: TrackerSection):
        self.cfg = cfg
        self._pending: np.ndarray | None = None  # grid seeds of a spread re-segmentation still to decode

    def reset(self) -> None:
        self._pending = None

    @property
    def active(self) -> bool:
        """A spread re-segmentation has seeds left to decode."""
        return self._pending is not None

    def next(self, index: int, has_tracks: bool, requested: bool, grid: np.ndarray) -> Action:
        cfg = self.cfg
        keyframe = not has_tracks or requested or (cfg.keyframe_interval > 0 and index % cfg.keyframe_interval == 0)
        per_frame = cfg.resegment_seeds_per_frame
        if keyframe and (per_frame == 0 or not has_tracks or requested):
            self._pending = None
            return Action("automatic", keyframe=True)
        if keyframe or self._pending is not None:
            start = self._pending is None
            if start:
                self._pending = np.asarray(grid, np.float32).reshape(-1, 2)
            chunk, rest = self._pending[:per_frame], self._pending[per_frame:]
            self._pending = rest if len(rest) else None
            return Action("slice", keyframe=keyframe, seeds=chunk)
        if cfg.new_region_interval > 0 and index % cfg.new_region_interval == 0:
            return Action("new_area")
        return Action("none")
