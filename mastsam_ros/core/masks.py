"""Mask operations of the tracker: connected parts, union-find merging, painting a partition.

The tracker calls them on masks at its working resolution (a few ten thousand pixels), so they work on every pixel.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.cluster.hierarchy import DisjointSet

from .jit import kernel


def main_parts(
    mask: np.ndarray, secondary_fraction: float, min_area: float = np.inf, gap: int = 0, box=None,
    inplace: bool = False,
) -> np.ndarray:
    """Keep the largest connected part of ``mask`` and every other part at least ``secondary_fraction`` of it or at
    least ``min_area`` pixels (big enough to stand as an object of its own).

    Stray specks a prompt point dragged in are dropped; a genuinely split object (a rider and a bike) keeps its parts.
    Pieces at most ``gap`` pixels apart count as one part: a thin structure broken by downsampling (a kite's lines,
    a fence) stays with its object. ``box``: (row slice, column slice) known to hold all of the mask. ``inplace``:
    drop the pixels from ``mask`` itself (returned) instead of a copy.
    """
    if box is None:
        x, y, w, h = bbox(mask)  # label only the mask's box: most masks cover a small part of the frame
        if w == 0:
            return mask
    else:
        y, x = box[0].start, box[1].start
        h, w = box[0].stop - y, box[1].stop - x
    # the parts of the box bridged over gaps of up to ``gap`` pixels; only the mask's own pixels are kept in the end
    n, parts = connected_parts(mask, y, x, h, w, gap)
    if n <= 2:
        return mask
    out = mask if inplace else mask.copy()
    keep_parts(out, parts, n, y, x, secondary_fraction, min_area)
    return out


@kernel
def connected_parts(mask, y0, x0, h, w, gap):
    """The parts of the h x w box at (y0, x0) of a boolean ``mask`` with pieces at most ``gap`` pixels apart joined:
    those of ``cv2.connectedComponents`` (8-connected) of the box dilated by a (``gap`` + 1) square of ones, as
    :func:`main_parts` asked OpenCV for them. Returns ``(count, parts)``: ``count`` includes the background, as
    OpenCV counts; ``parts`` (int32, h x w) numbers each mask pixel's part 1..count-1 (0 off the mask; the
    numbering may differ from OpenCV's), drawn only when there are two parts or more (else empty, 0 x 0).

    Without drawing the dilation: two mask pixels end up in one dilated part exactly when a chain of mask pixels
    joins them in which each is at most ``gap`` + 1 rows and ``gap`` + 1 columns from the next (their squares touch
    or overlap; clipping to the box cannot separate them, the pixels between lie in the box). So the mask's runs
    along each row are joined (union-find) to the runs of the ``gap`` + 1 rows above that come that close."""
    k = gap + 1
    cap = h * ((w + 1) // 2) + 1  # at most this many runs
    starts, ends, parent = np.empty(cap, np.int32), np.empty(cap, np.int32), np.empty(cap, np.int32)
    row_first = np.empty(h + 1, np.int32)  # the runs of box row y are row_first[y]:row_first[y + 1]
    n = 0
    for y in range(h):
        row_first[y] = n
        src = mask[y0 + y, x0 : x0 + w]
        x = 0
        while x < w:
            if not src[x]:
                x += 1
                continue
            e = x + 1
            while e < w and src[e]:
                e += 1
            starts[n], ends[n], parent[n] = x, e, n
            for q in range(row_first[max(y - k, 0)], n):  # the runs of the k rows above and the earlier ones here
                if starts[q] < e + k and x < ends[q] + k:  # some pixels of both at most k columns apart
                    a, b = q, n
                    while parent[a] != a:
                        a = parent[a]
                    while parent[b] != b:
                        b = parent[b]
                    if a < b:
                        parent[b] = a
                    elif b < a:
                        parent[a] = b
            n += 1
            x = e
    row_first[h] = n
    label = np.zeros(n, np.int32)
    count = 1
    for r in range(n):  # the root of a tree is its first run: numbered in raster order
        a = r
        while parent[a] != a:
            a = parent[a]
        if a == r:
            label[r] = count
            count += 1
        else:
            label[r] = label[a]
    if count <= 2:  # one part or none: nothing to tell apart
        return count, np.zeros((0, 0), np.int32)
    parts = np.zeros((h, w), np.int32)
    for y in range(h):
        dst = parts[y]
        for r in range(row_first[y], row_first[y + 1]):
            v = label[r]
            for x in range(starts[r], ends[r]):
                dst[x] = v
    return count, parts


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the mask's pixels; zeros for an empty mask."""
    m = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
    x, y, w, h = cv2.boundingRect(m)
    return int(x), int(y), int(w), int(h)


def merge_groups(masks: list[np.ndarray], overlap: float, inter: np.ndarray | None = None) -> list[list[int]]:
    """Union-find over masks: i and j join when their intersection exceeds ``overlap`` x the smaller area.

    Returns the groups as lists of indices, each sorted ascending, groups ordered by their first index, so the
    caller keeps the first (oldest) member's identity. ``inter``: the masks' :func:`self_intersections` when known.
    """
    n = len(masks)
    alone = [[i] for i in range(n)]
    if n < 2:
        return alone
    inter = self_intersections(masks) if inter is None else inter
    pairs = _joining_pairs(np.ascontiguousarray(inter, np.float64), float(overlap))
    if not pairs.size:  # nothing joins (most frames)
        return alone
    ds = DisjointSet(range(n))
    for i, j in pairs.tolist():
        ds.merge(i, j)
    groups = [sorted(g) for g in ds.subsets()]
    return sorted(groups, key=lambda g: g[0])


@kernel
def _joining_pairs(inter, overlap):
    """The pairs (i, j), i < j, in row-major order, whose intersection ``inter[i, j]`` exceeds ``overlap`` x the
    smaller of their areas (the diagonal; at least 1): ``np.nonzero(np.triu(inter > overlap * np.maximum(smaller,
    1.0), k=1))`` in float64, without the n x n temporaries. Returns (pairs, 2) int64."""
    n = inter.shape[0]
    out = np.empty((n * (n - 1) // 2, 2), np.int64)
    m = 0
    for i in range(n):
        for j in range(i + 1, n):
            smaller = min(inter[i, i], inter[j, j])
            if inter[i, j] > overlap * max(smaller, 1.0):
                out[m, 0], out[m, 1] = i, j
                m += 1
    return out[:m]


def paint(shape: tuple[int, int], masks: list[np.ndarray], ids: list[int], areas=None, dtype=np.uint32) -> np.ndarray:
    """A label map (H x W ``dtype``, 0 = background) where larger masks are painted first so smaller ones stay
    visible. ``areas``: the masks' pixel counts when known."""
    labels = np.zeros(shape, dtype)
    if areas is None:
        areas = [np.count_nonzero(m) for m in masks]
    flat = labels.ravel()
    for i in np.argsort([-int(a) for a in areas], kind="stable"):
        paint_one(flat, masks[i].ravel(), ids[i])
    return labels


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks of one shape (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


@kernel
def box_iou(a, b, y0, y1, x0, x1) -> float:
    """:func:`iou` of two masks of one shape inside the box y0:y1, x0:x1, without copying them."""
    inter = union = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            p, q = a[y, x], b[y, x]
            inter += p and q
            union += p or q
    return inter / union if union else 1.0


@kernel
def box_iou_candidate(a, cand, prob, label, y0, y1, x0, x1) -> float:
    """:func:`box_iou` of mask ``a`` and one track of a candidate map (where ``cand`` is ``label`` and ``prob`` at
    least 0.5, the ``hard`` plane of :func:`candidate_plane`), without drawing that plane."""
    inter = union = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            p, q = a[y, x], cand[y, x] == label and prob[y, x] >= 0.5
            inter += p and q
            union += p or q
    return inter / union if union else 1.0


def iou_matrix(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """IoU of every mask in ``a`` with every mask in ``b``, float32 (len(a), len(b))."""
    if not a or not b:
        return np.zeros((len(a), len(b)), np.float32)
    pa = _packed64(a)
    pb = pa if b is a else _packed64(b)
    out = np.empty((len(a), len(b)), np.float32)
    _packed_ious(pa, pb, out)  # the areas from the packed bits too
    return out


def _intersections(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Pixel counts of every pairwise intersection, as float64 (len(a), len(b)).

    Bit-packed AND and popcount, 64 bits at a time, in one compiled pass over the pairs: exact, no BLAS thread pool
    (whose spinning costs seconds on a loaded 2-core machine), and well under a millisecond for a few dozen masks.
    """
    pa = _packed64(a)
    pb = pa if b is a else _packed64(b)
    out = np.empty((len(a), len(b)))
    _packed_intersections(pa, pb, out)
    return out


@kernel
def _ones(x):
    """Set bits of a uint64 (the classic bit-twiddling sum, which LLVM turns into one popcount instruction)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@kernel
def _packed_intersections(pa, pb, out):
    """``out[i, j]``: set bits of ``pa[i] & pb[j]`` (rows of uint64 words), as float64."""
    for i in range(pa.shape[0]):
        for j in range(pb.shape[0]):
            s = 0
            for k in range(pa.shape[1]):
                s += _ones(pa[i, k] & pb[j, k])
            out[i, j] = s


@kernel
def _packed_ious(pa, pb, out):
    """``out[i, j]``: IoU of packed masks ``pa[i]`` and ``pb[j]``, intersection / max(union, 1) in float64 (then the
    dtype of ``out``), the counts exact."""
    ca, cb = np.zeros(pa.shape[0]), np.zeros(pb.shape[0])
    for i in range(pa.shape[0]):
        s = 0
        for k in range(pa.shape[1]):
            s += _ones(pa[i, k])
        ca[i] = s
    for j in range(pb.shape[0]):
        s = 0
        for k in range(pb.shape[1]):
            s += _ones(pb[j, k])
        cb[j] = s
    inter = np.empty((pa.shape[0], pb.shape[0]))
    _packed_intersections(pa, pb, inter)
    for i in range(pa.shape[0]):
        for j in range(pb.shape[0]):
            out[i, j] = inter[i, j] / max(ca[i] + cb[j] - inter[i, j], 1.0)


def _packed64(masks: list[np.ndarray]) -> np.ndarray:
    """The masks' bits packed, one row each, as 64-bit words (zero-padded): popcounts then add 8 times fewer
    numbers than bytes would."""
    p = np.stack([np.packbits(m) for m in masks])
    if p.shape[1] % 8:
        p = np.pad(p, ((0, 0), (0, -p.shape[1] % 8)))
    return p.view(np.uint64)


def self_intersections(masks: list[np.ndarray]) -> np.ndarray:
    """:func:`_intersections` of a list with itself, counted only on the pixels two or more masks claim (tracks'
    masks mostly tile the image, so those are few); the diagonal holds the areas."""
    claims = np.zeros(masks[0].size, np.uint16)
    areas = np.array([claim(claims, m.ravel()) for m in masks], np.float64)
    shared = np.flatnonzero(claims >= 2)
    if shared.size == 0:
        return np.diag(areas)
    sub = [m.ravel()[shared] for m in masks]
    inter = _intersections(sub, sub)
    np.fill_diagonal(inter, areas)
    return inter


def shift_mask(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate a mask by (dx, dy) pixels (nearest neighbour; pixels shifted out are lost)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = mask.shape
    return cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST).astype(bool)


# --- compiled kernels of the tracker's per-answer and per-frame checks (one pass over a box each) -----------------
@kernel
def threshold_box(soft: np.ndarray, hard: np.ndarray) -> tuple[int, int, int, int]:
    """``hard[:] = soft >= 0.5``; returns the box of its pixels as (y0, y1, x0, x1), half-open, y1 == 0 when empty."""
    h, w = soft.shape
    y0, y1, x0, x1 = h, 0, w, 0
    for y in range(h):
        row = False
        for x in range(w):  # no branch inside: this loop vectorises
            v = soft[y, x] >= 0.5
            hard[y, x] = v
            row |= v
        if row:
            first, last = 0, w - 1
            while not hard[y, first]:
                first += 1
            while not hard[y, last]:
                last -= 1
            y0 = min(y0, y)
            y1 = y + 1
            x0 = min(x0, first)
            x1 = max(x1, last + 1)
    return y0, y1, x0, x1


@kernel
def drop_swallowed(hard, owner, held, me, fraction, y0, y1, x0, x1) -> bool:
    """The rule against an answer that swallows a neighbour, inside the answer's box: ``owner`` is where each track is
    now (track index + 1, 0 = none), ``held`` its pixel count per label. A label other than 0 and ``me`` whose pixels
    the answer covers at least ``fraction`` of (``held`` at least 1), and that holds at least half as many pixels as
    ``me``, is swallowed: its pixels are removed from ``hard``. Returns whether any was."""
    n = held.shape[0]
    taken = np.zeros(n, np.int64)
    for y in range(y0, y1):
        for x in range(x0, x1):
            if hard[y, x]:
                taken[owner[y, x]] += 1
    swallowed = np.zeros(n, np.bool_)
    anything = False
    for k in range(1, n):
        if k != me and taken[k] >= fraction * max(held[k], 1) and held[k] >= 0.5 * held[me]:
            swallowed[k] = True
            anything = True
    if anything:
        for y in range(y0, y1):
            for x in range(x0, x1):
                if hard[y, x] and swallowed[owner[y, x]]:
                    hard[y, x] = False
    return anything


@kernel
def keep_parts(hard, parts, count, y0, x0, secondary_fraction, min_area) -> None:
    """Drop from ``hard`` the pixels of the parts that :func:`main_parts` drops: ``parts`` are the connected parts
    (labels 0..count-1, 0 = none) of the box at (y0, x0); a part's size is its count of ``hard`` pixels."""
    bh, bw = parts.shape
    areas = np.zeros(count, np.int64)
    for y in range(bh):
        for x in range(bw):
            if hard[y0 + y, x0 + x]:
                areas[parts[y, x]] += 1
    biggest = 0
    for k in range(1, count):
        biggest = max(biggest, areas[k])
    keep = np.zeros(count, np.bool_)
    for k in range(1, count):
        keep[k] = areas[k] >= secondary_fraction * biggest or areas[k] >= min_area
    for y in range(bh):
        for x in range(bw):
            if hard[y0 + y, x0 + x] and not keep[parts[y, x]]:
                hard[y0 + y, x0 + x] = False


@kernel
def measure(mask, y0, y1, x0, x1, points):
    """What the plausibility checks ask of ``mask`` (all of it inside the box): its area, centroid (x, y; 0 when
    empty), and how many of ``points`` ((k, 2) x y, rounded to the nearest pixel and clipped to the map) fall on
    it."""
    area, sx, sy = 0, 0.0, 0.0
    for y in range(y0, y1):
        for x in range(x0, x1):
            if mask[y, x]:
                area += 1
                sx += x
                sy += y
    h, w = mask.shape
    hits = 0
    for j in range(points.shape[0]):
        x = min(max(int(np.rint(points[j, 0])), 0), w - 1)
        y = min(max(int(np.rint(points[j, 1])), 0), h - 1)
        if mask[y, x]:
            hits += 1
    if area:
        return area, sx / area, sy / area, hits
    return area, 0.0, 0.0, hits


@kernel
def examine(soft, hard, owner, held, me, fraction, secondary_fraction, min_area, gap, points):
    """A prompted answer's checks in one call, as the tracker ran them one kernel at a time: ``hard[:] = soft >=
    0.5`` (:func:`threshold_box`); the swallowed neighbours' pixels dropped (:func:`drop_swallowed`, when ``held``
    is not empty); the parts :func:`main_parts` drops dropped, inside the threshold box; then :func:`measure` with
    ``points``. Returns (y0, y1, x0, x1, swallowed, area, cx, cy, hits); y1 == 0 (and nothing else computed) when
    the answer is empty."""
    y0, y1, x0, x1 = threshold_box(soft, hard)
    if y1 == 0:
        return y0, y1, x0, x1, False, 0, 0.0, 0.0, 0
    swallowed = held.shape[0] > 0 and drop_swallowed(hard, owner, held, me, fraction, y0, y1, x0, x1)
    n, parts = connected_parts(hard, y0, x0, y1 - y0, x1 - x0, gap)
    if n > 2:
        keep_parts(hard, parts, n, y0, x0, secondary_fraction, min_area)
    area, cx, cy, hits = measure(hard, y0, y1, x0, x1, points)
    return y0, y1, x0, x1, swallowed, area, cx, cy, hits


@kernel
def partition_stats(cand, prob, n, stats, owner) -> None:
    """Tracks 1..n of a candidate map (``cand``: each working pixel's owner or likeliest track, ``prob`` its
    probability): ``owner`` gets the candidate where its probability is at least 0.5 (the partition), 0 elsewhere;
    ``stats[k]`` the box of track k + 1's candidate pixels (y0, y1, x0, x1; y1 == 0 when it has none), then the area
    and centroid (x, y) of its owned pixels."""
    h, w = cand.shape
    _empty_boxes(stats, n, h, w)
    for k in range(n):
        stats[k, 4], stats[k, 5], stats[k, 6] = 0, 0, 0
    half = np.float32(0.5)
    for y in range(h):
        crow, prow, orow = cand[y], prob[y], owner[y]
        for x in range(w):  # no branch: vectorises
            c = crow[x]
            orow[x] = c if prow[x] >= half else 0
        # box, area and coordinate sums a run of equal candidates at a time (integer sums: exact in any order)
        x = 0
        while x < w:
            c = crow[x]
            e = x + 1
            while e < w and crow[e] == c:
                e += 1
            if c != 0 and c <= n:
                k = c - 1
                _grow_run(stats, k, y, x, e)
                cnt, sx = 0, 0
                for i in range(x, e):
                    on = prow[i] >= half
                    cnt += on
                    sx += i * on
                stats[k, 4] += cnt
                stats[k, 5] += sx
                stats[k, 6] += y * cnt
            x = e
    for k in range(n):
        if stats[k, 4]:
            stats[k, 5] /= stats[k, 4]
            stats[k, 6] /= stats[k, 4]


@kernel
def candidate_plane(cand, prob, label, y0, y1, x0, x1, soft, hard) -> None:
    """One track of a candidate map as its own planes, inside its box: ``soft`` its probability where it is the
    candidate, ``hard`` where that is at least 0.5 (both come in zeroed)."""
    for y in range(y0, y1):
        for x in range(x0, x1):
            if cand[y, x] == label:
                p = prob[y, x]
                soft[y, x] = p
                hard[y, x] = p >= 0.5


@kernel
def claim(claims: np.ndarray, mask: np.ndarray) -> int:
    """``claims += mask`` (flat arrays of one size); returns the mask's pixel count."""
    area = 0
    for j in range(mask.size):
        v = mask[j]
        claims[j] += v
        area += v
    return area


@kernel
def paint_one(labels: np.ndarray, mask: np.ndarray, value: int) -> None:
    """``labels[mask] = value`` (flat arrays of one size)."""
    for j in range(mask.size):
        if mask[j]:
            labels[j] = value


@kernel
def label_boxes(labels: np.ndarray, n: int, boxes: np.ndarray) -> None:
    """``boxes[k]``: the box (y0, y1, x0, x1, half-open; y1 == 0 when absent) of label k + 1 of ``labels``, k < n."""
    h, w = labels.shape
    _empty_boxes(boxes, n, h, w)
    for y in range(h):
        row = labels[y]
        x = 0
        while x < w:  # a run of equal labels at a time
            c = row[x]
            e = x + 1
            while e < w and row[e] == c:
                e += 1
            if c != 0 and c <= n:
                _grow_run(boxes, c - 1, y, x, e)
            x = e


@kernel
def _empty_boxes(boxes, n: int, h: int, w: int) -> None:
    """Rows 0..n-1 of ``boxes`` (columns y0, y1, x0, x1, half-open) set to the empty box of an h x w map (y1 == 0)."""
    for k in range(n):
        boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3] = h, 0, w, 0


@kernel
def _grow_run(boxes, k: int, y: int, x0: int, x1: int) -> None:
    """Box k (y0, y1, x0, x1, half-open; y1 == 0 while empty) grown to hold pixels x0..x1-1 of row y, rows visited in
    raster order (so y is the last row)."""
    if boxes[k, 1] == 0:
        boxes[k, 0] = y
    boxes[k, 1] = y + 1
    boxes[k, 2] = min(boxes[k, 2], x0)
    boxes[k, 3] = max(boxes[k, 3], x1)


@kernel
def owner_probabilities(soft, index, label, y0, y1, x0, x1, cand, prob) -> None:
    """Track ``label``'s share of the candidate maps, inside a box: where ``index`` is the track, its probability
    from ``soft`` (at least 0.5); on a background pixel where ``soft`` beats the probability of the candidate so far
    (kept below 0.5), the track becomes the candidate with its probability (capped at 0.499). Called for the tracks
    in order, a later track takes over a pixel from an earlier one whose probability was capped there."""
    for y in range(y0, y1):
        for x in range(x0, x1):
            i = index[y, x]
            s = soft[y, x]
            if i == label:
                prob[y, x] = max(s, np.float32(0.5))
            elif i == 0 and s > prob[y, x]:
                cand[y, x] = label
                prob[y, x] = min(s, np.float32(0.499))


@kernel
def count_labels(labels: np.ndarray, n: int) -> np.ndarray:
    """Pixel count of each label 0..n-1 of a label map (labels >= n are not counted)."""
    counts = np.zeros(n, np.int64)
    for v in labels.ravel():
        if v < n:
            counts[v] += 1
    return counts
