"""Segmenter backends, looked up by ``segmenter.backend``."""

from __future__ import annotations

from ..config import SegmenterSection
from .base import SEGMENTERS, Segmenter


@SEGMENTERS.register("classical")
def _classical(cfg: SegmenterSection) -> Segmenter:
    from .classical import ClassicalSegmenter

    return ClassicalSegmenter(cfg)


@SEGMENTERS.register("sam")
def _sam(cfg: SegmenterSection) -> Segmenter:
    from .sam import SamSegmenter

    return SamSegmenter.from_config(cfg)


@SEGMENTERS.register("mobile_sam")
def _mobile_sam(cfg: SegmenterSection) -> Segmenter:
    from .sam import SamSegmenter

    return SamSegmenter.from_config(cfg, mobile=True)


def build_segmenter(cfg: SegmenterSection) -> Segmenter:
    return SEGMENTERS.build(cfg.backend, cfg)


__all__ = ["SEGMENTERS", "Segmenter", "build_segmenter"]
