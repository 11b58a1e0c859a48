"""Debug drawings: coloured label maps, overlays with ids and mask points, correspondences."""

from __future__ import annotations

import cv2
import numpy as np

from .types import FrameResult


def id_colours(ids: np.ndarray) -> np.ndarray:
    """A stable RGB uint8 colour per id (same id, same colour in every frame and every front end); 0 is black."""
    ids = np.asarray(ids, np.uint64)
    # Multiplicative hashing spreads consecutive ids over distant hues.
    h = (ids * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    rgb = np.stack([(h >> np.uint64(s)) & np.uint64(0xFF) for s in (0, 8, 16)], axis=-1).astype(np.uint8)
    rgb = (rgb // 2 + 96).astype(np.uint8)  # no near-black or washed-out colours
    rgb[ids == 0] = 0
    return rgb


def colorize(labels: np.ndarray) -> np.ndarray:
    """H x W label map -> H x W x 3 uint8 RGB."""
    ids, inv = np.unique(labels, return_inverse=True)
    return id_colours(ids)[inv.reshape(labels.shape)]


def overlay(image: np.ndarray, result: FrameResult, alpha: float = 0.5, points: bool = True) -> np.ndarray:
    """Blend the label colours over ``image`` (H x W x 3 uint8 RGB), outline masks, write ids, draw mask points."""
    colours = colorize(result.labels)
    fg = result.labels > 0
    out = image.copy()
    out[fg] = (image[fg] * (1 - alpha) + colours[fg] * alpha).astype(np.uint8)
    edges = cv2.morphologyEx(result.labels.astype(np.float32), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = 255
    scale = max(0.4, min(image.shape[:2]) / 900)
    for t in result.tracks:
        colour = tuple(int(c) for c in id_colours(np.array([t.id]))[0])
        if points:
            for x, y in t.points:
                cv2.circle(out, (int(round(x)), int(round(y))), 4, colour, -1, cv2.LINE_AA)
                cv2.circle(out, (int(round(x)), int(round(y))), 4, (0, 0, 0), 1, cv2.LINE_AA)
        x, y, w, h = t.bbox
        if w:
            org = (x + w // 2 - 10, y + h // 2 + 5)
            cv2.putText(out, str(t.id), org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, str(t.id), org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def correspondences(prev: np.ndarray, cur: np.ndarray, result: FrameResult, limit: int = 200) -> np.ndarray:
    """Previous and current frame side by side (RGB) with a line per kept carried point."""
    h, w = cur.shape[:2]
    canvas = np.concatenate([prev, cur], axis=1).copy()
    if result.correspondences is None:
        return canvas
    src, dst = result.correspondences
    for (x0, y0), (x1, y1) in list(zip(src, dst))[:limit]:
        cv2.line(canvas, (int(x0), int(y0)), (int(x1) + w, int(y1)), (0, 255, 0), 1, cv2.LINE_AA)
        cv2.circle(canvas, (int(x0), int(y0)), 3, (255, 0, 0), -1)
        cv2.circle(canvas, (int(x1) + w, int(y1)), 3, (255, 0, 0), -1)
    return canvas
