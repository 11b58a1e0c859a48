"""Shared test fixtures: real frames from ../shared (skipped with a reason where it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DAVIS = SHARED / "data" / "davis2016"
SHARED_MAST3R = SHARED / "mast3r"

# MASt3R's code for the tests that run upstream's model: MASTSAM_MAST3R_PATH when set (an override), else
# ../shared/mast3r when it is there (naver/mast3r with dust3r and croco, no weights). Put in the environment before any
# test module is imported, so that the modules and the node and CLI processes the tests start all see the same path.
if not os.environ.get("MASTSAM_MAST3R_PATH") and (SHARED_MAST3R / "mast3r" / "model.py").is_file():
    os.environ["MASTSAM_MAST3R_PATH"] = str(SHARED_MAST3R)


def davis_frames(seq: str, n: int, step: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """First ``n`` frames (RGB uint8) of a DAVIS-2016 sequence and their ground-truth masks (bool)."""
    img_dir = DAVIS / "JPEGImages" / "480p" / seq
    if not img_dir.is_dir():
        pytest.skip(f"../shared/data/davis2016 not found at {DAVIS}; real-frame tests need it")
    files = sorted(img_dir.glob("*.jpg"))[: n * step : step]
    frames = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    gts = [
        cv2.imread(str(DAVIS / "Annotations" / "480p" / seq / (f.stem + ".png")), cv2.IMREAD_GRAYSCALE) > 0
        for f in files
    ]
    return frames, gts


@pytest.fixture(scope="session")
def car_frames():
    return davis_frames("car-roundabout", 6)


@pytest.fixture(scope="session")
def davis_root():
    if not DAVIS.is_dir():
        pytest.skip(f"../shared/data/davis2016 not found at {DAVIS}")
    return DAVIS
