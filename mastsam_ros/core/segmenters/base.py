"""The segmenter interface: automatic masks and masks from point prompts on one image."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..registry import Registry
from ..types import PointPrompt, Proposal


class Segmenter(ABC):
    """Embed an image once with ``set_image``, then answer any number of ``generate`` / ``predict`` calls on it."""

    name: str = "?"
    #: True for backends that are not SAM (documented fallbacks); front ends report it.
    is_fallback: bool = False

    @abstractmethod
    def set_image(self, image: np.ndarray) -> None:
        """Embed ``image`` (H x W x 3 uint8 RGB). The one expensive per-frame call (SAM: the image encoder)."""

    @abstractmethod
    def generate(self, region: np.ndarray | None = None) -> list[Proposal]:
        """Automatic masks on the current image, already filtered by score, stability and NMS.

        ``region`` (H x W bool) limits the seed points to that area (newly visible area); masks may extend past it.
        """

    @abstractmethod
    def predict(self, prompts: list[PointPrompt]) -> list[Proposal]:
        """One best mask per prompt, on the current image, decoded in as few batched calls as the model allows."""


SEGMENTERS: Registry[Segmenter] = Registry("segmenter")
