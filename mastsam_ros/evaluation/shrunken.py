"""Shrunken DAVIS: what the tracker's working resolution costs small objects (issue 25).

    python -m mastsam_ros.evaluation.shrunken --out DIR [--davis ../shared/data/davis2016] [--sequences libby]
        [--scales 1 0.5 0.25] [--segmenters oracle sam_sim@0.5] [--work-max-side 256 854] [--limit N] [--set K=V]

Each sequence's frames and ground truth are scaled by ``s`` and placed into a frame of the full size whose rest comes
from another sequence, so a small object sits in a busy, moving scene:

- the copy: the frame resized by ``s`` (OpenCV ``INTER_AREA``; ``round(W s)`` x ``round(H s)`` pixels), its ground
  truth resized the same way as a fraction of each pixel covered, kept where >= 0.5; placed **centred**, at
  ``((W - w) // 2, (H - h) // 2)``. At ``s = 1`` the composed frame is the sequence's own frame;
- the filler: the next sequence of the DAVIS root in sorted order (the last takes the first), the same size as the
  sequence's frames, played forwards then backwards (:func:`filler_index`): a filler shorter than the sequence does
  not start over, because the jump back to its first frame is a scene cut to the tracker (its hue-saturation
  histogram moves by up to 0.52 there on these sequences at s = 0.25, over ``tracker.cut_distance`` 0.15), which
  would send every track, the shrunken object's too, dormant.

Two ground truths per frame: the **scored** one holds only the placed copy's object (1, every object of the copy
as one: DAVIS-2016 has one per sequence; void 255 where the copy has void); the **segmenter's** one (``oracle`` and
``sam_sim`` answer from ground truth) also holds the filler's object where it is visible around the copy, under
label 2: it is an object to the segmenter, so a distractor to the tracker, and background to the score (a track on
it is an extra id, never a hit).

Each row runs the tracker (matcher ``flow``) with one segmenter and one working size over every (sequence, s) and
scores it with the DAVIS protocol (``davis.evaluate_sequence``). Beside J&F, the tracker's own time per frame:
``FrameResult.timings["total"]`` minus the time spent inside the segmenter's calls and minus the DIS flow computation.
That is what ``mastsam-bench --overhead`` measures with its zero-cost backends, here with real answers: the segmenter
is wrapped so its answers arrive at the working size, as SAM's do (the resize of an answer to the working size is
charged to the segmenter, as SAM's decoder produces it at that size), and the flow matcher computes each pair's DIS
flow in its own timed call before installing it (``FlowMatcher.pair_ahead`` / ``push_ahead``, as bench's replayed
flow does); sampling and warping along the flow stay in the overhead. ``tracker.overlap_matcher`` is off for these
runs so the flow is not hidden behind the segmenter (the outputs are the same either way). Frame 0 of each run (the
first automatic segmentation) is left out of the overhead figures, as in the bench, and a warm-up run (3 frames of the
first sequence with each segmenter and working size, not recorded) comes first: a process's first frames pay one-off
costs. Before each frame ``mastsam-bench``'s machine probe (``instruments.MachineProbe``) is timed, so overheads
measured at different times (this machine's speed moves with its load) can be compared through overhead / probe.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..core.config import Config, parse_overrides
from ..core.errors import MastSamError
from ..core.matchers.flow import FlowMatcher
from ..core.segmenters.base import Segmenter
from ..core.small import frame_answer
from ..core.tracker import Tracker
from ..core.types import Proposal
from . import davis
from .instruments import MachineProbe
from .results import _revision
from .runner import GT_SEGMENTERS, build_segmenter_for, make_config, parse_segmenter

SCALES = (1.0, 0.5, 0.25)
SEGMENTERS = ("oracle", "sam_sim@0.5")
WORK_SIDES = (Config().tracker.work_max_side, 854)
TARGET, DISTRACTOR = 1, 2


# --- composition ---------------------------------------------------------------------------------------------------
def filler_of(seq: str, names: list[str]) -> str:
    """The sequence whose frames fill the rest of ``seq``'s shrunken frames: the next one in sorted order (cyclic)."""
    names = sorted(names)
    if seq not in names:
        raise ValueError(f"'{seq}' is not one of the sequences {names}")
    if len(names) < 2:
        raise ValueError("shrunken DAVIS needs at least two sequences (one fills the other's background)")
    return names[(names.index(seq) + 1) % len(names)]


def filler_index(t: int, length: int) -> int:
    """The filler frame under frame ``t``: forwards, then backwards, and so on (0 1 .. L-1 L-2 .. 1 0 1 ..)."""
    if length < 2:
        return 0
    k = t % (2 * length - 2)
    return k if k < length else 2 * length - 2 - k


def placement(shape: tuple[int, int], s: float) -> tuple[int, int, int, int]:
    """The placed copy's box in a frame of ``shape`` (H, W) at scale ``s``: (y0, x0, h, w), centred."""
    if not 0.0 < s <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {s}")
    H, W = shape
    h, w = max(1, round(H * s)), max(1, round(W * s))
    return (H - h) // 2, (W - w) // 2, h, w


def shrink_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask at ``size`` (h, w): the fraction of each new pixel it covers (``INTER_AREA``), kept where >= 0.5."""
    h, w = size
    if mask.shape == (h, w):
        return mask.astype(bool, copy=True)
    return cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5


def compose_frame(
    rgb: np.ndarray, gt: np.ndarray, filler_rgb: np.ndarray, filler_gt: np.ndarray, s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shrunken frame: ``rgb`` and ``gt`` (0 bg, 1..254 objects, 255 void) scaled by ``s`` and placed centred
    into ``filler_rgb``. Returns (frame, segmenter ground truth: TARGET, DISTRACTOR where the filler's object shows,
    VOID where the copy has void; scored ground truth: TARGET and VOID only), all of the filler's size."""
    if rgb.shape != filler_rgb.shape or gt.shape != rgb.shape[:2] or filler_gt.shape != filler_rgb.shape[:2]:
        raise ValueError(f"frame {rgb.shape}, ground truth {gt.shape}, filler {filler_rgb.shape} and its ground "
                         f"truth {filler_gt.shape} must agree in size")
    y0, x0, h, w = placement(gt.shape, s)
    box = (slice(y0, y0 + h), slice(x0, x0 + w))
    frame = filler_rgb.copy()
    frame[box] = rgb if (h, w) == rgb.shape[:2] else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    small = np.zeros((h, w), np.uint8)
    small[shrink_mask((gt > 0) & (gt != davis.VOID), (h, w))] = TARGET
    small[shrink_mask(gt == davis.VOID, (h, w))] = davis.VOID
    scored = np.zeros(gt.shape, np.uint8)
    scored[box] = small
    seg_gt = np.where((filler_gt > 0) & (filler_gt != davis.VOID), DISTRACTOR, 0).astype(np.uint8)
    seg_gt[box] = small
    return frame, seg_gt, scored


@dataclass
class Shrunken:
    """One sequence shrunken by ``scale``: its composed frames and both ground truths (T x H x W uint8)."""

    sequence: str
    filler: str
    scale: float
    frames: list[np.ndarray]
    seg_gt: np.ndarray
    scored_gt: np.ndarray


def shrink_sequence(root: str | Path, seq: str, s: float, limit: int | None = None,
                    names: list[str] | None = None) -> Shrunken:
    """Compose ``seq`` (its first ``limit`` frames) at scale ``s`` over its filler (see the module docstring)."""
    filler = filler_of(seq, names or davis.sequence_names(root))
    frames = davis.load_frames(root, seq, limit=limit)
    _, gt = davis.load_gt(root, seq, limit=len(frames))
    if len(gt) != len(frames):
        raise ValueError(f"{seq}: {len(frames)} frames but {len(gt)} ground-truth masks")
    f_frames = davis.load_frames(root, filler)
    _, f_gt = davis.load_gt(root, filler, limit=len(f_frames))
    out, seg, scored = [], [], []
    for t, (rgb, g) in enumerate(zip(frames, gt)):
        k = filler_index(t, len(f_frames))
        frame, sg, sc = compose_frame(rgb, g, f_frames[k], f_gt[k], s)
        out.append(frame)
        seg.append(sg)
        scored.append(sc)
    return Shrunken(seq, filler, s, out, np.stack(seg), np.stack(scored))


# --- timed backends --------------------------------------------------------------------------------------------------
class TimedSegmenter(Segmenter):
    """Another segmenter's answers, at the tracker's working size, with the time spent producing them (``ms``).

    An answer of the frame's size becomes the fraction of each working pixel it covers (``soft``, exactly what the
    tracker would make of it, ``WorkGrid.soft``), so the resize is charged here, as SAM's decoder answers at that size;
    the frame-size mask stays the answer's ``fine`` (what SAM's logits give there: ``core/small.py``).
    """

    def __init__(self, inner: Segmenter):
        self.inner, self.name, self.is_fallback = inner, inner.name, inner.is_fallback
        self.ms = 0.0

    def _at_work(self, props: list[Proposal]) -> list[Proposal]:
        shape = self.mask_shape
        if shape is None:
            return props
        h, w = shape
        out = []
        for p in props:
            if p.mask.shape == shape or (p.soft is not None and p.soft.shape == shape):
                out.append(p)
                continue
            area = cv2.INTER_AREA if p.mask.shape[0] >= h else cv2.INTER_LINEAR
            soft = cv2.resize(p.mask.view(np.uint8).astype(np.float32), (w, h), interpolation=area)
            # the frame-size answer stays at hand for small tracks (core/small.py), as SAM's logits do
            out.append(Proposal(soft >= 0.5, p.score, p.stability, soft, fine=frame_answer(p, p.mask.shape)))
        return out

    def _timed(self, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.ms += (time.perf_counter() - t0) * 1e3

    def set_image(self, image: np.ndarray) -> None:
        self._timed(self.inner.set_image, image)

    def generate(self, region=None, seeds=None) -> list[Proposal]:
        return self._timed(lambda: self._at_work(self.inner.generate(region, seeds)))

    def predict(self, prompts) -> list[Proposal]:
        return self._timed(lambda: self._at_work(self.inner.predict(prompts)))


class TimedFlow(FlowMatcher):
    """The flow matcher with each pair's DIS flow (and the frames' grey downscale) computed in a timed call of its
    own (``ms``), then installed (:meth:`FlowMatcher.pair_ahead`, :meth:`FlowMatcher.push_ahead`: the same flows)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.ms = 0.0
        self._last: np.ndarray | None = None

    def push(self, image: np.ndarray) -> None:
        t0 = time.perf_counter()
        pair = self.pair_ahead(self._last, image)
        self.ms += (time.perf_counter() - t0) * 1e3
        self._last = image
        self.push_ahead(image, pair)

    def reset(self) -> None:
        super().reset()
        self._last = None


# --- runs ----------------------------------------------------------------------------------------------------------
def run_config(segmenter: str, work_max_side: int, overrides: dict | None = None) -> Config:
    """The config of one row: the evaluation's (``runner.make_config``, matcher flow), the working size, the
    ``overrides``, and ``tracker.overlap_matcher`` off (see the module docstring)."""
    cfg = make_config(segmenter, "flow", overrides)
    return cfg.update({"tracker.work_max_side": work_max_side, "tracker.overlap_matcher": False})


def run_shrunken(sh: Shrunken, segmenter: str, work_max_side: int, overrides: dict | None = None) -> dict:
    """The tracker over one shrunken sequence: J, F, J&F against the scored ground truth, the tracker's own time per
    frame (``overhead_ms``: total minus segmenter minus flow, frames 1..) and the tracks per frame."""
    if parse_segmenter(segmenter)[0] not in GT_SEGMENTERS:
        raise ValueError(f"shrunken DAVIS runs the ground-truth segmenters {GT_SEGMENTERS}, not '{segmenter}'")
    cfg = run_config(segmenter, work_max_side, overrides)
    seg = TimedSegmenter(build_segmenter_for(segmenter, cfg, sh.seg_gt, sh.frames))
    flow = TimedFlow(cfg.matcher)
    tracker = Tracker(cfg, segmenter=seg, matcher=flow)
    labels = np.empty(sh.scored_gt.shape, np.uint32)
    overhead, total, tracks, probe, probed = [], [], [], MachineProbe(), []
    t0 = time.perf_counter()
    try:
        for t, rgb in enumerate(sh.frames):
            probed.append(probe())
            seg.ms = flow.ms = 0.0
            res = tracker.step(rgb)
            labels[t] = res.labels
            if t:
                total.append(res.timings["total"])
                overhead.append(res.timings["total"] - seg.ms - flow.ms)
                tracks.append(len(res.tracks))
    finally:
        tracker.close()
    seconds = time.perf_counter() - t0
    r = davis.evaluate_sequence(sh.sequence, labels, sh.scored_gt)
    return {
        "sequence": sh.sequence, "filler": sh.filler, "scale": sh.scale, "segmenter": segmenter,
        "work_max_side": work_max_side, "work_shape": list(tracker.work_shape), "frames": len(sh.frames),
        "J": r.J, "F": r.F, "JF": r.JF, "ids": r.ids, "switches": r.switches, "pred_ids": r.pred_ids,
        "overhead_ms": overhead, "total_ms": total, "tracks": tracks, "probe_ms": probed[1:], "seconds": seconds,
    }


def _median(xs) -> float:
    return float(np.median(xs)) if len(xs) else float("nan")


def summarize(records: list[dict]) -> list[dict]:
    """One row per (segmenter, working size, scale): mean J, F, J&F over sequences; overhead median / p95, mean
    tracks and the machine probe's median over all their frames (1..) pooled."""
    rows = {}
    for r in records:
        rows.setdefault((r["segmenter"], r["work_max_side"], r["scale"]), []).append(r)
    out = []
    for (seg, side, s), rs in rows.items():
        oh = np.concatenate([r["overhead_ms"] for r in rs]) if rs else np.zeros(0)
        tr = np.concatenate([r["tracks"] for r in rs]) if rs else np.zeros(0)
        pr = np.concatenate([r["probe_ms"] for r in rs]) if rs else np.zeros(0)
        out.append({
            "segmenter": seg, "work_max_side": side, "scale": s, "sequences": len(rs),
            "J": float(np.mean([r["J"] for r in rs])), "F": float(np.mean([r["F"] for r in rs])),
            "JF": float(np.mean([r["JF"] for r in rs])),
            "overhead_ms_median": _median(oh),
            "overhead_ms_p95": float(np.percentile(oh, 95)) if len(oh) else float("nan"),
            "tracks_mean": float(np.mean(tr)) if len(tr) else float("nan"),
            "probe_ms_median": _median(pr),
        })
    return out


def render(records: list[dict], rows: list[dict], scales, command: str, wall: float, machine: str) -> str:
    """The Markdown page: J&F and overhead per (segmenter, working size) and scale, then every sequence's J&F."""
    scales = list(scales)
    by = {(r["segmenter"], r["work_max_side"], r["scale"]): r for r in rows}
    keys = list(dict.fromkeys((r["segmenter"], r["work_max_side"]) for r in rows))
    seqs = list(dict.fromkeys(r["sequence"] for r in records))
    fillers = dict.fromkeys((r["sequence"], r["filler"]) for r in records)
    lines = [
        "## Shrunken DAVIS",
        "",
        f"`{command}` ({machine}; {wall:.0f} s). Sequences: " + ", ".join(f"{a} (filler {b})" for a, b in fillers)
        + ". Each frame and its ground truth scaled by s and placed centred into the filler's frames (played forwards,"
        " then backwards); only the placed object is scored, the filler's object is a distractor to the segmenter."
        " Overhead: `FrameResult.timings['total']` minus the segmenter's calls and the DIS flow computation (what"
        " `mastsam-bench --overhead` measures), median and p95 over frames 1.. of every sequence, ms; probe: the"
        " median of `mastsam-bench`'s machine probe (fixed work, timed before each frame) over the row's runs.",
        "",
        "| segmenter | work_max_side | " + " | ".join(f"J&F s={s:g}" for s in scales) + " | "
        + " | ".join(f"overhead s={s:g} median / p95" for s in scales) + " | "
        + " | ".join(f"tracks s={s:g}" for s in scales) + " | probe ms |",
        "|---|---|" + "---|" * (3 * len(scales) + 1),
    ]
    for seg, side in keys:
        cells = [by.get((seg, side, s)) for s in scales]
        jf = [f"{c['JF']:.3f}" if c else "-" for c in cells]
        oh = [f"{c['overhead_ms_median']:.2f} / {c['overhead_ms_p95']:.2f}" if c else "-" for c in cells]
        tr = [f"{c['tracks_mean']:.1f}" if c else "-" for c in cells]
        probe = _median([c["probe_ms_median"] for c in cells if c])
        lines.append(f"| {seg} | {side} | " + " | ".join(jf + oh + tr) + f" | {probe:.3f} |")
    lines += ["", "J&F per sequence:", "",
              "| segmenter | work_max_side | s | " + " | ".join(seqs) + " |", "|---|---|---|" + "---|" * len(seqs)]
    per = {(r["segmenter"], r["work_max_side"], r["scale"], r["sequence"]): r["JF"] for r in records}
    for seg, side in keys:
        for s in scales:
            if (seg, side, s) in by:
                cells = [f"{per[(seg, side, s, q)]:.3f}" if (seg, side, s, q) in per else "-" for q in seqs]
                lines.append(f"| {seg} | {side} | {s:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from .leave_return import DEFAULT_DAVIS

    ap = argparse.ArgumentParser(prog="python -m mastsam_ros.evaluation.shrunken", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="directory for shrunken.md and shrunken.json")
    ap.add_argument("--davis", type=Path, default=DEFAULT_DAVIS,
                    help="DAVIS root (JPEGImages/480p, Annotations/480p); default ../shared/data/davis2016")
    ap.add_argument("--sequences", nargs="+", help="sequences to shrink (default: all; fillers come from all)")
    ap.add_argument("--scales", nargs="+", type=float, default=list(SCALES),
                    help="scales in (0, 1] (default 1 0.5 0.25)")
    ap.add_argument("--segmenters", nargs="+", default=list(SEGMENTERS), help="oracle and/or sam_sim@SEVERITY")
    ap.add_argument("--work-max-side", nargs="+", type=int, default=list(WORK_SIDES),
                    help=f"tracker.work_max_side of each row (default {' '.join(map(str, WORK_SIDES))})")
    ap.add_argument("--limit", type=int, help="only the first N frames of each sequence (quick runs)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every run")
    args = ap.parse_args(argv)
    if any(not 0.0 < s <= 1.0 for s in args.scales):
        ap.error(f"--scales must lie in (0, 1], got {args.scales}")
    if args.limit is not None and args.limit < 2:
        ap.error("--limit must be at least 2 (frame 0 is left out of the overhead)")
    try:
        for seg in args.segmenters:
            if parse_segmenter(seg)[0] not in GT_SEGMENTERS:
                raise ValueError(f"segmenter '{seg}' is not one of {GT_SEGMENTERS} (sam_sim as sam_sim@SEVERITY)")
        overrides = parse_overrides(args.overrides)
        for side in args.work_max_side:
            run_config(args.segmenters[0], side, overrides)  # a bad value fails here, before any run
        names = davis.sequence_names(args.davis)
        seqs = args.sequences or names
        unknown = [q for q in seqs if q not in names]
        if unknown:
            raise ValueError(f"no such sequence(s) under {args.davis}: {', '.join(unknown)} (have: {', '.join(names)})")
        command = "python -m mastsam_ros.evaluation.shrunken " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        revision = _revision()  # the code the run loads: taken before it (others may commit meanwhile)
        load_start = [round(x, 2) for x in os.getloadavg()]
        records = []
        t0 = time.perf_counter()
        warm = shrink_sequence(args.davis, seqs[0], args.scales[0], 3, names)
        for seg in args.segmenters:  # the process's first frames pay one-off costs: warm up, not recorded
            for side in args.work_max_side:
                run_shrunken(warm, seg, side, overrides)
        for seq in seqs:
            for s in args.scales:
                sh = shrink_sequence(args.davis, seq, s, args.limit, names)
                for seg in args.segmenters:
                    for side in args.work_max_side:
                        rec = run_shrunken(sh, seg, side, overrides)
                        records.append(rec)
                        print(f"{seq:<20} s={s:<5g} {seg:<12} work {side:<5} J&F {rec['JF']:.3f}  overhead median "
                              f"{_median(rec['overhead_ms']):6.2f} ms  ({rec['seconds']:.1f} s)", flush=True)
        wall = time.perf_counter() - t0
    except (MastSamError, FileNotFoundError, ValueError, OSError) as e:
        print(f"shrunken: {e}", file=sys.stderr)
        return 2
    rows = summarize(records)
    load = [load_start, [round(x, 2) for x in os.getloadavg()]]
    machine = (f"{revision}; {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; load"
               f" average {load[0]} -> {load[1]}")
    page = render(records, rows, args.scales, command, wall, machine)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shrunken.md").write_text(page)
    payload = {"command": command, "wall_s": wall, "machine": machine, "load_average": load, "overrides": overrides,
               "rows": rows, "records": records}
    (args.out / "shrunken.json").write_text(json.dumps(payload, indent=1))
    print(page)
    print(f"wrote {args.out / 'shrunken.md'} and {args.out / 'shrunken.json'}; {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
