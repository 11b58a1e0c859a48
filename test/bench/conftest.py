"""Frames for the benchmark tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

BEDROOM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bedroom"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Four bedroom frames (real, 960 x 540 on disk) or, without ../shared, four generated ones."""
    if BEDROOM.is_dir():
        return BEDROOM
    from mastsam_ros.cli.frames import synthetic_frames

    out = tmp_path_factory.mktemp("frames")
    for i, f in enumerate(synthetic_frames(4)):
        cv2.imwrite(str(out / f"{i:05d}.jpg"), f[:, :, ::-1])
    return out
