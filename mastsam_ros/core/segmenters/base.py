"""The segmenter interface: automatic masks and masks from point prompts on one image."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..errors import MastSamError
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


class Deferred:
    """The default "embedding" of :meth:`Segmenter.embed`: the image itself, embedded when it is made current."""

    __slots__ = ("image",)

    def __init__(self, image: np.ndarray):
        self.image = image


class Segmenter(ABC):
    """Embed an image once with ``set_image``, then answer any number of ``generate`` / ``predict`` calls on it.

    A pipeline embeds ahead instead: ``embed`` (frame n+1, in its own thread, while frame n is prompted) and later
    ``set_embedding`` (frame n+1 becomes current); ``set_image(x)`` is ``set_embedding(embed(x))``.
    """

    name: str = "?"
    #: True where :meth:`embed` does the expensive work itself (SAM's encoder); False where the default defers it to
    #: :meth:`set_embedding` (then a pipeline cannot run this backend's encoder beside the rest of the step).
    embeds_ahead: bool = False
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

    def embed(self, image: np.ndarray) -> object:
        """The embedding of ``image`` (H x W x 3 uint8 RGB), computed without making it current: the current image
        and its answers are untouched, and this may run in another thread while ``generate`` / ``predict`` run on
        the current one. Returns an opaque object for :meth:`set_embedding` of this same segmenter.

        Default (``embeds_ahead`` False): nothing is computed ahead; the image is kept and :meth:`set_embedding`
        runs ``set_image`` on it, the serial behaviour, so every backend works in a pipeline.
        """
        return Deferred(image)

    def set_embedding(self, embedding: object) -> None:
        """Make an embedding from :meth:`embed` current: afterwards ``generate`` / ``predict`` answer on its image
        exactly as after ``set_image`` of that image."""
        if not isinstance(embedding, Deferred):
            raise MastSamError(f"{self.name}: set_embedding got {type(embedding).__name__}, not an embedding from "
                               f"this segmenter's embed()")
        self.set_image(embedding.image)

    #: whether :meth:`pool_embedding` gives an appearance descriptor (re-identification, ``tracker.reid_descriptor``)
    pools_embedding: bool = False

    def pool_embedding(self, mask: np.ndarray) -> np.ndarray | None:
        """The current image's embedding pooled over ``mask`` (H x W bool covering the frame): a 1-D float vector
        compared by cosine similarity, or None where this backend has no embedding (the default)."""
        return None

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
