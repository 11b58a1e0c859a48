"""Leave and return: does an object keep its id when it comes back after being out of sight? (issue 24)

    python -m mastsam_ros.evaluation.leave_return --davis ../shared/data/davis2016 --out /tmp/leave_return

Each DAVIS-2016 sequence (one object) is edited three ways, from its real frames, with matching ground truth:

- ``look_away``: after the first ``k`` frames, ``K`` frames of other sequences are inserted (the camera looked
  elsewhere: the next sequences in name order, each from its first frame, as many as ``K`` needs), then the sequence
  goes on. Ground truth of the inserted frames: the object absent. The segmenter (``oracle`` / ``sam_sim``) answers
  them from the inserted sequences' own ground truth, each inserted sequence's object a distinct object there, so a
  tracker can give the returning object's id to one of them (a false re-identification).
- ``occluder``: an opaque patch (a picture of another sequence's first frame, or flat grey) enters from the side
  nearer the object during ``transit`` frames from frame ``k``, covers the object (the patch is the object's largest
  box over the covered frames plus ``margin`` pixels a side, centred on the object's box each frame) and leaves on
  the other side in ``transit`` frames. Ground truth: the object where it is not covered. The segmenter sees the
  patch as another object.
- ``pan``: the frames are seen through a window ``pan_window`` x the frame size (no resampling: every edited frame
  has the window's size, ground truth cropped alike) that follows the object (its box centre, smoothed over
  ``smooth`` frames, kept inside the frame), pans away during ``transit`` frames from frame ``k`` to the window
  position nearest the object's that holds none of it while it is out of view, stays there, pans back in ``transit``
  frames and follows the object again.

``k`` is a third of the clip (the object is well established). For occluder and pan the time the patch or window
holds still is chosen so that the object is absent from the ground truth for exactly ``K`` consecutive frames (the
gap) and present in every other frame of the clip; a clip where that cannot be done, or that leaves fewer than
``window`` frames after the gap, is reported as impossible with the reason. ``K`` in {10, 30, 90}.

Scores of one return (:func:`score_return`, from the label maps and the edited ground truth only, so they apply to
any tracker: ``FrameResult.labels`` is all they read). ``votes(frames)`` sums, over the given frames, the pixels of
the ground-truth object under each label value (0 = no track):

- ``before_id``: the label with most votes over the last ``window`` (5) frames before the gap in which the object is
  visible; 0 when that is background (the tracker held no id on the object: the return is not scored);
- ``after_id``: the same over the first ``window`` frames after the gap in which the object is visible;
- **re-identified**: ``before_id != 0 and after_id == before_id``. **Re-ID recall** = re-identified returns / scored
  returns (``before_id != 0``);
- **false re-ID**, any of: (a) *during the gap*, ``before_id`` labels at least ``min_false`` (0.001) x the frame's
  pixels in some gap frame after the first ``grace`` (2) (the object is not there, so its id is on something else:
  an inserted frame's region, the patch, the scene the window shows; the first ``grace`` gap frames are left out,
  where a tracker that warps a lost mask along the flow for a frame or two still paints it); (b) *after the
  return*, over the ``window`` frames of ``after_id``, ``before_id`` covers more pixels off the object than on it,
  and at least ``min_false`` x a frame's pixels off it (the old id went to another object); (c) ``after_id`` is
  neither 0 nor ``before_id`` but labelled at least ``min_false`` x a frame's pixels in some gap frame (the object
  took an id that was on something else while it was away). **False re-ID rate** = returns with any of (a)-(c) /
  scored returns.
- **J&F** of the whole edited clip against the edited ground truth: DAVIS-2017 unsupervised protocol
  (``davis.evaluate_sequence``: one id assigned to the object for the whole clip, so a new id after the return costs
  the frames after it; a gap frame scores 1 where that id is absent too, so long gaps lift it). **J&F visible**: the
  same protocol on the frames that show the object only.

Also recorded per return (not scores): whether ``before_id`` was in ``FrameResult.retired_ids`` (left the live set:
unseen for ``tracker.max_age`` frames, or a scene cut) and whether a ``reidentified`` event in ``FrameResult.events``
named it, between the start of the gap and the end of the after-window, and the number of gap frames in which it
still labelled at least ``min_false`` of the frame. The baseline without permanence is the default config with
``--set tracker.dormant_max=0 --set tracker.cut_distance=0`` (retire and forget, no scene-cut handling).

Rows: one tracker configuration (``--label``, ``--config``, ``--set``) with each segmenter of ``--segmenters``
(default ``oracle``, ``sam_sim@0``, ``sam_sim@0.5``; evaluation only, they answer from the edited clip's ground
truth). Writes ``OUT/leave_return.md`` (table), ``OUT/leave_return.json`` (every clip's record) and
``OUT/leave_return.png`` (re-ID recall against frames away, one panel per edit). Subsets: ``--sequences``,
``--edits``, ``--k``, ``--segmenters``; ``--sim-seed`` draws other sam_sim noise on the same clips (more returns to
count; give each seed its own ``--label`` or ``--out``); clips run in ``--jobs`` single-threaded processes. Each
finished clip leaves ``<work>/records/<clip>.json`` (``--work``, default ``OUT/work``); a rerun with the same label,
config, overrides and seed skips recorded clips, and the table covers every record under ``--work``, so runs with
other labels (the tracker with re-identification, say) add rows beside this one.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from . import davis

EDITS = ("look_away", "occluder", "pan")
KS = (10, 30, 90)
SEGMENTERS = ("oracle", "sam_sim@0", "sam_sim@0.5")
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "tracker.yaml"
DEFAULT_DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis2016"

OBJECT = 1  # DAVIS-2016: the one object of a sequence
VOID = davis.VOID
OCCLUDER_LABEL = 2  # the patch, in the segmenter's ground truth
GREY = (128, 128, 128)


class EditImpossible(ValueError):
    """The edit cannot be made on this clip (the message says why); the clip is reported, not scored."""


@dataclass
class EditedClip:
    """An edited sequence. ``frames``: T x (H x W x 3 uint8 RGB); ``gt``: T x H x W uint8, the sequence's object (1)
    where it is visible, 0 elsewhere, 255 void (what J&F and the scores use); ``seg_gt``: T x H x W uint8, what the
    evaluation segmenters answer from: ``gt`` plus the inserted frames' objects or the patch (labels 2, 3, ...).
    ``gap``: [start, stop) frames in which the object is absent (stop - start = K); ``span``: [start, stop) frames
    the edit touched (inserted, patched or panned away from the object)."""

    sequence: str
    edit: str
    K: int
    k: int  # frames of the sequence before the edit starts
    frames: list[np.ndarray]
    gt: np.ndarray
    seg_gt: np.ndarray
    gap: tuple[int, int]
    span: tuple[int, int]
    info: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.sequence}-{self.edit}-K{self.K}"


def edit_start(T: int) -> int:
    """``k``: frames of the sequence kept before the edit, a third of the clip."""
    return max(1, round(T / 3))


def _present(gt: np.ndarray) -> np.ndarray:
    """(T,) bool: frames where any object pixel (not background, not void) is present."""
    g = np.asarray(gt)
    return ((g != 0) & (g != VOID)).reshape(len(g), -1).any(axis=1)


def _check_single_object(gt: np.ndarray, seq: str) -> None:
    gt = np.asarray(gt)
    vals = np.flatnonzero(np.bincount(gt.ravel(), minlength=256)) if gt.dtype == np.uint8 else np.unique(gt)
    extra = [int(v) for v in vals if v not in (0, OBJECT, VOID)]
    if extra:
        raise ValueError(f"{seq}: leave-and-return scores one object (DAVIS-2016); ground truth also has {extra}")


def _after_room(T: int, stop: int, window: int, K: int, seq: str, edit: str) -> None:
    if T - stop < window:
        raise EditImpossible(f"{seq} {edit} K={K}: {T - stop} frames after the gap, {window} needed to score it")


def _fit(image: np.ndarray, shape: tuple[int, int], nearest: bool) -> np.ndarray:
    if image.shape[:2] == shape:
        return image
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


# ----------------------------------------------------------------------------------------------------------------
# the three edits


def look_away(
    seq: str, frames: list[np.ndarray], gt: np.ndarray, K: int, others, k: int | None = None, window: int = 5
) -> EditedClip:
    """Insert ``K`` frames of ``others`` after the first ``k`` frames (see the module docstring).

    ``others``: iterable of (name, frames, gt) of other sequences, used in order from their first frame; a frame of
    another size is resized to the clip's (ground truth by nearest neighbour)."""
    T = len(frames)
    k = edit_start(T) if k is None else k
    _after_room(T, k, window, K, seq, "look_away")
    shape = gt.shape[1:]
    ins_f: list[np.ndarray] = []
    ins_g: list[np.ndarray] = []
    used = []
    for i, (name, f2, g2) in enumerate(others):
        if len(ins_f) >= K:
            break
        take = min(K - len(ins_f), len(f2))
        label = min(OCCLUDER_LABEL + i, VOID - 1)  # each inserted sequence's object a distinct object
        for j in range(take):
            ins_f.append(_fit(np.asarray(f2[j]), shape, nearest=False))
            g = _fit(np.asarray(g2[j]), shape, nearest=True)
            ins_g.append(np.where((g != 0) & (g != VOID), label, g).astype(np.uint8))
        used.append(f"{name}[0:{take}]")
    if len(ins_f) < K:
        raise EditImpossible(f"{seq} look_away K={K}: only {len(ins_f)} frames of other sequences to insert")
    out_frames = list(frames[:k]) + ins_f + list(frames[k:])
    blank = np.zeros((K,) + shape, np.uint8)
    out_gt = np.concatenate([gt[:k], blank, gt[k:]])
    seg_gt = np.concatenate([gt[:k], np.stack(ins_g), gt[k:]])
    return EditedClip(seq, "look_away", K, k, out_frames, out_gt, seg_gt, (k, k + K), (k, k + K),
                      {"inserted": used})


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), end exclusive, of a bool mask; None when empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    if len(ys) == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def _single_gap(present: np.ndarray, span: tuple[int, int]) -> tuple[int, int] | None:
    """The frames of ``span`` where the object is absent, when they are one run; else None."""
    absent = np.flatnonzero(~present[span[0]:span[1]]) + span[0]
    if len(absent) == 0 or absent[-1] - absent[0] + 1 != len(absent):
        return None
    return int(absent[0]), int(absent[-1]) + 1


def _hold_search(build, K: int, seq: str, edit: str):
    """The edit with the longest hold (<= K frames) whose ground truth has the object absent for exactly ``K``
    frames, in one run, and present in every other frame of the clip. ``build(hold)`` -> (clip, span) or raises
    EditImpossible."""
    seen = []
    for hold in range(K, 0, -1):
        clip, span = build(hold)
        gap = _single_gap(_present(clip.gt), (0, len(clip.gt)))
        seen.append(0 if gap is None else gap[1] - gap[0])
        if gap is not None and gap[1] - gap[0] == K:
            clip.gap, clip.span = gap, span
            clip.info["hold"] = hold
            return clip
    raise EditImpossible(f"{seq} {edit} K={K}: no hold gives exactly {K} frames away (got {sorted(set(seen))})")


def occluder(
    seq: str, frames: list[np.ndarray], gt: np.ndarray, K: int, texture: np.ndarray | None = None,
    k: int | None = None, transit: int = 5, margin: int = 8, max_cover: float = 0.5, window: int = 5,
) -> EditedClip:
    """A patch crosses the object and covers it for ``K`` frames (see the module docstring).

    ``texture``: an RGB image resized to the patch (None: flat grey). ``max_cover``: the largest patch, as a fraction
    of the frame, before the edit is refused (an object that fills the frame cannot be covered by a patch)."""
    T = len(frames)
    H, W = gt.shape[1:]
    k = edit_start(T) if k is None else k
    obj = (gt != 0) & (gt != VOID)
    if k + 2 * transit + K + window > T:
        raise EditImpossible(f"{seq} occluder K={K}: needs {k} + 2 x {transit} + {K} + {window} frames, clip has {T}")
    # the patch: the object's largest box over the frames it may cover, plus the margin
    boxes = [_box(obj[t]) for t in range(T)]
    cover = [b for b in boxes[k + transit : k + transit + K] if b is not None]
    ph = max(b[1] - b[0] for b in cover) + 2 * margin
    pw = max(b[3] - b[2] for b in cover) + 2 * margin
    if ph * pw > max_cover * H * W:
        raise EditImpossible(
            f"{seq} occluder K={K}: the object needs a {pw}x{ph} patch, over {max_cover:g} of the {W}x{H} frame")
    if texture is None:
        patch = np.empty((ph, pw, 3), np.uint8)
        patch[:] = GREY
    else:
        patch = cv2.resize(np.asarray(texture), (pw, ph), interpolation=cv2.INTER_AREA)
    centres = [((b[0] + b[1]) / 2, (b[2] + b[3]) / 2) if b is not None else None for b in boxes]

    def centre(t: int) -> tuple[float, float]:
        c = centres[t]
        return c if c is not None else (H / 2, W / 2)

    def build(hold: int):
        first, last = k + transit, k + transit + hold - 1  # frames covered, patch centred on the object
        cy0, cx0 = centre(first)
        from_left = cx0 < W / 2
        off_l, off_r = -pw / 2 - 1, W + pw / 2 + 1
        start_x, end_x = (off_l, off_r) if from_left else (off_r, off_l)
        pos: dict[int, tuple[float, float]] = {}
        for i in range(transit):  # entering
            a = (i + 1) / (transit + 1)
            pos[k + i] = (cy0, start_x + a * (cx0 - start_x))
        for t in range(first, last + 1):
            pos[t] = centre(t)
        cy1, cx1 = centre(last)
        for i in range(transit):  # leaving on the other side
            a = (i + 1) / (transit + 1)
            pos[last + 1 + i] = (cy1, cx1 + a * (end_x - cx1))
        stop = last + 1 + transit
        if T - stop < window:
            raise EditImpossible(f"{seq} occluder K={K}: {T - stop} frames after the edit, {window} needed")
        out_f = list(frames)
        out_gt = gt.copy()
        seg_gt = gt.copy()
        patches = {}
        for t, (cy, cx) in pos.items():
            y0, x0 = int(round(cy - ph / 2)), int(round(cx - pw / 2))
            ya, yb, xa, xb = max(y0, 0), min(y0 + ph, H), max(x0, 0), min(x0 + pw, W)
            if ya >= yb or xa >= xb:
                continue
            f = out_f[t].copy()
            f[ya:yb, xa:xb] = patch[ya - y0 : yb - y0, xa - x0 : xb - x0]
            out_f[t] = f
            out_gt[t, ya:yb, xa:xb] = 0
            seg_gt[t, ya:yb, xa:xb] = OCCLUDER_LABEL
            patches[t] = (xa, ya, xb - xa, yb - ya)
        clip = EditedClip(seq, "occluder", K, k, out_f, out_gt, seg_gt, (0, 0), (k, stop),
                          {"patch": [pw, ph], "texture": texture is not None, "boxes": patches})
        return clip, (k, stop)

    return _hold_search(build, K, seq, "occluder")


def _window_free(obj_union: np.ndarray, wh: int, ww: int) -> np.ndarray:
    """(H - wh + 1) x (W - ww + 1) bool: window top-left corners whose wh x ww window holds no pixel of the union."""
    ii = np.pad(obj_union.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    H, W = obj_union.shape
    s = ii[wh:, ww:] - ii[: H - wh + 1, ww:] - ii[wh:, : W - ww + 1] + ii[: H - wh + 1, : W - ww + 1]
    return s == 0


def pan(
    seq: str, frames: list[np.ndarray], gt: np.ndarray, K: int, k: int | None = None, pan_window: float = 0.4,
    transit: int = 5, smooth: int = 9, window: int = 5,
) -> EditedClip:
    """The view pans away from the object for ``K`` frames and back (see the module docstring)."""
    T = len(frames)
    H, W = gt.shape[1:]
    k = edit_start(T) if k is None else k
    wh, ww = int(round(pan_window * H)), int(round(pan_window * W))
    if k + 2 * transit + K + window > T:
        raise EditImpossible(f"{seq} pan K={K}: needs {k} + 2 x {transit} + {K} + {window} frames, clip has {T}")
    obj = (gt != 0) & (gt != VOID)
    # the window that follows the object: top-left corner from the smoothed box centre, kept inside the frame
    cy, cx, last = np.zeros(T), np.zeros(T), (H / 2, W / 2)
    for t in range(T):
        b = _box(obj[t])
        last = last if b is None else ((b[0] + b[1]) / 2, (b[2] + b[3]) / 2)
        cy[t], cx[t] = last
    kernel = np.ones(smooth) / smooth
    cy = np.convolve(np.pad(cy, smooth // 2, mode="edge"), kernel, mode="valid")
    cx = np.convolve(np.pad(cx, smooth // 2, mode="edge"), kernel, mode="valid")
    follow = np.stack([np.clip(cy - wh / 2, 0, H - wh), np.clip(cx - ww / 2, 0, W - ww)], axis=1)
    # where to look away: no object pixel in the window over every frame the hold may take
    free = _window_free(obj[k + transit : k + transit + K].any(axis=0), wh, ww)
    if not free.any():
        raise EditImpossible(f"{seq} pan K={K}: no {ww}x{wh} window keeps the object out of view for {K} frames")
    ys, xs = np.nonzero(free)
    d = (ys - follow[k, 0]) ** 2 + (xs - follow[k, 1]) ** 2
    away = np.array([ys[np.argmin(d)], xs[np.argmin(d)]], np.float64)

    def build(hold: int):
        pos = follow.copy()
        for i in range(transit):
            a = (i + 1) / (transit + 1)
            pos[k + i] = (1 - a) * follow[k + i] + a * away
        pos[k + transit : k + transit + hold] = away
        back = k + transit + hold
        for i in range(transit):
            a = (i + 1) / (transit + 1)
            pos[back + i] = (1 - a) * away + a * follow[back + i]
        stop = back + transit
        if T - stop < window:
            raise EditImpossible(f"{seq} pan K={K}: {T - stop} frames after the edit, {window} needed")
        corners = np.rint(pos).astype(int)
        out_f = [np.ascontiguousarray(f[y : y + wh, x : x + ww]) for f, (y, x) in zip(frames, corners)]
        out_gt = np.stack([g[y : y + wh, x : x + ww] for g, (y, x) in zip(gt, corners)])
        clip = EditedClip(seq, "pan", K, k, out_f, out_gt, out_gt.copy(), (0, 0), (k, stop),
                          {"window": [ww, wh], "corners": corners.tolist()})
        return clip, (k, stop)

    return _hold_search(build, K, seq, "pan")


def make_edit(edit: str, seq: str, frames, gt, K: int, others=(), texture=None, **kw) -> EditedClip:
    """One edit by name; ``others`` (look away) and ``texture`` (occluder) as the edits take them."""
    _check_single_object(gt, seq)
    if edit == "look_away":
        return look_away(seq, frames, gt, K, others, **kw)
    if edit == "occluder":
        return occluder(seq, frames, gt, K, texture, **kw)
    if edit == "pan":
        return pan(seq, frames, gt, K, **kw)
    raise ValueError(f"unknown edit '{edit}'; choose one of: {', '.join(EDITS)}")


# ----------------------------------------------------------------------------------------------------------------
# scores


@dataclass
class ReturnScore:
    before_id: int  # dominant id on the object before the gap (0: none)
    after_id: int  # dominant id on the object after it
    scored: bool  # before_id != 0
    reid: bool
    false_reid: bool
    false_during: bool  # (a): before_id on something else in the gap
    false_after: bool  # (b): before_id mostly off the object after the return
    false_taken: bool  # (c): after_id was on something else in the gap
    gap_frames_with_id: int  # gap frames where before_id labels at least min_false of the frame
    after_share: float  # share of the object's pixels in the after-window that before_id labels


def _votes(labels: np.ndarray, gt: np.ndarray, frames: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for t in frames:
        ids, counts = np.unique(labels[t][gt[t] == OBJECT], return_counts=True)
        for i, c in zip(ids.tolist(), counts.tolist()):
            out[i] = out.get(i, 0) + c
    return out


def _dominant(votes: dict[int, int]) -> int:
    return max(votes, key=lambda i: (votes[i], -i)) if votes else 0


def score_return(
    labels: np.ndarray, gt: np.ndarray, gap: tuple[int, int], window: int = 5, grace: int = 2,
    min_false: float = 0.001,
) -> ReturnScore:
    """Re-identification and false re-identification of one return (definitions: the module docstring).

    ``labels``: T x H x W integer id maps (0 = background); ``gt``: T x H x W, the object = 1; ``gap``: [start, stop)
    frames where the object is absent."""
    labels, gt = np.asarray(labels), np.asarray(gt)
    if labels.shape != gt.shape:
        raise ValueError(f"labels {labels.shape} and ground truth {gt.shape} differ")
    a, b = gap
    visible = (gt == OBJECT).reshape(len(gt), -1).any(axis=1)
    if visible[a:b].any():
        raise ValueError(f"the object is visible inside the gap {gap}")
    before = [t for t in range(a - 1, -1, -1) if visible[t]][:window]
    after = [t for t in range(b, len(gt)) if visible[t]][:window]
    before_id = _dominant(_votes(labels, gt, before))
    after_id = _dominant(_votes(labels, gt, after))
    min_px = min_false * gt.shape[1] * gt.shape[2]
    scored = before_id != 0
    in_gap = [int(np.count_nonzero(labels[t] == before_id)) if scored else 0 for t in range(a, b)]
    during = scored and any(n >= min_px for n in in_gap[grace:])
    off = on = 0
    obj_px = sum(int(np.count_nonzero(gt[t] == OBJECT)) for t in after)
    if scored:
        for t in after:
            mine = labels[t] == before_id
            on += int(np.count_nonzero(mine & (gt[t] == OBJECT)))
            off += int(np.count_nonzero(mine & (gt[t] != OBJECT)))
    after_off = scored and off > on and off >= min_px
    taken = scored and after_id not in (0, before_id) and any(
        np.count_nonzero(labels[t] == after_id) >= min_px for t in range(a, b))
    return ReturnScore(
        before_id=before_id, after_id=after_id, scored=scored, reid=scored and after_id == before_id,
        false_reid=bool(during or after_off or taken), false_during=bool(during), false_after=bool(after_off),
        false_taken=bool(taken), gap_frames_with_id=sum(1 for n in in_gap if n >= min_px),
        after_share=on / obj_px if obj_px else 0.0,
    )


# ----------------------------------------------------------------------------------------------------------------
# running


@lru_cache(maxsize=None)
def _sequence(davis_root: str, seq: str) -> tuple[list[np.ndarray], np.ndarray]:
    frames = davis.load_frames(davis_root, seq)
    _, gt = davis.load_gt(davis_root, seq, limit=len(frames))
    if len(gt) != len(frames):
        raise ValueError(f"{seq}: {len(frames)} frames but {len(gt)} annotations")
    return frames, gt


def build_clip(davis_root: str, seq: str, edit: str, K: int, sequences: list[str], texture: str = "texture",
               **kw) -> EditedClip:
    """The edited clip of ``seq``: look-away frames and the occluder's picture come from the sequences after
    ``seq`` in ``sequences`` (name order, wrapping round)."""
    frames, gt = _sequence(davis_root, seq)
    i = sequences.index(seq)
    order = sequences[i + 1:] + sequences[:i]
    if edit == "look_away":
        others = ((s, *_sequence(davis_root, s)) for s in order)
        return make_edit(edit, seq, frames, gt, K, others=others, **kw)
    if edit == "occluder":
        tex = _sequence(davis_root, order[0])[0][0] if texture == "texture" and order else None
        return make_edit(edit, seq, frames, gt, K, texture=tex, **kw)
    return make_edit(edit, seq, frames, gt, K, **kw)


def load_config(path: str | Path | None, overrides: dict | None):
    """The tracker's config: ``path`` (default config/tracker.yaml, built-in defaults where it is absent)."""
    from ..core.config import Config

    path = Path(path) if path else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    return Config.from_yaml(path, overrides) if path else Config().update(overrides or {})


def run_clip(clip: EditedClip, segmenter: str, cfg, seed: int = 0) -> tuple[np.ndarray, list[dict], float, float]:
    """Run the tracker over the clip with an evaluation segmenter answering from ``clip.seg_gt`` (``seed``: sam_sim's
    draws).

    Returns (T x H x W uint32 label maps, per frame {"left": ``retired_ids`` (ids that left the live set),
    "events": [(kind, id)] of ``FrameResult.events`` where the tracker has them}, wall and CPU seconds of the
    per-frame loop)."""
    from .baselines import build_method
    from .runner import GT_SEGMENTERS, build_segmenter_for, parse_segmenter

    if parse_segmenter(segmenter)[0] not in GT_SEGMENTERS:
        raise ValueError(f"leave-and-return runs with {' or '.join(GT_SEGMENTERS)}, not '{segmenter}'")
    seg = build_segmenter_for(segmenter, cfg, clip.seg_gt, clip.frames, seed)
    tracker = build_method("tracker", cfg, seg).tracker
    labels = np.zeros(clip.gt.shape, np.uint32)
    log = []
    t0, c0 = time.perf_counter(), time.process_time()
    for t, rgb in enumerate(clip.frames):
        r = tracker.step(rgb)
        labels[t] = r.labels
        log.append({"left": [int(i) for i in r.retired_ids],
                    "events": [(e.kind, int(e.id)) for e in getattr(r, "events", ())]})
    return labels, log, time.perf_counter() - t0, time.process_time() - c0


def evaluate_clip(clip: EditedClip, labels: np.ndarray, log: list[dict], window: int = 5) -> dict:
    """The scores of the clip's return (:func:`score_return`), J&F, and from the tracker's per-frame ``log``
    (:func:`run_clip`) whether ``before_id`` left the live set and whether a ``reidentified`` event named it, between
    the start of the gap and the end of the after-window."""
    s = score_return(labels, clip.gt, clip.gap, window=window)
    res = davis.evaluate_sequence(clip.name, labels, clip.gt)
    seen = _present(clip.gt)  # the same protocol on the frames that show the object only
    res_seen = davis.evaluate_sequence(clip.name, labels[seen], clip.gt[seen])
    after = [t for t in range(clip.gap[1], len(clip.gt)) if (clip.gt[t] == OBJECT).any()][:window]
    end = after[-1] + 1 if after else len(clip.gt)
    span = range(clip.gap[0], end)
    left = s.scored and any(s.before_id in log[t]["left"] for t in span)
    reid_event = s.scored and any(("reidentified", s.before_id) in log[t]["events"] for t in span)
    return {**asdict(s), "left": bool(left), "reid_event": bool(reid_event), "JF": res.JF, "J": res.J, "F": res.F,
            "JF_visible": res_seen.JF, "pred_ids": res.pred_ids}


def _job(args: tuple) -> dict:
    davis_root, seq, edit, K, segmenter, label, config, overrides, sequences, work, edit_kw, seed = args
    rec = {"label": label, "segmenter": segmenter, "sequence": seq, "edit": edit, "K": K, "config": config,
           "overrides": overrides, "edit_options": edit_kw, "sim_seed": seed}
    try:
        clip = build_clip(davis_root, seq, edit, K, sequences, **edit_kw)
        rec.update(frames=len(clip.frames), size=list(clip.gt.shape[1:]), k=clip.k, gap=list(clip.gap),
                   span=list(clip.span), hold=clip.info.get("hold"), inserted=clip.info.get("inserted"))
        cfg = load_config(config, overrides)
        labels, log, seconds, cpu = run_clip(clip, segmenter, cfg, seed)
        rec.update(seconds=seconds, cpu_seconds=cpu, result=evaluate_clip(clip, labels, log))
    except EditImpossible as e:
        rec.update(impossible=str(e))
    except Exception as e:  # one failing clip must not lose the others
        rec.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    path = _record_path(work, label, segmenter, seq, edit, K)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1))
    return rec


def _record_path(work, label, segmenter, seq, edit, K) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in label)
    return Path(work) / "records" / f"{safe}-{segmenter}-{seq}-{edit}-K{K}.json"


def run_all(jobs: list[tuple], work: Path, n_proc: int) -> list[dict]:
    """Run the jobs not already recorded under ``work/records`` with the same label, config and overrides."""
    import multiprocessing as mp

    from .results import _limit_threads

    done, todo = [], []
    for j in jobs:
        p = _record_path(work, j[5], j[4], j[1], j[2], j[3])
        if p.is_file():
            rec = json.loads(p.read_text())
            same = (rec.get("config"), rec.get("overrides"), rec.get("edit_options"), rec.get("sim_seed", 0)) == (
                j[6], j[7], j[10], j[11])
            if same and "error" not in rec:
                done.append(rec)
                continue
        todo.append(j)
    if done:
        print(f"resuming: {len(done)} clips already recorded under {work}/records", file=sys.stderr, flush=True)
    total = len(jobs)
    # segmenter by segmenter as given (an interrupted run leaves whole rows), longest clips first within each
    order = {s: i for i, s in reversed(list(enumerate(j[4] for j in jobs)))}
    todo.sort(key=lambda j: (order[j[4]], -(j[3] if j[2] == "look_away" else 0)))
    out = list(done)
    if n_proc <= 1:
        for j in todo:
            out.append(_job(j))
            _progress(out[-1], len(out), total)
        return out
    with mp.get_context("spawn").Pool(n_proc, initializer=_limit_threads) as pool:
        for rec in pool.imap_unordered(_job, todo):
            out.append(rec)
            _progress(rec, len(out), total)
    return out


def _progress(rec: dict, n: int, total: int) -> None:
    tag = f"[{n}/{total}] {rec['label']} {rec['segmenter']} {rec['sequence']} {rec['edit']} K={rec['K']}"
    if "error" in rec:
        msg = f"ERROR {rec['error']}"
    elif "impossible" in rec:
        msg = f"impossible: {rec['impossible']}"
    else:
        r = rec["result"]
        msg = (f"ids {r['before_id']} -> {r['after_id']} reid {int(r['reid'])} false {int(r['false_reid'])} "
               f"J&F {r['JF']:.3f} ({rec['seconds']:.0f} s, {rec['frames']} frames)")
    print(f"{tag}: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# table and plot


def _mean(xs) -> float:
    xs = [x for x in xs if x == x]
    return float(np.mean(xs)) if xs else float("nan")


def summarise(records: list[dict]) -> list[dict]:
    """One row per (label, segmenter, edit, K): clips, scored returns, recall, false re-ID rate, mean J&F."""
    keys = sorted({(r["label"], r["segmenter"], r["edit"], r["K"]) for r in records},
                  key=lambda x: (x[0], SEGMENTERS.index(x[1]) if x[1] in SEGMENTERS else 99, x[1],
                                 EDITS.index(x[2]), x[3]))
    rows = []
    for key in keys:
        recs = [r for r in records if (r["label"], r["segmenter"], r["edit"], r["K"]) == key]
        ok = [r for r in recs if "result" in r]
        scored = [r for r in ok if r["result"]["scored"]]
        rows.append({
            "label": key[0], "segmenter": key[1], "edit": key[2], "K": key[3],
            "clips": len(ok), "impossible": sum(1 for r in recs if "impossible" in r),
            "errors": sum(1 for r in recs if "error" in r), "scored": len(scored),
            "recall": _mean([float(r["result"]["reid"]) for r in scored]),
            "false_reid": _mean([float(r["result"]["false_reid"]) for r in scored]),
            "false_during": _mean([float(r["result"]["false_during"]) for r in scored]),
            "false_after": _mean([float(r["result"]["false_after"] or r["result"]["false_taken"]) for r in scored]),
            "left": _mean([float(r["result"]["left"]) for r in scored]),
            "reid_event": _mean([float(r["result"]["reid_event"]) for r in scored]),
            "JF": _mean([r["result"]["JF"] for r in ok]),
            "JF_visible": _mean([r["result"]["JF_visible"] for r in ok]),
            "seconds": float(sum(r.get("seconds", 0.0) for r in ok)),
            "cpu_seconds": float(sum(r.get("cpu_seconds", 0.0) for r in ok)),
            "frames": int(sum(r.get("frames", 0) for r in ok)),
        })
    return rows


def _f(x: float, fmt: str = ".2f") -> str:
    return "-" if x != x else format(x, fmt)


def render(records: list[dict], rows: list[dict], command: str, wall: float, revision: str, plot: str) -> str:
    lines = [
        "# Leave and return (issue 24): same id when the object comes back",
        "",
        "Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        f"- code: {revision}; machine: {os.cpu_count()} CPU cores, load average at the end "
        f"{os.getloadavg()[0]:.1f}; wall time of this invocation {wall / 60:.1f} min; the per-clip tracker loops "
        f"(all records below) took {sum(r['seconds'] for r in rows) / 60:.1f} min wall, "
        f"{sum(r['cpu_seconds'] for r in rows) / 60:.1f} min CPU over {sum(r['frames'] for r in rows)} frames",
        "- definitions: `mastsam_ros/evaluation/leave_return.py` (module docstring). recall: share of scored returns "
        "whose dominant id on the object in the first 5 visible frames after the gap is the one before it; "
        "false: share with the object's id on something else (in gap: in a gap frame from the 3rd on; after: "
        "mostly off the object after the return, or the object taking an id seen in the gap); left: share whose id "
        "was in `retired_ids` (left the live set) by the end of the after-window; re-ID event: share with a "
        "`reidentified` event for it (trackers with `FrameResult.events`); J&F: DAVIS unsupervised protocol over "
        "the whole edited clip (a gap frame scores 1 where the object's assigned id is absent too); J&F visible: "
        "the same on the frames that show the object only; scored / clips: returns where the object held an id "
        "before leaving / clips run.",
        f"- plot: `{plot}`",
        "",
        "| tracker | segmenter | edit | K | scored / clips | re-ID recall | false re-ID | (in gap / after) | left "
        "| re-ID event | J&F | J&F visible |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['segmenter']} | {r['edit']} | {r['K']} | {r['scored']} / {r['clips']} | "
            f"{_f(r['recall'])} | {_f(r['false_reid'])} | {_f(r['false_during'])} / {_f(r['false_after'])} | "
            f"{_f(r['left'])} | {_f(r['reid_event'])} | {_f(r['JF'], '.3f')} | {_f(r['JF_visible'], '.3f')} |")
    lines += ["", "## Per clip", "",
              "share: of the object's pixels in the 5 frames after the gap, those with the id before it.", "",
              "| tracker | segmenter | sequence | edit | K | frames | id before -> after | share | re-ID | false "
              "| J&F |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in records if "result" in r),
                    key=lambda r: (r["label"], r["segmenter"], r["edit"], r["K"], r["sequence"])):
        x = r["result"]
        false = ",".join(n for n, f in (("gap", x["false_during"]), ("after", x["false_after"]),
                                        ("taken", x["false_taken"])) if f) or "no"
        lines.append(f"| {r['label']} | {r['segmenter']} | {r['sequence']} | {r['edit']} | {r['K']} | {r['frames']} | "
                     f"{x['before_id']} -> {x['after_id']} | {x['after_share']:.2f} | {'yes' if x['reid'] else 'no'} | "
                     f"{false} | "
                     f"{x['JF']:.3f} |")
    impossible = sorted({(r["sequence"], r["edit"], r["K"], r["impossible"]) for r in records if "impossible" in r})
    if impossible:
        lines += ["", "## Edits not possible", ""]
        lines += [f"- {why}" for *_, why in impossible]
    errors = [r for r in records if "error" in r]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- {r['label']} {r['segmenter']} {r['sequence']} {r['edit']} K={r['K']}: `{r['error']}`"
                  for r in errors]
    return "\n".join(lines) + "\n"


def plot_recall(rows: list[dict], path: Path) -> bool:
    """Re-ID recall against frames away, one panel per edit, one line per (tracker, segmenter)."""
    rows = [r for r in rows if r["scored"]]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edits = [e for e in EDITS if any(r["edit"] == e for r in rows)]
    # one colour and one offset per series in every panel (a series missing from a panel leaves its colour unused),
    # and one legend naming them all
    series = sorted({(r["label"], r["segmenter"]) for r in rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(edits), figsize=(4.2 * len(edits), 3.6), dpi=120, squeeze=False)
    for ax, edit in zip(axes[0], edits):
        for i, (label, seg) in enumerate(series):
            pts = sorted((r["K"], r["recall"], r["scored"]) for r in rows
                         if (r["label"], r["segmenter"], r["edit"]) == (label, seg, edit))
            if not pts:
                continue
            dodge = 1 + 0.05 * (i - (len(series) - 1) / 2)  # side by side, so equal values stay visible
            ax.plot([p[0] * dodge for p in pts], [p[1] for p in pts], marker="o", color=colours[i % len(colours)],
                    label=f"{label}, {seg}")
            for k, y, n in pts:
                ax.annotate(str(n), (k * dodge, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
        ax.set_title(f"{edit.replace('_', ' ')} (numbers: returns scored)", fontsize=9)
        ax.set_xlabel("frames away (K)")
        ax.set_xscale("log")
        ax.set_xlim(7, 130)
        ax.set_xticks(KS, [str(k) for k in KS])
        ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("re-ID recall")
    handles = {}
    for ax in axes[0]:
        for h, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, h)
    names = [n for n in (f"{la}, {sg}" for la, sg in series) if n in handles]
    axes[0][-1].legend([handles[n] for n in names], names, fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mastsam_ros.evaluation.leave_return",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--davis", type=Path, default=DEFAULT_DAVIS, help=f"DAVIS-2016 root (default {DEFAULT_DAVIS})")
    ap.add_argument("--out", type=Path, required=True, help="writes leave_return.md, .json and .png here")
    ap.add_argument("--work", type=Path, help="per-clip records (default OUT/work); a rerun resumes from them")
    ap.add_argument("--sequences", nargs="+", help="default: every annotated sequence")
    ap.add_argument("--edits", nargs="+", choices=EDITS, default=list(EDITS))
    ap.add_argument("--k", dest="ks", nargs="+", type=int, default=list(KS), help="frames away (default 10 30 90)")
    ap.add_argument("--segmenters", nargs="+", default=list(SEGMENTERS),
                    help="oracle and/or sam_sim@<severity> (default: oracle sam_sim@0 sam_sim@0.5)")
    ap.add_argument("--label", default="tracker", help="name of this tracker configuration in the table")
    ap.add_argument("--config", type=Path, help=f"tracker params YAML (default {DEFAULT_CONFIG})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. --set tracker.max_age=30")
    ap.add_argument("--occluder", choices=("texture", "grey"), default="texture",
                    help="the patch: a picture of another sequence's first frame, or flat grey")
    ap.add_argument("--pan-window", type=float, default=0.4, help="the pan's window, a fraction of the frame")
    ap.add_argument("--sim-seed", type=int, default=0,
                    help="sam_sim's draws (default 0): other seeds give other noise on the same clips, more returns")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    args = ap.parse_args(argv)

    from ..core.config import ConfigError, parse_overrides
    from .results import _revision
    from .runner import GT_SEGMENTERS, parse_segmenter

    try:
        overrides = parse_overrides(args.overrides)
        load_config(args.config, overrides)  # refuse a bad config before any work
        for s in args.segmenters:
            if parse_segmenter(s)[0] not in GT_SEGMENTERS:
                raise ValueError(f"segmenter '{s}': choose oracle or sam_sim@<severity>")
        all_seqs = davis.sequence_names(args.davis)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"leave_return: {e}", file=sys.stderr)
        return 2
    if any(k < 1 for k in args.ks) or not 0 < args.pan_window < 1:
        ap.error("--k must be >= 1 and --pan-window in (0, 1)")
    unknown = [s for s in args.sequences or [] if s not in all_seqs]
    if unknown:
        ap.error(f"no ground truth for {unknown} under {args.davis}")
    sequences = args.sequences or all_seqs
    work = args.work or args.out / "work"
    config = str(args.config) if args.config else None
    jobs = []
    for seg in args.segmenters:
        for seq in sequences:
            for edit in args.edits:
                kw = {"texture": args.occluder} if edit == "occluder" else (
                    {"pan_window": args.pan_window} if edit == "pan" else {})
                for K in args.ks:
                    jobs.append((str(args.davis), seq, edit, K, seg, args.label, config, overrides, all_seqs,
                                 str(work), kw, args.sim_seed))
    command = "python -m mastsam_ros.evaluation.leave_return " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    revision = _revision()
    t0 = time.perf_counter()
    run_all(jobs, work, args.jobs)
    wall = time.perf_counter() - t0
    records = [json.loads(p.read_text()) for p in sorted((work / "records").glob("*.json"))]
    rows = summarise(records)
    plot = args.out / "leave_return.png"
    plot_recall(rows, plot)
    page = render(records, rows, command, wall, revision, str(plot))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "leave_return.md").write_text(page)
    (args.out / "leave_return.json").write_text(json.dumps(
        {"command": command, "revision": revision, "wall_seconds": wall, "rows": rows,
         "clips": [{k: v for k, v in r.items() if k != "traceback"} for r in records]}, indent=1))
    print(page)
    print(f"wall time {wall / 60:.1f} min; wrote {args.out}/leave_return.md, .json, .png", file=sys.stderr)
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
