"""A rendered test scene with known geometry: RGB, depth and instance masks of simple 3D objects, ray cast exactly.

Camera: pinhole, optical frame (x right, y down, z forward), pixel centres at integer (u, v). Objects:

1. ``panel``: a fronto-parallel red rectangle, 0.6 m x 0.4 m, centre (-0.45, 0.10, 2.0), moving +2 cm in x a frame;
2. ``sphere``: a green ball of radius 0.3 m, centre (0.45, -0.10, 3.0), moving -3 cm in z a frame;
3. ``tilted``: a blue 0.5 m x 0.3 m rectangle turned 30 degrees about the y axis, centre (0.0, 0.55, 2.5);

in front of a grey textured wall at z = 6 m (background, label 0, valid depth).
Everything a test checks is derived here from the object definitions, independently of mastsam_ros.core.geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

W, H = 320, 240
FX = FY = 300.0
CX, CY = (W - 1) / 2, (H - 1) / 2
WALL_Z = 6.0
TILT = np.deg2rad(30.0)


@dataclass
class Truth:
    """Known geometry of one object in one frame."""

    id: int
    centre: np.ndarray  # object's centre (3,), metres
    extent: np.ndarray | None  # exact axis-aligned size of the object's visible surface, None where not closed-form
    radius: float = 0.0  # spheres


def _rays():
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    return (u - CX) / FX, (v - CY) / FY  # ray direction (dx, dy, 1)


def render(frame: int = 0):
    """Return ``(rgb H x W x 3 uint8, depth H x W float32 metres, labels H x W uint32, truths list[Truth])``."""
    dx, dy = _rays()
    z = np.full((H, W), WALL_Z)
    labels = np.zeros((H, W), np.uint32)
    truths = []

    # 1. fronto-parallel panel: plane z = zc, hit (dx z, dy z, z)
    c1 = np.array([-0.45 + 0.02 * frame, 0.10, 2.0])
    hit = (np.abs(dx * c1[2] - c1[0]) <= 0.3) & (np.abs(dy * c1[2] - c1[1]) <= 0.2) & (c1[2] < z)
    z[hit], labels[hit] = c1[2], 1
    truths.append(Truth(1, c1, np.array([0.6, 0.4, 0.0])))

    # 2. sphere |t d - c| = r, nearest root t (= z because d_z = 1)
    c2, r = np.array([0.45, -0.10, 3.0 - 0.03 * frame]), 0.3
    a = dx ** 2 + dy ** 2 + 1
    b = -2 * (dx * c2[0] + dy * c2[1] + c2[2])
    disc = b * b - 4 * a * (c2 @ c2 - r * r)
    t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    hit = (disc >= 0) & (t < z)
    z[hit], labels[hit] = t[hit], 2
    truths.append(Truth(2, c2, None, radius=r))

    # 3. rectangle turned by TILT about y: in-plane axes e1 = (cos, 0, sin), e2 = (0, 1, 0), normal n = (-sin, 0, cos)
    c3 = np.array([0.0, 0.55, 2.5])
    e1 = np.array([np.cos(TILT), 0.0, np.sin(TILT)])
    n = np.array([-np.sin(TILT), 0.0, np.cos(TILT)])
    t3 = (n @ c3) / (dx * n[0] + dy * n[1] + n[2])
    px, py, pz = dx * t3 - c3[0], dy * t3 - c3[1], t3 - c3[2]
    s1 = px * e1[0] + py * e1[1] + pz * e1[2]
    hit = (np.abs(s1) <= 0.25) & (np.abs(py) <= 0.15) & (t3 > 0) & (t3 < z)
    z[hit], labels[hit] = t3[hit], 3
    truths.append(Truth(3, c3, np.array([0.5 * np.cos(TILT), 0.3, 0.5 * np.sin(TILT)])))

    rng = np.random.default_rng(7)  # the same wall texture in every frame: the camera does not move
    rgb = np.repeat(rng.integers(90, 130, (H, W, 1), dtype=np.uint8), 3, axis=2)
    colours = {1: (220, 40, 40), 2: (40, 200, 60), 3: (50, 80, 230)}
    for i, c in colours.items():
        rgb[labels == i] = c
    return rgb, z.astype(np.float32), labels, truths


def tilted_plane_residual(p: np.ndarray) -> np.ndarray:
    """Signed distance of points (N, 3) from object 3's plane."""
    n = np.array([-np.sin(TILT), 0.0, np.cos(TILT)])
    return (p - np.array([0.0, 0.55, 2.5])) @ n


def centroid_tolerance(mask: np.ndarray, true_mask: np.ndarray, width: float = 0.6) -> float:
    """How far (m) a median centroid from ``mask`` may be from the one of ``true_mask`` (an object ``width`` wide):
    a mask differing by a fraction (1 - IoU) moves a median by up to about (1 - IoU) / 2 x width; plus 1 cm for the
    pixel grid."""
    iou = (mask & true_mask).sum() / max(1, (mask | true_mask).sum())
    return float((1 - iou) / 2 * width + 0.01)
