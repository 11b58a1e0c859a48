"""A costly matcher on anchor frames, dense flow between: ``matcher.backend: cadence``.

MASt3R gives good correspondences but costs a network pass per frame pair; DIS flow costs a few CPU milliseconds.
:class:`CadenceMatcher` runs the *anchor* matcher (``matcher.anchor_backend``: mast3r, xfeat or flow) only on anchor
frames, every ``matcher.anchor_interval`` frames and whenever :meth:`CadenceMatcher.request_anchor` asks, and the
flow matcher on every frame:

- **Between anchor frames** a point is carried one frame by the flow (forward-backward checked, as the flow backend).
- **On an anchor frame k** (the last one was a) a point of frame k-1 is first taken back to frame a along the chain
  of backward flow fields a <- ... <- k-1, kept per pixel and advanced once per frame, then carried a -> k by the
  anchor matcher, whose only pair is (a, k): it sees anchor frames only, so MASt3R encodes one frame in N. Its
  confidence is the lower of the anchor match's and the chain's (the weakest forward-backward agreement along it).
  Where that is below ``matcher.anchor_min_confidence`` the point keeps its one-frame flow carry instead: a
  fallback, counted in :attr:`CadenceMatcher.stats`.
- **Dense warp** of the label map (:meth:`warp_labels`): the flow's, on every frame.
- **Point map**: the anchor's, on anchor frames only (None between them).

``anchor_interval: 1`` makes every frame an anchor frame: the anchor matcher carries every pair and the flow only
warps the label map and stands in where the anchor is not confident.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from ..config import MatcherSection
from .base import Matcher
from .flow import FlowMatcher, sample


class CadenceMatcher(Matcher):
    """Anchor matcher every ``anchor_interval`` frames, flow between; see the module docstring."""

    name = "cadence"

    def __init__(self, cfg: MatcherSection, anchor: Matcher | None = None, flow: FlowMatcher | None = None):
        from . import MATCHERS  # noqa: PLC0415 - the registry imports this module lazily

        self.interval = int(cfg.anchor_interval)
        self.min_confidence = float(cfg.anchor_min_confidence)
        self.max_error = float(cfg.max_error_px)
        self.flow = flow if flow is not None else FlowMatcher(cfg)
        # Every backend factory reads its own fields of the section, never ``backend``: the same section builds it.
        self.anchor = anchor if anchor is not None else MATCHERS.build(cfg.anchor_backend, cfg)
        self._lock = threading.Lock()
        self._requested = False
        #: counts since the last reset: frames, anchor frames, points carried by the anchor, points that fell back
        self.stats = {"frames": 0, "anchor_frames": 0, "anchored_points": 0, "fallback_points": 0}
        self.reset()

    def settings(self) -> dict:
        return {
            **self.anchor.settings(), **self.flow.settings(), "anchor_backend": self.anchor.name,
            "anchor_interval": self.interval, "anchor_min_confidence": self.min_confidence,
        }

    def reset(self) -> None:
        self.flow.reset()
        self.anchor.reset()
        self._since: int | None = None  # frames since the last anchor frame; None before the first frame
        self._is_anchor = False  # the newest frame is an anchor frame
        self._has_anchor_pair = False  # the anchor matcher holds two anchor frames
        # Chain of the newest frame: per flow pixel, (where it is in the last anchor frame (h, w, 2), confidence
        # (h, w)); None = identity (the newest frame is an anchor frame). ``_chain_ready`` False: not advanced yet.
        self._chain: tuple[np.ndarray, np.ndarray] | None = None
        self._chain_ready = True
        self._chain_prev: tuple[np.ndarray, np.ndarray] | None = None  # the chain of the previous frame
        for k in self.stats:
            self.stats[k] = 0

    def request_anchor(self) -> None:
        """Make the next pushed frame an anchor frame (thread-safe)."""
        with self._lock:
            self._requested = True

    @property
    def is_anchor_frame(self) -> bool:
        """Whether the newest frame was an anchor frame."""
        return self._is_anchor

    def check_size(self, height: int, width: int) -> None:
        self.flow.check_size(height, width)
        self.anchor.check_size(height, width)

    def push(self, image: np.ndarray) -> None:
        self.check_size(*image.shape[:2])
        self._settle()  # the chain of the frame about to become the previous one
        with self._lock:
            requested, self._requested = self._requested, False
        had_frame = self._since is not None
        self.flow.push(image)
        fresh = had_frame and getattr(self.flow, "_prev", True) is None  # the flow restarted (frame size changed)
        if fresh:
            self.anchor.reset()
            self._has_anchor_pair = False
        anchor_now = not had_frame or fresh or requested or self._since + 1 >= self.interval
        self._chain_prev = None if fresh else self._chain
        if anchor_now:
            self.anchor.push(image)
            self._has_anchor_pair = had_frame and not fresh
            self._since = 0
            self._chain, self._chain_ready = None, True
            self.stats["anchor_frames"] += 1
        else:
            self._since += 1
            self._chain_ready = False
        self._is_anchor = anchor_now
        self.stats["frames"] += 1

    def prepare(self) -> None:
        self.flow.prepare()
        if self._is_anchor:
            self.anchor.prepare()
        self._settle()

    def carry(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        flow_pts, flow_conf = self.flow.carry(points)
        if not (self._is_anchor and self._has_anchor_pair) or points.shape[0] == 0:
            return flow_pts, flow_conf
        if self._chain_prev is None:  # the previous frame was the last anchor frame
            origin, chain_conf = points, np.ones(points.shape[0], np.float32)
        else:
            where, conf = self._chain_prev
            s = self.flow._scale
            p = points * s
            origin = (sample(where, p) / s).astype(np.float32)
            chain_conf = sample(conf[..., None], p)[:, 0].astype(np.float32)
            h, w = conf.shape
            inside = (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)
            chain_conf[~inside] = 0.0
        anchor_pts, anchor_conf = self.anchor.carry(origin)
        conf = np.minimum(anchor_conf, chain_conf).astype(np.float32)
        use = conf >= self.min_confidence
        self.stats["anchored_points"] += int(use.sum())
        self.stats["fallback_points"] += int((~use).sum())
        out = np.where(use[:, None], anchor_pts, flow_pts).astype(np.float32)
        return out, np.where(use, conf, flow_conf).astype(np.float32)

    def warp_labels(self, labels: np.ndarray) -> np.ndarray | None:
        return self.flow.warp_labels(labels)

    def point_map(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self.anchor.point_map() if self._is_anchor else None

    # --- the chain --------------------------------------------------------------------------------------------------
    def _settle(self) -> None:
        """Advance the chain through the newest pair (previous -> newest) once: where each pixel of the newest frame
        is in the last anchor frame, and the weakest forward-backward agreement on the way."""
        if self._chain_ready:
            return
        fwd, bwd = self.flow._pair_flows()
        h, w = bwd.shape[:2]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x, map_y = gx + bwd[..., 0], gy + bwd[..., 1]  # each newest pixel in the previous frame
        inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        back_fwd = cv2.remap(fwd, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        err = np.linalg.norm(bwd + back_fwd, axis=2)
        agree = np.clip(1.0 - err / self.max_error, 0.0, 1.0).astype(np.float32)
        agree[~inside] = 0.0
        prev = self._chain_prev
        if prev is None:  # the previous frame is the anchor frame
            where = np.stack([map_x, map_y], axis=2)
            conf = agree
        else:
            where = cv2.remap(prev[0], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            conf = np.minimum(agree, cv2.remap(prev[1], map_x, map_y, cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_CONSTANT, borderValue=0.0))
        self._chain = (where.astype(np.float32), conf.astype(np.float32))
        self._chain_ready = True
