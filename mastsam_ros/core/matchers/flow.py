"""Dense optical flow (OpenCV DIS) as the correspondence backend: weight-free, CPU, a few ms per pair."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..config import MatcherSection
from ..errors import FrameTooSmall
from ..jit import kernel
from .base import Matcher


PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Resize so the longer side is at most ``max_side``; returns (image, scale) with scale = new / old."""
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        image = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return image, s


def downscaled_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) that :func:`downscale` gives for a ``height`` x ``width`` image."""
    s = min(1.0, max_side / max(height, width))
    if s >= 1.0:
        return height, width
    return max(1, round(height * s)), max(1, round(width * s))


def dis_size_ok(height: int, width: int, patch_size: int, finest_scale: int) -> bool:
    """Whether OpenCV DIS runs its normal coarse-to-fine path on a ``height`` x ``width`` image.

    DIS (opencv/modules/video/src/dis_flow.cpp, ``calc``) picks its coarsest pyramid level as
    ``min(int(log2(max_side / (4 * patch)) + 0.5), int(log2(min_side / patch)))`` and runs the levels from there down
    to ``finest_scale``. When that level is below ``finest_scale`` (small images) OpenCV 5 takes a fallback that
    re-selects patch size and scales from the image *width* alone and keeps them for every later call: it raises on
    images under 12 px, and on strips (a short height with a long width) it reads outside its pyramid and crashes
    the process. So a frame is accepted only where the normal path runs, which also leaves the DIS object unchanged.
    """
    if min(height, width) < patch_size:
        return False
    lo, hi = min(height, width), max(height, width)
    coarsest = min(int(math.log(hi / (4.0 * patch_size)) / math.log(2.0) + 0.5),
                   int(math.log(lo / patch_size) / math.log(2.0)))
    return coarsest >= finest_scale


def min_long_side(patch_size: int, finest_scale: int) -> int:
    """Smallest long side for which :func:`dis_size_ok` can hold (with a short side large enough)."""
    side = patch_size << finest_scale
    while not dis_size_ok(side, side, patch_size, finest_scale) and side < 1 << 20:
        side += 1
    return side


def sample(field: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an H x W x C field at (N, 2) finite x y positions (clamped to the field); float64 (N, C).

    The arithmetic is NumPy's for these dtypes: each position clamped in its own dtype, the weights in float64."""
    out = np.empty((pts.shape[0], field.shape[2]), np.float64)
    _sample(field, pts, out)
    return out


def flow_maps(flow: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The remap maps (float32, ``h`` x ``w``) of a flow field ``flow`` (hs x ws x 2, float32) taken to ``h`` x ``w``:
    each pixel's own coordinate plus the flow at its centre, in pixels of ``h`` x ``w``. The flow is interpolated as
    ``cv2.resize`` with ``INTER_LINEAR`` places it (half-pixel centres, clamped at the borders; equal to it up to float
    rounding); at the flow's own size each pixel takes its own vector, exactly. One compiled pass instead of a resize
    and four whole-map operations."""
    map_x, map_y = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
    _flow_maps(flow, map_x, map_y)
    return map_x, map_y


def warp_sources(flow: np.ndarray, h: int, w: int) -> np.ndarray:
    """Where ``cv2.remap`` with ``INTER_NEAREST`` and a constant 0 border takes each pixel of an ``h`` x ``w`` map
    from, along :func:`flow_maps` of ``flow``: the flat index (int32, ``h`` x ``w``) of the source pixel in a map of
    that size, -1 where it reads the border. The map coordinates round half to even, as OpenCV rounds them, and
    one outside the map, or NaN, is the border. Computed in one pass with the maps' own arithmetic, without
    writing them; :func:`warp_gather` then warps any number of maps with it, a lookup a pixel."""
    src = np.empty((h, w), np.int32)
    _warp_sources(flow, src)
    return src


def warp_gather(labels: np.ndarray, src: np.ndarray) -> np.ndarray:
    """``labels`` (h x w, any dtype) warped by :func:`warp_sources` ``src`` of its size: what ``cv2.remap`` with
    ``INTER_NEAREST`` along the same maps gives (0 on the border)."""
    out = np.empty(src.shape, labels.dtype)
    _warp_gather(np.ascontiguousarray(labels).reshape(-1), src.reshape(-1), out.reshape(-1))
    return out


# --- kernels (plain loops, compiled: see ..jit) ----------------------------------------------------------------------
@kernel
def _sample(field, pts, out):
    h, w, ch = field.shape
    xmax, ymax = w - 2 if w > 1 else 0, h - 2 if h > 1 else 0
    for i in range(pts.shape[0]):
        x, y = min(max(pts[i, 0], 0), w - 1), min(max(pts[i, 1], 0), h - 1)  # still in the points' dtype
        x0, y0 = min(np.int64(np.floor(x)), xmax), min(np.int64(np.floor(y)), ymax)
        x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
        fx, fy = np.float64(x - x0), np.float64(y - y0)
        for c in range(ch):
            top = field[y0, x0, c] * (1 - fx) + field[y0, x1, c] * fx
            bot = field[y1, x0, c] * (1 - fx) + field[y1, x1, c] * fx
            out[i, c] = top * (1 - fy) + bot * fy


@kernel
def _carry(fwd, bwd, points, s, max_error, w, h, dst, conf):
    """:meth:`FlowMatcher.carry` of ``points`` ((N, 2) float32, frame pixels) along the pair's flows at scale ``s``
    (matcher / frame pixels) in a ``w`` x ``h`` matcher frame, in one pass: each point scaled (float32), moved by
    the forward flow and back by the backward flow (bilinear, float64); its confidence 1 - (forward-backward error)
    / ``max_error`` clipped to [0, 1] (NaN stays NaN), 0 when it lands outside the frame; ``dst`` where it lands in
    frame pixels (float32). The arithmetic is that of the NumPy expression it replaces, operation for operation."""
    n = points.shape[0]
    p = np.empty((n, 2), np.float32)
    s32 = np.float32(s)
    for i in range(n):
        p[i, 0], p[i, 1] = points[i, 0] * s32, points[i, 1] * s32
    moved = np.empty((n, 2), np.float64)
    _sample(fwd, p, moved)
    q = np.empty((n, 2), np.float64)
    for i in range(n):
        q[i, 0], q[i, 1] = p[i, 0] + moved[i, 0], p[i, 1] + moved[i, 1]
    _sample(bwd, q, moved)
    for i in range(n):
        dx = (q[i, 0] + moved[i, 0]) - p[i, 0]
        dy = (q[i, 1] + moved[i, 1]) - p[i, 1]
        c = 1.0 - np.sqrt(dx * dx + dy * dy) / max_error
        if c < 0.0:
            c = 0.0
        elif c > 1.0:
            c = 1.0
        x, y = q[i, 0], q[i, 1]
        conf[i] = np.float32(c) if x >= 0 and x <= w - 1 and y >= 0 and y <= h - 1 else np.float32(0.0)
        dst[i, 0], dst[i, 1] = np.float32(x / s), np.float32(y / s)


@kernel
def _taps(n, size):
    """For each of ``n`` output pixels along an axis of ``size`` input pixels: the left input pixel, the right one,
    and the right one's weight (float32), as ``cv2.resize`` with ``INTER_LINEAR`` places them."""
    lo, hi, a = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float32)
    r = size / n
    for i in range(n):
        f = (i + 0.5) * r - 0.5
        k = int(np.floor(f))
        t = f - k
        if k < 0:
            k, t = 0, 0.0
        if k >= size - 1:
            k, t = size - 1, 0.0
        lo[i], hi[i], a[i] = k, min(k + 1, size - 1), t
    return lo, hi, a


@kernel
def _map_row(flow, y, y0, y1, ay, x0, x1, ax, sx, sy, row_x, row_y):
    """Row ``y`` of the remap maps of ``flow`` (see :func:`flow_maps`): one place for the arithmetic of both
    :func:`_flow_maps` and :func:`_warp_sources`."""
    one = np.float32(1.0)
    top, bot = flow[y0[y]], flow[y1[y]]
    wb = ay[y]
    wt = one - wb
    for x in range(row_x.shape[0]):
        a, b = x0[x], x1[x]
        wr = ax[x]
        wl = one - wr
        u = wt * (wl * top[a, 0] + wr * top[b, 0]) + wb * (wl * bot[a, 0] + wr * bot[b, 0])
        v = wt * (wl * top[a, 1] + wr * top[b, 1]) + wb * (wl * bot[a, 1] + wr * bot[b, 1])
        row_x[x] = np.float32(x) + u * sx
        row_y[x] = np.float32(y) + v * sy


@kernel
def _flow_maps(flow, map_x, map_y):
    hs, ws = flow.shape[0], flow.shape[1]
    h, w = map_x.shape
    sx, sy = np.float32(w / ws), np.float32(h / hs)  # flow pixels to map pixels
    x0, x1, ax = _taps(w, ws)
    y0, y1, ay = _taps(h, hs)
    for y in range(h):
        _map_row(flow, y, y0, y1, ay, x0, x1, ax, sx, sy, map_x[y], map_y[y])


@kernel
def _warp_sources(flow, src):
    hs, ws = flow.shape[0], flow.shape[1]
    h, w = src.shape
    sx, sy = np.float32(w / ws), np.float32(h / hs)
    x0, x1, ax = _taps(w, ws)
    y0, y1, ay = _taps(h, hs)
    row_x, row_y = np.empty(w, np.float32), np.empty(w, np.float32)
    fw, fh = np.float32(w), np.float32(h)
    zero = np.float32(0.0)
    for y in range(h):
        _map_row(flow, y, y0, y1, ay, x0, x1, ax, sx, sy, row_x, row_y)
        for x in range(w):
            rx, ry = np.rint(row_x[x]), np.rint(row_y[x])  # half to even, as OpenCV's cvRound; NaN fails below
            if rx >= zero and rx < fw and ry >= zero and ry < fh:
                src[y, x] = np.int32(ry) * w + np.int32(rx)
            else:
                src[y, x] = -1


@kernel
def _warp_gather(labels, src, out):
    for i in range(src.shape[0]):
        s = src[i]
        out[i] = labels[s] if s >= 0 else 0


def _dis_parameters(dis) -> tuple:
    return (dis.getFinestScale(), dis.getPatchSize(), dis.getPatchStride(), dis.getGradientDescentIterations(),
            dis.getVariationalRefinementIterations())


def preset_of(dis) -> str:
    """The name of the preset a DIS object was built with, read back from its parameters ("custom" if none)."""
    mine = _dis_parameters(dis)
    for name, preset in PRESETS.items():
        if _dis_parameters(cv2.DISOpticalFlow_create(preset)) == mine:
            return name
    return "custom"


@dataclass(frozen=True, eq=False)
class FlowPair:
    """A pair computed ahead by :meth:`FlowMatcher.pair_ahead`: both frames downscaled to grey at the matcher's size,
    the new frame's scale, and the forward and backward DIS flow (None when there is no pair: no previous frame, or
    one of another size)."""

    owner: object  # the token of the matcher that computed it: another matcher (other settings) does not use it
    previous: np.ndarray | None
    current: np.ndarray
    scale: float
    flows: tuple[np.ndarray, np.ndarray] | None


class FlowMatcher(Matcher):
    """DIS optical flow at reduced resolution, forward and backward, only around the asked-for points' frame.

    Confidence of a carried point falls linearly with its forward-backward error: 1 at 0 px, 0 at
    ``max_error_px`` (in matcher pixels). Points that leave the frame get confidence 0.
    """

    name = "flow"

    def __init__(self, cfg: MatcherSection):
        self.max_side = cfg.max_side
        self.max_error = cfg.max_error_px
        self._preset = PRESETS[cfg.flow_preset]
        self._dis = cv2.DISOpticalFlow_create(self._preset)
        self._patch, self._finest = self._dis.getPatchSize(), self._dis.getFinestScale()
        self._prev: np.ndarray | None = None
        self._cur: np.ndarray | None = None
        self._scale = 1.0
        self._flows: tuple[np.ndarray, np.ndarray] | None = None  # (forward, backward) of the current pair
        self._sources = None  # (backward flow, warp_sources) of the last warp: several maps warp with one computation
        self._token = object()  # marks the pairs this matcher computes ahead
        self._ahead_dis = None  # pair_ahead's own DIS object: it runs in another thread than push / prepare
        self._ahead_last: tuple[np.ndarray, np.ndarray] | None = None  # (frame, its small grey) of the last pair_ahead

    def settings(self) -> dict:
        return {"max_side": self.max_side, "max_error_px": self.max_error, "flow_preset": preset_of(self._dis)}

    def check_size(self, height: int, width: int) -> None:
        h, w = downscaled_size(height, width, self.max_side)
        if not dis_size_ok(h, w, self._patch, self._finest):
            raise FrameTooSmall(
                f"frame of {width}x{height} pixels is too small for the flow matcher: downscaled to at most "
                f"matcher.max_side={self.max_side} it is {w}x{h}, and OpenCV DIS (patch {self._patch} px, finest "
                f"scale {self._finest}) needs the short side >= {self._patch << self._finest} px and the long side "
                f">= {min_long_side(self._patch, self._finest)} px"
            )

    def push(self, image: np.ndarray) -> None:
        self.check_size(*image.shape[:2])
        self._install(*self._small(image))

    def pair_ahead(self, previous: np.ndarray | None, image: np.ndarray) -> FlowPair:
        """Grey and downscaled ``image``, and the DIS flows of (``previous``, ``image``) both ways, computed with a DIS
        object of the same preset that only this method uses (the matcher's state is not read or changed). When
        ``previous`` is the ``image`` of the call before (the same array object: a stream of frames), its small grey
        frame is reused, so each frame is downscaled once; a ``previous`` too small for the matcher gives no flows."""
        self.check_size(*image.shape[:2])
        small, scale = self._small(image)
        before = None
        if previous is not None:
            last = self._ahead_last
            if last is not None and last[0] is previous:
                before = last[1]
            else:
                try:
                    self.check_size(*previous.shape[:2])
                    before = self._small(previous)[0]
                except FrameTooSmall:
                    before = None
        self._ahead_last = (image, small)
        flows = None
        if before is not None and before.shape == small.shape:
            if self._ahead_dis is None:
                self._ahead_dis = cv2.DISOpticalFlow_create(self._preset)
            flows = (self._ahead_dis.calc(before, small, None), self._ahead_dis.calc(small, before, None))
        return FlowPair(self._token, before, small, scale, flows)

    def push_ahead(self, image: np.ndarray, ahead: object | None) -> bool:
        """Installs ``ahead``'s small frame, and its flows when its previous frame is this matcher's current one
        (compared by content); otherwise the flows are computed on demand as after ``push``."""
        if not isinstance(ahead, FlowPair) or ahead.owner is not self._token:
            self.push(image)
            return False
        self.check_size(*image.shape[:2])
        self._install(ahead.current, ahead.scale)
        # a stream installs each pair's small frame and hands it to the next pair: the same array, no comparison
        if ahead.flows is None or self._prev is None or not (
                self._prev is ahead.previous or np.array_equal(self._prev, ahead.previous)):
            return False
        self._flows = ahead.flows
        return True

    def _small(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The grey frame downscaled to at most ``max_side``, and its scale."""
        return downscale(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), self.max_side)

    def _install(self, small: np.ndarray, scale: float) -> None:
        """Make ``small`` (the new frame's grey, downscaled) the current frame; the pair's flows are not known yet."""
        self._scale = scale
        if self._cur is not None and self._cur.shape != small.shape:
            self._cur = None  # size change: no valid pair until the next frame
        self._prev, self._cur = self._cur, small
        self._flows = None

    def carry(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = points.shape[0]
        if self._prev is None or n == 0:
            return points.astype(np.float32).copy(), np.zeros(n, np.float32)
        fwd, bwd = self._pair_flows()
        h, w = self._cur.shape[:2]
        dst, conf = np.empty((n, 2), np.float32), np.empty(n, np.float32)
        _carry(fwd, bwd, np.asarray(points, np.float32), float(self._scale), float(self.max_error), w, h, dst, conf)
        return dst, conf

    def prepare(self) -> None:
        if self._prev is not None:
            _, bwd = self._pair_flows()
            if self.warp_shape is not None:
                self._warp_sources(bwd, *self.warp_shape)

    def warp_labels(self, labels: np.ndarray) -> np.ndarray | None:
        """Backward warp: each current pixel takes the label where the backward flow lands in the previous frame
        (nearest neighbour, as ``cv2.remap`` along :func:`flow_maps` takes it; 0 where it lands outside). No
        forward-backward masking: on fast motion (DAVIS libby) the check blanked so much of the object that valid
        prompts failed the area test against it."""
        if self._prev is None:
            return None
        return warp_gather(labels, self._warp_sources(self._pair_flows()[1], *labels.shape))

    def _warp_sources(self, bwd: np.ndarray, h: int, w: int) -> np.ndarray:
        """:func:`warp_sources` of backward flow ``bwd`` at h x w, computed once per pair and size."""
        if self._sources is None or self._sources[0] is not bwd or self._sources[1].shape != (h, w):
            self._sources = (bwd, warp_sources(bwd, h, w))
        return self._sources[1]

    def _pair_flows(self) -> tuple[np.ndarray, np.ndarray]:
        """Forward and backward flow of the current pair, computed once however many calls follow."""
        if self._flows is None:
            self._flows = (self._dis.calc(self._prev, self._cur, None), self._dis.calc(self._cur, self._prev, None))
        return self._flows

    def reset(self) -> None:
        self._prev = self._cur = self._flows = None
