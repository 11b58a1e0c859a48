"""The tracker's working resolution: the grid between frame pixels and working pixels, and the published map.

The tracker keeps its state on one label map at a working resolution (``tracker.work_max_side``); :class:`WorkGrid`
maps coordinates both ways and brings the working maps to the frame size once per frame.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi


class WorkGrid:
    """The working resolution of one frame size: coordinate maps both ways and the upsampling of a working map.

    Working pixel (x, y) covers the frame pixels whose centres fall in it; the published map is the working map
    repeated over those pixels (nearest neighbour), so areas and boxes in frame pixels follow exactly from it.
    """

    def __init__(self, shape: tuple[int, int], max_side: int):
        fh, fw = shape
        s = min(1.0, max_side / max(fh, fw))
        h, w = max(1, round(fh * s)), max(1, round(fw * s))
        self.frame, self.work = (fh, fw), (h, w)
        self.scale = np.array([w / fw, h / fh], np.float32)  # working / frame pixels, x and y
        self.cols = np.minimum(((np.arange(fw) + 0.5) * (w / fw)).astype(np.intp), w - 1)
        self.rows = np.minimum(((np.arange(fh) + 0.5) * (h / fh)).astype(np.intp), h - 1)
        self.col_span = (np.searchsorted(self.cols, np.arange(w)), np.searchsorted(self.cols, np.arange(w), "right"))
        self.row_span = (np.searchsorted(self.rows, np.arange(h)), np.searchsorted(self.rows, np.arange(h), "right"))
        # frame pixels per working pixel
        self.weight = ((self.row_span[1] - self.row_span[0])[:, None] * (self.col_span[1] - self.col_span[0])).ravel()
        self._bilinear_setup()

    def to_work(self, pts: np.ndarray) -> np.ndarray:
        return (pts + 0.5) * self.scale - 0.5

    def to_frame(self, pts: np.ndarray) -> np.ndarray:
        return ((pts + 0.5) / self.scale - 0.5).astype(np.float32)

    def upsample(self, work_map: np.ndarray) -> np.ndarray:
        return work_map.take(self.rows, axis=0).take(self.cols, axis=1)

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
        cells_x, cells_y = np.arange(w - 1), np.arange(h - 1)
        self.cell_cols = (np.searchsorted(self.cx, cells_x), np.searchsorted(self.cx, cells_x, "right"))
        self.cell_rows = (np.searchsorted(self.cy, cells_y), np.searchsorted(self.cy, cells_y, "right"))

    def refine(self, cand: np.ndarray, prob: np.ndarray, owned: np.ndarray):
        """Labels of the frame pixels near boundaries, by bilinear interpolation of the working probabilities.

        ``cand`` (uint16) is each working pixel's owner, or for a background pixel the track most likely there;
        ``prob`` its probability (>= 0.5 where owned, < 0.5 on background); ``owned`` = cand where owned else 0.
        Only the 2 x 2 cells whose corners disagree are visited. A frame pixel takes the label (a corner's ``cand``,
        or background) with the highest interpolated probability: a track's is its probability where it is the
        candidate and 0 elsewhere, background's is 1 - the probability everywhere; as bilinear upsampling of one
        probability map per track would, at the cost of the boundary pixels only. Returns (rows, cols, labels) of
        the boundary frame pixels and the owner of each cell whose corners agree (0 for the others), or None when there
        is nothing to interpolate (frame and working size equal, or a side under 2)."""
        if not self.fine:
            return None
        c, o = cand, owned
        mixed = (
            (c[:-1, :-1] != c[:-1, 1:]) | (c[:-1, :-1] != c[1:, :-1]) | (c[:-1, :-1] != c[1:, 1:])
            | (o[:-1, :-1] != o[:-1, 1:]) | (o[:-1, :-1] != o[1:, :-1]) | (o[:-1, :-1] != o[1:, 1:])
        )
        # every frame pixel of a cell whose corners agree takes their owner (nearest neighbour is right there)
        cells = np.where(mixed, 0, o[:-1, :-1])
        y0, x0 = np.nonzero(mixed)
        if y0.size == 0:
            return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, c.dtype), cells
        r0, c0 = self.cell_rows[0][y0], self.cell_cols[0][x0]
        nr, nc = self.cell_rows[1][y0] - r0, self.cell_cols[1][x0] - c0
        count = nr * nc
        cell = np.repeat(np.arange(y0.size), count)
        k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        rows, cols = r0[cell] + k // nc[cell], c0[cell] + k % nc[cell]
        y0, x0 = y0[cell], x0[cell]
        ay, ax = self.ay[rows], self.ax[cols]
        weights = ((1 - ay) * (1 - ax), (1 - ay) * ax, ay * (1 - ax), ay * ax)
        w = c.shape[1]
        at = y0 * w + x0
        corners = (at, at + 1, at + w, at + w + 1)  # flat indices: top left, top right, bottom left, bottom right
        labels = [c.ravel().take(i) for i in corners]
        probs = [prob.ravel().take(i) for i in corners]
        wp = [weights[i] * probs[i] for i in range(4)]
        scores = np.empty((5, rows.size), np.float32)
        scores[:4] = wp
        for i in range(4):
            for j in range(i + 1, 4):
                same = labels[i] == labels[j]
                scores[i] += wp[j] * same
                scores[j] += wp[i] * same
        scores[4] = 1.0 - (wp[0] + wp[1] + wp[2] + wp[3])  # the weights sum to 1
        choice = np.stack(labels + [np.zeros_like(labels[0])])
        return rows, cols, choice[scores.argmax(0), np.arange(rows.size)], cells

    def boxes(self, cells: np.ndarray, rows: np.ndarray, cols: np.ndarray, labels: np.ndarray, n: int) -> list:
        """Exact boxes (x, y, width, height, frame pixels) of labels 1..n of the published map: the frame pixels of
        the agreeing cells (``cells``: their owner, 0 for mixed cells) and the boundary pixels (``rows``, ``cols``,
        ``labels`` from :meth:`refine`)."""
        big = 1 << 30
        x0, y0 = np.full(n + 1, big), np.full(n + 1, big)
        x1, y1 = np.full(n + 1, -1), np.full(n + 1, -1)
        for k, sl in enumerate(ndi.find_objects(cells, max_label=n), start=1):
            if sl is not None:
                ys, xs = sl
                y0[k], y1[k] = self.cell_rows[0][ys.start], self.cell_rows[1][ys.stop - 1] - 1
                x0[k], x1[k] = self.cell_cols[0][xs.start], self.cell_cols[1][xs.stop - 1] - 1
        np.minimum.at(x0, labels, cols)
        np.minimum.at(y0, labels, rows)
        np.maximum.at(x1, labels, cols)
        np.maximum.at(y1, labels, rows)
        return [(int(x0[k]), int(y0[k]), int(x1[k] - x0[k] + 1), int(y1[k] - y0[k] + 1)) if x1[k] >= 0
                else (0, 0, 0, 0) for k in range(1, n + 1)]

    def box(self, sl: tuple[slice, slice] | None) -> tuple[int, int, int, int]:
        """A working box (find_objects slices) as x, y, width, height in frame pixels."""
        if sl is None:
            return 0, 0, 0, 0
        ys, xs = sl
        x0, x1 = int(self.col_span[0][xs.start]), int(self.col_span[1][xs.stop - 1])
        y0, y1 = int(self.row_span[0][ys.start]), int(self.row_span[1][ys.stop - 1])
        return x0, y0, x1 - x0, y1 - y0
