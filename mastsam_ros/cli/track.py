"""``mastsam-track``: the tracker on an image directory or a video, writing DAVIS-format label PNGs.

    mastsam-track --image-dir DIR --output-dir OUT [--debug] [--config FILE] [--set KEY=VALUE ...]
    mastsam-track --video FILE --output-dir OUT
    mastsam-track --demo --output-dir OUT --debug     # embedded default input
    mastsam-track --image-dir DIR --output-dir OUT --pipeline   # decode, encode, track in three threads

``--pipeline`` runs the frames through the node's three-stage pipeline (mastsam_ros/core/pipeline.py: files decoded
in one thread, the segmenter's embedding and the matcher's flow computed ahead in a second, tracking in a third),
with the serial run's outputs, every frame kept (the entrance waits instead of dropping, unlike the node's), and
prints latency and throughput at the end.

Writes ``OUT/<frame>.png`` (indexed palette PNG, pixel value = track id, stable across frames; 16-bit grey once a
value reaches 256; ids past 65535 wrap to a value no other live track holds, see ``mastsam_ros/labels_io.py``),
``OUT/tracks.jsonl`` (one line per frame: ids, each with its pixel value ``label``, boxes, areas, scores, timings;
``mastsam_ros.labels_io.load_track_ids(OUT)`` decodes the PNGs back to ids with it) and, with
``--debug``, ``OUT/debug/overlay_<frame>.jpg`` (masks, ids, mask points), ``OUT/debug/matches_<frame>.jpg``
(correspondences of the carried points) and ``OUT/overlay.mp4``.

3D instances (``OUT/objects.jsonl``, one line per frame: per object id, centroid, axis-aligned bounds and extent in
metres in the camera's optical frame, valid point count, mask pixels, validity fraction; see
mastsam_ros/core/geometry.py):

    mastsam-track --image-dir RGB --depth-dir DEPTH --intrinsics fx,fy,cx,cy --output-dir OUT
    mastsam-track --image-dir RGB --pointmap --set matcher.backend=mast3r --set matcher.checkpoint=... -o OUT

``DEPTH/<frame stem>.png`` (16-bit, millimetres, 0 = invalid), ``.tif``/``.tiff``/``.exr`` (32-bit float metres)
or ``.npy`` (uint16 millimetres or float metres), registered to the frame of the same stem and of its size. A frame
whose depth is missing or unusable is tracked as usual and its objects line is skipped (logged and counted).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..core.config import Config, parse_overrides
from ..core.errors import MastSamError
from ..core.geometry import GeometryError, Intrinsics, frame_point_map, objects_3d, objects_from_depth
from ..core.matchers.base import Matcher
from ..core.pipeline import STAGES, Outcome, outcome_stats, run_pipelined
from ..core.render import correspondences, overlay
from ..core.tracker import Tracker
from ..labels_io import LabelMapper, save_label_png
from .frames import count_frames, demo_source, iter_frames, list_images, read_rgb, synthetic_frames

log = logging.getLogger("mastsam_track")

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "tracker.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mastsam-track", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image-dir", type=Path, help="directory of frames, processed in file-name order")
    src.add_argument("--video", type=Path, help="video file (anything OpenCV reads)")
    src.add_argument(
        "--demo", action="store_true",
        help="embedded default: DAVIS car-roundabout from ../shared if present, else 60 generated frames",
    )
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--config", type=Path, default=None, help=f"params YAML (default: {DEFAULT_CONFIG} if present)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config field, repeatable")
    p.add_argument("--debug", action="store_true", help="also write overlays, correspondences and overlay.mp4")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--fps", type=float, default=15.0, help="frame rate of overlay.mp4")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--pipeline", action="store_true",
                   help="decode, encode and track in three threads (the node's node.pipeline), no frame dropped; "
                        "prints latency and throughput at the end")
    g = p.add_argument_group("3D instances (OUT/objects.jsonl)")
    src3d = g.add_mutually_exclusive_group()
    src3d.add_argument("--depth-dir", type=Path, help="depth image per frame, same file stem (see above)")
    src3d.add_argument("--pointmap", action="store_true",
                       help="3D from the matcher's point map (matcher.backend mast3r) instead of a depth image")
    g.add_argument("--intrinsics", type=Intrinsics.parse, metavar="FX,FY,CX,CY",
                   help="pinhole intrinsics of the frames, pixels (needed with --depth-dir)")
    g.add_argument("--extent-trim", type=float, default=0.0,
                   help="bounds are the q and 1-q quantiles per axis instead of min/max (default 0: min/max)")
    g.add_argument("--pointmap-min-conf", type=float, default=1.5,
                   help="point map pixels with lower model confidence are invalid (MASt3R's scale: >= 1; default 1.5)")
    return p


DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".exr", ".npy")


def read_depth(directory: Path, stem: str) -> np.ndarray | None:
    """The depth image of frame ``stem`` (uint16 millimetres or float32 metres), or None when there is none."""
    for suffix in DEPTH_SUFFIXES:
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            if suffix == ".npy":
                return np.load(path, allow_pickle=False)
            depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if depth is None:
                raise GeometryError(f"{path} is not a readable image")
            return depth
    return None


class Objects3D:
    """Per-frame 3D records for :func:`run` from a depth folder or the matcher's point map; counts what it skips."""

    def __init__(self, *, depth_dir: Path | None = None, intrinsics: Intrinsics | None = None, matcher=None,
                 trim: float = 0.0, min_conf: float = 1.5):
        self.depth_dir, self.k, self.matcher = depth_dir, intrinsics, matcher
        self.trim, self.min_conf = trim, min_conf
        self.skipped = 0
        self.source = "depth" if depth_dir is not None else "pointmap"

    def __call__(self, name: str, result) -> list | None:
        ids = [t.id for t in result.tracks]
        h, w = result.labels.shape
        try:
            if self.depth_dir is not None:
                depth = read_depth(self.depth_dir, name)
                if depth is None:
                    raise GeometryError(f"no depth file {name}.{{{','.join(s[1:] for s in DEPTH_SUFFIXES)}}}")
                objs = objects_from_depth(result.labels, depth, self.k, ids, self.trim)
            else:
                pm = self.matcher.point_map()
                if pm is None:
                    raise GeometryError("the matcher has no point map for this frame")
                objs = objects_3d(result.labels, frame_point_map(*pm, (w, h), self.min_conf), ids, self.trim)
        except (GeometryError, OSError, ValueError) as e:
            self.skipped += 1
            log.warning("frame %s: no 3D objects: %s", name, e)
            return None
        return [o.as_dict() for o in objs]


def load_config(path: Path | None, overrides: list[str] | None) -> Config:
    path = path or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    values = parse_overrides(overrides)
    return Config.from_yaml(path, values) if path else Config().update(values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.set)
        tracker = Tracker(cfg)
    except (MastSamError, FileNotFoundError) as e:
        log.error("%s", e)
        return 2

    if args.demo:
        source = demo_source()
        if source is None:
            log.info("../shared not found: running on generated frames")
            frames = ((f"{i:05d}", f) for i, f in enumerate(synthetic_frames(args.max_frames or 60)))
            total = args.max_frames or 60
        else:
            log.info("demo input: %s", source)
    else:
        source = args.image_dir or args.video
    if not (args.demo and source is None):
        if not source.exists():
            log.error("input not found: %s", source)
            return 2
        if args.pipeline and source.is_dir():  # the files are read in the pipeline's decoding thread
            frames = ((path.stem, path) for path in list_images(source)[:args.max_frames])
        else:
            frames = iter_frames(source, args.max_frames)
        total = count_frames(source)
        if total is not None and args.max_frames is not None:
            total = min(total, args.max_frames)

    objects = None
    if args.depth_dir is not None:
        if args.intrinsics is None:
            log.error("--depth-dir needs --intrinsics fx,fy,cx,cy")
            return 2
        if not args.depth_dir.is_dir():
            log.error("depth folder not found: %s", args.depth_dir)
            return 2
        objects = Objects3D(depth_dir=args.depth_dir, intrinsics=args.intrinsics, trim=args.extent_trim)
    elif args.pointmap:
        if type(tracker.matcher).point_map is Matcher.point_map:
            log.error("--pointmap needs a matcher that predicts 3D points (matcher.backend mast3r), not %s",
                      cfg.matcher.backend)
            return 2
        objects = Objects3D(matcher=tracker.matcher, trim=args.extent_trim, min_conf=args.pointmap_min_conf)

    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    stats = run(tracker, frames, out, debug=args.debug, fps=args.fps, total=total, progress=not args.quiet,
                objects=objects, pipeline=args.pipeline)
    log.info(
        "%d frames tracked, %d skipped (unreadable or rejected), %d distinct ids -> %s",
        stats["frames"], stats["skipped"], stats["ids"], out,
    )
    if objects is not None:
        log.info("3D objects (%s) for %d frames, %d frames without (see warnings) -> %s", objects.source,
                 stats["frames"] - objects.skipped, objects.skipped, out / "objects.jsonl")
    if args.pipeline:
        print(pipeline_summary(stats["pipeline"]))
    # the one-line summary on stdout, for scripts and the README's demo figure
    print(f"distinct ids: {stats['ids']} over {stats['frames']} frames ({stats['skipped']} skipped) -> {out}")
    return 0 if stats["frames"] else 1


class Unreadable(MastSamError):
    """An image file or video frame that could not be decoded: skipped and counted."""


def decode(item: tuple[str, np.ndarray | Path | None]) -> np.ndarray:
    """The frame of a ``(name, rgb or image file or None)`` item; :class:`Unreadable` when there is none."""
    source = item[1]
    rgb = read_rgb(source) if isinstance(source, Path) else source
    if rgb is None:
        raise Unreadable("unreadable image")
    return rgb


def tracked_serially(tracker: Tracker, frames, objects=None):
    """``(name, rgb, result, error, 3D records)`` per item of ``frames``, tracked one after the other; ``error`` is
    the :class:`MastSamError` that made the frame a skip (then ``rgb`` or ``result`` is None)."""
    for name, source in frames:
        try:
            rgb = decode((name, source))
            result = tracker.step(rgb)
        except MastSamError as e:
            yield name, None, None, e, None
            continue
        yield name, rgb, result, None, objects(name, result) if objects is not None else None


def tracked_pipelined(tracker: Tracker, frames, objects=None, figures: dict | None = None):
    """As :func:`tracked_serially`, through the frame pipeline (:func:`~mastsam_ros.core.pipeline.run_pipelined`:
    no frame dropped, results in order). 3D records are made in the tracking thread while the tracker (its matcher's
    point map) still holds that frame. ``figures`` receives, once every frame is out, the pipeline's counters
    (``counters``), figures of the tracked frames (``stats``, :func:`~mastsam_ros.core.pipeline.outcome_stats`) and
    the wall time from the first frame in to the last one out (``wall_s``)."""
    records: dict[int, list | None] = {}

    def on_result(out: Outcome) -> None:
        if objects is not None:
            records[out.seq] = objects(out.payload[0], out.result)

    counters: dict[str, int] = {}
    kept: list[Outcome] = []  # each frame's figures, its arrays dropped
    t0 = time.monotonic()
    for out in run_pipelined(tracker, frames, decode=decode, on_result=on_result, counters=counters):
        if out.error is not None and not isinstance(out.error, MastSamError):
            raise out.error  # as the serial run: only the core's own refusals are skips
        kept.append(Outcome(out.seq, None, out.arrived, error=out.error, stage_ms=out.stage_ms, flow_ms=out.flow_ms,
                            pair_used=out.pair_used, matcher_ms=out.matcher_ms, latency_ms=out.latency_ms))
        yield out.payload[0], out.frame, out.result, out.error, records.pop(out.seq, None)
    if figures is not None:
        figures.update(counters=counters, stats=outcome_stats(kept), wall_s=time.monotonic() - t0,
                       seqs=[o.seq for o in kept])


def pipeline_summary(figures: dict) -> str:
    """The ``--pipeline`` report: throughput, latency, each stage's mean work, the flow computed ahead."""
    c, st = figures["counters"], figures["stats"]
    tracked = c.get("delivered", 0) - c.get("errors", 0)
    fps = tracked / figures["wall_s"] if figures["wall_s"] > 0 else float("nan")
    return (f"pipeline: {tracked} frames in {figures['wall_s']:.2f} s ({fps:.2f} fps), dropped {c.get('dropped', 0)}; "
            f"latency ms median {st['latency_ms_median']:.1f} p95 {st['latency_ms_p95']:.1f} "
            f"max {st['latency_ms_max']:.1f}; mean ms " + " ".join(f"{s} {st[f'{s}_ms_mean']:.1f}" for s in STAGES)
            + f" wait {st['wait_ms_mean']:.1f}; pair computed ahead {c.get('paired_ahead', 0)}, used "
            f"{c.get('pair_used', 0)}, not used {c.get('pair_not_used', 0)}; flow ahead ms median "
            f"{st['flow_ms_median']:.1f}, matcher in step ms median {st['matcher_ms_median']:.1f}")


def run(tracker: Tracker, frames, out: Path, *, debug=False, fps=15.0, total=None, progress=True,
        objects=None, pipeline=False) -> dict:
    """Track every frame of ``frames`` (iterable of (name, rgb, an image file or None)) and write the outputs under
    ``out``.

    ``objects``: an :class:`Objects3D` (or any ``(name, FrameResult) -> list of dicts or None``) whose records
    go to ``out/objects.jsonl``, one line per frame it answers. ``pipeline``: through the frame pipeline
    (:func:`tracked_pipelined`, same outputs); the returned dict then has its figures under ``pipeline``.
    """
    video = None
    prev = None
    seen_ids: set[int] = set()
    mapper = LabelMapper()
    n_ok = n_skip = 0
    figures: dict = {}
    tracked = tracked_pipelined(tracker, frames, objects, figures) if pipeline else \
        tracked_serially(tracker, frames, objects)
    with open(out / "tracks.jsonl", "w") as jsonl, \
            (open(out / "objects.jsonl", "w") if objects is not None else _Null()) as objects_jsonl:
        for name, rgb, result, error, objs in tqdm(tracked, total=total, disable=not progress, unit="frame"):
            if error is not None:
                log.warning("frame %s: %s, skipped", name, error)
                n_skip += 1
                continue
            n_ok += 1
            if result.reset:
                mapper.reset()
            values, label_of = mapper.assign(result)
            save_label_png(out / f"{name}.png", values)
            seen_ids.update(t.id for t in result.tracks)
            jsonl.write(json.dumps(record(name, result, label_of)) + "\n")
            if objects is not None:
                if objs is not None:
                    objects_jsonl.write(json.dumps({"frame": name, "index": result.index, "objects": objs}) + "\n")
            if debug:
                (out / "debug").mkdir(exist_ok=True)
                ov = overlay(rgb, result)
                cv2.imwrite(str(out / "debug" / f"overlay_{name}.jpg"), cv2.cvtColor(ov, cv2.COLOR_RGB2BGR))
                if prev is not None and prev.shape == rgb.shape and result.correspondences is not None:
                    pair = correspondences(prev, rgb, result)
                    cv2.imwrite(str(out / "debug" / f"matches_{name}.jpg"), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))
                if video is None or result.reset:
                    if video is not None:
                        video.release()  # a size change starts a new file rather than corrupting this one
                    suffix = "" if video is None else f"_{name}"
                    h, w = rgb.shape[:2]
                    video = cv2.VideoWriter(
                        str(out / f"overlay{suffix}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h)
                    )
                video.write(cv2.cvtColor(ov, cv2.COLOR_RGB2BGR))
            prev = rgb
    if video is not None:
        video.release()
    stats = {"frames": n_ok, "skipped": n_skip, "ids": len(seen_ids)}
    if pipeline:
        stats["pipeline"] = figures
    return stats


class _Null:
    """A do-nothing context manager standing in for a file that is not written."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def record(name: str, result, label_of: dict[int, int]) -> dict:
    """One line of tracks.jsonl; ``label`` is the track's pixel value in the frame's PNG (``LabelMapper``)."""
    return {
        "frame": name,
        "index": result.index,
        "keyframe": result.keyframe,
        "reset": result.reset,
        "tracks": [
            {"id": t.id, "label": label_of[t.id], "score": round(t.score, 4), "area": t.area, "bbox": list(t.bbox),
             "age": t.age, "frames_since_seen": t.frames_since_seen}
            for t in result.tracks
        ],
        "new_ids": result.new_ids,
        "retired_ids": result.retired_ids,
        "timings_ms": {k: round(v, 2) for k, v in result.timings.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
