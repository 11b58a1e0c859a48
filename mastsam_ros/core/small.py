"""Small tracks published at the frame size: what the working resolution loses of small and thin objects.

The tracker holds every mask at its working resolution (``grid.py``); a track of a few dozen working pixels loses its
shape there (a thin limb is one pixel wide or gone). After the published map is made (:meth:`WorkGrid.publish`), a
track smaller than ``tracker.small_track_fraction`` of the image whose prompt was answered and accepted this frame is
repainted inside its box from the segmenter's answer at the frame size (:func:`frame_answer`), limited to
``tracker.small_track_margin`` working pixels around its working mask; the frame pixels it leaves take the most common
other label around it in the working map. Areas and boxes of every label touched are updated in the same pass, so the
published map and the track records stay one partition. The working maps (the tracker's state: merging, warping, the
mask points and the next frame) are not changed: moving the points of a thin object onto its repainted pixels put
them on its boundary, and prompts from there answered worse (shrunken DAVIS, sam_sim@0.5, car-roundabout at s = 0.25:
J&F 0.377 against 0.894).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .grid import WorkGrid
from .jit import kernel


def frame_answer(prop, frame: tuple[int, int]) -> Callable[[int, int, int, int], np.ndarray] | None:
    """A segmenter answer at the frame size inside a box, on demand (``fine(y0, y1, x0, x1)`` -> bool crop): the
    backend's own (:attr:`Proposal.fine`), or its mask when that is of the frame size; None when it has neither."""
    if prop.fine is not None:
        return prop.fine
    mask = prop.mask
    if mask.shape == frame:
        return lambda y0, y1, x0, x1: mask[y0:y1, x0:x1]
    return None


def publish_small(grid: WorkGrid, labels: np.ndarray, area: np.ndarray, boxes: np.ndarray, index_map: np.ndarray,
                  work_boxes: np.ndarray, ids: np.ndarray, answers: list, fraction: float, margin: int) -> list[int]:
    """Repaint the small answered tracks of a published map in place; returns the indices (0-based, in ``answers``'
    order) of those repainted.

    ``labels``, ``area``, ``boxes``, ``ids``: :meth:`WorkGrid.publish`'s output and input (area and boxes by index
    0..n, updated here); ``index_map``: the working map (k + 1 where track k is); ``work_boxes``: each track's box in
    it (y0, y1, x0, x1); ``answers``: each track's :func:`frame_answer` of this frame, or None (not eligible). A track
    is repainted when it holds under ``fraction`` of the frame's pixels and the answer covers at least half its
    published area within ``margin`` working pixels of its working mask (else they disagree: it keeps its pixels).
    """
    fh, fw = grid.frame
    h, w = grid.work
    small = fraction * fh * fw
    g = max(margin, 1)  # a published pixel of the track lies at most one working pixel outside its working box
    done = []
    for k, fine in enumerate(answers):
        if fine is None or not 0 < area[k + 1] < small:
            continue
        y0, y1, x0, x1 = (int(v) for v in work_boxes[k])
        if y1 <= y0:
            continue
        wy0, wy1, wx0, wx1 = max(y0 - g, 0), min(y1 + g, h), max(x0 - g, 0), min(x1 + g, w)
        near = np.empty((wy1 - wy0, wx1 - wx0), np.bool_)
        fill = _near(index_map, k + 1, wy0, wx0, margin, g, len(ids), near)
        fy0, fy1 = int(grid.row_span[0][wy0]), int(grid.row_span[1][wy1 - 1])
        fx0, fx1 = int(grid.col_span[0][wx0]), int(grid.col_span[1][wx1 - 1])
        answer = np.ascontiguousarray(fine(fy0, fy1, fx0, fx1), dtype=np.bool_)
        if _repaint(labels, answer, near, wy0, wx0, grid.rows, grid.cols, fy0, fx0, k + 1, fill, ids, area, boxes):
            done.append(k)
    return done


# --- kernels (plain loops, compiled: see jit.py) ----------------------------------------------------------------------
@kernel
def _index_of(ids, v):
    for j in range(ids.shape[0]):
        if ids[j] == v:
            return j
    return 0


@kernel
def _near(index_map, k, wy0, wx0, margin, g, n, near):
    """``near`` (the working crop at (``wy0``, ``wx0``) of its shape, holding every pixel of index ``k`` at least
    ``g`` pixels from its sides but the map's): where ``k`` lies within ``margin`` working pixels (Chebyshev). Returns
    the index most common within ``g`` pixels of ``k`` but not ``k`` (0 when none; the lowest of a tie)."""
    h, w = near.shape
    far = g + 1
    across = np.empty((h, w), np.int64)  # distance to the nearest pixel of k in the same row (far: none within g)
    for r in range(h):
        last = -far
        for c in range(w):
            if index_map[wy0 + r, wx0 + c] == k:
                last = c
            across[r, c] = min(c - last, far)
        last = w + far
        for c in range(w - 1, -1, -1):
            if index_map[wy0 + r, wx0 + c] == k:
                last = c
            across[r, c] = min(across[r, c], last - c)
    votes = np.zeros(n, np.int64)
    for r in range(h):
        for c in range(w):
            d = far
            for rr in range(max(r - g, 0), min(r + g + 1, h)):
                d = min(d, max(abs(rr - r), across[rr, c]))
            v = index_map[wy0 + r, wx0 + c]
            near[r, c] = d <= margin
            if v != k and d <= g:
                votes[v] += 1
    best = 0
    for j in range(n):
        if votes[j] > votes[best]:
            best = j
    return best


@kernel
def _repaint(labels, answer, near, wy0, wx0, rows, cols, y0, x0, k, fill, ids, area, boxes):
    """Track index ``k`` in the frame box at (``y0``, ``x0``) of ``answer``'s shape: its pixels where ``answer`` holds
    and ``near`` (the working crop at (``wy0``, ``wx0``), looked up through the nearest working pixel) allows, the
    pixels it leaves to index ``fill``. ``area`` and ``boxes`` (x, y, width, height per index) follow: the track's are
    those of its new pixels (all of its pixels lie in the box), a gaining label's box grows, a losing label's box
    shrinks where it lost a pixel on its edge. Returns False (the box restored, nothing else written) when the
    answer covers under half the track's area within ``near``.

    One pass writes and records each changed pixel's place and old value (few: the boundary moves), so a refused
    answer is undone from the record and the bookkeeping visits the changed pixels only."""
    bh, bw = answer.shape
    me, other = ids[k], ids[fill]
    ncol = np.empty(bw, np.intp)
    for c in range(bw):
        ncol[c] = cols[x0 + c] - wx0
    where = np.empty(bh * bw, np.intp)
    was = np.empty(bh * bw, ids.dtype)
    m = 0  # changed pixels
    n = 0  # the track's pixels now
    bx0, by0, bx1, by1 = bw, bh, -1, -1
    for r in range(bh):
        y = y0 + r
        nr = near[rows[y] - wy0]
        row = labels[y]
        first, last = bw, -1
        for c in range(bw):
            v = row[x0 + c]
            if answer[r, c] and nr[ncol[c]]:
                if first == bw:
                    first = c
                last = c
                n += 1
                if v != me:
                    where[m], was[m] = r * bw + c, v
                    m += 1
                    row[x0 + c] = me
            elif v == me:
                where[m], was[m] = r * bw + c, v
                m += 1
                row[x0 + c] = other
        if last >= 0:
            bx0, bx1 = min(bx0, first), max(bx1, last)
            by0, by1 = min(by0, r), r
    if 2 * n < area[k]:
        for i in range(m):
            labels[y0 + where[i] // bw, x0 + where[i] % bw] = was[i]
        return False
    touched = np.zeros(ids.shape[0], np.bool_)
    for i in range(m):
        y, x, v = y0 + where[i] // bw, x0 + where[i] % bw, was[i]
        if v == me:  # left to ``fill``
            area[fill] += 1
            if boxes[fill, 2] == 0:
                boxes[fill, 0], boxes[fill, 1], boxes[fill, 2], boxes[fill, 3] = x, y, 1, 1
            else:
                ex, ey = boxes[fill, 0] + boxes[fill, 2], boxes[fill, 1] + boxes[fill, 3]
                boxes[fill, 0], boxes[fill, 1] = min(boxes[fill, 0], x), min(boxes[fill, 1], y)
                boxes[fill, 2], boxes[fill, 3] = max(ex, x + 1) - boxes[fill, 0], max(ey, y + 1) - boxes[fill, 1]
        else:  # taken from another label
            j = _index_of(ids, v)
            area[j] -= 1
            if x == boxes[j, 0] or y == boxes[j, 1] or x == boxes[j, 0] + boxes[j, 2] - 1 or \
                    y == boxes[j, 1] + boxes[j, 3] - 1:
                touched[j] = True
    area[k] = n
    if n:
        boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3] = x0 + bx0, y0 + by0, bx1 - bx0 + 1, by1 - by0 + 1
    else:
        boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3] = 0, 0, 0, 0
    for j in range(ids.shape[0]):
        if touched[j] and j != k:
            _shrink(labels, ids[j], area[j], boxes, j)
    return True


@kernel
def _shrink(labels, v, count, boxes, j):
    """Box ``j`` (x, y, width, height) of label ``v`` brought in to its pixels (zeros when ``count`` is 0)."""
    if count == 0:
        boxes[j, 0], boxes[j, 1], boxes[j, 2], boxes[j, 3] = 0, 0, 0, 0
        return
    x0, y0 = boxes[j, 0], boxes[j, 1]
    x1, y1 = x0 + boxes[j, 2], y0 + boxes[j, 3]  # exclusive
    while y0 < y1 and not _row_has(labels, v, y0, x0, x1):
        y0 += 1
    while y1 > y0 and not _row_has(labels, v, y1 - 1, x0, x1):
        y1 -= 1
    columns = labels.T
    while x0 < x1 and not _row_has(columns, v, x0, y0, y1):
        x0 += 1
    while x1 > x0 and not _row_has(columns, v, x1 - 1, y0, y1):
        x1 -= 1
    boxes[j, 0], boxes[j, 1], boxes[j, 2], boxes[j, 3] = x0, y0, x1 - x0, y1 - y0


@kernel
def _row_has(labels, v, y, x0, x1):
    """Whether row ``y`` holds ``v`` between ``x0`` and ``x1`` (a column: pass the transposed view)."""
    for x in range(x0, x1):
        if labels[y, x] == v:
            return True
    return False

