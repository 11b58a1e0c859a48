"""The segmenter interface: automatic masks and masks from point prompts on one image."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..registry import Registry
from ..types import PointPrompt, Proposal


def grid_points(shape: tuple[int, int], points_per_side: int, region: np.ndarray | None = None) -> np.ndarray:
    """A regular ``points_per_side`` x ``points_per_side`` grid of pixel x y seeds ((N, 2) float32), cell centres.

    Limited to ``region`` (H x W bool) when given; a region too small to hold a grid point gets its innermost pixel
    (farthest from the region's border) as its one seed, so a small newly visible area is still segmented.
    """
    h, w = shape
    frac = (np.arange(points_per_side) + 0.5) / points_per_side
    xs, ys = np.meshgrid(frac * w, frac * h)
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    if region is None:
        return pts
    ix = np.minimum(pts.astype(int), [w - 1, h - 1])
    inside = pts[region[ix[:, 1], ix[:, 0]]]
    if len(inside) or not region.any():
        return inside
    import cv2

    dist = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([[x, y]], np.float32)


class Segmenter(ABC):
    """Embed an image once with ``set_image``, then answer any number of ``generate`` / ``predict`` calls on it."""

    name: str = "?"
    #: True for backends that are not SAM (documented fallbacks); front ends report it.
    is_fallback: bool = False
    #: Set by the tracker to its working resolution (h, w): masks may then come back at that size instead of the
    #: frame's (SAM answers from its low-resolution decoder output, never upscaled). Callers resize whatever they
    #: get, so a backend may ignore it; None = frame size.
    mask_shape: tuple[int, int] | None = None

    def settings(self) -> dict:
        """The config fields (by name in their section) this backend copied when it was built, read back from the
        built object. Such fields are marked ``rebuild`` or ``read_only`` in the config; diagnostics show these."""
        return {}

    @abstractmethod
    def set_image(self, image: np.ndarray) -> None:
        """Embed ``image`` (H x W x 3 uint8 RGB). The one expensive per-frame call (SAM: the image encoder)."""

    @abstractmethod
    def generate(self, region: np.ndarray | None = None, seeds: np.ndarray | None = None) -> list[Proposal]:
        """Automatic masks on the current image, already filtered by score, stability and NMS.

        Seeds default to :func:`grid_points` of ``segmenter.points_per_side`` (``region``, H x W bool, limits them to
        that area: newly visible area); ``seeds`` ((N, 2) float32 x y) names them explicitly, so a caller can spread
        one automatic segmentation over several frames, a slice of the grid per frame. Masks may extend past the
        region.
        """

    @abstractmethod
    def predict(self, prompts: list[PointPrompt]) -> list[Proposal]:
        """One best mask per prompt, on the current image, decoded in as few batched calls as the model allows."""


SEGMENTERS: Registry[Segmenter] = Registry("segmenter")
