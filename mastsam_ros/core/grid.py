"""The tracker's working resolution: the grid between frame pixels and working pixels, and the published map.

The tracker keeps its state on one label map at a working resolution (``tracker.work_max_side``); :class:`WorkGrid`
maps coordinates both ways and brings the working maps to the frame size once per frame (:meth:`WorkGrid.publish`,
one compiled pass over the frame pixels).
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import MastSamError
from .jit import kernel


class WorkGrid:
    """The working resolution of one frame size: coordinate maps both ways and the published map of the working maps.

    Working pixel (x, y) covers the frame pixels whose centres fall in it (nearest neighbour); the published map
    refines that along boundaries by interpolated probability (:meth:`publish`).
    """

    def __init__(self, shape: tuple[int, int], max_side: int):
        fh, fw = shape
        s = min(1.0, max_side / max(fh, fw))
        h, w = max(1, round(fh * s)), max(1, round(fw * s))
        self.frame, self.work = (fh, fw), (h, w)
        self.scale = np.array([w / fw, h / fh], np.float32)  # working / frame pixels, x and y
        # nearest working pixel of each frame column and row, and the frame columns (rows) of each working one
        self.cols = np.minimum(((np.arange(fw) + 0.5) * (w / fw)).astype(np.intp), w - 1)
        self.rows = np.minimum(((np.arange(fh) + 0.5) * (h / fh)).astype(np.intp), h - 1)
        self.col_span = (np.searchsorted(self.cols, np.arange(w)), np.searchsorted(self.cols, np.arange(w), "right"))
        self.row_span = (np.searchsorted(self.rows, np.arange(h)), np.searchsorted(self.rows, np.arange(h), "right"))
        self._bilinear_setup()

    def to_work(self, pts: np.ndarray) -> np.ndarray:
        return (pts + 0.5) * self.scale - 0.5

    def to_frame(self, pts: np.ndarray) -> np.ndarray:
        return ((pts + 0.5) / self.scale - 0.5).astype(np.float32)

    def soft(self, prop) -> np.ndarray:
        """A segmenter's answer as a probability per working pixel (float32): the backend's own where it gives one
        at this size (SAM: its decoder's logits), else the fraction of each working pixel its mask covers. The hard
        mask is ``soft >= 0.5``; the fractions let the published map place boundaries between working pixels."""
        soft = getattr(prop, "soft", None)
        if soft is not None and soft.shape == self.work:
            return np.asarray(soft, np.float32)
        mask = np.asarray(prop.mask, bool)
        if mask.shape == self.work:
            return mask.astype(np.float32)
        h, w = self.work
        area = cv2.INTER_AREA if mask.shape[0] >= h else cv2.INTER_LINEAR
        return cv2.resize(mask.view(np.uint8).astype(np.float32), (w, h), interpolation=area)

    def _bilinear_setup(self) -> None:
        """Each frame pixel centre in working coordinates: the 2 x 2 working cell around it and its weights."""
        (fh, fw), (h, w) = self.frame, self.work
        self.fine = h >= 2 and w >= 2 and (fh, fw) != (h, w)
        if not self.fine:
            return
        fx = (np.arange(fw) + 0.5) * (w / fw) - 0.5
        fy = (np.arange(fh) + 0.5) * (h / fh) - 0.5
        self.cx = np.clip(np.floor(fx).astype(np.intp), 0, w - 2)
        self.cy = np.clip(np.floor(fy).astype(np.intp), 0, h - 2)
        self.ax = np.clip(fx - self.cx, 0.0, 1.0).astype(np.float32)
        self.ay = np.clip(fy - self.cy, 0.0, 1.0).astype(np.float32)
        self.bx, self.by = 1 - self.ax, 1 - self.ay  # float32, the weights of the left (top) corners
        cells_x, cells_y = np.arange(w - 1), np.arange(h - 1)
        self.cell_cols = (np.searchsorted(self.cx, cells_x), np.searchsorted(self.cx, cells_x, "right"))
        self.cell_rows = (np.searchsorted(self.cy, cells_y), np.searchsorted(self.cy, cells_y, "right"))

    def publish(self, index_map: np.ndarray, cand: np.ndarray, prob: np.ndarray, ids: np.ndarray):
        """The frame-size label map of the working maps, with each label's area and box, in one compiled pass.

        ``index_map`` (uint16, working size): k where track k is (1..n), 0 on background; ``cand`` (uint16): each
        working pixel's owner, or on background the track most likely there (0: none); ``prob`` (float32): the
        probability of ``cand`` (>= 0.5 where owned, < 0.5 on background); ``ids`` (uint32, n + 1): the published
        value of each index (``ids[0]`` = 0, background).

        The rule per frame pixel: its centre lies in the 2 x 2 working cell (``cy``, ``cx``) with bilinear weights
        (``ay``, ``ax``). Where the cell's four corners agree (same ``cand`` and same ``index_map``) the pixel takes
        their owner, which is also its nearest working pixel. Elsewhere it takes the label with the highest
        interpolated probability among five, as bilinear upsampling of one probability map per track would (a
        track's probability is its ``prob`` where it is the candidate and 0 elsewhere), at the cost of the boundary
        pixels only. In float32: each corner's term is (its weight) x ``prob``; a corner's ``cand`` scores its own
        term plus, in corner order (top left, top right, bottom left, bottom right), every other corner's term
        times 1 where that corner has the same ``cand``, else times 0; background scores 1 - the sum of the four
        terms in corner order (the weights sum to 1). The label is the first of the highest score in that order,
        background last, as ``argmax`` picks it (a NaN counts as the highest: a NaN probability makes every score
        in the cells around it NaN, so their pixels, where corners disagree, take the top left ``cand``). Without a
        cell to interpolate (frame and working size equal, or a working side under 2) and without tracks, each frame
        pixel takes its nearest working pixel.

        Returns ``labels`` (uint32, frame size: ``ids`` of the chosen indices), ``area`` (int64, n + 1: frame pixels
        of each index in ``labels``) and ``boxes`` (int64, n + 1 x 4: x, y, width, height in frame pixels of each
        index, all 0 for an absent one). Raises MastSamError when a map is not of the working size or holds an
        index above n."""
        for name, a, kind in (("index_map", index_map, "u"), ("cand", cand, "u"), ("prob", prob, "f")):
            if a.shape != self.work:
                raise MastSamError(f"publish: {name} is {a.shape}, not the working size {self.work}")
            if a.dtype.kind != kind or (kind == "f" and a.dtype != np.float32):
                raise MastSamError(f"publish: {name} is {a.dtype}, not {'float32' if kind == 'f' else 'unsigned'}")
        n = len(ids) - 1
        labels = np.empty(self.frame, np.uint32)
        area = np.zeros(n + 1, np.int64)
        boxes = np.empty((n + 1, 4), np.int64)
        if self.fine and n:
            ok = _publish_cells(index_map, cand, prob, ids, self.cy, self.cx, self.by, self.ay, self.bx, self.ax,
                                self.cell_rows[0], self.cell_rows[1], self.cell_cols[0], self.cell_cols[1],
                                labels, area, boxes)
        else:
            ok = _publish_nearest(index_map, ids, self.rows, self.cols, self.row_span[0], self.row_span[1],
                                  self.col_span[0], self.col_span[1], labels, area, boxes)
        if not ok:
            raise MastSamError(f"publish: the working maps hold an index above the {n} tracks")
        return labels, area, boxes


# --- kernels (plain loops, compiled: see jit.py) ----------------------------------------------------------------------
@kernel
def _grow(boxes, k, x0, y0, x1, y1):
    """Box k (x0, y0, x1, y1, inclusive, while accumulating) grown to hold x0..x1, y0..y1."""
    if x0 < boxes[k, 0]:
        boxes[k, 0] = x0
    if y0 < boxes[k, 1]:
        boxes[k, 1] = y0
    if x1 > boxes[k, 2]:
        boxes[k, 2] = x1
    if y1 > boxes[k, 3]:
        boxes[k, 3] = y1


@kernel
def _start_boxes(boxes, big):
    for k in range(boxes.shape[0]):
        boxes[k, 0] = big
        boxes[k, 1] = big
        boxes[k, 2] = -1
        boxes[k, 3] = -1


@kernel
def _finish_boxes(boxes):
    """Inclusive corners to x, y, width, height; an empty box to zeros."""
    for k in range(boxes.shape[0]):
        if boxes[k, 2] < 0:
            boxes[k, 0] = 0
            boxes[k, 1] = 0
            boxes[k, 2] = 0
            boxes[k, 3] = 0
        else:
            boxes[k, 2] = boxes[k, 2] - boxes[k, 0] + 1
            boxes[k, 3] = boxes[k, 3] - boxes[k, 1] + 1


@kernel
def _above(s, best):
    """Whether score ``s`` takes the lead from ``best`` in a first-maximum argmax (a NaN is the maximum there)."""
    return s > best or (s != s and best == best)


@kernel
def _publish_nearest(index_map, ids, rows, cols, row_lo, row_hi, col_lo, col_hi, labels, area, boxes):
    """Each frame pixel takes its nearest working pixel; areas and boxes from each working pixel's frame span.
    Returns False (nothing written) when ``index_map`` holds an index above len(ids) - 1."""
    h, w = index_map.shape
    n = ids.shape[0] - 1
    for y in range(h):
        for x in range(w):
            if index_map[y, x] > n:
                return False
    _start_boxes(boxes, labels.shape[0] + labels.shape[1])
    for y in range(h):
        for x in range(w):
            cnt = (row_hi[y] - row_lo[y]) * (col_hi[x] - col_lo[x])
            if cnt > 0:
                k = index_map[y, x]
                area[k] += cnt
                _grow(boxes, k, col_lo[x], row_lo[y], col_hi[x] - 1, row_hi[y] - 1)
    for r in range(labels.shape[0]):
        y = rows[r]
        for c in range(labels.shape[1]):
            labels[r, c] = ids[index_map[y, cols[c]]]
    _finish_boxes(boxes)
    return True


@kernel
def _publish_cells(index_map, cand, prob, ids, cy, cx, by, ay, bx, ax, row_lo, row_hi, col_lo, col_hi,
                   labels, area, boxes):
    """The rule of :meth:`WorkGrid.publish` where there are cells: the frame pixels of cell (y, x) are rows
    ``row_lo[y]:row_hi[y]`` and columns ``col_lo[x]:col_hi[x]`` (those with ``cy == y``, ``cx == x``); ``by``,
    ``bx`` = 1 - ``ay``, 1 - ``ax``. Returns False (nothing reliable written) when a map holds an index above n."""
    h, w = index_map.shape
    n = ids.shape[0] - 1
    # every index is checked once: the last row and column here, the others as a cell's top left corner below
    for y in range(h):
        if index_map[y, w - 1] > n or cand[y, w - 1] > n:
            return False
    for x in range(w):
        if index_map[h - 1, x] > n or cand[h - 1, x] > n:
            return False
    _start_boxes(boxes, labels.shape[0] + labels.shape[1])
    one = np.float32(1.0)
    mixed = np.empty(w - 1, np.intp)  # the cells of one row whose corners disagree
    for y in range(h - 1):
        r0, r1 = row_lo[y], row_hi[y]
        if r1 == r0:
            continue
        # The frame rows of this cell row differ only in the pixels of mixed cells: write the first row's agreeing
        # cells (each takes its owner, counted at once, a run of neighbouring cells with the same corners at a time),
        # copy it to the others, then visit the mixed cells' pixels.
        m = 0
        x = 0
        first = labels[r0]
        while x < w - 1:
            o, c = index_map[y, x], cand[y, x]
            if o > n or c > n:
                return False
            e = x
            while (e < w - 1 and index_map[y, e] == o and cand[y, e] == c and index_map[y, e + 1] == o
                   and index_map[y + 1, e] == o and index_map[y + 1, e + 1] == o and cand[y, e + 1] == c
                   and cand[y + 1, e] == c and cand[y + 1, e + 1] == c):
                e += 1
            if e == x:  # the corners of cell x disagree
                mixed[m] = x
                m += 1
                x += 1
                continue
            c0, c1 = col_lo[x], col_hi[e - 1]  # the cells' columns are consecutive spans
            if c1 > c0:
                area[o] += (r1 - r0) * (c1 - c0)
                _grow(boxes, o, c0, r0, c1 - 1, r1 - 1)
                first[c0:c1] = ids[o]  # a slice of the row: a fill (a loop over labels[r0, c] cost 3x as much)
            x = e
        for r in range(r0 + 1, r1):
            row = labels[r]
            for c in range(row.shape[0]):
                row[c] = first[c]
        for i in range(m):
            x = mixed[i]
            l0, l1, l2, l3 = cand[y, x], cand[y, x + 1], cand[y + 1, x], cand[y + 1, x + 1]
            p0, p1, p2, p3 = prob[y, x], prob[y, x + 1], prob[y + 1, x], prob[y + 1, x + 1]
            # 1 where two corners have the same label, else 0: a corner's score adds the others' terms times these
            e01, e02, e03 = np.float32(l0 == l1), np.float32(l0 == l2), np.float32(l0 == l3)
            e12, e13, e23 = np.float32(l1 == l2), np.float32(l1 == l3), np.float32(l2 == l3)
            for r in range(r0, r1):
                wt, wb = by[r], ay[r]
                for c in range(col_lo[x], col_hi[x]):
                    wl, wr = bx[c], ax[c]
                    q0, q1, q2, q3 = (wt * wl) * p0, (wt * wr) * p1, (wb * wl) * p2, (wb * wr) * p3
                    best, k = ((q0 + q1 * e01) + q2 * e02) + q3 * e03, l0
                    s = ((q1 + q0 * e01) + q2 * e12) + q3 * e13
                    if _above(s, best):
                        best, k = s, l1
                    s = ((q2 + q0 * e02) + q1 * e12) + q3 * e23
                    if _above(s, best):
                        best, k = s, l2
                    s = ((q3 + q0 * e03) + q1 * e13) + q2 * e23
                    if _above(s, best):
                        best, k = s, l3
                    if _above(one - (((q0 + q1) + q2) + q3), best):
                        k = 0
                    labels[r, c] = ids[k]
                    area[k] += 1
                    _grow(boxes, k, c, r, c, r)
    _finish_boxes(boxes)
    return True


def _load_kernels() -> None:
    """Load both publish kernels (compiled once after an install, then from numba's cache) at import, as the
    tracker calls them. A long-lived process, the managed node, then holds their code from its start: loaded by the
    first frame instead, inside the first configure / cleanup cycle, it kept memory that cleanup gives back from
    being returned (the second cycle ended ~30-50 MiB above the first)."""
    grid = WorkGrid((3, 3), 2)  # a 2 x 2 working map: one cell
    index = np.zeros(grid.work, np.uint16)
    prob = np.zeros(grid.work, np.float32)
    ids = np.zeros(2, np.uint32)
    grid.publish(index, index, prob, ids)
    WorkGrid(grid.work, 2).publish(index, index, prob, ids)  # frame and working size equal: nearest neighbour


_load_kernels()
