"""``mastsam-bench``: speed and memory of the tracker on a real frame sequence, with side-by-side baselines.

    mastsam-bench --segmenter mobile_sam --random-weights --matcher flow --tracks 8 --json bench.json
    mastsam-bench --segmenter classical --frames 30 --source ../shared/data/bedroom
    mastsam-bench --soak 5000 --soak-size 160x90 --json soak.json          # memory over a long run
    mastsam-bench --overhead --tracks 8                                     # the tracker's own cost per frame

The main run feeds ``--frames`` frames (JPEG decode timed per frame) through :class:`Tracker` and reports, per
stage, median / p95 / mean milliseconds from ``FrameResult.timings`` plus what the bench itself measures around the
tracker: JPEG decode and output encoding (label map -> mono16 bytes, and -> 16-bit PNG). End-to-end latency is
decode + ``Tracker.step`` + output encoding. Frame 0 (the initial automatic segmentation every method pays once) is
reported but left out of the steady-state figures.

Then, on the first frames of the same sequence and with the same model instance, the comparisons:
(a) per-frame automatic mask generation at a 32 x 32 grid (for SAM backends the package's own
``SamAutomaticMaskGenerator`` with its defaults, encoder pass included: what a user would run), and
(b) the research prototype's loop (``evaluation.baselines.Prototype``: one predict call per mask) with a brute-force
nearest-match search for the correspondences (:class:`BruteForceMatcher`). Ratios are mean ms per frame of the
method over mean ms per steady-state tracker frame. When the tracker runs MASt3R (``--matcher mast3r``, or
``matcher.backend: cadence`` with a mast3r anchor), (b) is the prototype as it ran: upstream MASt3R's own forward on
every pair (both images encoded, fp32) and its all-pixel ``fast_reciprocal_NNs`` (:class:`UpstreamMast3rMatcher`,
the same model instance, upstream's mast3r package imported), with SAM ``--prototype-model-type`` (default vit_h)
in fp32, built anew (random weights with ``--random-weights``, else ``--prototype-checkpoint`` or the tracker's
checkpoint when it is that model) unless the tracker's segmenter is already that model in fp32.

``--random-weights`` builds the full-size architecture from the package's own registry with random initialisation,
saves its state dict to a temporary file and loads it through the project's normal checkpoint path: the compute is
the real model's, the masks are meaningless. Random masks would make tracks appear and die at random, so by default
(``--stand-in-masks auto``) the segmenter's answers are replaced by ``--tracks`` fixed regions *after* its full
computation (see :class:`StandInMasks`): the tracker then holds a fixed track count and every SAM call costs what it
costs. The output says so.

``--overhead`` runs the whole tracker with backends that cost nothing: a segmenter that answers every call with
``--tracks`` fixed regions already at the tracker's working resolution (:class:`ZeroCostSegmenter`), and the flow
matcher replaying DIS fields computed before the timed run (:class:`ReplayFlow`: looking up, sampling and warping
along the field are timed, computing it is not). What ``Tracker.step`` then takes is the tracker's own bookkeeping;
the last line printed is ``overhead_ms_median: X``.

On CUDA, per-stage timings are synchronised: ``torch.cuda.synchronize`` runs around every timed stage
(``Tracker.synchronize``), so a stage is charged with the device work it queued.

``--soak N`` runs N small frames (the source's frames downscaled, played forwards then backwards) and samples RSS
every 100 frames; it reports RSS after 500 frames and after N, and frame latency while a re-segmentation is under way
(``FrameResult.keyframe`` / ``resegmenting``) against steady-state latency.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

from ..core.config import Config, MatcherSection
from ..core.errors import MastSamError
from ..core.matchers.base import Matcher
from ..core.matchers.flow import FlowMatcher, downscale
from ..core.segmenters import build_segmenter
from ..core.segmenters.base import Segmenter, grid_points
from ..core.tracker import Tracker
from ..core.types import Proposal
from .frames import demo_source, list_images, read_rgb, shared_dir
from .track import load_config

log = logging.getLogger("mastsam_bench")

#: Stages in report order: (key, what it is). Keys are FrameResult.timings names, plus the bench's own.
STAGES = (
    ("decode", "JPEG read + BGR->RGB (bench)"),
    ("encoder", "segmenter set_image (SAM image encoder)"),
    ("matcher", "matcher push + carry"),
    ("prompt", "batched prompt decoding + mask filters"),
    ("decoder", "of which the segmenter's prompt decoding (predict calls, synchronised)"),
    ("automatic", "automatic segmentation (keyframe / spread slice)"),
    ("new_area", "newly-visible-area segmentation"),
    ("merge", "union-find merge + paint"),
    ("clustering", "k-means mask points"),
    ("output_mono16", "label map -> mono16 bytes (bench)"),
    ("output_png", "label map -> 16-bit PNG (bench)"),
    ("total", "Tracker.step"),
    ("end_to_end", "decode + step + output"),
)
PACKAGES = {"sam": "segment_anything", "mobile_sam": "mobile_sam"}


# --- small helpers -------------------------------------------------------------------------------------------------
def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """High-water RSS of this process in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stats(values) -> dict:
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "median_ms": None, "p95_ms": None, "mean_ms": None, "max_ms": None}
    return {
        "n": int(v.size),
        "median_ms": round(float(np.median(v)), 3),
        "p95_ms": round(float(np.percentile(v, 95)), 3),
        "mean_ms": round(float(v.mean()), 3),
        "max_ms": round(float(v.max()), 3),
    }


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'WxH' -> (W, H)."""
    if not text:
        return None
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 16 or int(h) < 16:
        raise argparse.ArgumentTypeError(f"size '{text}' is not WxH with both sides >= 16 (e.g. 854x480)")
    return int(w), int(h)


def resize(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (frame.shape[1], frame.shape[0]) == size:
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def encode_output(labels: np.ndarray) -> tuple[float, float]:
    """What a front end pays to publish a label map: (ms to mono16 little-endian bytes, ms to a 16-bit PNG)."""
    t0 = time.perf_counter()
    labels.astype("<u2").tobytes()
    t1 = time.perf_counter()
    ok, _ = cv2.imencode(".png", labels.astype(np.uint16))
    t2 = time.perf_counter()
    if not ok:
        raise MastSamError("PNG encoding of the label map failed")
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def torch_info() -> dict:
    """Threads and device facts, without importing torch when no backend did."""
    torch = sys.modules.get("torch")
    info = {"cpu_count": os.cpu_count(), "opencv_threads": cv2.getNumThreads(), "torch_threads": None, "gpu": None}
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def cuda_synchronizer(cfg: Config):
    """``torch.cuda.synchronize`` when a backend runs on CUDA (per-stage timings then mean what they say), else
    None."""
    if not any(str(d).startswith("cuda") for d in (cfg.segmenter.device, cfg.matcher.device)):
        return None
    import torch  # noqa: PLC0415

    return torch.cuda.synchronize if torch.cuda.is_available() else None


def gpu_peak_mb() -> float | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


# --- random full-size weights --------------------------------------------------------------------------------------
def random_checkpoint(backend: str, model_type: str, directory: Path, seed: int = 0) -> Path:
    """Build ``model_type`` from the package's ``sam_model_registry`` with random init and save its state dict.

    The tracker then loads it through ``segmenter.checkpoint`` like any real checkpoint (strict, weights_only).
    """
    import importlib

    import torch

    if backend not in PACKAGES:
        raise MastSamError(f"--random-weights needs a SAM backend (sam or mobile_sam), not '{backend}'")
    with warnings.catch_warnings():  # mobile_sam re-registers timm models with a warning on import
        warnings.simplefilter("ignore")
        pkg = importlib.import_module(PACKAGES[backend])
    torch.manual_seed(seed)
    model = pkg.sam_model_registry[model_type]()
    path = directory / f"random_{model_type}.pth"
    torch.save(model.state_dict(), path)
    return path


# --- fixed track count under random weights ------------------------------------------------------------------------
def stand_in_regions(shape: tuple[int, int], count: int) -> np.ndarray:
    """H x W int32 map of ``count`` rectangles (ids 1..count, 0 = gap): a grid of cells, each rectangle the middle
    70% x 70% of its cell, so about half the frame is covered and the gaps form one large uncovered area (the tracker
    keeps segmenting it as newly visible area, as it does around real objects)."""
    h, w = shape
    cols = int(np.ceil(np.sqrt(count * w / h)))
    rows = int(np.ceil(count / cols))
    out = np.zeros(shape, np.int32)
    for i in range(count):
        r, c = divmod(i, cols)
        y0, y1 = r * h / rows, (r + 1) * h / rows
        x0, x1 = c * w / cols, (c + 1) * w / cols
        my, mx = 0.15 * (y1 - y0), 0.15 * (x1 - x0)
        out[int(y0 + my) : int(y1 - my), int(x0 + mx) : int(x1 - mx)] = i + 1
    return out


class StandInMasks(Segmenter):
    """Runs ``inner``'s full computation for every call, then answers with fixed regions instead of its masks.

    With random weights SAM's masks are noise, and the tracker's filters would make tracks appear and die at random,
    so the track count (which drives the cost of prompting, merging and clustering) would be whatever the noise
    gives. Here every call still runs the real encoder / prompt encoder / mask decoder / upscaling / filtering, but:

    - ``predict``: each prompt gets the region that holds most of its positive points (if none does, the region
      whose centre is nearest their mean: SAM never answers a prompt with nothing);
    - ``generate``: the regions that hold at least one of the seeds (the grid of ``points_per_side``, limited to
      ``region``, or the given ``seeds``), best first.

    ``limit`` (used for the prototype baseline, which has no track cap) keeps at most that many automatic masks.

    The answers have the size the tracker asks for (``mask_shape``, passed on to ``inner`` so that SAM decodes at
    that size as it does in the tracker) and carry probability maps as SAM's do there.
    """

    is_fallback = False

    def __init__(self, inner: Segmenter, count: int, substitute: bool = True, limit: int | None = None):
        self.inner, self.count, self.substitute, self.limit = inner, count, substitute, limit
        self.name = f"{inner.name}+stand-in" if substitute else inner.name
        self._regions: StandInRegions | None = None
        self._points_per_side = getattr(getattr(inner, "cfg", None), "points_per_side", 16)

    @property
    def mask_shape(self) -> tuple[int, int] | None:
        return self.inner.mask_shape

    @mask_shape.setter
    def mask_shape(self, shape: tuple[int, int] | None) -> None:
        self.inner.mask_shape = shape

    @property
    def embeds_ahead(self) -> bool:
        return self.inner.embeds_ahead

    def set_image(self, image: np.ndarray) -> None:
        self.inner.set_image(image)
        self._fit(image.shape[:2])

    def embed(self, image: np.ndarray) -> object:
        """The inner segmenter's embedding (computed ahead in a pipeline when it can), with the frame's size."""
        return self.inner.embed(image), image.shape[:2]

    def set_embedding(self, embedding: object) -> None:
        inner, shape = embedding
        self.inner.set_embedding(inner)
        self._fit(shape)

    def _fit(self, shape: tuple[int, int]) -> None:
        if self._regions is None or self._regions.regions.shape != shape:
            self._regions = StandInRegions(shape, self.count)

    def generate(self, region=None, seeds=None) -> list[Proposal]:
        props = self.inner.generate(region, seeds=seeds)
        if self.substitute:
            shape = self._regions.regions.shape
            pts = grid_points(shape, self._points_per_side, region) if seeds is None else seeds
            props = self._regions.generate(self.mask_shape, pts)
        return props[: self.limit] if self.limit else props

    def predict(self, prompts) -> list[Proposal]:
        props = self.inner.predict(prompts)
        if not self.substitute:
            return props
        return [
            dataclasses.replace(answer, score=prop.score, stability=prop.stability)
            for answer, prop in zip(self._regions.predict(self.mask_shape, prompts), props)
        ]


class StandInRegions:
    """``count`` fixed regions of a frame (:func:`stand_in_regions`) answering as a segmenter would, each call a
    lookup: a prompt gets the region holding most of its positive points (the region whose centre is nearest their
    mean when none does: SAM never answers with nothing), automatic masks are the regions holding a seed, best first.
    Masks and probability maps are prepared once per answer size and shared read-only: a caller that wrote into one
    would fail loudly."""

    def __init__(self, shape: tuple[int, int], count: int):
        self.regions = stand_in_regions(shape, count)
        self.count = count
        self._answers: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
        ys, xs = np.indices(shape)
        ids = np.arange(1, count + 1)
        self._centres = np.stack([ndi.mean(xs, self.regions, ids), ndi.mean(ys, self.regions, ids)], axis=1)

    def answers(self, shape: tuple[int, int] | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """(mask, probability map) of region 0..count at ``shape`` (the frame's when None)."""
        shape = tuple(shape or self.regions.shape)
        if shape not in self._answers:
            small = cv2.resize(self.regions, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
            answers = []
            for i in range(self.count + 1):
                mask = small == i
                soft = mask.astype(np.float32)
                mask.flags.writeable = soft.flags.writeable = False
                answers.append((mask, soft))
            self._answers[shape] = answers
        return self._answers[shape]

    def lookup(self, pts: np.ndarray) -> np.ndarray:
        h, w = self.regions.shape
        xy = np.clip(np.round(pts).astype(int), 0, [w - 1, h - 1])
        return self.regions[xy[:, 1], xy[:, 0]]

    def generate(self, shape, seeds) -> list[Proposal]:
        answers = self.answers(shape)
        ids = sorted({int(i) for i in self.lookup(np.asarray(seeds, np.float32).reshape(-1, 2))} - {0})
        return [Proposal(answers[i][0], score=0.95 - 0.01 * i, stability=0.95, soft=answers[i][1]) for i in ids]

    def predict(self, shape, prompts) -> list[Proposal]:
        if not prompts:
            return []
        answers = self.answers(shape)
        pos = [np.asarray(p.points, np.float32)[np.asarray(p.labels) == 1] for p in prompts]
        # one lookup and one count for all prompts: votes[i, r] = prompt i's positive points in region r
        owner = np.repeat(np.arange(len(pos)), [len(q) for q in pos])
        votes = np.bincount(owner * (self.count + 1) + self.lookup(np.concatenate(pos)),
                            minlength=len(pos) * (self.count + 1)).reshape(len(pos), self.count + 1)
        votes[:, 0] = 0  # outside every region
        out = []
        for q, best, most in zip(pos, votes.argmax(axis=1).tolist(), votes.max(axis=1).tolist()):
            if not most:
                best = 1 + int(np.argmin(np.linalg.norm(self._centres - q.mean(axis=0), axis=1)))
            out.append(Proposal(answers[best][0], score=0.9, stability=0.9, soft=answers[best][1]))
        return out


# --- baseline (b)'s correspondence search ---------------------------------------------------------------------------
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


# --- the overhead mode: backends that cost nothing -------------------------------------------------------------------
class ZeroCostSegmenter(Segmenter):
    """Fixed regions (:class:`StandInRegions`) as answers, at the tracker's working resolution, so a call costs a
    lookup. Each answer carries its probability map too, as SAM's do at the working size (:class:`Proposal`'s
    ``soft``)."""

    name = "zero-cost"
    is_fallback = True

    def __init__(self, shape: tuple[int, int], count: int):
        self.stand_in = StandInRegions(shape, count)
        self.regions, self.count = self.stand_in.regions, count

    def set_image(self, image: np.ndarray) -> None:
        pass

    def generate(self, region=None, seeds=None) -> list[Proposal]:
        pts = grid_points(self.regions.shape, 16) if seeds is None else seeds
        return self.stand_in.generate(self.mask_shape, pts)

    def predict(self, prompts) -> list[Proposal]:
        return self.stand_in.predict(self.mask_shape, prompts)


class ReplayFlow(FlowMatcher):
    """The flow matcher with its DIS fields computed before the timed run (``pair_ahead`` of each consecutive pair of
    ``frames``); ``push`` then installs the next recorded pair (``push_ahead``), so carrying points and warping masks
    cost what they cost and the flow itself nothing."""

    name = "flow-replay"

    def __init__(self, cfg: MatcherSection, frames: list[np.ndarray]):
        super().__init__(cfg)
        self._recorded = [self.pair_ahead(prev, frame) for prev, frame in zip([None, *frames[:-1]], frames)]
        self._next = 0

    def push(self, image: np.ndarray) -> None:
        ahead = self._recorded[self._next % len(self._recorded)]
        self._next += 1
        self.push_ahead(image, ahead)

    def reset(self) -> None:
        super().reset()
        self._next = 0


class MachineProbe:
    """A fixed piece of work that does not use the project's code, timed before each frame of ``--overhead``: the
    machine's speed at the time of the run. This shared machine's speed moves by up to 2x at the same load, and the
    ratio of the overhead to the probe moves much less than either, so runs taken at different times can be read
    together. The work is of the tracker's kinds, about 0.4 ms: a threshold and OpenCV's connected components on a
    fixed 256 x 144 map of random 8 x 8 blocks, 96 small NumPy calls, and an 854 x 480 uint32 fill. It must stay the
    same from one version of the project to the next."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self._map = cv2.resize(rng.random((18, 32), dtype=np.float32), (256, 144), interpolation=cv2.INTER_NEAREST)
        self._small = [rng.random(16, dtype=np.float32) for _ in range(8)]
        self._big = np.empty((480, 854), np.uint32)

    def __call__(self) -> float:
        t0 = time.perf_counter()
        cv2.connectedComponents((self._map >= 0.5).view(np.uint8), connectivity=8)
        for a in self._small * 4:
            np.flatnonzero(np.concatenate([a, a]) > 0.5)
        self._big.fill(7)
        return (time.perf_counter() - t0) * 1e3


def run_overhead(cfg: Config, files: list[Path], size, tracks: int, progress: bool = True) -> dict:
    """The tracker's own cost per frame with zero-cost backends (see the module docstring), and the
    :class:`MachineProbe` run before each frame."""
    frames = [load_frame(f, size)[0] for f in files]
    segmenter = ZeroCostSegmenter(frames[0].shape[:2], tracks)
    tracker = Tracker(cfg, segmenter=segmenter, matcher=ReplayFlow(cfg.matcher, frames))
    per_stage: dict[str, list[float]] = {}
    counts, probe, probed = [], MachineProbe(), []
    for i, frame in enumerate(frames):
        probed.append(probe())
        res = tracker.step(frame)
        if i:
            counts.append(len(res.tracks))
            for k, v in res.timings.items():
                per_stage.setdefault(k, []).append(v)
        if progress:
            print(f"\roverhead frame {i + 1}/{len(frames)}  {res.timings['total']:7.2f} ms  tracks {len(res.tracks)}",
                  end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    tracker.close()
    return {
        "frames": len(frames),
        "work_shape": list(tracker.work_shape),
        "stages": {k: stats(v) for k, v in per_stage.items()},
        "tracks": {"mean": round(float(np.mean(counts)), 2) if counts else 0,
                   "min": min(counts, default=0), "max": max(counts, default=0)},
        "overhead_ms_median": stats(per_stage.get("total", []))["median_ms"],
        "probe_ms_median": round(float(np.median(probed[1:] or probed)), 3),
    }


# --- frames --------------------------------------------------------------------------------------------------------
def default_source() -> Path | None:
    seq = demo_source()
    if seq is not None:
        return seq
    bedroom = shared_dir() / "data" / "bedroom"
    return bedroom if bedroom.is_dir() else None


def frame_files(source: Path, n: int) -> list[Path]:
    files = list_images(source)
    if len(files) < n:  # long runs replay the sequence forwards then backwards (no cut at the wrap)
        files = files + files[-2:0:-1] if len(files) > 2 else files
        files = (files * (n // len(files) + 1))[:n]
    return files[:n]


def load_frame(path: Path, size) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    rgb = read_rgb(path)
    ms = (time.perf_counter() - t0) * 1e3
    if rgb is None:
        raise MastSamError(f"cannot read {path}")
    return resize(rgb, size), ms


# --- the runs ------------------------------------------------------------------------------------------------------
def during_resegmentation(results: list[tuple[bool, bool, float]]) -> dict:
    """Latency while a re-segmentation is under way (keyframe or spread slice) vs the other frames.

    ``results``: (is_first_or_reset, under_resegmentation, latency ms) per frame; first / reset frames are left out
    (their initial segmentation has nothing to be compared with)."""
    during = [ms for first, reseg, ms in results if not first and reseg]
    steady = [ms for first, reseg, ms in results if not first and not reseg]
    d, s = stats(during), stats(steady)
    return {"during": d, "steady": s, "p95_ratio": ratio(d["p95_ms"], s["p95_ms"])}


class DecoderClock:
    """Times a segmenter's ``predict`` calls (the prompt decoder), synchronised like the tracker's stages, so the
    bench can set the model floor of a frame (encoder + decoder) beside its ``Tracker.step``."""

    def __init__(self, tracker: Tracker):
        self.tracker, self.ms = tracker, 0.0
        segmenter = tracker.segmenter
        inner = segmenter.predict

        def predict(prompts):
            sync = tracker.synchronize or (lambda: None)
            sync()
            t0 = time.perf_counter()
            try:
                return inner(prompts)
            finally:
                sync()
                self.ms += (time.perf_counter() - t0) * 1e3

        segmenter.predict = predict  # this instance only

    def take(self) -> float:
        ms, self.ms = self.ms, 0.0
        return ms


def run_tracker(tracker: Tracker, files: list[Path], size, progress: bool = True) -> dict:
    per_stage: dict[str, list[float]] = {k: [] for k, _ in STAGES}
    first_stages: dict[str, float] = {}
    tracks, reseg, rss, per_frame = [], [], [], []
    clock = DecoderClock(tracker)
    for i, path in enumerate(files):
        frame, decode_ms = load_frame(path, size)
        clock.take()
        res = tracker.step(frame)
        decoder_ms = clock.take()
        mono_ms, png_ms = encode_output(res.labels)
        t = dict(res.timings)
        t.update(decode=decode_ms, output_mono16=mono_ms, output_png=png_ms, decoder=decoder_ms)
        t["end_to_end"] = decode_ms + t["total"] + mono_ms + png_ms
        under = bool(res.keyframe or getattr(res, "resegmenting", False))
        reseg.append((i == 0 or res.reset, under, t["end_to_end"]))
        rss.append(rss_mb())
        per_frame.append({"index": res.index, "keyframe": bool(res.keyframe), "under_resegmentation": under,
                          "tracks": len(res.tracks), **{k: round(v, 2) for k, v in t.items()}})
        if i == 0:
            first_stages = {k: round(v, 3) for k, v in t.items()}
        else:
            tracks.append(len(res.tracks))
            for k in per_stage:
                if k in t:
                    per_stage[k].append(t[k])
        if progress:
            print(f"\rtracker frame {i + 1}/{len(files)}  {t['end_to_end']:8.1f} ms  tracks {len(res.tracks)}",
                  end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    steady = {k: stats(v) for k, v in per_stage.items()}
    e2e = per_stage["end_to_end"]
    steady_frames = [f for f, (first, under, _) in zip(per_frame, reseg) if not first and not under]
    # The model floor of a frame: its encoder and its prompt decoding, as measured in this run (a dense matcher's
    # flow is CPU work beside the networks and is not part of it). Overhead: what Tracker.step adds to it.
    floors = [(f["total"], f.get("encoder", 0.0) + f["decoder"]) for f in steady_frames]
    return {
        "frames": len(files),
        "steady_frames": len(files) - 1,
        "stages": steady,
        "first_frame_ms": first_stages,
        "fps": round(1000.0 * len(e2e) / sum(e2e), 3) if e2e else None,
        "total_over_encoder_median": ratio(steady["total"]["median_ms"], steady["encoder"]["median_ms"]),
        "floor": {
            "what": "encoder + prompt decoder of each frame outside re-segmentation (synchronised), this run",
            "floor_ms_median": round(float(np.median([b for _, b in floors])), 2) if floors else None,
            "step_over_floor_median": round(float(np.median([a / b for a, b in floors if b > 0])), 3)
            if floors else None,
            "overhead_ms_median": round(float(np.median([a - b for a, b in floors])), 2) if floors else None,
        },
        "end_to_end_over_encoder_median": ratio(steady["end_to_end"]["median_ms"], steady["encoder"]["median_ms"]),
        # Per-frame step / encoder of the same frame, split: a long run with a setting that re-segments all the time
        # (few seeds a frame) lives in the first group, so both must meet a ratio target, not just their pooled median.
        "step_over_encoder_by_frame": {
            group: {"n": len(vals), "median": round(float(np.median(vals)), 3) if vals else None}
            for group, vals in (
                ("under_resegmentation", [f["total"] / f["encoder"] for f, (first, under, _) in zip(per_frame, reseg)
                                          if not first and under and f.get("encoder")]),
                ("other", [f["total"] / f["encoder"] for f in steady_frames if f.get("encoder")]),
            )
        },
        "tracks": {"mean": round(float(np.mean(tracks)), 2) if tracks else 0,
                   "min": min(tracks, default=0), "max": max(tracks, default=0)},
        "frames_under_resegmentation": sum(1 for _, under, _ in reseg if under),
        "resegmentation": {
            **during_resegmentation(reseg),
            # the steady frames split: those that segmented newly visible area, and the rest
            "steady_new_area": stats(f["end_to_end"] for f in steady_frames if "new_area" in f),
            "steady_plain": stats(f["end_to_end"] for f in steady_frames if "new_area" not in f),
        },
        "rss_mb": {"max_during_run": round(max(rss), 1), "end": round(rss[-1], 1)},
        "per_frame": per_frame,
    }


def run_automatic(segmenter: Segmenter, backend: str, files: list[Path], size, points_per_side: int = 32) -> dict:
    """Baseline (a): per-frame automatic mask generation, encoder pass included."""
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
            frame, _ = load_frame(path, size)
            t0 = time.perf_counter()
            masks = gen.generate(frame)
            times.append((time.perf_counter() - t0) * 1e3)
            counts.append(len(masks))
    else:
        what = f"{inner.name}: set_image + generate() of the whole frame"
        for path in files:
            frame, _ = load_frame(path, size)
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
    per-frame figure, as for the tracker."""
    from ..evaluation.baselines import Prototype

    inner = getattr(segmenter, "inner", segmenter)
    if substitute is None:
        substitute = isinstance(segmenter, StandInMasks) and segmenter.substitute
    seg = StandInMasks(proto_segmenter or inner, tracks, substitute=substitute, limit=tracks)
    upstream = matcher is not None
    if matcher is None:
        matcher = BruteForceMatcher(cfg.matcher.max_side, cfg.matcher.max_error_px)
    proto = Prototype(cfg, seg, matcher, kmeans)
    times, masks, match_ms = [], [], []
    orig_carry = matcher.carry

    def timed_carry(points):
        t0 = time.perf_counter()
        try:
            return orig_carry(points)
        finally:
            match_ms[-1] += (time.perf_counter() - t0) * 1e3

    matcher.carry = timed_carry
    for i, path in enumerate(files):
        frame, _ = load_frame(path, size)
        match_ms.append(0.0)
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
        "brute_force_search_ms": stats(match_ms[1:]),
        "masks_per_frame": masks,
    }
    if upstream:
        out["method"] = (
            f"evaluation.baselines.Prototype (one predict call per mask), {proto_label}, + upstream "
            f"MASt3R forward per pair (fp32) and fast_reciprocal_NNs over all pixels (subsample "
            f"{matcher.subsample}, dist dot)"
        )
        del out["brute_force_search_ms"]
        out["matcher_ms"] = stats(match_ms[1:])
        out["mast3r_forward_ms"] = stats(matcher.timings["forward_ms"])
        out["reciprocal_nn_ms"] = stats(matcher.timings["reciprocal_nn_ms"])
    return out


def run_soak(tracker: Tracker, files: list[Path], size, every: int = 100) -> dict:
    """``len(files)`` frames through the tracker; RSS every ``every`` frames; latency during re-segmentation."""
    frames_cache: dict[Path, np.ndarray] = {}
    samples, reseg, tracks = [], [], []
    t_start = time.perf_counter()
    for i, path in enumerate(files):
        frame = frames_cache.get(path)
        if frame is None:  # decode each distinct file once: the soak measures the tracker, not the JPEG reader
            frame = frames_cache[path] = load_frame(path, size)[0]
        res = tracker.step(frame)
        encode_output(res.labels)
        reseg.append((i == 0 or res.reset, bool(res.keyframe or getattr(res, "resegmenting", False)),
                      res.timings["total"]))
        tracks.append(len(res.tracks))
        if (i + 1) % every == 0 or i + 1 == len(files):
            samples.append((i + 1, round(rss_mb(), 2)))
            print(f"\rsoak frame {i + 1}/{len(files)}  rss {samples[-1][1]:.1f} MiB", end="", file=sys.stderr,
                  flush=True)
    print(file=sys.stderr)
    at = dict(samples)
    n = len(files)
    r500 = at.get(500)
    return {
        "frames": n,
        "seconds": round(time.perf_counter() - t_start, 1),
        "rss_samples_mb": samples,
        "rss_at_500_mb": r500,
        "rss_at_end_mb": at[n],
        "rss_growth_500_to_end_mb": round(at[n] - r500, 2) if r500 is not None else None,
        "tracks": {"mean": round(float(np.mean(tracks)), 2), "min": min(tracks), "max": max(tracks)},
        "step_ms": stats(ms for _, _, ms in reseg[1:]),
        "resegmentation": during_resegmentation(reseg),
    }


# --- front end -----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mastsam-bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=None,
                   help="image directory (default: ../shared/data/davis2016 car-roundabout, else bedroom)")
    p.add_argument("--frames", type=int, default=61,
                   help="tracker frames (default 61: with keyframe_interval 30, two scheduled re-segmentations)")
    p.add_argument("--size", type=parse_size, default=None, help="resize frames to WxH (default: as stored)")
    p.add_argument("--segmenter", choices=("mobile_sam", "sam", "classical"), default=None,
                   help="segmenter.backend (default: the config's)")
    p.add_argument("--model-type", default=None, help="segmenter.model_type for backend sam (vit_h, vit_l, vit_b)")
    p.add_argument("--checkpoint", default=None, help="segmenter.checkpoint")
    p.add_argument("--random-weights", action="store_true",
                   help="full-size model with random weights (same compute, meaningless masks)")
    p.add_argument("--matcher", choices=("flow", "xfeat", "mast3r", "cadence"), default=None, help="matcher.backend")
    p.add_argument("--device", default=None, help="segmenter.device and matcher.device (cpu, cuda)")
    p.add_argument("--tracks", type=int, default=8, help="tracker.max_tracks, and the stand-in region count")
    p.add_argument("--stand-in-masks", choices=("auto", "on", "off"), default="auto",
                   help="replace segmenter masks by --tracks fixed regions after the real compute "
                        "(auto: with --random-weights)")
    p.add_argument("--compare", default="a,b", help="comparisons to run: a (automatic 32x32), b (prototype), none")
    p.add_argument("--automatic-frames", type=int, default=2, help="frames for comparison (a)")
    p.add_argument("--automatic-points-per-side", type=int, default=32,
                   help="grid of comparison (a) (default 32, the figure compared; smaller only for dry runs)")
    p.add_argument("--prototype-frames", type=int, default=None,
                   help="frames for comparison (b), the first excluded (default: --frames, so its periodic "
                        "newly-visible-area work is amortised like the tracker's)")
    p.add_argument("--prototype-model-type", choices=("vit_h", "vit_l", "vit_b", "vit_t"), default="vit_h",
                   help="SAM model of comparison (b) when the tracker runs MASt3R (fp32; default vit_h, the "
                        "prototype's)")
    p.add_argument("--prototype-checkpoint", default=None,
                   help="checkpoint of --prototype-model-type for (b) with MASt3R (default: the tracker's when it is "
                        "that model; random with --random-weights)")
    p.add_argument("--prototype-subsample", type=int, default=8,
                   help="fast_reciprocal_NNs seed grid step for (b) with MASt3R (8: upstream's example)")
    p.add_argument("--overhead", action="store_true",
                   help="the tracker's own cost per frame with zero-cost backends (see above); last line: "
                        "overhead_ms_median")
    p.add_argument("--soak", type=int, default=0, metavar="N", help="soak mode: N small frames, RSS every 100")
    p.add_argument("--soak-size", type=parse_size, default=(160, 90), help="soak frame size WxH (default 160x90)")
    p.add_argument("--config", type=Path, default=None, help="params YAML (default: config/tracker.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config field, repeatable")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--quiet", action="store_true", help="no per-frame progress")
    return p


def configure(args) -> Config:
    overrides = []
    for key, value in (
        ("segmenter.backend", args.segmenter),
        ("segmenter.model_type", args.model_type),
        ("segmenter.checkpoint", args.checkpoint),
        ("matcher.backend", args.matcher),
        ("segmenter.device", args.device),
        ("matcher.device", args.device),
        ("tracker.max_tracks", args.tracks),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(args.config, overrides + list(args.set or []))


def print_report(report: dict) -> None:
    run = report["run"]
    print(f"\nmastsam-bench: {run['segmenter']} ({run['weights']}), matcher {run['matcher']}, "
          f"{run['resolution'][0]}x{run['resolution'][1]}, device {run['device']}, "
          f"torch threads {report['machine']['torch_threads']}, cores {report['machine']['cpu_count']}, "
          f"load {report['machine']['load_start']} -> {report['machine']['load_end']}")
    if run.get("masks_note"):
        print(f"masks: {run['masks_note']}")
    tr = report.get("tracker")
    if tr:
        print(f"tracker: {tr['frames']} frames (steady state: the last {tr['steady_frames']}), "
              f"tracks mean {tr['tracks']['mean']} (min {tr['tracks']['min']}, max {tr['tracks']['max']})")
        print(f"{'stage':<15}{'runs':>6}{'median ms':>12}{'p95 ms':>12}{'mean ms':>12}  what")
        for key, what in STAGES:
            s = tr["stages"][key]
            if s["n"]:
                print(f"{key:<15}{s['n']:>6}{s['median_ms']:>12.1f}{s['p95_ms']:>12.1f}{s['mean_ms']:>12.1f}  {what}")
        fl = tr["floor"]
        print(f"model floor (encoder + prompt decoder, frames outside re-segmentation): median {fl['floor_ms_median']}"
              f" ms; Tracker.step / floor {fl['step_over_floor_median']}; overhead {fl['overhead_ms_median']} ms")
        print(f"end-to-end: {tr['fps']} fps; median Tracker.step / median encoder = {tr['total_over_encoder_median']}"
              f" (end-to-end / encoder = {tr['end_to_end_over_encoder_median']})")
        by = tr["step_over_encoder_by_frame"]
        print(f"per-frame Tracker.step / encoder, median: under re-segmentation {by['under_resegmentation']['median']}"
              f" ({by['under_resegmentation']['n']} frames), other frames {by['other']['median']} ({by['other']['n']})")
        rs = tr["resegmentation"]
        print(f"re-segmentation: p95 {rs['during']['p95_ms']} ms over {rs['during']['n']} frames vs steady p95 "
              f"{rs['steady']['p95_ms']} ms: ratio {rs['p95_ratio']} (steady p95: new-area frames "
              f"{rs['steady_new_area']['p95_ms']} ms over {rs['steady_new_area']['n']}, others "
              f"{rs['steady_plain']['p95_ms']} ms over {rs['steady_plain']['n']})")
    for key, label in (("automatic", "(a) automatic"), ("prototype", "(b) prototype loop")):
        c = report.get("comparisons", {}).get(key)
        if c:
            if c.get("points_per_side"):
                label += f" {c['points_per_side']}x{c['points_per_side']}"
            print(f"{label}: {c['ms_per_frame']['mean_ms']} ms/frame over {c['ms_per_frame']['n']} frames; "
                  f"tracker throughput = {c['throughput_ratio']}x  [{c['method']}]")
    mem = report.get("memory")
    if mem:
        print(f"memory: peak RSS {mem['peak_rss_mb']} MiB (process high-water, model build included); "
              f"max RSS during the tracker run {mem['max_rss_during_tracker_mb']} MiB; GPU peak {mem['gpu_peak_mb']}")
    soak = report.get("soak")
    if soak:
        growth = soak["rss_growth_500_to_end_mb"]
        print(f"soak: {soak['frames']} frames in {soak['seconds']} s, RSS {soak['rss_at_500_mb']} MiB at 500 -> "
              f"{soak['rss_at_end_mb']} MiB at {soak['frames']} ({'n/a' if growth is None else f'{growth:+}'} MiB); "
              f"tracks mean {soak['tracks']['mean']}; step median {soak['step_ms']['median_ms']} ms")
        rs = soak["resegmentation"]
        print(f"soak re-segmentation: p95 {rs['during']['p95_ms']} ms over {rs['during']['n']} frames vs steady p95 "
              f"{rs['steady']['p95_ms']} ms: ratio {rs['p95_ratio']}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=UserWarning)  # timm / mobile_sam registration noise
    compare = set() if args.compare.strip() in ("", "none") else {c.strip() for c in args.compare.split(",")}
    if not compare <= {"a", "b"}:
        log.error("--compare takes a, b, a,b or none; got '%s'", args.compare)
        return 2
    if args.automatic_points_per_side < 1:
        log.error("--automatic-points-per-side must be >= 1; got %d", args.automatic_points_per_side)
        return 2
    source = args.source or default_source()
    if source is None or not source.is_dir():
        log.error("no frame directory: pass --source DIR (../shared/data not found)")
        return 2
    load_start = [round(x, 2) for x in os.getloadavg()]
    if args.overhead:
        return main_overhead(args, source, load_start, argv)
    try:
        cfg = configure(args)
        backend = cfg.segmenter.backend
        with tempfile.TemporaryDirectory(prefix="mastsam-bench-") as tmp:
            if args.random_weights:
                model_type = "vit_t" if backend == "mobile_sam" else cfg.segmenter.model_type
                cfg.set("segmenter.checkpoint", str(random_checkpoint(backend, model_type, Path(tmp))))
            segmenter = build_segmenter(cfg.segmenter)  # loads the checkpoint now, while the file exists
            proto_segmenter = None
            uses_mast3r = cfg.matcher.backend == "mast3r" or (
                cfg.matcher.backend == "cadence" and cfg.matcher.anchor_backend == "mast3r")
            if "b" in compare and uses_mast3r:
                proto_segmenter = prototype_segmenter(args, cfg, segmenter, Path(tmp))
        substitute = args.stand_in_masks == "on" or (args.stand_in_masks == "auto" and args.random_weights)
        if substitute:
            segmenter = StandInMasks(segmenter, args.tracks)
        tracker = Tracker(cfg, segmenter=segmenter)
        tracker.synchronize = cuda_synchronizer(cfg)
        n = args.soak if args.soak else args.frames
        if args.prototype_frames is None:
            args.prototype_frames = args.frames
        files = frame_files(source, max(n, args.automatic_frames, args.prototype_frames))
    except (MastSamError, FileNotFoundError) as e:
        log.error("%s", e)
        return 2

    size = args.soak_size if args.soak else args.size
    first = read_rgb(files[0])
    resolution = list(size) if size else [int(first.shape[1]), int(first.shape[0])]
    model = {"sam": cfg.segmenter.model_type, "mobile_sam": "vit_t"}.get(backend, "none")
    report = {
        "run": {
            "command": "mastsam-bench " + " ".join(argv if argv is not None else sys.argv[1:]),
            "mode": "soak" if args.soak else "bench",
            "segmenter": f"{backend} {model}" if model != "none" else backend,
            "weights": "random (full-size architecture)" if args.random_weights
            else (cfg.segmenter.checkpoint or "none"),
            "matcher": cfg.matcher.backend,
            "device": cfg.segmenter.device,
            "resolution": resolution,
            "source": str(source),
            "max_tracks": cfg.tracker.max_tracks,
            "keyframe_interval": cfg.tracker.keyframe_interval,
            "resegment_seeds_per_frame": getattr(cfg.tracker, "resegment_seeds_per_frame", None),
            "points_per_side": cfg.segmenter.points_per_side,
            "stand_in_masks": substitute,
            "masks_note": (
                f"random weights: every segmenter call runs in full, then its masks are replaced by {args.tracks} "
                "fixed rectangles (StandInMasks) so the tracker holds a fixed track count" if substitute else ""
            ),
        },
        "machine": {},
        "config": cfg.as_dict(),
    }
    try:
        if args.soak:
            report["soak"] = run_soak(tracker, files[:n], size)
        else:
            report["tracker"] = run_tracker(tracker, files[:n], size, progress=not args.quiet)
            report["memory"] = {
                # ru_maxrss is refreshed lazily by the kernel, so it can trail a fresh /proc sample
                "peak_rss_mb": round(max(peak_rss_mb(), report["tracker"]["rss_mb"]["max_during_run"]), 1),
                "max_rss_during_tracker_mb": report["tracker"]["rss_mb"]["max_during_run"],
                "gpu_peak_mb": gpu_peak_mb(),
            }
            steady_mean = report["tracker"]["stages"]["total"]["mean_ms"]
            comps = report["comparisons"] = {}
            if "a" in compare:
                comps["automatic"] = run_automatic(tracker.segmenter, backend, files[: args.automatic_frames], size,
                                                   points_per_side=args.automatic_points_per_side)
            if "b" in compare:
                model = mast3r_model_of(tracker.matcher)
                upstream = UpstreamMast3rMatcher(model, args.prototype_subsample) if model is not None else None
                comps["prototype"] = run_prototype(cfg, tracker.segmenter, tracker.kmeans, args.tracks,
                                                   files[: args.prototype_frames], size, matcher=upstream,
                                                   proto_segmenter=proto_segmenter, substitute=substitute,
                                                   proto_label=f"SAM {args.prototype_model_type} fp32")
            for c in comps.values():
                c["throughput_ratio"] = ratio(c["ms_per_frame"]["mean_ms"], steady_mean)
            if comps:
                comps["ratio_basis"] = ("mean ms per frame of the method / mean Tracker.step ms over the tracker's "
                                        "steady-state frames (keyframes and new-area frames included)")
    except MastSamError as e:
        log.error("%s", e)
        return 2
    report["machine"] = {
        **torch_info(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_start": load_start,
        "load_end": [round(x, 2) for x in os.getloadavg()],
    }
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


def main_overhead(args, source: Path, load_start: list[float], argv) -> int:
    try:
        cfg = configure(args)
        files = frame_files(source, args.frames)
        report = {"run": {"command": "mastsam-bench " + " ".join(argv if argv is not None else sys.argv[1:]),
                          "mode": "overhead", "source": str(source), "max_tracks": cfg.tracker.max_tracks},
                  "config": cfg.as_dict()}
        report["overhead"] = o = run_overhead(cfg, files, args.size, args.tracks, progress=not args.quiet)
    except (MastSamError, FileNotFoundError) as e:
        log.error("%s", e)
        return 2
    report["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                         "cpu_count": os.cpu_count(), "load_start": load_start,
                         "load_end": [round(x, 2) for x in os.getloadavg()]}
    first = read_rgb(files[0])
    res = list(args.size) if args.size else [int(first.shape[1]), int(first.shape[0])]
    print(f"\nmastsam-bench --overhead: {res[0]}x{res[1]} (working map {o['work_shape'][1]}x{o['work_shape'][0]}), "
          f"{o['frames']} frames, tracks mean {o['tracks']['mean']} "
          f"(min {o['tracks']['min']}, max {o['tracks']['max']}),"
          f" zero-cost segmenter, replayed flow; load {load_start} -> {report['machine']['load_end']}")
    print(f"{'stage':<15}{'runs':>6}{'median ms':>12}{'p95 ms':>12}{'mean ms':>12}")
    for key, st in o["stages"].items():
        print(f"{key:<15}{st['n']:>6}{st['median_ms']:>12.3f}{st['p95_ms']:>12.3f}{st['mean_ms']:>12.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    ratio = o["overhead_ms_median"] / o["probe_ms_median"] if o["probe_ms_median"] else float("nan")
    print(f"machine probe (fixed work outside the project, run before each frame): median {o['probe_ms_median']:.3f}"
          f" ms; overhead / probe {ratio:.2f}")
    print(f"overhead_ms_median: {o['overhead_ms_median']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
