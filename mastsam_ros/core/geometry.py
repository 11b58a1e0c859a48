"""3D instances: a label map plus a depth map (or a point map) and pinhole intrinsics -> one 3D record per object.

ROS-free; the node, ``mastsam-track`` and ``mastsam-bag process`` are front ends on it.

Conventions:
- pixel (u, v) = (column, row), origin at the top-left pixel's **centre** (the core's and ROS camera_info's
  convention: ``K`` maps a camera-frame point onto the centre of the pixel it falls in);
- the camera frame is the optical frame: x right, y down, z forward (REP 103 ``*_optical_frame``), metres;
- depth is the z coordinate (not the range along the ray), registered to the image: ``uint16`` millimetres (ROS
  ``16UC1``) or ``float32``/``float64`` metres (ROS ``32FC1``). Invalid: 0 in either, and NaN, +-inf, negative
  or beyond ``MAX_DEPTH_M`` (1000 m) values in float depth;
- a point map is ``H x W x 3`` float in the camera frame, NaN where a pixel has no valid point.

Per object (:class:`Object3D`): ``centroid`` is the per-axis median of the object's valid points (robust to the
flying pixels at mask borders, unlike the mean), ``min``/``max`` their axis-aligned bounds in the camera frame
(optionally trimmed: the ``trim`` quantile at each end of each axis), ``points`` the count of valid points,
``pixels`` the mask area and ``valid_fraction = points / pixels``. An object with no valid point keeps its record,
with NaN centroid and bounds, so consumers see every id of the label map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Iterable

import numpy as np

from .errors import MastSamError

MM_PER_M = 1000.0
#: float depth beyond this is invalid, in every front end: no depth sensor or stereo pair measures it (uint16
#: millimetres stop at 65.5 m)
MAX_DEPTH_M = 1000.0


class GeometryError(MastSamError):
    """A depth map, point map or set of intrinsics the geometry code cannot use (says what is wrong)."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (no distortion: depth and image are assumed rectified and registered)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        vals = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(float(v)) for v in vals) or self.fx <= 0 or self.fy <= 0:
            raise GeometryError(f"intrinsics need finite fx, fy > 0 and finite cx, cy; got {vals}")

    @classmethod
    def from_k(cls, k: Iterable[float]) -> "Intrinsics":
        """From a row-major 3x3 camera matrix (ROS ``CameraInfo.k``: fx 0 cx / 0 fy cy / 0 0 1)."""
        k = np.asarray(list(k), np.float64).reshape(-1)
        if k.size != 9:
            raise GeometryError(f"camera matrix must have 9 entries, got {k.size}")
        return cls(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]))

    @classmethod
    def parse(cls, text: str) -> "Intrinsics":
        """From ``"fx,fy,cx,cy"`` (the command-line form)."""
        try:
            fx, fy, cx, cy = (float(v) for v in text.split(","))
        except ValueError:
            raise GeometryError(f"intrinsics '{text}' are not four numbers fx,fy,cx,cy") from None
        return cls(fx, fy, cx, cy)

    def scaled(self, sx: float, sy: float) -> "Intrinsics":
        """The same camera seen at an image scaled by (sx, sy) (pixel-centre convention kept)."""
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5)


@dataclass
class Object3D:
    """One object's geometry in one frame. Lengths in metres in the camera frame; NaN when ``points == 0``."""

    id: int
    centroid: tuple[float, float, float]  # per-axis median of the valid points
    min: tuple[float, float, float]  # axis-aligned bounds (after trimming)
    max: tuple[float, float, float]
    points: int  # valid 3D points in the mask
    pixels: int  # mask area in pixels
    valid_fraction: float  # points / pixels

    @property
    def extent(self) -> tuple[float, float, float]:
        """Size of the axis-aligned box (max - min) per axis."""
        return tuple(float(b - a) for a, b in zip(self.min, self.max))

    def as_dict(self, digits: int = 4) -> dict:
        """JSON-friendly (NaN becomes None, as JSON has no NaN)."""

        def r(v):
            return [None if not math.isfinite(x) else round(float(x), digits) for x in v]

        return {"id": int(self.id), "centroid": r(self.centroid), "min": r(self.min), "max": r(self.max),
                "extent": r(self.extent), "points": int(self.points), "pixels": int(self.pixels),
                "valid_fraction": round(float(self.valid_fraction), 4)}


def depth_to_metres(depth: np.ndarray) -> np.ndarray:
    """A depth image -> H x W float32 metres with NaN where invalid (see the module docstring for the units).

    Raises :class:`GeometryError` for any other dtype or shape.
    """
    if not isinstance(depth, np.ndarray) or depth.ndim != 2:
        what = f"shape {depth.shape}" if isinstance(depth, np.ndarray) else type(depth).__name__
        raise GeometryError(f"depth must be an H x W array, got {what}")
    if depth.dtype == np.uint16:
        out = depth.astype(np.float32) / np.float32(MM_PER_M)
        out[depth == 0] = np.nan
        return out
    if depth.dtype in (np.float32, np.float64):
        out = depth.astype(np.float32, copy=True)
        with np.errstate(invalid="ignore"):
            out[~(np.isfinite(out) & (out > 0) & (out <= MAX_DEPTH_M))] = np.nan
        return out
    raise GeometryError(f"depth must be uint16 millimetres or float32/float64 metres, got {depth.dtype}")


def backproject(depth_m: np.ndarray, k: Intrinsics) -> np.ndarray:
    """H x W float metres (NaN invalid) -> H x W x 3 float32 camera-frame points (NaN where the depth is)."""
    h, w = depth_m.shape
    z = depth_m.astype(np.float32, copy=False)
    u = (np.arange(w, dtype=np.float32) - np.float32(k.cx)) / np.float32(k.fx)
    v = (np.arange(h, dtype=np.float32) - np.float32(k.cy)) / np.float32(k.fy)
    return np.stack([z * u[None, :], z * v[:, None], z], axis=-1)


def _check_pair(labels: np.ndarray, points: np.ndarray) -> None:
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise GeometryError(f"labels must be an H x W array, got {getattr(labels, 'shape', type(labels).__name__)}")
    if not isinstance(points, np.ndarray) or points.ndim != 3 or points.shape[2] != 3:
        raise GeometryError(f"point map must be H x W x 3, got {getattr(points, 'shape', type(points).__name__)}")
    if points.shape[:2] != labels.shape:
        raise GeometryError(
            f"point map is {points.shape[1]}x{points.shape[0]} but the label map is {labels.shape[1]}x{labels.shape[0]}"
            " (depth must be registered to the image, at its size)"
        )


def objects_3d(labels: np.ndarray, points: np.ndarray, ids: Iterable[int] | None = None,
               trim: float = 0.0) -> list[Object3D]:
    """Per-object 3D records from a label map (H x W, 0 = background) and a point map (H x W x 3, NaN invalid).

    ``ids``: the objects to report, in this order (default: every non-zero label, ascending); an id absent from
    the map gets a record with ``pixels = 0``. ``trim`` in [0, 0.5): bounds are the ``trim`` and ``1 - trim``
    quantiles per axis instead of min and max. Cost: a gather and a radix sort of the foreground pixels, then one
    median per object (float32, as the points come).
    """
    _check_pair(labels, points)
    if not 0.0 <= trim < 0.5:
        raise GeometryError(f"trim must be in [0, 0.5), got {trim}")
    flat = labels.reshape(-1)
    fg = np.flatnonzero(flat)
    lab = flat[fg]
    # Group the foreground by id with one O(n) stable sort: numpy radix-sorts 16-bit keys, so ids are narrowed
    # to uint16 while they fit (ids only grow, but stay far below 65536 in practice).
    top = int(lab.max()) if lab.size else 0
    order = np.argsort(lab.astype(np.uint16) if top < 65536 else lab, kind="stable")
    lab, src = lab[order], fg[order]
    # One contiguous row per axis (3 x N), invalid points dropped: per-object slices are then contiguous and the
    # reductions run along rows, several times faster than along the columns of an N x 3 array.
    flat_pts = points.reshape(-1, 3)
    xyz = np.empty((3, src.size), np.float32)
    for k in range(3):
        xyz[k] = flat_pts[src, k]
    valid = np.isfinite(xyz).all(axis=0)
    cut = np.flatnonzero(lab[1:] != lab[:-1]) + 1
    starts = np.concatenate([[0], cut]).astype(np.int64) if lab.size else np.zeros(0, np.int64)
    pixels = np.diff(np.concatenate([starts, [lab.size]])) if lab.size else np.zeros(0, np.int64)
    n_valid = np.add.reduceat(valid, starts) if lab.size else np.zeros(0, np.int64)
    xyz = xyz[:, valid]
    vstart = np.concatenate([[0], np.cumsum(n_valid)[:-1]]).astype(np.int64) if lab.size else starts
    where = {int(lab[a]): j for j, a in enumerate(starts)}
    if trim == 0 and xyz.shape[1]:
        # All bounds in two calls, over the objects that have valid points (their slices tile xyz exactly).
        has = n_valid > 0
        row = np.cumsum(has) - 1  # object j -> its column in mins / maxs
        mins = np.minimum.reduceat(xyz, vstart[has], axis=1)
        maxs = np.maximum.reduceat(xyz, vstart[has], axis=1)
    nan3 = (math.nan,) * 3
    out = []
    for i in (sorted(where) if ids is None else ids):
        j = where.get(int(i))
        if j is None or n_valid[j] == 0:
            out.append(Object3D(int(i), nan3, nan3, nan3, 0, 0 if j is None else int(pixels[j]), 0.0))
            continue
        n, c = int(n_valid[j]), int(pixels[j])
        p = xyz[:, vstart[j]: vstart[j] + n]
        centre = np.median(p, axis=1)
        if trim > 0:
            lo, hi = np.quantile(p, [trim, 1.0 - trim], axis=1)
        else:
            lo, hi = mins[:, row[j]], maxs[:, row[j]]
        out.append(Object3D(int(i), tuple(map(float, centre)), tuple(map(float, lo)), tuple(map(float, hi)), n, c,
                            n / c))
    return out


def objects_from_depth(labels: np.ndarray, depth: np.ndarray, k: Intrinsics, ids: Iterable[int] | None = None,
                       trim: float = 0.0) -> list[Object3D]:
    """:func:`objects_3d` from a depth image (uint16 mm or float metres, same size as ``labels``) and intrinsics."""
    if isinstance(depth, np.ndarray) and depth.ndim == 2 and depth.shape != labels.shape:
        raise GeometryError(
            f"depth is {depth.shape[1]}x{depth.shape[0]} but the label map is {labels.shape[1]}x{labels.shape[0]}"
            " (depth must be registered to the image, at its size)"
        )
    return objects_3d(labels, backproject(depth_to_metres(depth), k), ids, trim)


def labelled_points(labels: np.ndarray, points: np.ndarray, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Valid foreground points on every ``stride``-th row and column: ((N, 3) float32 xyz, (N,) uint32 ids)."""
    _check_pair(labels, points)
    if stride < 1:
        raise GeometryError(f"stride must be >= 1, got {stride}")
    lab = labels[::stride, ::stride].reshape(-1)
    pts = points[::stride, ::stride].reshape(-1, 3)
    keep = (lab > 0) & np.isfinite(pts).all(axis=1)
    return pts[keep].astype(np.float32), lab[keep].astype(np.uint32)


def resize_point_map(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A point map (h x w x 3, NaN invalid) at another image size ``(width, height)``, by nearest neighbour.

    Nearest, not linear: interpolating across an object's border would invent points between it and the
    background. Pixel centres map onto pixel centres, each axis with its own factor.
    """
    h, w = points.shape[:2]
    width, height = size
    xs = np.clip(np.floor((np.arange(width) + 0.5) * w / width).astype(np.int64), 0, w - 1)
    ys = np.clip(np.floor((np.arange(height) + 0.5) * h / height).astype(np.int64), 0, h - 1)
    return points[ys[:, None], xs[None, :]]


def frame_point_map(points: np.ndarray, confidence: np.ndarray | None, size: tuple[int, int],
                    min_confidence: float = 0.0) -> np.ndarray:
    """A predicted point map (h x w x 3, e.g. MASt3R's at its 512-pixel resolution) as an H x W x 3 float32 map
    registered to the frame of ``size = (width, height)``: points whose ``confidence`` is below ``min_confidence``
    (or not finite) become NaN, then :func:`resize_point_map` brings the map to the frame size."""
    if not isinstance(points, np.ndarray) or points.ndim != 3 or points.shape[2] != 3:
        raise GeometryError(f"point map must be h x w x 3, got {getattr(points, 'shape', type(points).__name__)}")
    pts = points.astype(np.float32, copy=True)
    if confidence is not None:
        if confidence.shape != points.shape[:2]:
            raise GeometryError(f"confidence {confidence.shape} does not match the point map {points.shape[:2]}")
        with np.errstate(invalid="ignore"):
            pts[~(np.isfinite(confidence) & (confidence >= min_confidence))] = np.nan
    return resize_point_map(pts, size)
