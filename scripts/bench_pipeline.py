"""Frame rate and latency of the stream (mastsam_ros/core/stream.py) with and without what it prepares ahead, side
by side in one run, under a camera that sends faster than either keeps up.

There is no GPU here, so the segmenter is a stand-in for one (:class:`GpuStandIn`): its encoder call sleeps
``--encoder-ms`` (a GPU call releases the GIL while the device works; a sleep does the same), each decoder call
sleeps ``--decoder-ms``, and its answers are ``--tracks`` fixed regions (the zero-cost segmenter of
mastsam_ros/evaluation/instruments.py), so the tracker holds a steady track count. Everything else is real: the JPEG
decode of each frame, the DIS flow matcher on the CPU, the tracker's prompts, re-segmentation schedule and
bookkeeping. ``--model vit_t`` replaces the stand-in by MobileSAM's real encoder and decoder on ``--device`` (random
weights, answers replaced by the same fixed regions after the full computation): on this CPU, or on a GPU in the GPU
kit (scripts/gpu/).

A camera thread sends the JPEG frames of ``--source`` (default: DAVIS car-roundabout, 854x480) at ``--rate`` Hz for
``--seconds`` per run into a live stream (``Stream.submit``: a frame still waiting at the entrance is replaced and
counted as dropped). ``serial``: the stream with nothing ahead (``ahead=False``, the node with ``node.pipeline``
off): stage 1 decodes, each step encodes its frame and computes the matcher's pair (beside the encoder,
``tracker.overlap_matcher``). ``pipeline``: stage 2 prepares frame n+1 (``Tracker.prepare``: the embedding and the
matcher's pair, the DIS flow of frame n -> n+1) while frame n is tracked. ``pipeline-flow3`` (with ``--modes``): the
pipeline with nothing computed ahead by the matcher, so the flow runs in stage 3 as it did before the matcher could
compute ahead. Runs alternate (serial, pipeline, pipeline, serial, ...) so a change of machine load hits every mode.

Reported per run: output fps; the bound its stages allow (1000 / the slowest stage's mean ms), which tells how much
of a difference comes from the load of the moment rather than the scheduling; frames dropped at the entrance; latency
from the camera's send to the result (median, p95, max); the mean work per stage (``flow_ahead`` is stage 2's pair,
inside its prepare time). A run whose counts do not add up (sent = dropped + delivered) or with a failed frame stops
the script.

    PYTHONPATH=$PWD .venv/bin/python scripts/bench_pipeline.py [--encoder-ms 40] [--rate 30] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mastsam_ros.core.config import Config, parse_overrides  # noqa: E402
from mastsam_ros.core.stream import STAGES, Stream  # noqa: E402
from mastsam_ros.core.tracker import Tracker  # noqa: E402
from mastsam_ros.evaluation.instruments import ZeroCostSegmenter  # noqa: E402

CAR = REPO.parent / "shared" / "data" / "davis2016" / "JPEGImages" / "480p" / "car-roundabout"


class GpuStandIn(ZeroCostSegmenter):
    """Fixed regions as answers; the encoder sleeps ``encoder_s`` in :meth:`embed` (ahead of time in a pipeline),
    every generate / predict call sleeps ``decoder_s`` (one batched decoder call)."""

    name = "gpu-stand-in"
    embeds_ahead = True

    def __init__(self, shape, tracks: int, encoder_s: float, decoder_s: float):
        super().__init__(shape, tracks)
        self.encoder_s, self.decoder_s = encoder_s, decoder_s

    def embed(self, image):
        time.sleep(self.encoder_s)
        return ("stand-in", image.shape)

    def set_embedding(self, embedding) -> None:
        pass

    def set_image(self, image) -> None:
        self.set_embedding(self.embed(image))

    def generate(self, region=None, seeds=None):
        time.sleep(self.decoder_s)
        return super().generate(region, seeds)

    def predict(self, prompts):
        if prompts:
            time.sleep(self.decoder_s)
        return super().predict(prompts)


def real_model(cfg: Config, tracks: int, device: str):
    """MobileSAM (vit_t) with random weights on ``device``, its answers replaced by ``tracks`` fixed regions after its
    full computation (mastsam-bench's ``StandInMasks``): the real encoder and decoder costs with a steady track
    count."""
    import tempfile  # noqa: PLC0415

    from mastsam_ros.cli.bench_runs import random_checkpoint  # noqa: PLC0415
    from mastsam_ros.core.segmenters import build_segmenter  # noqa: PLC0415
    from mastsam_ros.evaluation.instruments import StandInMasks  # noqa: PLC0415

    seg_cfg = cfg.segmenter
    seg_cfg.backend, seg_cfg.device = "mobile_sam", device
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        seg_cfg.checkpoint = str(random_checkpoint("mobile_sam", "vit_t", Path(tmp)))
        return StandInMasks(build_segmenter(seg_cfg), tracks)


def decode(jpeg: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


class Camera(threading.Thread):
    """Sends ``frames`` in a loop at ``rate`` Hz to ``send(jpeg, t_sent)`` until ``seconds`` have passed."""

    def __init__(self, frames, rate: float, seconds: float, send):
        super().__init__(daemon=True)
        self.frames, self.period, self.seconds, self.send = frames, 1.0 / rate, seconds, send
        self.sent = 0

    def run(self) -> None:
        start = time.monotonic()
        while time.monotonic() - start < self.seconds:
            self.send(self.frames[self.sent % len(self.frames)], time.monotonic())
            self.sent += 1
            time.sleep(max(0.0, start + self.sent * self.period - time.monotonic()))


def run_stream(tracker: Tracker, frames, rate: float, seconds: float, mode: str) -> dict:
    """The camera into a live stream (the entrance replaces a waiting frame: counted as dropped) in ``mode``:
    ``serial`` (nothing ahead), ``pipeline`` (stage 2 prepares ahead) or ``pipeline-flow3`` (stage 2 prepares the
    embedding only; the matcher computes nothing ahead)."""
    out = {"latency": [], "done": [], "stages": {s: [] for s in STAGES} | {"flow_ahead": []}, "errors": 0}
    if mode == "pipeline-flow3":  # the Matcher default: nothing ahead, the flow runs in stage 3
        tracker.matcher.pair_ahead = lambda previous, image: None

    def deliver(o):
        if o.error is not None:
            out["errors"] += 1
            return
        out["latency"].append(o.latency_ms)
        out["done"].append(time.monotonic())
        for k, v in o.stage_ms.items():
            out["stages"][k].append(v)
        out["stages"]["flow_ahead"].append(o.flow_ms)

    stream = Stream(tracker, deliver, decode=decode, ahead=mode != "serial", name="bench")
    cam = Camera(frames, rate, seconds, lambda jpeg, t: stream.submit(jpeg, arrived=t))
    cam.start()
    cam.join()
    if not stream.flush(30):
        raise RuntimeError("the stream did not finish its frames within 30 s")
    stream.close()
    c = stream.counts()
    out["dropped"] = c["dropped"]
    if out["errors"] or c["deliver_errors"]:
        raise RuntimeError(f"{out['errors']} frames failed in the stream, {c['deliver_errors']} in deliver")
    if c["submitted"] != cam.sent or c["submitted"] != c["dropped"] + c["delivered"] + c["in_flight"]:
        raise RuntimeError(f"the stream's counts do not add up: {c} ({cam.sent} sent)")
    if mode == "pipeline" and c["paired_ahead"] == 0:
        raise RuntimeError("no pair was computed in stage 2")
    stages = {k: v for k, v in out["stages"].items() if v and (mode != "serial" or k != "flow_ahead")}
    return summary(mode, out, cam.sent, stages)


def summary(mode: str, out: dict, sent: int, stages: dict) -> dict:
    done = out["done"]
    lat = np.array(out["latency"][1:])  # the first frame (the tracker's start) is left out
    fps = (len(done) - 2) / (done[-1] - done[1]) if len(done) > 3 else float("nan")
    means = {k: float(np.mean(v[1:])) for k, v in stages.items() if len(v) > 1}
    # the rate the stages allow: the slowest stage (every mode decodes in a thread of its own; flow_ahead is part of
    # prepare's time)
    bound = 1e3 / max(means.values())
    return {
        "mode": mode, "sent": sent, "processed": len(done), "dropped": out["dropped"], "fps": round(fps, 2),
        "bound_fps": round(bound, 2),
        "latency_ms_median": round(float(np.median(lat)), 1), "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
        "latency_ms_max": round(float(lat.max()), 1),
        "stage_ms_mean": {k: round(v, 1) for k, v in means.items()},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=CAR, help="directory of JPEG frames")
    ap.add_argument("--frames", type=int, default=50, help="frames of the source, sent in a loop")
    ap.add_argument("--encoder-ms", type=float, default=40.0)
    ap.add_argument("--decoder-ms", type=float, default=5.0)
    ap.add_argument("--tracks", type=int, default=8)
    ap.add_argument("--rate", type=float, default=30.0, help="camera rate (Hz)")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each run")
    ap.add_argument("--repeats", type=int, default=2, help="runs per mode (alternating)")
    ap.add_argument("--modes", default="serial,pipeline",
                    help="comma-separated, of serial, pipeline and pipeline-flow3 (the flow in stage 3)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="tracker config override")
    ap.add_argument("--model", choices=["vit_t"],
                    help="instead of the GPU stand-in: MobileSAM's real encoder and decoder on --device, random"
                         " weights, answers replaced by the fixed regions (mastsam-bench --random-weights);"
                         " --encoder-ms and --decoder-ms are then unused")
    ap.add_argument("--device", default="cpu", help="the --model's device (cpu, cuda)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    files = sorted(args.source.glob("*.jpg"))[: args.frames]
    if not files:
        print(f"no JPEG frames in {args.source}", file=sys.stderr)
        return 2
    jpegs = [np.fromfile(f, np.uint8) for f in files]
    shape = decode(jpegs[0]).shape[:2]
    cfg = Config().update(parse_overrides(args.set))

    modes = args.modes.split(",")
    if not modes or set(modes) - {"serial", "pipeline", "pipeline-flow3"}:
        print(f"--modes: unknown mode in {args.modes!r}", file=sys.stderr)
        return 2
    runs = []
    order = (modes + modes[::-1]) * args.repeats
    model = real_model(cfg, args.tracks, args.device) if args.model else None
    for mode in order[: len(modes) * args.repeats]:
        seg = model or GpuStandIn(shape, args.tracks, args.encoder_ms / 1e3, args.decoder_ms / 1e3)
        tracker = Tracker(cfg, segmenter=seg)
        try:
            run = run_stream(tracker, jpegs, args.rate, args.seconds, mode)
        finally:
            tracker.close()
        runs.append(run)
        print(json.dumps(run), flush=True)

    load = os.getloadavg()
    what = (f"MobileSAM {args.model} on {args.device} (random weights, stand-in answers)" if args.model else
            f"stand-in encoder {args.encoder_ms:g} ms, decoder {args.decoder_ms:g} ms a call")
    print(f"\n{len(files)} frames {shape[1]}x{shape[0]} at {args.rate:g} Hz, {args.seconds:g} s a run; "
          f"{what}, {args.tracks} tracks; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'mode':10s} {'fps':>6s} {'bound':>6s} {'dropped':>8s} {'lat p50':>8s} {'lat p95':>8s} {'lat max':>8s}"
          "  stages (ms)")
    for r in runs:
        print(f"{r['mode']:10s} {r['fps']:6.2f} {r['bound_fps']:6.2f} {r['dropped']:8d} {r['latency_ms_median']:8.1f} "
              f"{r['latency_ms_p95']:8.1f} {r['latency_ms_max']:8.1f}  {r['stage_ms_mean']}")
    mean = {m: {k: float(np.mean([r[k] for r in runs if r["mode"] == m])) for k in ("fps", "latency_ms_median")}
            for m in modes}
    base = "serial" if "serial" in modes else modes[0]
    for m in modes:
        if m != base:
            print(f"{m} / {base}: fps x{mean[m]['fps'] / mean[base]['fps']:.2f}, median latency "
                  f"x{mean[m]['latency_ms_median'] / mean[base]['latency_ms_median']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
                                         "load": load}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
