"""The matcher interface: carry points from the previous frame to the current one."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..registry import Registry


class Matcher(ABC):
    """Stateful: ``push`` each new frame; ``carry`` maps points from the frame pushed before it to the newest one.

    Features of frame n are kept when frame n+1 is pushed, so each frame is encoded once (pair n -> n+1 reuses n).
    """

    name: str = "?"
    #: the size (h, w) of the label maps the tracker will ask :meth:`warp_labels` to carry (its working size; set by
    #: the tracker before each frame, None: not known), so :meth:`prepare` can do that work ahead too
    warp_shape: tuple[int, int] | None = None

    def settings(self) -> dict:
        """The config fields (by name in their section) this backend copied when it was built, read back from the
        built object. Such fields are marked ``rebuild`` or ``read_only`` in the config; diagnostics show these."""
        return {}

    @abstractmethod
    def push(self, image: np.ndarray) -> None:
        """Make ``image`` (H x W x 3 uint8 RGB) the current frame; the old current frame becomes the previous one."""

    @abstractmethod
    def carry(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map ``points`` ((N, 2) float32 x y pixels in the previous frame) into the current frame.

        Returns ``(points_cur, confidence)``: (N, 2) float32 and (N,) float32 in [0, 1]; 0 = no trustworthy match.
        """

    def pair_ahead(self, previous: np.ndarray | None, image: np.ndarray) -> object | None:
        """Compute the correspondence data of the pair (``previous`` -> ``image``) ahead of time, without touching
        this matcher's state: a pipeline calls it in another thread while the current pair is still being read.

        ``previous`` is the frame to be pushed just before ``image`` (None: none, e.g. the first frame). Returns an
        opaque object for :meth:`push_ahead`, or None when this backend computes nothing ahead (the default: the
        work then happens in ``push`` / ``prepare`` as without a pipeline). It may raise what ``push`` raises on a
        bad frame. Calls to it must not overlap each other (one thread computes ahead).
        """
        return None

    def push_ahead(self, image: np.ndarray, ahead: object | None) -> bool:
        """``push(image)``, with the work ``ahead`` (from :meth:`pair_ahead` for this ``image``) installed instead
        of being computed again. A backend uses ``ahead`` only when it was made by this very matcher for the frame
        it holds as current (else it computes as ``push`` does: a reset, a failed frame or a rebuilt matcher between
        the two calls leaves the result unchanged). Returns whether the pair's correspondence work (the flow) was used;
        the default pushes and returns False."""
        self.push(image)
        return False

    def prepare(self) -> None:
        """Do the work of the newest pair now (dense flow, the warp at :attr:`warp_shape`...), so ``carry`` and
        ``warp_labels`` only look it up. The tracker calls it in a second thread while the segmenter encodes the
        frame; a no-op by default."""

    def check_size(self, height: int, width: int) -> None:
        """Raise :class:`~mastsam_ros.core.errors.FrameTooSmall` when this backend cannot process frames of
        ``height`` x ``width`` pixels.

        Called before any state changes, so a refused frame leaves the tracker as it was. No limit by default.
        """

    def warp_labels(self, labels: np.ndarray) -> np.ndarray | None:
        """Carry a label map from the previous frame into the current one, pixel by pixel.

        ``labels`` is h x w ``uint16`` at any resolution (the tracker's working one), 0 = no label. Returns the map in
        the current frame, with 0 where a pixel has no correspondence in the previous frame (its match falls outside
        it), or None when this matcher has no dense correspondence field (sparse matchers): the tracker then moves
        each mask by its points' median displacement.
        """
        return None

    def point_map(self) -> tuple[np.ndarray, np.ndarray] | None:
        """3D points of the newest frame, for matchers that predict them (MASt3R); None for the others.

        Returns ``(points, confidence)``: ``h x w x 3`` float32 in the newest frame's camera frame (x right, y down,
        z forward) at the matcher's own resolution, and ``h x w`` float32 confidence (larger = surer; the scale
        is the model's). :func:`mastsam_ros.core.geometry.frame_point_map` brings them to the frame size.
        """
        return None

    def reset(self) -> None:
        """Forget all frames."""


MATCHERS: Registry[Matcher] = Registry("matcher")
