"""DAVIS data loading, the J and F measures, and the DAVIS-2017 unsupervised protocol with id-switch counts.

Layout read here (the DAVIS one)::

    <root>/JPEGImages/480p/<seq>/<frame>.jpg     frames
    <root>/Annotations/480p/<seq>/<frame>.png    ground truth
    <pred>/<seq>/<frame>.png                     predictions: one label map per frame, same stem as the JPEG

Ground truth comes in two flavours, told apart by the PNG mode:
- DAVIS-2016: greyscale, 0 = background, 255 = the one object (which may have several parts) -> object id 1;
- DAVIS-2017: indexed ('P'), index k >= 1 = object k, 255 = void (ignored by J and F, as in the DAVIS toolkit).

Measures, implemented from their definitions (Perazzi et al., CVPR 2016; Pont-Tuset et al., arXiv 1704.00675):
- J: region similarity, |P ∩ G| / |P ∪ G|, with J = 1 when both masks are empty (void pixels excluded);
- F: boundary F-measure. Each mask's boundary is the one-pixel set of pixels whose value differs from their right,
  lower or lower-right neighbour; a boundary pixel of one mask counts as matched when a boundary pixel of the other
  lies within ``ceil(bound_th * image diagonal)`` pixels (a disk dilation; 8 px at 854x480). Precision and recall are
  the matched fractions of the prediction's and the ground truth's boundary; F = 2PR / (P + R). Both boundaries empty
  gives F = 1; exactly one empty gives F = 0.

Unsupervised protocol (DAVIS-2017 unsupervised): every predicted id of a sequence is a candidate for every ground-truth
object. For each (id, object) pair, J and F are computed on every frame (an id or object absent from a frame is an
empty mask there, so absent/absent scores 1 and absent/present scores 0) and averaged over frames. One Hungarian
assignment per sequence maximises the sum of (J + F) / 2 over pairs; an object left without an id (fewer ids than
objects) is scored against an empty mask. Unlike the official toolkit, the number of ids per sequence is not capped
(it allows at most 20 proposals); methods that produce many ids are not rejected, they just gain nothing from them.

Id switches (our addition, not part of DAVIS): in a frame where ground-truth object k is present, the predicted id
that overlaps it most "covers" it when that id's IoU with the object is at least ``cover_iou`` (0.5, so at most one
id can cover an object). Per object we report ``ids`` = number of distinct covering ids over the sequence (1 is ideal,
0 means never covered), ``switches`` = how often the covering id changes between consecutive covered frames, and
``covered`` = the fraction of frames with the object present in which some id covers it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from ..core.frames import read_rgb
from ..labels_io import ids_from_values, load_label_png, read_label_records

VOID = 255
BOUND_TH = 0.008
COVER_IOU = 0.5


# ----------------------------------------------------------------------------------------------------------------
# loading


def sequence_names(root: str | Path, resolution: str = "480p") -> list[str]:
    """Sequences that have annotations under ``<root>/Annotations/<resolution>``, sorted."""
    ann = Path(root) / "Annotations" / resolution
    if not ann.is_dir():
        raise FileNotFoundError(f"no DAVIS annotations at {ann}")
    return sorted(p.name for p in ann.iterdir() if p.is_dir())


def frame_paths(root: str | Path, seq: str, resolution: str = "480p") -> list[Path]:
    """The JPEG frames of ``seq``, sorted by name."""
    d = Path(root) / "JPEGImages" / resolution / seq
    paths = sorted(d.glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no frames (*.jpg) in {d}")
    return paths


def load_frames(root: str | Path, seq: str, resolution: str = "480p", limit: int | None = None) -> list[np.ndarray]:
    """Frames of ``seq`` as H x W x 3 uint8 RGB, in file-name order (the first ``limit`` when given)."""
    out = []
    for p in frame_paths(root, seq, resolution)[:limit]:
        rgb = read_rgb(p)
        if rgb is None:  # evaluation needs every frame: a missing one would shift the ground truth
            raise OSError(f"cannot read image {p}")
        out.append(rgb)
    return out


def read_gt_png(path: str | Path) -> np.ndarray:
    """One ground-truth PNG as H x W uint8: 0 background, 1..K objects, 255 void (DAVIS-2017 only).

    A greyscale DAVIS-2016 mask (0/255) becomes 0/1; any non-zero grey value counts as the object.
    """
    from PIL import Image

    with Image.open(path) as img:
        mode = img.mode
        arr = np.array(img)
    if arr.ndim == 3:  # an RGB export of a binary mask
        arr = arr.max(axis=2)
        mode = "L"
    if mode == "P":
        return arr.astype(np.uint8)
    return (arr > 0).astype(np.uint8)


def load_gt(
    root: str | Path, seq: str, resolution: str = "480p", limit: int | None = None
) -> tuple[list[str], np.ndarray]:
    """Ground truth of ``seq``: (frame stems, T x H x W uint8 array: 0 bg, 1..K objects, 255 void)."""
    d = Path(root) / "Annotations" / resolution / seq
    paths = sorted(d.glob("*.png"))[:limit]
    if not paths:
        raise FileNotFoundError(f"no annotations (*.png) in {d}")
    return [p.stem for p in paths], np.stack([read_gt_png(p) for p in paths])


def load_pred(pred_dir: str | Path, seq: str, stems: list[str]) -> np.ndarray:
    """Predicted label maps of ``seq`` for the given frame stems: T x H x W uint32 (0 = background).

    A missing frame is an error: the protocol scores every annotated frame, and a silent gap would score as empty.
    Where ``mastsam-track`` wrote a ``tracks.jsonl`` beside the PNGs, pixel values are decoded back to track ids with
    it (they differ only once ids passed 65535, see ``mastsam_ros/labels_io.py``).
    """
    d = Path(pred_dir) / seq
    missing = [s for s in stems if not (d / f"{s}.png").is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: {len(missing)} predicted frames missing (first: {missing[0]}.png)")
    values = [load_label_png(d / f"{s}.png") for s in stems]
    if (d / "tracks.jsonl").is_file():
        records = read_label_records(d / "tracks.jsonl")
        values = [ids_from_values(v, records[s]) if s in records else v for s, v in zip(stems, values)]
    return np.stack(values)


# ----------------------------------------------------------------------------------------------------------------
# single-mask measures


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a binary mask (H x W bool): pixels that differ from their right, lower or lower-right
    neighbour. Neighbours outside the image do not count, so the image border is not a boundary."""
    m = np.asarray(mask, dtype=bool)
    b = np.zeros_like(m)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]
    b[:-1, :] |= m[:-1, :] != m[1:, :]
    b[:-1, :-1] |= m[:-1, :-1] != m[1:, 1:]
    return b


def bound_pixels(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Boundary tolerance in pixels: ``bound_th`` as a fraction of the image diagonal (or pixels when >= 1)."""
    if bound_th >= 1:
        return int(math.ceil(bound_th))
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def _disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def _dilate(b: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.dilate(b.view(np.uint8), kernel).view(bool)


def j_measure(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """IoU of two H x W bool masks, void pixels excluded; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if void is not None:
        pred, gt = pred & ~void, gt & ~void
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def _f_from_boundaries(pb: np.ndarray, gb: np.ndarray, gb_dil: np.ndarray, kernel: np.ndarray) -> float:
    n_p, n_g = np.count_nonzero(pb), np.count_nonzero(gb)
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    precision = np.count_nonzero(pb & gb_dil) / n_p
    recall = np.count_nonzero(gb & _dilate(pb, kernel)) / n_g
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def f_measure(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure of two H x W bool masks (see the module docstring); void pixels are removed from both."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if void is not None:
        pred, gt = pred & ~void, gt & ~void
    kernel = _disk(bound_pixels(gt.shape, bound_th))
    gb = boundary_map(gt)
    return _f_from_boundaries(boundary_map(pred), gb, _dilate(gb, kernel), kernel)


# ----------------------------------------------------------------------------------------------------------------
# all pairs at once


def _present_values(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a T x H x W integer array, as int64 (frame by frame, to bound memory)."""
    seen = np.zeros(0, dtype=bool)
    rest: set[int] = set()
    for frame in a:
        top = int(frame.max()) if frame.size else 0
        if top < 1 << 20:
            counts = np.bincount(frame.ravel(), minlength=top + 1) > 0
            if len(counts) > len(seen):
                counts[: len(seen)] |= seen
                seen = counts
            else:
                seen[: len(counts)] |= counts
        else:
            rest.update(np.unique(frame).tolist())
    return np.array(sorted(set(np.flatnonzero(seen).tolist()) | rest), dtype=np.int64)


def _grow(box: tuple[slice, slice], m: int, H: int, W: int) -> tuple[int, int, int, int]:
    ys, xs = box
    return max(ys.start - m, 0), min(ys.stop + m, H), max(xs.start - m, 0), min(xs.stop + m, W)


def pair_measures(
    pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """J and F for every (predicted id, ground-truth object) pair on every frame.

    ``pred``: T x H x W integer label maps (0 = background); ``gt``: T x H x W uint8 (0 bg, 1..K objects, 255 void).
    Returns ``(ids, objects, J, F, inter)``: ``ids`` (N,) predicted ids seen anywhere in the sequence, ``objects``
    (K,) object ids, and T x N x K float arrays ``J``, ``F`` and ``inter`` (intersection pixel counts).

    J comes from one joint histogram per frame. F is computed only for ids that come within the boundary tolerance of
    the object's boundary (that is, touch its dilated boundary band); every other present id scores F = 0 exactly,
    because none of its boundary pixels can be matched.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    T, H, W = gt.shape
    void = gt == VOID
    objects = _present_values(gt)
    objects = objects[(objects != 0) & (objects != VOID)]
    ids = _present_values(pred)
    ids = ids[ids != 0]
    N, K = len(ids), len(objects)
    J = np.zeros((T, N, K))
    F = np.zeros((T, N, K))
    inter_all = np.zeros((T, N, K), dtype=np.int64)
    if K == 0:
        return ids, objects, J, F, inter_all
    r = bound_pixels((H, W), bound_th)
    kernel = _disk(r)
    band_kernel = _disk(r + 1)
    # dense indices: predicted id -> 1..N (0 bg), object -> 1..K (0 bg), void -> dropped
    obj_lut = np.zeros(256, dtype=np.int64)
    obj_lut[objects] = np.arange(1, K + 1)
    id_lut = None
    if N and ids[-1] < 1 << 24:
        id_lut = np.zeros(int(ids[-1]) + 1, dtype=np.int64)
        id_lut[ids] = np.arange(1, N + 1)
    for t in range(T):
        if id_lut is not None:
            p_idx = id_lut[pred[t]]
        else:
            p_idx = np.searchsorted(ids, pred[t]) + 1
            p_idx[pred[t] == 0] = 0
        g_idx = obj_lut[gt[t]]
        has_void = bool(void[t].any())
        if has_void:  # void pixels belong to neither mask
            p_idx[void[t]] = 0
            g_idx[void[t]] = 0
        hist = np.bincount((p_idx * (K + 1) + g_idx).ravel(), minlength=(N + 1) * (K + 1)).reshape(N + 1, K + 1)
        area_p = hist.sum(axis=1)[1:]  # (N,)
        area_g = hist.sum(axis=0)[1:]  # (K,)
        inter = hist[1:, 1:]  # (N, K)
        union = area_p[:, None] + area_g[None, :] - inter
        J[t] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        inter_all[t] = inter
        present = area_p > 0
        p_boxes = ndimage.find_objects(p_idx, max_label=N) if N else []
        g_boxes = ndimage.find_objects(g_idx, max_label=K)
        for k in range(K):
            if area_g[k] == 0:
                F[t, :, k] = np.where(present, 0.0, 1.0)
                continue
            # G: the object's box grown by r + 2; every ground-truth boundary pixel and every pixel within the
            # tolerance of one lies inside it, so matching only ever looks inside G
            gy0, gy1, gx0, gx1 = _grow(g_boxes[k], r + 2, H, W)
            gb = boundary_map(g_idx[gy0:gy1, gx0:gx1] == k + 1)
            band = _dilate(gb, band_kernel)  # ids with a pixel within r + 1 of the boundary can match it
            cand = np.flatnonzero(np.bincount(p_idx[gy0:gy1, gx0:gx1][band], minlength=N + 1)[1:])
            if len(cand) == 0:
                continue  # F stays 0: present ids have no matchable boundary, absent ids face a present object
            gb_dil = _dilate(gb, kernel)
            n_g = np.count_nonzero(gb)
            for n in cand:
                # the id's own boundary, from its box grown by 2 (the boundary includes pixels left of / above it)
                py0, py1, px0, px1 = _grow(p_boxes[n], 2, H, W)
                pb = boundary_map(p_idx[py0:py1, px0:px1] == n + 1)
                n_p = np.count_nonzero(pb)
                # the part of that boundary inside G, in G's coordinates
                oy0, oy1, ox0, ox1 = max(py0, gy0), min(py1, gy1), max(px0, gx0), min(px1, gx1)
                pb_g = np.zeros_like(gb)
                pb_g[oy0 - gy0 : oy1 - gy0, ox0 - gx0 : ox1 - gx0] = pb[oy0 - py0 : oy1 - py0, ox0 - px0 : ox1 - px0]
                precision = np.count_nonzero(pb_g & gb_dil) / n_p if n_p else 0.0
                recall = np.count_nonzero(gb & _dilate(pb_g, kernel)) / n_g
                F[t, n, k] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return ids, objects, J, F, inter_all


@dataclass
class ObjectResult:
    object_id: int
    pred_id: int  # the id the Hungarian assignment gave this object (0 = none)
    J: float  # mean over frames
    F: float
    ids: int  # distinct covering ids over the sequence
    switches: int  # changes of the covering id between consecutive covered frames
    covered: float  # fraction of frames with the object present in which some id covers it


@dataclass
class SequenceResult:
    sequence: str
    frames: int
    pred_ids: int  # distinct predicted ids anywhere in the sequence
    objects: list[ObjectResult] = field(default_factory=list)

    def _mean(self, attr: str) -> float:
        """Mean of one ObjectResult field over the sequence's objects (nan when it has none)."""
        return float(np.mean([getattr(o, attr) for o in self.objects])) if self.objects else float("nan")

    @property
    def J(self) -> float:
        return self._mean("J")

    @property
    def F(self) -> float:
        return self._mean("F")

    @property
    def JF(self) -> float:
        return (self.J + self.F) / 2

    @property
    def ids(self) -> float:
        return self._mean("ids")

    @property
    def switches(self) -> float:
        return self._mean("switches")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(J=self.J, F=self.F, JF=self.JF, ids=self.ids, switches=self.switches)
        return d


def id_coverage(
    gt_obj: np.ndarray, ids: np.ndarray, J: np.ndarray, inter: np.ndarray, cover_iou: float = COVER_IOU
) -> tuple[int, int, float]:
    """Id-switch statistics of one object from per-frame IoU ``J`` (T x N) and intersections ``inter`` (T x N).

    ``gt_obj`` (T,) bool says in which frames the object is present. Returns (ids, switches, covered fraction).
    """
    covering = []
    for t in range(len(gt_obj)):
        if not gt_obj[t] or inter.shape[1] == 0:
            continue
        n = int(np.argmax(inter[t]))
        covering.append(int(ids[n]) if inter[t, n] > 0 and J[t, n] >= cover_iou else 0)
    seq = [c for c in covering if c != 0]
    switches = sum(1 for a, b in zip(seq, seq[1:]) if a != b)
    covered = len(seq) / len(covering) if covering else float("nan")
    return len(set(seq)), switches, covered


def evaluate_sequence(
    name: str, pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH, cover_iou: float = COVER_IOU
) -> SequenceResult:
    """The unsupervised protocol on one sequence (see the module docstring)."""
    ids, objects, J, F, inter = pair_measures(pred, gt, bound_th)
    T = gt.shape[0]
    res = SequenceResult(sequence=name, frames=T, pred_ids=len(ids))
    if len(objects) == 0:
        return res
    # an object with no id left is scored against an empty mask
    empty_j = np.array([[1.0 if not np.any(gt[t] == k) else 0.0 for k in objects] for t in range(T)])
    empty_f = empty_j  # empty vs empty -> F = 1, empty vs present -> F = 0, the same table as J
    score = (J.mean(axis=0) + F.mean(axis=0)) / 2 if len(ids) else np.zeros((0, len(objects)))
    rows, cols = linear_sum_assignment(-score) if len(ids) else (np.array([], int), np.array([], int))
    assigned = dict(zip(cols.tolist(), rows.tolist()))
    for k, obj in enumerate(objects):
        present = np.array([np.any(gt[t] == obj) for t in range(T)])
        n_ids, switches, covered = id_coverage(present, ids, J[:, :, k], inter[:, :, k], cover_iou)
        if k in assigned:
            n = assigned[k]
            j, f, pid = J[:, n, k].mean(), F[:, n, k].mean(), int(ids[n])
        else:
            j, f, pid = empty_j[:, k].mean(), empty_f[:, k].mean(), 0
        res.objects.append(ObjectResult(int(obj), pid, float(j), float(f), n_ids, switches, covered))
    return res


def evaluate_dir(
    pred_dir: str | Path, gt_root: str | Path, sequences: list[str] | None = None, resolution: str = "480p"
) -> list[SequenceResult]:
    """Evaluate ``<pred_dir>/<seq>/*.png`` against ``<gt_root>`` for the given (default: all annotated) sequences."""
    out = []
    for seq in sequences or sequence_names(gt_root, resolution):
        stems, gt = load_gt(gt_root, seq, resolution)
        out.append(evaluate_sequence(seq, load_pred(pred_dir, seq, stems), gt))
    return out


def summary(results: list[SequenceResult]) -> dict[str, float]:
    """Means over sequences (with one object per sequence, as in DAVIS-2016, this equals the mean over objects)."""
    if not results:
        return {}
    keys = ("J", "F", "JF", "ids", "switches")
    return {k: float(np.mean([getattr(r, k) for r in results])) for k in keys}
