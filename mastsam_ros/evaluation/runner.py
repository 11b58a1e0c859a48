"""Run one method (tracker or baseline) with one segmenter and matcher over a DAVIS sequence, write its label PNGs.

The harness is the same for every method: frames in file-name order, ``method.step(rgb)`` per frame, one label PNG
per frame at ``<out>/<seq>/<frame>.png``. Evaluation then reads those files like any other prediction directory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.config import Config
from ..labels_io import LabelMapper, save_label_png
from . import davis
from .baselines import USES_MATCHER, build_method

SEGMENTERS = ("oracle", "classical", "sam_sim")
#: Ground-truth (evaluation-only) segmenters; ``sam_sim`` is named ``sam_sim@<severity>`` in a run (sam_sim@0.5).
GT_SEGMENTERS = ("oracle", "sam_sim")


def parse_segmenter(name: str) -> tuple[str, float | None]:
    """``"sam_sim@0.5"`` -> ("sam_sim", 0.5); other names -> (name, None); ``"sam_sim"`` alone is severity 0.5."""
    base, _, sev = name.partition("@")
    if base == "sam_sim":
        return base, float(sev) if sev else 0.5
    if sev:
        raise ValueError(f"only sam_sim takes a severity (sam_sim@0.5), got '{name}'")
    return base, None
MATCHERS = ("flow", "xfeat")


@dataclass
class RunInfo:
    method: str
    segmenter: str
    matcher: str  # "-" when the method uses none
    sequence: str
    frames: int
    seconds: float  # wall time of the per-frame loop (excludes loading frames and writing PNGs)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def make_config(segmenter: str, matcher: str | None, overrides: dict | None = None) -> Config:
    cfg = Config()
    if parse_segmenter(segmenter)[0] not in GT_SEGMENTERS:
        cfg.set("segmenter.backend", segmenter)
    if matcher:
        cfg.set("matcher.backend", matcher)
    return cfg.update(overrides or {})


def build_segmenter_for(name: str, cfg: Config, gt: np.ndarray, frames: list[np.ndarray], seed: int = 0):
    """``oracle``, ``sam_sim@<severity>`` (ground truth, evaluation only; ``seed``: its draws) or any backend of the
    core registry."""
    base, severity = parse_segmenter(name)
    if base == "oracle":
        from .oracle import OracleSegmenter

        return OracleSegmenter(gt, frames=frames)
    if base == "sam_sim":
        from .sam_sim import SamSimSegmenter

        return SamSimSegmenter(gt, frames=frames, severity=severity, seed=seed)
    from ..core.segmenters import build_segmenter

    return build_segmenter(cfg.segmenter)


def run_sequence(
    method: str,
    segmenter: str,
    matcher: str | None,
    davis_root: str | Path,
    seq: str,
    out_dir: str | Path,
    overrides: dict | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> RunInfo:
    """Run ``method`` on ``seq`` (its first ``limit`` frames when given) and write ``<out_dir>/<seq>/<stem>.png``;
    ``seed``: the draws of ``sam_sim``."""
    matcher = matcher if USES_MATCHER.get(method, True) else None
    cfg = make_config(segmenter, matcher, overrides)
    frames = davis.load_frames(davis_root, seq, limit=limit)
    stems = [p.stem for p in davis.frame_paths(davis_root, seq)][: len(frames)]
    gt = None
    if parse_segmenter(segmenter)[0] in GT_SEGMENTERS:
        _, gt = davis.load_gt(davis_root, seq, limit=len(frames))
    seg = build_segmenter_for(segmenter, cfg, gt, frames, seed)
    m = build_method(method, cfg, seg)
    labels = []
    t0 = time.perf_counter()
    for rgb in frames:
        labels.append(m.step(rgb))
    seconds = time.perf_counter() - t0
    mapper = LabelMapper()  # the writers' one id -> pixel value mapping (ids stay their own value below 65536)
    for stem, lab in zip(stems, labels):
        save_label_png(Path(out_dir) / seq / f"{stem}.png", mapper.map(lab)[0])
    return RunInfo(method, segmenter, matcher or "-", seq, len(frames), seconds)


def evaluate_run(pred_dir: str | Path, davis_root: str | Path, seq: str, limit: int | None = None):
    """Evaluate ``<pred_dir>/<seq>`` against the first ``limit`` annotated frames (all when None)."""
    from .cli import check_listed

    check_listed(pred_dir, seq)  # a mastsam-track folder mixing two runs' PNGs is refused
    stems, gt = davis.load_gt(davis_root, seq, limit=limit)
    return davis.evaluate_sequence(seq, davis.load_pred(pred_dir, seq, stems), gt)
