"""``mastsam-bench``'s comparisons: (a) per-frame automatic mask generation and (b) the research prototype's loop,
with the correspondence searches (b) runs with (:class:`BruteForceMatcher`, :class:`UpstreamMast3rMatcher`) and the
SAM model it builds (:func:`prototype_segmenter`). The baselines are not the tracker: they run their own loops
(``evaluation.baselines.Prototype.step``, the package's automatic generator), never ``Tracker.step``.
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from ..core.config import Config
from ..core.errors import MastSamError
from ..core.matchers.base import Matcher
from ..core.matchers.flow import downscale
from ..core.segmenters import build_segmenter
from ..core.segmenters.base import Segmenter
from ..evaluation.instruments import StandInMasks
from .bench_runs import PACKAGES, load_frame, random_checkpoint, stats


class BruteForceMatcher(Matcher):
    """Brute-force nearest-match search, the research prototype's way of finding where a mask point went.

    Every pixel of a frame (downscaled to ``matcher.max_side``) gets a descriptor: its 5 x 5 grey patch, zero mean,
    unit norm (25-D). A point is carried by comparing its descriptor with the descriptor of *every* pixel of the next
    frame (one dense matrix product, no index, no search window) and taking the best; the match is kept only if the
    same exhaustive search from that pixel back over every pixel of the previous frame lands within
    ``matcher.max_error_px`` (reciprocal check; confidence falls linearly with the distance). The descriptor is a
    cheap hand-made one: a learned dense descriptor (MASt3R's) would add a network pass per frame, so this is a
    lower bound on the prototype's matching cost.
    """

    name = "brute-force"
    PATCH = 5

    def __init__(self, max_side: int, max_error_px: float):
        self.max_side, self.max_error = max_side, max_error_px
        self._prev = self._cur = None  # (descriptors (h*w, 25) float32, (h, w), scale)

    def _describe(self, image: np.ndarray):
        grey, s = downscale(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), self.max_side)
        r = self.PATCH // 2
        padded = np.pad(grey.astype(np.float32), r, mode="reflect")
        win = np.lib.stride_tricks.sliding_window_view(padded, (self.PATCH, self.PATCH))
        d = win.reshape(grey.shape[0] * grey.shape[1], -1).copy()
        d -= d.mean(axis=1, keepdims=True)
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-6
        return d, grey.shape, s

    def push(self, image: np.ndarray) -> None:
        self._prev, self._cur = self._cur, self._describe(image)

    def carry(self, points: np.ndarray):
        n = points.shape[0]
        if self._prev is None or n == 0:
            return points.astype(np.float32).copy(), np.zeros(n, np.float32)
        (dp, (h, w), s), (dc, _, _) = self._prev, self._cur
        p = np.clip(np.round(points * s).astype(int), 0, [w - 1, h - 1])
        fwd = np.argmax(dc @ dp[p[:, 1] * w + p[:, 0]].T, axis=0)  # every pixel of the next frame
        back = np.argmax(dp @ dc[fwd].T, axis=0)  # every pixel of the previous frame
        q = np.stack([fwd % w, fwd // w], axis=1).astype(np.float32)
        b = np.stack([back % w, back // w], axis=1).astype(np.float32)
        err = np.linalg.norm(b - p, axis=1)
        conf = np.clip(1.0 - err / self.max_error, 0.0, 1.0).astype(np.float32)
        return (q / s).astype(np.float32), conf

    def reset(self) -> None:
        self._prev = self._cur = None


class UpstreamMast3rMatcher(Matcher):
    """The research prototype's correspondences: upstream MASt3R's forward on the pair (both images encoded, joint
    decoder, heads; fp32, no caching across pairs) and upstream's ``fast_reciprocal_NNs`` over every pixel of the
    descriptor maps (seeds on a ``subsample`` grid, iterated to reciprocal nearest neighbours, ``dist='dot'``:
    upstream's own example), matches within 3 px of the border dropped as upstream's example does. A point takes the
    displacement of its nearest match, trusted as it comes (confidence 1; 0 only when the pair has no match): the
    reciprocal search is the prototype's only check, and with random weights a confidence filter would drop every
    point and with it the decoder calls whose cost (b) is there to measure. ``timings`` collects ms per pair of the
    forward and of the matching."""

    name = "mast3r-upstream"

    def __init__(self, model, subsample: int = 8):
        import torch

        try:
            from mast3r.fast_nn import fast_reciprocal_NNs  # noqa: PLC0415 - upstream, optional, not on PyPI
        except ImportError as e:
            raise MastSamError(f"comparison (b) with MASt3R needs upstream's mast3r package importable: {e}") from e
        self.torch, self.model, self.subsample = torch, model, int(subsample)
        self.device = next(model.parameters()).device
        self._nn = fast_reciprocal_NNs
        self._sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        self.timings: dict[str, list[float]] = {"forward_ms": [], "reciprocal_nn_ms": []}
        self.reset()

    def reset(self) -> None:
        self._prev = self._cur = None  # (image tensor 1x3xhxw, (h, w), scale)
        self._matches = None
        self._count = 0

    def push(self, image: np.ndarray) -> None:
        from ..core.matchers.mast3r import model_size

        h, w = image.shape[:2]
        mw, mh = model_size(w, h)
        small = cv2.resize(image, (mw, mh), interpolation=cv2.INTER_AREA if mw < w else cv2.INTER_CUBIC)
        x = self.torch.from_numpy(np.ascontiguousarray(small)).to(self.device).permute(2, 0, 1)[None].float()
        self._count += 1
        self._prev, self._cur = self._cur, (x.div(255.0).sub(0.5).div(0.5), (mh, mw), np.array([mw / w, mh / h]))
        self._matches = None

    def _pair(self):
        torch = self.torch
        views = [
            {"img": img, "true_shape": torch.tensor([shape]), "idx": [i], "instance": [str(i)]}
            for i, (img, shape, _) in ((self._count - 2, self._prev), (self._count - 1, self._cur))
        ]
        self._sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            res1, res2 = self.model(views[0], views[1])
        self._sync()
        t1 = time.perf_counter()
        d1, d2 = res1["desc"][0], res2["desc"][0]
        xy1, xy2 = self._nn(d1, d2, subsample_or_initxy1=self.subsample, device=self.device, dist="dot",
                            block_size=2**13)
        self._sync()
        t2 = time.perf_counter()
        self.timings["forward_ms"].append((t1 - t0) * 1e3)
        self.timings["reciprocal_nn_ms"].append((t2 - t1) * 1e3)
        (h1, w1), (h2, w2) = self._prev[1], self._cur[1]
        xy1, xy2 = np.asarray(xy1, np.float32), np.asarray(xy2, np.float32)
        ok = ((xy1[:, 0] >= 3) & (xy1[:, 0] < w1 - 3) & (xy1[:, 1] >= 3) & (xy1[:, 1] < h1 - 3)
              & (xy2[:, 0] >= 3) & (xy2[:, 0] < w2 - 3) & (xy2[:, 1] >= 3) & (xy2[:, 1] < h2 - 3))
        return xy1[ok], xy2[ok]

    def carry(self, points: np.ndarray):
        from ..core.matchers.mast3r import to_frame, to_model

        n = points.shape[0]
        if self._prev is None or n == 0:
            return points.astype(np.float32).copy(), np.zeros(n, np.float32)
        if self._matches is None:
            self._matches = self._pair()
        src, dst = self._matches
        if len(src) == 0:
            return points.astype(np.float32).copy(), np.zeros(n, np.float32)
        p = to_model(points.astype(np.float64), self._prev[2])
        nearest = np.argmin(((p[:, None, :] - src[None, :, :]) ** 2).sum(-1), axis=1)
        q = p + (dst[nearest] - src[nearest])
        return to_frame(q, self._cur[2]).astype(np.float32), np.ones(n, np.float32)


class CarryClock(Matcher):
    """Delegates to ``inner`` and adds the time of its ``carry`` calls to ``ms[-1]`` (the caller appends 0.0 before
    each frame): the correspondence search's share of a prototype frame."""

    def __init__(self, inner: Matcher):
        self.inner, self.name, self.ms = inner, inner.name, []

    def push(self, image: np.ndarray) -> None:
        self.inner.push(image)

    def carry(self, points: np.ndarray):
        t0 = time.perf_counter()
        try:
            return self.inner.carry(points)
        finally:
            self.ms[-1] += (time.perf_counter() - t0) * 1e3

    def reset(self) -> None:
        self.inner.reset()


def mast3r_model_of(matcher: Matcher):
    """The MASt3R network a tracker's matcher runs (backend mast3r, or the anchor of backend cadence), else None."""
    for m in (matcher, getattr(matcher, "anchor", None)):
        if m is not None and getattr(m, "name", "") == "mast3r":
            return m.model
    return None


def prototype_segmenter(args, cfg: Config, current: Segmenter, tmp: Path) -> Segmenter:
    """SAM ``--prototype-model-type`` in fp32 for comparison (b) with MASt3R: the tracker's own segmenter when it is
    that model in fp32, else built from random weights (``--random-weights``), ``--prototype-checkpoint`` or the
    tracker's checkpoint when that is the same model."""
    want = args.prototype_model_type
    backend = "mobile_sam" if want == "vit_t" else "sam"
    seg = cfg.segmenter
    same_model = seg.backend == backend and (backend == "mobile_sam" or seg.model_type == want)
    if same_model and not (seg.half_precision and seg.device.startswith("cuda")):
        return current
    proto = copy.deepcopy(seg)
    proto.backend, proto.half_precision = backend, False
    if backend == "sam":
        proto.model_type = want
    if args.random_weights:
        proto.checkpoint = str(random_checkpoint(backend, want, tmp))
    elif args.prototype_checkpoint:
        proto.checkpoint = args.prototype_checkpoint
    elif not same_model:
        raise MastSamError(f"comparison (b) with MASt3R runs SAM {want} in fp32: pass --prototype-checkpoint (a {want} "
                           "checkpoint), --random-weights, or --prototype-model-type of the tracker's model")
    return build_segmenter(proto)


def run_automatic(segmenter: Segmenter, backend: str, files: list[Path], size, points_per_side: int = 32) -> dict:
    """Baseline (a): per-frame automatic mask generation, encoder pass included. ``segmenter``: the tracker's (the
    real model under a :class:`StandInMasks`, if any)."""
    inner = getattr(segmenter, "inner", segmenter)
    times, counts = [], []
    if backend in PACKAGES:
        import importlib

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pkg = importlib.import_module(PACKAGES[backend])
        gen = pkg.SamAutomaticMaskGenerator(inner.model, points_per_side=points_per_side)
        what = f"{PACKAGES[backend]}.SamAutomaticMaskGenerator(points_per_side={points_per_side}, other defaults)"
        for path in files:
            frame = load_frame(path, size)
            t0 = time.perf_counter()
            masks = gen.generate(frame)
            times.append((time.perf_counter() - t0) * 1e3)
            counts.append(len(masks))
    else:
        what = f"{inner.name}: set_image + generate() of the whole frame"
        for path in files:
            frame = load_frame(path, size)
            t0 = time.perf_counter()
            inner.set_image(frame)
            masks = inner.generate()
            times.append((time.perf_counter() - t0) * 1e3)
            counts.append(len(masks))
    grid = points_per_side if backend in PACKAGES else None  # other backends segment the frame their own way
    return {"method": what, "points_per_side": grid, "frames": len(files), "ms_per_frame": stats(times),
            "masks_per_frame": counts}


def run_prototype(cfg: Config, segmenter: Segmenter, kmeans, tracks: int, files: list[Path], size,
                  matcher: Matcher | None = None, proto_segmenter: Segmenter | None = None,
                  substitute: bool | None = None, proto_label: str = "") -> dict:
    """Baseline (b): the prototype's loop with the brute-force matcher, or with ``matcher`` (upstream MASt3R) and
    ``proto_segmenter`` (SAM fp32) when given. Frame 0 (its initial automatic segmentation) is left out of the
    per-frame figure, as for the tracker. ``segmenter``: the tracker's (the real model under a
    :class:`StandInMasks`, if any)."""
    from ..evaluation.baselines import Prototype

    inner = getattr(segmenter, "inner", segmenter)
    if substitute is None:
        substitute = isinstance(segmenter, StandInMasks) and segmenter.substitute
    seg = StandInMasks(proto_segmenter or inner, tracks, substitute=substitute, limit=tracks)
    upstream = matcher is not None
    if matcher is None:
        matcher = BruteForceMatcher(cfg.matcher.max_side, cfg.matcher.max_error_px)
    clock = CarryClock(matcher)
    proto = Prototype(cfg, seg, clock, kmeans)
    times, masks = [], []
    for i, path in enumerate(files):
        frame = load_frame(path, size)
        clock.ms.append(0.0)
        t0 = time.perf_counter()
        labels = proto.step(frame)
        ms = (time.perf_counter() - t0) * 1e3
        if i > 0:
            times.append(ms)
            masks.append(int(len(np.unique(labels)) - 1))
    out = {
        "method": "evaluation.baselines.Prototype (one predict call per mask) + BruteForceMatcher "
                  "(5x5 patch descriptors, exhaustive reciprocal search over every pixel at matcher.max_side)",
        "frames": len(files),
        "steady_frames": len(times),
        "ms_per_frame": stats(times),
        "brute_force_search_ms": stats(clock.ms[1:]),
        "masks_per_frame": masks,
    }
    if upstream:
        out["method"] = (
            f"evaluation.baselines.Prototype (one predict call per mask), {proto_label}, + upstream "
            f"MASt3R forward per pair (fp32) and fast_reciprocal_NNs over all pixels (subsample "
            f"{matcher.subsample}, dist dot)"
        )
        del out["brute_force_search_ms"]
        out["matcher_ms"] = stats(clock.ms[1:])
        out["mast3r_forward_ms"] = stats(matcher.timings["forward_ms"])
        out["reciprocal_nn_ms"] = stats(matcher.timings["reciprocal_nn_ms"])
    return out
