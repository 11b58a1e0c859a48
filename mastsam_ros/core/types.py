"""Plain data passed between the tracker, its backends and the front ends.

Conventions everywhere in the core:
- images are ``H x W x 3`` ``uint8`` **RGB**;
- masks are ``H x W`` ``bool``: at the frame size, or at the tracker's working resolution where a segmenter honours
  ``Segmenter.mask_shape``;
- points are ``float32`` arrays of shape ``(N, 2)`` in **pixel (x, y)** order, origin at the top-left pixel centre.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Proposal:
    """One mask from a segmenter: automatic or answering a prompt."""

    mask: np.ndarray  # H x W bool
    score: float  # predicted quality in [0, 1] (SAM: predicted IoU)
    stability: float = 1.0  # SAM stability score in [0, 1]; 1.0 where a backend has none
    # probability per pixel (H x W float32, ``mask`` is where it is > 0.5) where a backend has one: SAM at the
    # tracker's working size (the sigmoid of its decoder's logits); None elsewhere
    soft: np.ndarray | None = None
    # the answer at the frame size inside a box, computed on demand: ``fine(y0, y1, x0, x1)`` -> bool (y1 - y0) x
    # (x1 - x0), frame pixels; set where ``mask`` is at the working size but the backend knows more (SAM: its
    # decoder's logits brought to the frame size there). None: ``mask`` is all there is (at the frame size, or not)
    fine: Callable[[int, int, int, int], np.ndarray] | None = None


@dataclass
class PointPrompt:
    """Points that prompt one mask: ``labels`` 1 = foreground, 0 = background."""

    points: np.ndarray  # (N, 2) float32, x y pixels
    labels: np.ndarray  # (N,) int32


@dataclass
class TrackInfo:
    """What a front end may know of one track in one frame."""

    id: int  # stable across frames, never reused, >= 1
    # segmenter score of the track's latest accepted mask; 0 when this frame's prompt was rejected or impossible (no
    # carried point) and the warped previous mask was kept; a track left unprompted by the budget keeps its last score
    score: float
    area: int  # pixels in the label map
    bbox: tuple[int, int, int, int]  # x, y, width, height in pixels
    age: int  # frames since the track was born
    # frames since the segmenter last confirmed it (a prompt or a re-segmentation), or since it was last carried with
    # confident points while the prompt budget left it unprompted; 0 = this frame
    frames_since_seen: int
    points: np.ndarray  # (N, 2) float32 mask points carried to the next frame


@dataclass
class TrackEvent:
    """Something that happened to a track id in one frame (``mastsam_ros/core/dormant.py``).

    kinds: ``born`` (a new id), ``hidden`` (confirmed in the previous frame, prompted but not confirmed in this one;
    still live), ``dormant`` (left the live set: unseen for ``tracker.max_age`` frames, hidden by others, or a scene
    cut, or its new mask did not look like it; its signature is kept), ``reidentified`` (an object found in this
    frame, or up to ``tracker.reid_window`` frames ago, took this dormant id back, or that of a live track hidden from
    view (unpublished: no ``dormant`` before it), after ``frames_away`` frames, with ``score``; one found earlier
    also reports its provisional id ``merged`` into it), ``merged`` (joined the live track ``into``), ``retired``
    (forgotten: it left without a signature, or its signature aged out or was pushed out of the bounded memory).
    """

    kind: str
    id: int
    frames_away: int = 0  # reidentified: frames since it was last seen
    score: float = 0.0  # reidentified: the match's score (appearance similarity)
    into: int = 0  # merged: the surviving id

    def as_dict(self) -> dict:
        out = {"kind": self.kind, "id": self.id}
        if self.kind == "reidentified":
            out.update(frames_away=self.frames_away, score=round(self.score, 4))
        elif self.kind == "merged":
            out["into"] = self.into
        return out


@dataclass
class FrameResult:
    """The tracker's answer for one frame. Everything a front end publishes comes from here."""

    index: int  # frame counter since the last reset
    labels: np.ndarray  # H x W uint32 label map, 0 = background, other values = track ids
    tracks: list[TrackInfo]
    # a re-segmentation started in this frame (a frame without tracks such as the first, a requested one, and every
    # tracker.keyframe_interval frames): the whole automatic grid decoded at once, or the first slice of one spread
    # over the frames up to the next keyframe (those frames have ``resegmenting``)
    keyframe: bool
    resegmenting: bool = False  # this frame decoded a slice of a re-segmentation spread over frames
    reset: bool = False  # the tracker state was reset before this frame (first frame, size change, request)
    new_ids: list[int] = field(default_factory=list)  # on the map from this frame: born, or re-identified
    retired_ids: list[int] = field(default_factory=list)
    prompted: list[int] = field(default_factory=list)  # ids whose carried points prompted the segmenter this frame
    timings: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    correspondences: tuple[np.ndarray, np.ndarray] | None = None  # (prev_pts, cur_pts) of kept carried points
    pair_used: bool = False  # the matcher's pair computed ahead (``Tracker.prepare``) was installed, not recomputed
    events: list[TrackEvent] = field(default_factory=list)  # what happened to ids in this frame, in order
    cut: bool = False  # a scene cut was detected before this frame: every track left, the frame was re-segmented
