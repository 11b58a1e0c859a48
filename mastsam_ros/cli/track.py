"""``mastsam-track``: the tracker on an image directory or a video, writing DAVIS-format label PNGs.

    mastsam-track --image-dir DIR --output-dir OUT [--debug] [--config FILE] [--set KEY=VALUE ...]
    mastsam-track --video FILE --output-dir OUT
    mastsam-track --demo --output-dir OUT --debug     # embedded default input
    mastsam-track --image-dir DIR --output-dir OUT --pipeline   # decode, encode ahead, track in three threads

Every frame goes through the stream (mastsam_ros/core/stream.py): files decoded in one thread, tracking in another;
with ``--pipeline`` the segmenter's embedding and the matcher's flow are also computed ahead in a third, with the
serial run's outputs, every frame kept (the entrance waits instead of dropping, unlike the node's), and latency and
throughput printed at the end. Files are read whatever their name; their size is read from the header before
decoding: a frame over ``--max-input-pixels`` is downscaled (a JPEG while decoding, a video frame after) or, for
other formats, refused undecoded. Unreadable, truncated or refused files are skipped, logged and counted by kind.

Writes ``OUT/<frame>.png`` (indexed palette PNG, pixel value = track id, stable across frames; 16-bit grey once a
value reaches 256; ids past 65535 wrap to a value no other live track holds, see ``mastsam_ros/labels_io.py``),
``OUT/tracks.jsonl`` (one line per frame: ids, each with its pixel value ``label``, boxes, areas, scores, timings,
the track events (born, hidden, dormant, reidentified, merged, retired: mastsam_ros/core/dormant.py) and ``cut``;
``mastsam_ros.labels_io.load_track_ids(OUT)`` decodes the PNGs back to ids with it) and, with
``--debug``, ``OUT/debug/overlay_<frame>.jpg`` (masks, ids, mask points), ``OUT/debug/matches_<frame>.jpg``
(correspondences of the carried points) and ``OUT/overlay.mp4``. Each PNG is written whole, then its line, flushed:
tracks.jsonl lists exactly the PNGs present, also after Ctrl-C or SIGTERM.

Output folder: a missing one is created; a non-empty one is refused unless ``--overwrite``, which first removes what
an earlier run wrote there (the PNGs its tracks.jsonl lists, tracks.jsonl, objects.jsonl, debug/, overlay*.mp4)
and refuses a folder holding PNGs that tracks.jsonl does not list. Inputs are checked before the folder is touched.

Exit codes: 0 done; 1 the run failed (no frame could be tracked, an output could not be written, the tracker
failed); 2 usage (bad option, missing or empty input, unopenable video, bad config, output folder not empty or not
writable); 130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM, outputs consistent, overlay video finalised. Each
error ends with one line naming the problem.

3D instances (``OUT/objects.jsonl``, one line per frame: per object id, centroid, axis-aligned bounds and extent in
metres in the camera's optical frame, valid point count, mask pixels, validity fraction; see
mastsam_ros/core/geometry.py):

    mastsam-track --image-dir RGB --depth-dir DEPTH --intrinsics fx,fy,cx,cy --output-dir OUT
    mastsam-track --image-dir RGB --pointmap --set matcher.backend=mast3r --set matcher.checkpoint=... -o OUT

``DEPTH/<frame stem>.png`` (16-bit, millimetres, 0 = invalid), ``.tif``/``.tiff``/``.exr`` (32-bit float metres)
or ``.npy`` (uint16 millimetres or float metres), registered to the frame of the same stem and of its size; where a
stem has several, the first in that order is used (warned). Depth beyond 1000 m is invalid (as 0 is; the frames
holding some are counted and warned). A frame whose depth is missing or unusable is tracked as usual and its
objects line is skipped (logged and counted).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..core.config import Config, parse_overrides
from ..core.decode import MAX_INPUT_PIXELS, cv2_path
from ..core.errors import MastSamError
from ..core.geometry import Intrinsics
from ..core.matchers.base import Matcher
from ..core.render import correspondences, overlay
from ..core.stream import STAGES, Outcome, Stream, error_kind, outcome_stats
from ..core.tracker import Tracker
from ..labels_io import save_label_png
from .frames import (
    MAX_DEPTH_M, Decoder, DepthReader, Frame, VideoFrames, demo_source, list_images, shown, synthetic_frames,
)

log = logging.getLogger("mastsam_track")

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "tracker.yaml"
EXIT_FAILED, EXIT_USAGE = 1, 2


class UsageError(Exception):
    """A user mistake found before or while preparing the run: one line, exit code 2."""


class RunFailed(Exception):
    """The run started but failed: one line, exit code 1."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (raised between two frames' outputs, never inside one)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be an integer > 0, got {text}")
    return value


def _trim(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"must lie in [0, 0.5), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mastsam-track", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image-dir", type=Path, help="directory of frames, processed in file-name order")
    src.add_argument("--video", type=Path, help="video file (anything OpenCV reads)")
    src.add_argument(
        "--demo", action="store_true",
        help="embedded default: DAVIS car-roundabout from ../shared if present, else 60 generated frames",
    )
    p.add_argument("--output-dir", "-o", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run's outputs in a non-empty output folder (see above)")
    p.add_argument("--config", type=Path, default=None, help=f"params YAML (default: {DEFAULT_CONFIG} if present)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config field, repeatable")
    p.add_argument("--debug", action="store_true", help="also write overlays, correspondences and overlay.mp4")
    p.add_argument("--max-frames", type=_positive_int, default=None)
    p.add_argument("--max-input-pixels", type=_positive_int, default=MAX_INPUT_PIXELS,
                   help="largest frame processed as it is (width x height; default 1920x1080, the node's): a larger "
                        "JPEG or video frame is downscaled, another format refused from its header (skipped)")
    p.add_argument("--fps", type=_positive_float, default=15.0, help="frame rate of overlay.mp4 (> 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--log-level", choices=("debug", "info", "warning"), default="info",
                   help="debug also logs the traceback of an unexpected failure")
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
    g.add_argument("--extent-trim", type=_trim, default=0.0,
                   help="bounds are the q and 1-q quantiles per axis instead of min/max (default 0: min/max)")
    g.add_argument("--pointmap-min-conf", type=float, default=1.5,
                   help="point map pixels with lower model confidence are invalid (MASt3R's scale: >= 1; default 1.5)")
    return p


def load_config(path: Path | None, overrides: list[str] | None) -> Config:
    path = path or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    values = parse_overrides(overrides)
    return Config.from_yaml(path, values) if path else Config().update(values)


# --- inputs ----------------------------------------------------------------------------------------------------------
def image_items(directory: Path, max_frames: int | None) -> list[Frame]:
    """The frames of an image folder; :class:`UsageError` when it has none or two files share a stem (their
    outputs would share a name)."""
    try:
        files = list_images(directory)[:max_frames]
    except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
        raise UsageError(shown(str(e))) from None
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise UsageError(f"{shown(seen[f.stem].name)} and {shown(f.name)} in {shown(directory)} would both "
                             f"write {shown(f.stem)}.png: rename or remove one")
        seen[f.stem] = f
    return [Frame(f.stem, f) for f in files]


# --- outputs ---------------------------------------------------------------------------------------------------------
def prepare_output(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a run (module docstring, "Output folder"); :class:`UsageError` when it cannot be."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path {shown(out)} is a file, not a folder")
    try:
        entries = sorted(out.iterdir()) if out.is_dir() else []
    except OSError as e:
        raise UsageError(f"cannot read output folder {shown(out)}: {e.strerror or e}") from None
    if entries and not overwrite:
        raise UsageError(f"output folder {shown(out)} is not empty ({len(entries)} entries): pass --overwrite to "
                         "replace an earlier run's outputs, or choose another folder")
    if entries:
        listed = set()
        if (out / "tracks.jsonl").is_file():
            for line in (out / "tracks.jsonl").read_text(errors="replace").splitlines():
                try:
                    listed.add(f"{json.loads(line)['frame']}.png")
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short: its PNG shows up as not listed below
        temporary = [p for p in entries if p.name.startswith(".") and p.name.endswith(".tmp.png")]
        unlisted = [p for p in entries if p.suffix == ".png" and p.name not in listed and p not in temporary]
        if unlisted:
            raise UsageError(f"--overwrite: {shown(out)} holds {len(unlisted)} PNG files that its tracks.jsonl does "
                             f"not list (first: {shown(unlisted[0].name)}), not an earlier run's outputs: remove "
                             "them or choose another folder")
        _probe_writable(out)
        try:
            for p in entries:
                if p.is_dir() and not p.is_symlink():
                    if p.name == "debug":
                        shutil.rmtree(p)
                elif p.name in listed or p in temporary or p.name in ("tracks.jsonl", "objects.jsonl") or \
                        (p.name.startswith("overlay") and p.suffix == ".mp4"):
                    p.unlink()
        except OSError as e:
            raise UsageError(f"--overwrite: cannot remove {shown(e.filename or out)}: {e.strerror or e}") from None
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output folder {shown(out)}: {e.strerror or e}") from None
    _probe_writable(out)


def _probe_writable(out: Path) -> None:
    probe = out / ".mastsam-track-probe"
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write in output folder {shown(out)}: {e.strerror or e}") from None


class Signals:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread, except inside :meth:`held` (one frame's
    outputs being written, the final clean-up), where they wait until it ends. Restores the handlers on exit."""

    def __init__(self):
        self._held = 0
        self._pending: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)

    def _handle(self, signum, _frame) -> None:
        if self._held:
            self._pending = self._pending or signum
        else:
            raise Interrupted(signum)

    @contextmanager
    def held(self, release: bool = True):
        """Signals wait while the block runs; then (``release``) one that arrived is raised."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if release:
            self.check()

    def check(self) -> None:
        """Raise :class:`Interrupted` for a signal that arrived while held."""
        if not self._held and self._pending is not None:
            raise Interrupted(self._pending)


class Writer:
    """One outcome at a time to ``out``: the label PNG (written under a temporary name, then renamed), its
    tracks.jsonl line, flushed; the objects line; with ``debug`` the overlay, the correspondences and the video."""

    def __init__(self, out: Path, *, objects: bool, debug: bool, fps: float):
        self.out, self.debug, self.fps = out, debug, fps
        self._stack = ExitStack()
        self.tracks = self._stack.enter_context(open(out / "tracks.jsonl", "x"))
        self.objects = self._stack.enter_context(open(out / "objects.jsonl", "x")) if objects else None
        self.video = None
        self.prev: np.ndarray | None = None
        self.ids: set[int] = set()
        self.frames = 0

    def write(self, out: Outcome) -> None:
        name, result = out.payload.name, out.result
        png = self.out / f"{name}.png"
        tmp = self.out / f".{name}.tmp.png"
        save_label_png(tmp, out.labels)
        os.replace(tmp, png)
        try:
            self.tracks.write(json.dumps(record(name, result, out.label_of)) + "\n")
            self.tracks.flush()
        except BaseException:
            png.unlink(missing_ok=True)  # no PNG without its line
            raise
        self.frames += 1
        self.ids.update(t.id for t in result.tracks)
        if self.objects is not None and out.objects is not None:
            objs = [o.as_dict() for o in out.objects]
            self.objects.write(json.dumps({"frame": name, "index": result.index, "objects": objs}) + "\n")
            self.objects.flush()
        if self.debug:
            self._debug(name, out.frame, result)

    def _debug(self, name: str, rgb: np.ndarray, result) -> None:
        (self.out / "debug").mkdir(exist_ok=True)
        ov = cv2.cvtColor(overlay(rgb, result), cv2.COLOR_RGB2BGR)
        _write_jpeg(self.out / "debug" / f"overlay_{name}.jpg", ov)
        if self.prev is not None and self.prev.shape == rgb.shape and result.correspondences is not None:
            pair = correspondences(self.prev, rgb, result)
            _write_jpeg(self.out / "debug" / f"matches_{name}.jpg", cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))
        if self.video is None or result.reset:
            if self.video is not None:
                self.video.release()  # a size change starts a new file rather than corrupting this one
            suffix = "" if self.video is None else "_" + shown(name).encode("ascii", "replace").decode()
            directory = self._stack.enter_context(cv2_path(self.out))
            h, w = rgb.shape[:2]
            self.video = cv2.VideoWriter(os.path.join(directory, f"overlay{suffix}.mp4"),
                                         cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.video.isOpened():
                raise OSError(f"cannot write overlay{suffix}.mp4 in {shown(self.out)} (OpenCV's video writer)")
        self.video.write(ov)
        self.prev = rgb

    def close(self) -> None:
        """Finalise the video and close the files (idempotent)."""
        if self.video is not None:
            self.video.release()
            self.video = None
        self._stack.close()


def _write_jpeg(path: Path, bgr: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", bgr)
    if not ok:
        raise OSError(f"cannot encode {shown(path.name)}")
    path.write_bytes(buf.tobytes())


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
        "cut": result.cut,
        "events": [e.as_dict() for e in result.events],
        "timings_ms": {k: round(v, 2) for k, v in result.timings.items()},
    }


# --- the run ---------------------------------------------------------------------------------------------------------
def run(tracker: Tracker, frames, out: Path, *, decoder: Decoder | None = None, depth=None,
        pointmap_min_conf: float | None = None, trim: float = 0.0, pipeline: bool = False, debug: bool = False,
        fps: float = 15.0, total: int | None = None, progress: bool = True, signals: Signals | None = None) -> dict:
    """Track every :class:`Frame` of ``frames`` through a :class:`Stream` and write the outputs under ``out`` (an
    empty, writable folder: :func:`prepare_output`).

    ``depth`` (a :class:`DepthReader` or any ``(Frame, rgb) -> Depth``) or ``pointmap_min_conf``: 3D objects to
    ``out/objects.jsonl``. ``pipeline``: prepare frames ahead (the serial run otherwise, same outputs). Returns the
    figures: ``frames`` tracked, ``skipped`` with ``skipped_by_kind``, distinct ``ids``, ``objects_skipped``, and
    ``pipeline`` (counters, wall time, and with ``pipeline`` the stats of :func:`outcome_stats`). Raises
    :class:`Interrupted` (outputs consistent, video finalised) and :class:`RunFailed` when an output cannot be
    written or the tracker fails (an error that is not a :class:`MastSamError`); the outputs then describe the
    frames written so far.
    """
    signals = signals or Signals()
    try:
        writer = Writer(out, objects=depth is not None or pointmap_min_conf is not None, debug=debug, fps=fps)
    except OSError as e:
        raise RunFailed(f"cannot write in {shown(out)}: {e}") from None
    stream = Stream(tracker, decode=decoder or Decoder(MAX_INPUT_PIXELS), depth=depth,
                    pointmap_min_conf=pointmap_min_conf, trim=trim, ahead=pipeline, name="mastsam-track")
    skipped: Counter[str] = Counter()
    objects_skipped = 0
    kept: list[Outcome] = []
    t0 = time.monotonic()
    try:
        for o in tqdm(stream.run(frames), total=total, disable=not progress, unit="frame"):
            if pipeline:  # for the summary; a serial run prints none
                kept.append(o.figures())
            name = shown(o.payload.name)
            if o.error is not None:
                if not isinstance(o.error, MastSamError):
                    log.debug("frame %s", name, exc_info=o.error)
                    raise RunFailed(f"frame {name}: the tracker failed: {type(o.error).__name__}: {o.error}")
                skipped[error_kind(o.error)] += 1
                log.warning("frame %s: %s, skipped", name, o.error)
                continue
            if o.objects_error is not None:
                objects_skipped += 1
                log.warning("frame %s: no 3D objects: %s", name, o.objects_error)
            try:
                with signals.held():
                    writer.write(o)
            except OSError as e:
                raise RunFailed(f"cannot write the outputs of frame {name} in {shown(out)}: {e}") from None
    finally:
        with signals.held(release=False):  # a signal now waits: the video must be finalised
            stream.close()
            writer.close()
    signals.check()
    figures = {"counters": stream.counts(), "stats": outcome_stats(kept), "wall_s": time.monotonic() - t0}
    return {"frames": writer.frames, "skipped": sum(skipped.values()), "skipped_by_kind": dict(skipped),
            "ids": len(writer.ids), "objects_skipped": objects_skipped, "pipeline": figures}


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


def _inputs(args) -> tuple[Iterable[Frame], int | None, Path | None]:
    """The frames to track, their expected count (progress bar) and the input folder or file; :class:`UsageError`
    when the input is missing, empty or cannot be opened."""
    if args.demo:
        source = demo_source()
        if source is None:
            log.info("../shared not found: running on generated frames")
            n = args.max_frames or 60
            return (Frame(f"{i:05d}", f) for i, f in enumerate(synthetic_frames(n))), n, None
        log.info("demo input: %s", source)
    else:
        source = args.image_dir or args.video
    if not source.exists():
        raise UsageError(f"input not found: {shown(source)}")
    if source.is_dir():
        items = image_items(source, args.max_frames)
        return items, len(items), source
    if args.image_dir is not None:
        raise UsageError(f"--image-dir {shown(source)} is not a folder")
    try:
        video = VideoFrames(source)  # opened here to check it, again when the run reads it
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    video.close()
    total = video.declared if args.max_frames is None else min(video.declared or args.max_frames, args.max_frames)
    return _video(source, args.max_frames), total, source


def _video(source: Path, max_frames: int | None) -> Iterator[Frame]:
    for name, rgb in VideoFrames(source, max_frames):  # raw frames are bounded by the Decoder
        yield Frame(name, rgb)


def main(argv: list[str] | None = None) -> int:
    with Signals() as signals:
        try:
            return _main(argv, signals)
        except UsageError as e:
            print(f"mastsam-track: {e}", file=sys.stderr)
            return EXIT_USAGE
        except RunFailed as e:
            print(f"mastsam-track: {e}", file=sys.stderr)
            return EXIT_FAILED
        except SystemExit as e:  # argparse: --help, or one line on a bad option
            return e.code if isinstance(e.code, int) else EXIT_USAGE
        except (Interrupted, KeyboardInterrupt) as e:
            signum = getattr(e, "signum", signal.SIGINT)
            print(f"mastsam-track: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
            return 128 + signum


def _main(argv: list[str] | None, signals: Signals) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.depth_dir is not None and args.intrinsics is None:
        raise UsageError("--depth-dir needs --intrinsics fx,fy,cx,cy")
    if args.depth_dir is not None and not args.depth_dir.is_dir():
        raise UsageError(f"depth folder not found: {shown(args.depth_dir)}")
    frames, total, source = _inputs(args)
    out = args.output_dir
    if source is not None and source.is_dir() and out.exists() and out.resolve() == source.resolve():
        raise UsageError(f"the output folder is the input folder ({shown(out)}): choose another")
    try:
        depth = DepthReader(args.depth_dir, args.intrinsics) if args.depth_dir is not None else None
    except OSError as e:
        raise UsageError(f"cannot read depth folder {shown(args.depth_dir)}: {e.strerror or e}") from None
    try:
        cfg = load_config(args.config, args.set)
        tracker = Tracker(cfg)
    except (MastSamError, OSError) as e:
        raise UsageError(str(e)) from None
    decoder = Decoder(args.max_input_pixels)
    try:
        if args.pointmap and type(tracker.matcher).point_map is Matcher.point_map:
            raise UsageError(f"--pointmap needs a matcher that predicts 3D points (matcher.backend mast3r), not "
                             f"{cfg.matcher.backend}")
        with signals.held():  # a signal waits: an earlier run's outputs are removed whole or not at all
            prepare_output(out, args.overwrite)  # the first time anything under OUT is touched
        stats = run(tracker, frames, out, decoder=decoder, depth=depth,
                    pointmap_min_conf=args.pointmap_min_conf if args.pointmap else None, trim=args.extent_trim,
                    pipeline=args.pipeline, debug=args.debug, fps=args.fps, total=total, progress=not args.quiet,
                    signals=signals)
    except Interrupted as e:
        print(f"mastsam-track: interrupted by {signal.Signals(e.signum).name} after {len(read_listed(out))} "
              f"frames: {shown(out)} holds their PNGs and tracks.jsonl lines", file=sys.stderr)
        return 128 + e.signum
    finally:
        tracker.close()
    by_kind = ", ".join(f"{k} {v}" for k, v in sorted(stats["skipped_by_kind"].items()))
    log.info("%d frames tracked, %d skipped%s, %d distinct ids -> %s", stats["frames"], stats["skipped"],
             f" ({by_kind})" if by_kind else "", stats["ids"], shown(out))
    if decoder.downscaled:
        log.info("%d frames over --max-input-pixels=%d were downscaled", decoder.downscaled, args.max_input_pixels)
    if depth is not None or args.pointmap:
        log.info("3D objects (%s) for %d frames, %d frames without (see warnings) -> %s",
                 "depth" if depth is not None else "pointmap", stats["frames"] - stats["objects_skipped"],
                 stats["objects_skipped"], shown(out / "objects.jsonl"))
        if depth is not None and depth.out_of_range:
            log.warning("%d frames had depth beyond %g m (made invalid)", depth.out_of_range, MAX_DEPTH_M)
    if args.pipeline:
        print(pipeline_summary(stats["pipeline"]))
    # the one-line summary on stdout, for scripts and the README's demo figure
    print(f"distinct ids: {stats['ids']} over {stats['frames']} frames ({stats['skipped']} skipped) -> {shown(out)}")
    if not stats["frames"]:
        raise RunFailed(f"no frame could be tracked ({stats['skipped']} skipped{': ' + by_kind if by_kind else ''})")
    return 0


def read_listed(out: Path) -> list[str]:
    """The frames ``out/tracks.jsonl`` lists."""
    path = out / "tracks.jsonl"
    return [json.loads(x)["frame"] for x in path.read_text().splitlines()] if path.is_file() else []


if __name__ == "__main__":
    sys.exit(main())
