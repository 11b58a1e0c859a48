"""``mastsam-bench``: speed and memory of the tracker on a real frame sequence, with side-by-side baselines.

    mastsam-bench --segmenter mobile_sam --random-weights --matcher flow --tracks 8 --json bench.json
    mastsam-bench --segmenter classical --frames 30 --source ../shared/data/bedroom
    mastsam-bench --soak 5000 --soak-size 160x90 --json soak.json          # memory over a long run
    mastsam-bench --overhead --tracks 8                                     # the tracker's own cost per frame
    mastsam-bench --overhead --tracks 32 --dormant 0,64 --repeats 5         # ... with 0 and 64 dormant signatures
    mastsam-bench --soak 5000 --soak-churn 20 --json churn.json             # tracks born and leaving all the time

The main run sends ``--frames`` frames through the stream (:class:`~mastsam_ros.core.stream.Stream`, the path of
every front end's frames) with nothing computed ahead, so each frame's ``Tracker.step`` encodes it itself
(``bench_runs.py``). It reports, per stage, median / p95 / mean milliseconds from ``FrameResult.timings`` plus what
the bench measures around the tracker: the stream's JPEG decoding and output encoding (the stream's uint16 label
image -> mono16 bytes, and -> 16-bit PNG). End-to-end is decode + ``Tracker.step`` + output encoding, per frame.
Frame 0 (the initial automatic segmentation every method pays once) is reported but left out of the steady-state
figures. The prompt decoder's time per frame is taken by a delegating segmenter (``DecoderClock``); with the
encoder it sets the frame's model floor, and what ``Tracker.step`` adds to it is the overhead.

Then, on the first frames of the same sequence and with the same model instance, the comparisons
(``bench_baselines.py``): (a) per-frame automatic mask generation at a 32 x 32 grid (for SAM backends the package's
own ``SamAutomaticMaskGenerator`` with its defaults, encoder pass included: what a user would run), and (b) the
research prototype's loop (``evaluation.baselines.Prototype``: one predict call per mask) with a brute-force
nearest-match search for the correspondences (``BruteForceMatcher``). Ratios are mean ms per frame of the method
over mean ms per steady-state tracker frame. When the tracker runs MASt3R (``--matcher mast3r``, or
``matcher.backend: cadence`` with a mast3r anchor), (b) is the prototype as it ran: upstream MASt3R's own forward on
every pair (both images encoded, fp32) and its all-pixel ``fast_reciprocal_NNs`` (``UpstreamMast3rMatcher``, the
same model instance, upstream's mast3r package imported), with SAM ``--prototype-model-type`` (default vit_h) in
fp32, built anew (random weights with ``--random-weights``, else ``--prototype-checkpoint`` or the tracker's
checkpoint when it is that model) unless the tracker's segmenter is already that model in fp32.

``--random-weights`` builds the full-size architecture from the package's own registry with random initialisation,
saves its state dict to a temporary file and loads it through the project's normal checkpoint path: the compute is
the real model's, the masks are meaningless. Random masks would make tracks appear and die at random, so by default
(``--stand-in-masks auto``) the segmenter's answers are replaced by ``--tracks`` fixed regions *after* its full
computation (``StandInMasks``): the tracker then holds a fixed track count and every SAM call costs what it costs.
The output says so. The stand-ins and clocks are measurement instruments (``mastsam_ros/evaluation/instruments.py``).

``--overhead`` runs the whole tracker with backends that cost nothing: a segmenter that answers every call with
``--tracks`` fixed regions already at the tracker's working resolution (``ZeroCostSegmenter``), and the flow
matcher replaying DIS fields computed before the timed run (``ReplayFlow``: looking up, sampling and warping along
the field are timed, computing it is not). The frames, decoded before the run, go through the stream with nothing
ahead; what each ``Tracker.step`` then takes (its ``FrameResult.timings``) is the tracker's own bookkeeping. The last
line printed is ``overhead_ms_median: X``.

``--dormant N`` starts the timed frames with N dormant signatures made by the tracker itself: before them it plays
ceil(N / ``--tracks``) warm-up shots of other scenes (the source's sibling folders, or ``--dormant-source``), with
the same stand-in regions; at each cut the tracker's cut detector sends every live track dormant with its signature.
Re-identification is held off until the first timed frame (the cut into them) has been tracked, so no signature is
taken back by a look-alike there; that frame is left out of the figures like frame 0. Several counts (``0,64``) run
alternately, ``--repeats`` rounds; the figures are the medians over the runs of each run's median, and their
differences. The last line printed is ``overhead_ms_median_by_dormant: 0: X, 64: Y (+D)``.

On CUDA, per-stage timings are synchronised: ``torch.cuda.synchronize`` runs around every timed stage
(``Tracker.synchronize``), so a stage is charged with the device work it queued.

``--soak N`` runs N small frames (the source's frames downscaled, played forwards then backwards) and samples RSS
every 100 frames; it reports RSS after 500 frames and after N, and frame latency while a re-segmentation is under way
(``FrameResult.keyframe`` / ``resegmenting``) against steady-state latency, the track events by kind and the dormant
set's size. With ``--soak-churn K`` no segmenter is built: ``--tracks`` stand-in objects are replaced by a new set
every K frames (``ChurningRegions``), so hundreds of tracks are born, leave and are forgotten.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..core.config import Config
from ..core.errors import MastSamError
from ..core.segmenters import build_segmenter
from ..core.tracker import Tracker
from ..evaluation.instruments import ChurningRegions, DecoderClock, StandInMasks
from .bench_baselines import UpstreamMast3rMatcher, mast3r_model_of, prototype_segmenter, run_automatic, run_prototype
from .bench_runs import (
    STAGES, cuda_synchronizer, default_source, frame_files, gpu_peak_mb, load_frame, parse_size, peak_rss_mb,
    random_checkpoint, ratio, run_overhead, run_soak, run_tracker, torch_info, warmup_shots,
)
from .track import load_config

log = logging.getLogger("mastsam_bench")


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
    p.add_argument("--dormant", default=None, metavar="N[,N...]",
                   help="with --overhead: start the timed run with N dormant signatures, made by warm-up shots of "
                        "other scenes (see above); several values (0,64) run alternately, --repeats rounds")
    p.add_argument("--dormant-source", type=Path, default=None,
                   help="folder of image folders, the scenes of the warm-up shots (default: the source's parent)")
    p.add_argument("--repeats", type=int, default=1, help="with --dormant: rounds of alternating runs (default 1)")
    p.add_argument("--soak", type=int, default=0, metavar="N", help="soak mode: N small frames, RSS every 100")
    p.add_argument("--soak-size", type=parse_size, default=(160, 90), help="soak frame size WxH (default 160x90)")
    p.add_argument("--soak-churn", type=int, default=0, metavar="K",
                   help="with --soak: --tracks stand-in objects, a new set every K frames (ChurningRegions, no "
                        "segmenter): tracks are born and leave all the time; reports the dormant set too")
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
        ev = soak["events"]
        print(f"soak tracks: {ev.get('born', 0)} ids born, {ev.get('dormant', 0)} went dormant, "
              f"{ev.get('reidentified', 0)} re-identified, {ev.get('retired', 0)} retired, {ev.get('merged', 0)} "
              f"merged; dormant set {soak['dormant_samples'][-1][1]} at the end, at most {soak['dormant_max_seen']} "
              f"(tracker.dormant_max {soak['dormant_max']})")
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
    for flag, needs, ok in (("--dormant", "--overhead", args.dormant is None or args.overhead),
                            ("--repeats", "--dormant", args.repeats == 1 or args.dormant is not None),
                            ("--soak-churn", "--soak", not args.soak_churn or args.soak)):
        if not ok:
            log.error("%s needs %s", flag, needs)
            return 2
    if args.repeats < 1 or args.soak_churn < 0:
        log.error("--repeats must be >= 1 and --soak-churn >= 0")
        return 2
    load_start = [round(x, 2) for x in os.getloadavg()]
    if args.overhead:
        return main_overhead(args, source, load_start, argv)
    try:
        cfg = configure(args)
        backend = cfg.segmenter.backend
        if args.soak_churn:  # stand-in objects that come and go: no segmenter is built
            churn = ChurningRegions((args.soak_size[1], args.soak_size[0]), args.tracks, args.soak_churn)
            backend, args.random_weights, compare = churn.name, False, set()
        with tempfile.TemporaryDirectory(prefix="mastsam-bench-") as tmp:
            if args.random_weights:
                model_type = "vit_t" if backend == "mobile_sam" else cfg.segmenter.model_type
                cfg.set("segmenter.checkpoint", str(random_checkpoint(backend, model_type, Path(tmp))))
            # a real segmenter loads its checkpoint now, while the file exists
            segmenter = churn if args.soak_churn else build_segmenter(cfg.segmenter)
            proto_segmenter = None
            uses_mast3r = cfg.matcher.backend == "mast3r" or (
                cfg.matcher.backend == "cadence" and cfg.matcher.anchor_backend == "mast3r")
            if "b" in compare and uses_mast3r:
                proto_segmenter = prototype_segmenter(args, cfg, segmenter, Path(tmp))
        substitute = args.stand_in_masks == "on" or (args.stand_in_masks == "auto" and args.random_weights)
        if substitute:
            segmenter = StandInMasks(segmenter, args.tracks)
        sync = cuda_synchronizer(cfg)
        tracker = Tracker(cfg, segmenter=DecoderClock(segmenter, sync))  # the prompt decoder's time, per frame
        tracker.synchronize = sync
        n = args.soak if args.soak else args.frames
        if args.prototype_frames is None:
            args.prototype_frames = args.frames
        files = frame_files(source, max(n, args.automatic_frames, args.prototype_frames))
        size = args.soak_size if args.soak else args.size
        first = load_frame(files[0], size)
    except (MastSamError, FileNotFoundError) as e:
        log.error("%s", e)
        return 2

    resolution = [int(first.shape[1]), int(first.shape[0])]
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
                "fixed rectangles (StandInMasks) so the tracker holds a fixed track count" if substitute else
                f"no segmenter: {args.tracks} stand-in rectangles, a new set every {args.soak_churn} frames in the "
                "other half of the frame (ChurningRegions), so tracks are born and leave" if args.soak_churn else ""
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
                comps["automatic"] = run_automatic(segmenter, backend, files[: args.automatic_frames], size,
                                                   points_per_side=args.automatic_points_per_side)
            if "b" in compare:
                model = mast3r_model_of(tracker.matcher)
                upstream = UpstreamMast3rMatcher(model, args.prototype_subsample) if model is not None else None
                comps["prototype"] = run_prototype(cfg, segmenter, tracker.kmeans, args.tracks,
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


def med(values) -> float:
    return round(float(np.median(list(values))), 3)


def parse_dormant(text: str) -> list[int]:
    """'0,64' -> [0, 64] (distinct, in order); ValueError on anything else."""
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise ValueError(f"--dormant takes distinct counts >= 0 separated by commas (0,64), got '{text}'")
    return values


def main_overhead(args, source: Path, load_start: list[float], argv) -> int:
    try:
        cfg = configure(args)
        files = frame_files(source, args.frames)
        report = {"run": {"command": "mastsam-bench " + " ".join(argv if argv is not None else sys.argv[1:]),
                          "mode": "overhead", "source": str(source), "max_tracks": cfg.tracker.max_tracks},
                  "config": cfg.as_dict()}
        if args.dormant is not None:
            return main_dormant(args, cfg, source, files, report, load_start)
        report["overhead"] = o = run_overhead(cfg, files, args.size, args.tracks, progress=not args.quiet)
    except (MastSamError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 2
    report["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                         "cpu_count": os.cpu_count(), "load_start": load_start,
                         "load_end": [round(x, 2) for x in os.getloadavg()]}
    res = o["resolution"]
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
    per_probe = o["overhead_ms_median"] / o["probe_ms_median"] if o["probe_ms_median"] else float("nan")
    print(f"machine probe (fixed work outside the project, run before each frame): median {o['probe_ms_median']:.3f}"
          f" ms; overhead / probe {per_probe:.2f}")
    print(f"overhead_ms_median: {o['overhead_ms_median']}")
    return 0


def main_dormant(args, cfg: Config, source: Path, files: list, report: dict, load_start: list[float]) -> int:
    """``--overhead --dormant N[,N...]``: runs with each count of dormant signatures at the start of the timed frames
    (``run_overhead``'s warm-up shots), alternating, ``--repeats`` rounds; the medians over the runs per count and
    their differences to the first count (also paired by round). Errors propagate to :func:`main_overhead`."""
    values = parse_dormant(args.dormant)
    if max(values) > cfg.tracker.dormant_max:
        raise ValueError(f"--dormant {max(values)} is more than tracker.dormant_max {cfg.tracker.dormant_max} "
                         "signatures can be kept")
    scenes = args.dormant_source or source.parent
    shots = {n: warmup_shots(scenes, source, n, args.tracks, cfg) for n in values}
    cache: dict = {}
    runs = []
    for r in range(args.repeats):
        for n in values:
            o = run_overhead(cfg, files, args.size, args.tracks, progress=False, shots=shots[n], cache=cache)
            o = {"dormant_requested": n, "round": r + 1, **o}
            runs.append(o)
            print(f"round {r + 1}, dormant {n}: {o['dormant_at_start']} dormant at the start; overhead "
                  f"{o['overhead_ms_median']} ms, permanence {o['stages']['permanence']['median_ms']} ms, probe "
                  f"{o['probe_ms_median']} ms", flush=True)
    by = {n: [o for o in runs if o["dormant_requested"] == n] for n in values}
    comparison = {}
    for n, rs in by.items():
        overhead = [o["overhead_ms_median"] for o in rs]
        comparison[str(n)] = {
            "runs": len(rs),
            "dormant_at_start": [o["dormant_at_start"] for o in rs],
            "overhead_ms_median": med(overhead),
            "overhead_ms_runs": overhead,
            "permanence_ms_median": med([o["stages"]["permanence"]["median_ms"] for o in rs]),
            "permanence_ms_runs": [o["stages"]["permanence"]["median_ms"] for o in rs],
            "probe_ms_median": med([o["probe_ms_median"] for o in rs]),
            "overhead_per_probe_median": med([o["overhead_ms_median"] / o["probe_ms_median"] for o in rs]),
            "stages_median_ms": {k: med([o["stages"][k]["median_ms"] for o in rs if k in o["stages"]])
                                 for k in rs[0]["stages"]},
            "first_timed_frame_permanence_ms": [o["first_frame_ms"].get("permanence") for o in rs],
        }
    base = values[0]
    for n in values[1:]:
        c = comparison[str(n)]
        c["difference_ms"] = round(c["overhead_ms_median"] - comparison[str(base)]["overhead_ms_median"], 3)
        c["paired_difference_ms_median"] = med([a["overhead_ms_median"] - b["overhead_ms_median"]
                                                for a, b in zip(by[n], by[base])])
    report["run"].update(dormant=values, repeats=args.repeats, dormant_source=str(scenes))
    report["dormant_comparison"] = {
        "what": "per count of dormant signatures at the start of the timed frames: medians over the runs of each "
                "run's median; difference_ms: to the first count's, paired: per round",
        "by_dormant": comparison,
    }
    report["overhead_runs"] = runs
    report["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                         "cpu_count": os.cpu_count(), "load_start": load_start,
                         "load_end": [round(x, 2) for x in os.getloadavg()]}
    o = runs[0]
    print(f"\nmastsam-bench --overhead --dormant {args.dormant}: {o['resolution'][0]}x{o['resolution'][1]}, "
          f"{o['frames']} timed frames, {args.tracks} stand-in tracks, {args.repeats} round(s) alternating; warm-up "
          f"shots of {scenes}; load {load_start} -> {report['machine']['load_end']}")
    print(f"{'stage (median of run medians, ms)':<36}" + "".join(f"{f'dormant {n}':>14}" for n in values))
    for k in comparison[str(base)]["stages_median_ms"]:
        print(f"{k:<36}" + "".join(f"{comparison[str(n)]['stages_median_ms'].get(k, float('nan')):>14.3f}"
                                   for n in values))
    for n in values:
        c = comparison[str(n)]
        diff = f"; difference {c['difference_ms']:+.3f} ms (paired by round {c['paired_difference_ms_median']:+.3f})" \
            if n != base else ""
        print(f"dormant {n}: at the start {c['dormant_at_start']}; overhead runs {c['overhead_ms_runs']}; probe "
              f"{c['probe_ms_median']} ms{diff}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    print("overhead_ms_median_by_dormant: " + ", ".join(
        f"{n}: {comparison[str(n)]['overhead_ms_median']}" + (f" ({comparison[str(n)]['difference_ms']:+.3f})"
                                                              if n != base else "") for n in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
