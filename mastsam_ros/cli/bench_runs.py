"""``mastsam-bench``'s measured runs (the tracker, the soak, the overhead) and the helpers the bench's modules share.

Every run sends its frames through the :class:`~mastsam_ros.core.stream.Stream`, the path every front end's frames
take, with nothing computed ahead (``ahead=False``): each frame's ``Tracker.step`` then encodes it and computes the
matcher's pair itself (side by side when ``tracker.overlap_matcher``), so ``FrameResult.timings`` hold every stage of
the frame, the encoder included. The stream's entrance waits (no frame is dropped) and the figures of each frame are
taken in ``deliver``, in the tracking thread right after its step: nothing of the next step is running then.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import resource
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..core.config import Config
from ..core.errors import MastSamError
from ..core.stream import Outcome, Stream
from ..core.tracker import Tracker
from ..evaluation.instruments import DecoderClock, MachineProbe, ReplayFlow, ZeroCostSegmenter
from .frames import demo_source, list_images, read_rgb, shared_dir

log = logging.getLogger("mastsam_bench")

#: Stages in report order: (key, what it is). Keys are FrameResult.timings names, plus the bench's own.
STAGES = (
    ("decode", "the stream's decoding stage: JPEG read + BGR->RGB (+ resize to --size)"),
    ("encoder", "segmenter set_image (SAM image encoder)"),
    ("matcher", "matcher push + carry"),
    ("prompt", "batched prompt decoding + mask filters"),
    ("decoder", "of which the segmenter's prompt decoding (predict calls, synchronised)"),
    ("automatic", "automatic segmentation (keyframe / spread slice)"),
    ("new_area", "newly-visible-area segmentation"),
    ("merge", "union-find merge + paint"),
    ("clustering", "k-means mask points"),
    ("output_mono16", "label image -> mono16 bytes (bench)"),
    ("output_png", "label image -> 16-bit PNG (bench)"),
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
    """What a front end pays to publish a label image: (ms to mono16 little-endian bytes, ms to a 16-bit PNG)."""
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


def load_frame(path: Path, size) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB, resized to ``size`` (W, H) when given; MastSamError when unreadable."""
    rgb = read_rgb(path)
    if rgb is None:
        raise MastSamError(f"cannot read {path}")
    return resize(rgb, size)


# --- the stream ----------------------------------------------------------------------------------------------------
def stream_frames(tracker: Tracker, items: Iterable[Any], deliver: Callable[[Outcome], None],
                  decode: Callable[[Any], np.ndarray], ahead: bool = False) -> dict[str, int]:
    """Every item through a :class:`Stream` of ``tracker`` (the entrance waits: none dropped), ``decode`` in its
    decoding thread, ``deliver`` with each tracked frame's outcome in its tracking thread, in order. Returns the
    stream's counts. Raises MastSamError when a frame failed (the first one's error) or ``deliver`` raised: a
    benchmark's figures are of every frame or of none."""
    failed: list[Outcome] = []

    def on_outcome(out: Outcome) -> None:
        if out.error is not None:
            failed.append(out)
        else:
            deliver(out)

    stream = Stream(tracker, on_outcome, decode=decode, ahead=ahead, name="bench")
    try:
        for item in items:
            stream.submit(item, block=True)
        stream.flush()
    finally:
        stream.close()
    counts = stream.counts()
    if failed:
        first = failed[0]
        raise MastSamError(f"{counts['errors']} frame(s) failed, the first (frame {first.seq}): {first.error}")
    if counts["deliver_errors"]:
        raise MastSamError(f"the bench's figures failed on {counts['deliver_errors']} frame(s) (logged above)")
    return counts


def progress_line(what: str, i: int, n: int, ms: float, tracks: int) -> None:
    end = "\n" if i + 1 == n else ""
    print(f"\r{what} frame {i + 1}/{n}  {ms:8.2f} ms  tracks {tracks}", end=end, file=sys.stderr, flush=True)


# --- the runs ------------------------------------------------------------------------------------------------------
def during_resegmentation(results: list[tuple[bool, bool, float]]) -> dict:
    """Latency while a re-segmentation is under way (keyframe or spread slice) vs the other frames.

    ``results``: (is_first_or_reset, under_resegmentation, latency ms) per frame; first / reset frames are left out
    (their initial segmentation has nothing to be compared with)."""
    during = [ms for first, reseg, ms in results if not first and reseg]
    steady = [ms for first, reseg, ms in results if not first and not reseg]
    d, s = stats(during), stats(steady)
    return {"during": d, "steady": s, "p95_ratio": ratio(d["p95_ms"], s["p95_ms"])}


def run_tracker(tracker: Tracker, files: list[Path], size, progress: bool = True) -> dict:
    """``files`` through the stream and ``tracker``, whose segmenter is a :class:`DecoderClock` (the prompt decoder's
    time per frame); per stage and per frame figures, frame 0 left out of the steady state."""
    clock = tracker.segmenter
    if not isinstance(clock, DecoderClock):
        raise TypeError("run_tracker times the prompt decoder: build the tracker with a DecoderClock segmenter")
    per_stage: dict[str, list[float]] = {k: [] for k, _ in STAGES}
    first_stages: dict[str, float] = {}
    tracks, reseg, rss, per_frame = [], [], [], []
    clock.take()

    def deliver(out: Outcome) -> None:
        nonlocal first_stages
        res, i = out.result, out.seq
        decoder_ms = clock.take()  # the step just ended in this thread: its predict calls, none of the next
        mono_ms, png_ms = encode_output(out.labels)
        t = dict(res.timings)
        t.update(decode=out.stage_ms["decode"], output_mono16=mono_ms, output_png=png_ms, decoder=decoder_ms)
        t["end_to_end"] = t["decode"] + t["total"] + mono_ms + png_ms
        under = bool(res.keyframe or res.resegmenting)
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
            progress_line("tracker", i, len(files), t["end_to_end"], len(res.tracks))

    stream_frames(tracker, files, deliver, decode=lambda path: load_frame(path, size))
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


def run_soak(tracker: Tracker, files: list[Path], size, every: int = 100) -> dict:
    """``len(files)`` frames through the stream and ``tracker``; RSS and the dormant set's size every ``every``
    frames; the track events counted by kind (``born``: new ids); latency (the step) during re-segmentation."""
    frames_cache: dict[Path, np.ndarray] = {}
    samples, reseg, tracks, dormant = [], [], [], []
    events: Counter = Counter()
    n = len(files)

    def decode(path: Path) -> np.ndarray:  # each distinct file once: the soak measures the tracker, not the reader
        frame = frames_cache.get(path)
        if frame is None:
            frame = frames_cache[path] = load_frame(path, size)
        return frame

    def deliver(out: Outcome) -> None:
        res, i = out.result, out.seq
        encode_output(out.labels)
        reseg.append((i == 0 or res.reset, bool(res.keyframe or res.resegmenting), res.timings["total"]))
        tracks.append(len(res.tracks))
        events.update(e.kind for e in res.events)
        dormant.append(len(tracker.dormant))  # read in the tracking thread, between two steps
        if (i + 1) % every == 0 or i + 1 == n:
            samples.append((i + 1, round(rss_mb(), 2)))
            print(f"\rsoak frame {i + 1}/{n}  rss {samples[-1][1]:.1f} MiB  dormant {dormant[-1]}",
                  end="\n" if i + 1 == n else "", file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    stream_frames(tracker, files, deliver, decode=decode)
    at = dict(samples)
    r500 = at.get(500)
    return {
        "frames": n,
        "seconds": round(time.perf_counter() - t_start, 1),
        "rss_samples_mb": samples,
        "rss_at_500_mb": r500,
        "rss_at_end_mb": at[n],
        "rss_growth_500_to_end_mb": round(at[n] - r500, 2) if r500 is not None else None,
        "tracks": {"mean": round(float(np.mean(tracks)), 2), "min": min(tracks), "max": max(tracks)},
        "dormant_samples": [(k, dormant[k - 1]) for k, _ in samples],
        "dormant_max_seen": max(dormant),
        "dormant_max": tracker.cfg.tracker.dormant_max,
        "events": dict(sorted(events.items())),
        "step_ms": stats(ms for _, _, ms in reseg[1:]),
        "resegmentation": during_resegmentation(reseg),
    }


#: frames a warm-up shot of ``--overhead --dormant`` lasts at least: past one refresh of every track's signature
#: (``tracker.signature_interval``, 10 by default)
MIN_SHOT = 12


def warmup_shots(scenes: Path, source: Path, dormant: int, tracks: int, cfg: Config) -> list[list[Path]]:
    """The frame files of the shots played before the timed frames of ``--overhead --dormant N``: ceil(N / tracks)
    shots, each of another scene (the image directories in ``scenes`` other than ``source``, by name; a scene
    shorter than its shot replays forwards then backwards), at least :data:`MIN_SHOT` frames each and together a
    whole number of keyframe and new-area intervals, so the timed frames keep the schedule of a run without them."""
    if dormant <= 0:
        return []
    n = -(-dormant // tracks)
    own = Path(source).resolve()
    others = []
    for d in sorted(p for p in Path(scenes).iterdir() if p.is_dir() and p.resolve() != own):
        try:
            list_images(d)
        except FileNotFoundError:
            continue
        others.append(d)
    if len(others) < min(n, 2):
        raise MastSamError(f"--dormant {dormant} needs {min(n, 2)} other scene(s) for its warm-up shots: {scenes} "
                           f"holds {len(others)} image folder(s) besides the source (pass --dormant-source DIR)")
    period = 1
    for k in (cfg.tracker.keyframe_interval, cfg.tracker.new_region_interval):
        if k > 0:
            period = math.lcm(period, k)
    total = period * -(-n * MIN_SHOT // period)
    lengths = [total // n + (i < total % n) for i in range(n)]
    # with fewer scenes than shots they take turns: consecutive shots are still of two scenes (a cut between them)
    return [frame_files(others[i % len(others)], m) for i, m in enumerate(lengths)]


def run_overhead(cfg: Config, files: list[Path], size, tracks: int, progress: bool = True,
                 shots: list[list[Path]] = (), cache: dict | None = None) -> dict:
    """The tracker's own cost per frame with zero-cost backends (``mastsam-bench --overhead``): the frames decoded
    before the run, a :class:`ZeroCostSegmenter` and :class:`ReplayFlow`, through the stream; the figure is each
    step's ``FrameResult.timings``. The :class:`MachineProbe` runs before the stream starts and after each frame's
    step but the last (in the tracking thread, before the next step starts): before every frame; the median leaves
    out the one before frame 0, as the stages leave out frame 0.

    ``shots`` (:func:`warmup_shots`) are played first, untimed, with the same stand-in regions: at each cut between
    two shots, and into the timed frames, the tracker's cut detector sends every live track dormant with its
    signature, and the next shot's objects are new tracks. So the timed frames start with ``len(shots) x tracks``
    dormant signatures, at most ``tracker.dormant_max`` (``dormant_at_start``, counted after the timed frames'
    first). Re-identification is held off (``tracker.reid_min_score`` 1) until that
    first frame has been tracked, so none of those signatures is taken back by a look-alike of the timed frames;
    from the second timed frame on, the config is the caller's. The first timed frame (a cut: a segmentation from
    scratch, as frame 0 of a run without shots) is left out of the stages and reported apart (``first_frame_ms``).
    ``cache`` (a dict kept between calls) keeps decoded frames and recorded flow for repeated runs."""
    cache = {} if cache is None else cache
    timed = _decoded(cache, files, size)
    shape = (int(timed[0].shape[1]), int(timed[0].shape[0]))
    warm = [f for shot in shots for f in _decoded(cache, shot, shape)]
    frames = warm + timed
    key = ("flow", tuple(f for shot in shots for f in shot), tuple(files), size)
    if key not in cache:
        cache[key] = ReplayFlow(cfg.matcher, frames)
    cfg = copy.deepcopy(cfg)  # configure() below changes it in place
    tracker = Tracker(cfg, segmenter=ZeroCostSegmenter(frames[0].shape[:2], tracks), matcher=cache[key])
    w = len(warm)
    reid_min_score = cfg.tracker.reid_min_score
    if w:
        tracker.configure({"tracker.reid_min_score": 1.0})
    per_stage: dict[str, list[float]] = {}
    counts, probe, events = [], MachineProbe(), Counter()
    probed = [probe()]
    first: dict = {}
    cuts: list[int] = []  # warm-up frames that cut from the one before

    def deliver(out: Outcome) -> None:
        res, i = out.result, out.seq - w
        if i == 0:
            if w:
                tracker.configure({"tracker.reid_min_score": reid_min_score})
            first.update(ms={k: round(v, 3) for k, v in res.timings.items()}, cut=bool(res.cut),
                         dormant=len(tracker.dormant), cuts_before=cuts)
        elif i > 0:
            counts.append(len(res.tracks))
            events.update(e.kind for e in res.events)
            for k, v in res.timings.items():
                per_stage.setdefault(k, []).append(v)
        elif res.cut:
            cuts.append(out.seq)
        if progress:
            progress_line("overhead", out.seq, len(frames), res.timings["total"], len(res.tracks))
        if i >= 0 and out.seq + 1 < len(frames):
            probed.append(probe())

    try:
        stream_frames(tracker, range(len(frames)), deliver, decode=frames.__getitem__)
        dormant_end = len(tracker.dormant)
    finally:
        tracker.close()
    return {
        "frames": len(timed),
        "resolution": list(shape),
        "work_shape": list(tracker.work_shape),
        "stages": {k: stats(v) for k, v in per_stage.items()},
        "tracks": {"mean": round(float(np.mean(counts)), 2) if counts else 0,
                   "min": min(counts, default=0), "max": max(counts, default=0)},
        "overhead_ms_median": stats(per_stage.get("total", []))["median_ms"],
        "probe_ms_median": round(float(np.median(probed[1:] or probed)), 3),
        "first_frame_ms": first["ms"],
        "warmup": {"frames": w, "shots": [len(s) for s in shots],
                   "scenes": [s[0].parent.name for s in shots], "cuts": first["cuts_before"],
                   "first_timed_frame_cut": first["cut"]},
        "dormant_at_start": first["dormant"],
        "dormant_at_end": dormant_end,
        "timed_events": dict(sorted(events.items())),
    }


def _decoded(cache: dict, files: list[Path], size) -> list[np.ndarray]:
    """``files`` decoded (and resized to ``size``), each once per ``cache``."""
    out = []
    for f in files:
        if (f, size) not in cache:
            cache[(f, size)] = load_frame(f, size)
        out.append(cache[(f, size)])
    return out
