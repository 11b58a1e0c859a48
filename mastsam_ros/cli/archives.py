"""``mastsam-bag process-many``: a whole archive of bags through the tracker, one job per bag, on Ray.

Each input bag is one job with a tracker of its own (ids are per stream), written as ``OUT/<bag name>/`` with the
topics ``mastsam-bag process`` writes, byte for byte (both run :func:`~mastsam_ros.cli.bagio.process_bag`);
``OUT/manifest.jsonl`` gets one line per bag attempt. Jobs run on Ray actors: each actor builds the segmenter and
matcher once and reuses them for every bag it is given (a fresh Tracker, and fresh k-means state, per bag, so a bag's
output does not depend on which bags its worker saw before). ``--ray-address`` joins a running cluster; without it a
local Ray instance starts and stops with the command; ``--no-ray`` runs the jobs one after the other in this process
(debugging).

Faults stay with their bag: a bag that cannot be opened, a folder under a scanned root that holds bag storage files
but no metadata.yaml (an interrupted recording or copy), a bag without an image topic, with no decodable frame, or
whose worker dies is marked ``failed`` with its reason, and the other bags go on. Output is written under
``OUT/.partial/`` and renamed into place only on success, so a bag folder in OUT is always complete; a re-run with
the same OUT skips the bags whose folder exists (resumable) and retries the failed ones. Nothing under OUT is touched
before the inputs are found and read and Ray is reached: ``--ray-address`` that does not answer within
``--ray-timeout`` seconds (default 25), and ``auto`` without a cluster, end the command with one line, exit code 2.

Ray is imported here only, and only when the command runs on Ray.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from mastsam_ros.cli.bagio import ProcessOptions, UsageError, image_topic, process_bag
from mastsam_ros.core.decode import MAX_INPUT_PIXELS

log = logging.getLogger("mastsam-bag")

MANIFEST = "manifest.jsonl"
PARTIAL = ".partial"
STORAGE_SUFFIXES = (".mcap", ".db3", ".mcap.zstd", ".db3.zstd")  # a rosbag2 folder's storage files
RAY_TIMEOUT_S = 25.0  # joining a cluster: with the address check (at most 5 s) within 30 s


@dataclass
class Job:
    """One bag to process: input folder, output folder name in OUT, image topic, frame count (from its metadata)."""

    bag: str
    name: str
    topic: str | None = None
    frames: int = 0


@dataclass
class Options:
    """What every job shares: process's output options and where OUT is."""

    out_dir: str
    storage: str | None = None
    output_prefix: str = "/tracker"
    copy_input: bool = True
    pipeline: bool = False  # each bag's stream prepares frames ahead (same outputs)
    max_input_pixels: int = MAX_INPUT_PIXELS  # larger frames are tracked downscaled (or, compressed, skipped)


# --- finding bags and their topics --------------------------------------------------------------------------------
def ray_processes(workers: bool = True) -> set[int]:
    """Pids of Ray's processes on this machine, from /proc: its services (raylet, gcs_server, its Python agents and
    dashboard) and, with ``workers``, the ``ray::`` worker processes. For checks that a run left nothing behind and
    for measuring what Ray itself costs (``scripts/bench_archives.py``)."""
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            service = any(k in cmd for k in (b"raylet", b"gcs_server", b"ray/_private", b"ray/dashboard"))
            if service or (workers and cmd.startswith(b"ray::")):
                pids.add(int(d.name))
    return pids


def is_bag(path: Path) -> bool:
    return (path / "metadata.yaml").is_file()


def find_bags(inputs: list[str], out_dir: Path) -> list[Path]:
    """INPUTS (bag folders, folders holding bags at any depth, glob patterns) -> bag folders, in order, once each.

    Under a scanned folder, a folder holding storage files (.mcap, .db3) without metadata.yaml is returned too, and
    a folder that is no bag and holds none is returned as it is, so that each fails with its reason. Bags inside OUT
    are never inputs. Raises FileNotFoundError for a path or pattern that names nothing.
    """
    out_dir = out_dir.resolve()
    found: list[Path] = []
    for item in inputs:
        paths = [Path(p) for p in sorted(glob.glob(item))] if glob.has_magic(item) and not Path(item).exists() else [
            Path(item)]
        if not paths or not paths[0].exists():
            raise FileNotFoundError(f"no such bag or folder: {item}")
        for p in paths:
            p = p.resolve()
            if p.is_dir() and not is_bag(p):
                inner = {f.parent for f in p.rglob("*") if f.is_file() and (
                    f.name == "metadata.yaml" or f.name.endswith(STORAGE_SUFFIXES))}
                inner = sorted(b for b in inner if out_dir != b and out_dir not in b.parents)
                found.extend(inner or [p])
            else:
                found.append(p)
    unique = list(dict.fromkeys(found))
    return [b for b in unique if out_dir != b and out_dir not in b.parents]


def plan(bag: Path, wanted_topic: str | None) -> Job:
    """A Job for ``bag``; raises (ReaderError, TopicError...) when the bag cannot be opened or has no image topic."""
    from rosbags.rosbag2 import Reader

    if not is_bag(bag):
        raise FileNotFoundError(f"not a bag: no metadata.yaml in {bag}")
    with Reader(bag) as reader:
        topic, frames = image_topic(reader, wanted_topic)
    return Job(str(bag), bag.name, topic, frames)


# --- the worker ---------------------------------------------------------------------------------------------------
class BagWorker:
    """Owns one segmenter and one matcher (the models), built once; processes bags one at a time.

    Used as is by ``--no-ray`` and as a Ray actor otherwise. ``threads``: OpenCV threads (0 = OpenCV's default);
    a Ray worker gets its ``--cpus-per-job`` so that workers sharing a machine do not oversubscribe it.
    """

    def __init__(self, cfg, threads: int = 0):
        from mastsam_ros.core.clustering import build_clustering
        from mastsam_ros.core.matchers import build_matcher
        from mastsam_ros.core.segmenters import build_segmenter

        if threads:
            import cv2

            cv2.setNumThreads(threads)
        self.cfg = cfg
        self.segmenter = build_segmenter(cfg.segmenter)
        self.matcher = build_matcher(cfg.matcher)
        # k-means holds an RNG, so each bag gets a new one; resolve "auto" once so that is said once.
        self.clustering_cfg = replace(cfg.clustering, backend=build_clustering(cfg.clustering).name)

    def ready(self) -> str:
        return f"{os.getpid()}@{socket.gethostname()}"

    def run(self, job: Job, opts: Options, progress=None) -> dict:
        """Process one bag into ``OUT/.partial/<name>``, renamed to ``OUT/<name>`` on success; a manifest record.

        ``progress``: a callable taking a frame count, or a Ray actor handle with ``add(name, count)``.
        Every error is caught and returned as a failed record, so one bad bag never ends the worker.
        """
        from mastsam_ros.core.clustering import build_clustering
        from mastsam_ros.core.tracker import Tracker

        t0, cpu0 = time.perf_counter(), time.process_time()
        final = Path(opts.out_dir, job.name)
        on_frame, flush = self._reporter(job, progress)
        record = {"bag": job.bag, "name": job.name, "topic": job.topic, "worker": self.ready()}
        try:
            # The models are shared across bags; the tracker (ids from 1, its RNG) and the k-means state are not.
            tracker = Tracker(self.cfg, segmenter=self.segmenter, matcher=self.matcher,
                              clustering=build_clustering(self.clustering_cfg))
            r = process_bag(ProcessOptions(
                input=job.bag, output=final, topic=job.topic, storage=opts.storage, output_prefix=opts.output_prefix,
                copy_input=opts.copy_input, pipeline=opts.pipeline, max_input_pixels=opts.max_input_pixels,
                staging=Path(opts.out_dir, PARTIAL),
            ), tracker, on_frame)
            record.update(status="ok", output=str(final), frames=r.frames, skipped=r.skipped, error=None)
        except Exception as e:  # noqa: BLE001 - any failure belongs to this bag, reported in the manifest
            record.update(status="failed", output=None, frames=0, skipped=0, error=f"{type(e).__name__}: {e}")
        flush(last=True)
        record["cpu_s"] = round(time.process_time() - cpu0, 3)  # this worker process's CPU time (all threads)
        return finish(record, time.perf_counter() - t0)

    @staticmethod
    def _reporter(job: Job, progress) -> tuple[Callable[[], None] | None, Callable[..., None]]:
        """(per-frame callback, flush) reporting frames to ``progress``; to an actor at most twice a second, so that
        many fast workers do not flood it. ``flush(last=True)`` waits until the actor has the count, so the driver
        sees every frame of a bag once it has the bag's record."""
        if progress is None:
            return None, lambda last=False: None
        if callable(progress):
            return lambda: progress(1), lambda last=False: None
        import ray

        pending, last_sent = [0], [time.monotonic()]

        def flush(last: bool = False):
            if pending[0]:
                ref = progress.add.remote(job.name, pending[0])
                pending[0], last_sent[0] = 0, time.monotonic()
                if last:
                    ray.get(ref)

        def on_frame():
            pending[0] += 1
            if time.monotonic() - last_sent[0] >= 0.5:
                flush()

        return on_frame, flush


def finish(record: dict, seconds: float) -> dict:
    record["seconds"] = round(seconds, 3)
    record["fps"] = round(record.get("frames", 0) / seconds, 3) if seconds > 0 else 0.0
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record


def failed(job: Job, error: str, seconds: float = 0.0, worker: str | None = None) -> dict:
    return finish({"bag": job.bag, "name": job.name, "topic": job.topic, "worker": worker, "status": "failed",
                   "output": None, "frames": 0, "skipped": 0, "error": error, "cpu_s": None}, seconds)


class _Counter:
    """Frames done per bag (a Ray actor the workers add to and the driver reads for the progress bar)."""

    def __init__(self):
        self.n: dict[str, int] = {}

    def add(self, name: str, k: int) -> None:
        self.n[name] = self.n.get(name, 0) + k

    def value(self) -> dict[str, int]:
        return dict(self.n)


# --- running the jobs ---------------------------------------------------------------------------------------------
@dataclass
class RayOptions:
    address: str | None = None
    workers: int = 0  # 0: as many as the cluster's resources allow (at most one per bag)
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    local_cpus: int = 0  # CPUs of a local instance (0: workers * cpus_per_job, else os.cpu_count())
    timeout: float = RAY_TIMEOUT_S  # joining ``address``: seconds before giving up


# Joins the cluster in a child process first: ray.init retries an address that accepts connections but is no Ray
# cluster for ever, printing warnings, and cannot be interrupted in this process; the child can be killed.
_PROBE = """
import sys
import ray
try:
    ray.init(address=sys.argv[1], configure_logging=False, log_to_driver=False)
    ray.shutdown()
except Exception as e:
    causes = [e]
    while causes[-1].__cause__ is not None and len(causes) < 5:
        causes.append(causes[-1].__cause__)
    line = type(e).__name__ + ": " + (str(e).strip().splitlines() or [""])[0]
    if any("InvalidAuthToken" in str(c) for c in causes):
        line += " (its authentication token is missing or wrong: RAY_AUTH_MODE=token and the cluster's token)"
    print(line, flush=True)
    sys.exit(3)
"""


def join_ray(address: str, timeout: float = RAY_TIMEOUT_S) -> None:
    """``ray.init(address)`` once the cluster has answered a trial connection (a child process) within ``timeout``
    seconds; :class:`UsageError` with one line otherwise. HOST:PORT is first checked to accept a TCP connection."""
    import ray

    t0 = time.monotonic()
    if address != "auto" and not address.startswith("ray://"):
        host, sep, port = address.rpartition(":")
        if not (sep and host and port.isdigit()):
            raise UsageError(f"--ray-address must be auto, HOST:PORT or ray://HOST:PORT, got {address}")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, timeout)).close()
        except OSError as e:
            raise UsageError(f"no Ray cluster at --ray-address {address}: {e.strerror or e}") from None
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                               timeout=max(1.0, timeout - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        raise UsageError(f"the Ray cluster at --ray-address {address} did not answer within {timeout:g} s") from None
    if probe.returncode != 0:
        reason = (probe.stdout.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        if "Could not find any running Ray instance" in reason:
            raise UsageError(f"--ray-address {address}: no running Ray cluster found (start one with `ray start "
                             "--head`, or leave --ray-address out for a local instance)")
        raise UsageError(f"cannot join the Ray cluster at --ray-address {address}: {reason}")
    ray.init(address=address, configure_logging=False)


@contextmanager
def ray_session(ro: RayOptions) -> Iterator[None]:
    """Ray for the block: joins ``ro.address`` (:func:`join_ray`), or starts a local instance; either is shut down at
    the end. A session this process already has is used and left running. Keeps this process's SIGTERM handler
    (ray.init replaces it)."""
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    handler = signal.getsignal(signal.SIGTERM)
    if ro.address:
        join_ray(ro.address, ro.timeout)
    else:
        cpus = ro.local_cpus or (int(max(1, ro.workers * ro.cpus_per_job)) if ro.workers else os.cpu_count())
        # A small object store: jobs exchange only records; the bags go through the file system.
        ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=100 * 2**20, configure_logging=False)
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        ray.shutdown()


def run_in_process(jobs: list[Job], opts: Options, cfg, on_record: Callable[[dict], None], bar) -> dict:
    t0 = time.perf_counter()
    worker = BagWorker(cfg)
    t_ready = time.perf_counter()
    for job in jobs:
        before = bar.n
        record = worker.run(job, opts, bar.update)
        if record["status"] != "ok":  # the bar's total counts only frames that will be done
            bar.total -= job.frames - (bar.n - before)
            bar.refresh()
        on_record(record)
    return {"workers": 1, "startup_s": t_ready - t0, "processing_s": time.perf_counter() - t_ready}


def run_on_ray(jobs: list[Job], opts: Options, cfg, ro: RayOptions, on_record: Callable[[dict], None], bar) -> dict:
    """Run ``jobs`` on Ray actors (Ray initialised: :func:`ray_session`); calls ``on_record`` as each bag ends."""
    import ray
    from ray.exceptions import RayActorError, RayError

    t0 = time.perf_counter()
    actors = []
    try:
        res = ray.cluster_resources()
        n = ro.workers
        if not n:
            n = int(res.get("CPU", 1) // ro.cpus_per_job) if ro.cpus_per_job else len(jobs)
            if ro.gpus_per_job:
                n = min(n, int(res.get("GPU", 0) // ro.gpus_per_job))
            n = max(1, min(n, len(jobs)))
        threads = max(1, int(ro.cpus_per_job))
        Worker = ray.remote(BagWorker)
        counter = ray.remote(num_cpus=0)(_Counter).remote()
        actors.append(counter)

        def new_worker():
            actors.append(Worker.options(num_cpus=ro.cpus_per_job, num_gpus=ro.gpus_per_job, max_restarts=0).remote(
                cfg, threads))
            return actors[-1]

        workers = [new_worker() for _ in range(n)]
        try:
            names = ray.get([w.ready.remote() for w in workers])  # models loaded: start-up ends here
        except RayError as e:  # a worker could not build its models (a missing checkpoint, no CUDA...)
            raise ValueError(f"the Ray workers did not start: {e}") from e
        log.info("%d Ray workers ready (%s), %s per job", n, ", ".join(names),
                 f"{ro.cpus_per_job:g} CPU" + (f" + {ro.gpus_per_job:g} GPU" if ro.gpus_per_job else ""))
        t_ready = time.perf_counter()
        bar.reset(total=bar.total)  # the bar's rate counts from here, not from Ray's start
        idle = list(zip(workers, names))  # (actor, "pid@host"); a replacement's name is learnt from its records
        queue, running, shown = deque(jobs), {}, 0
        while queue or running:
            while queue and idle:
                (w, name), job = idle.pop(), queue.popleft()
                running[w.run.remote(job, opts, counter)] = (w, name, job, time.perf_counter())
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            per_bag = ray.get(counter.value.remote())
            bar.update(sum(per_bag.values()) - shown)
            shown = sum(per_bag.values())
            for ref in done:
                w, name, job, t_start = running.pop(ref)
                took = time.perf_counter() - t_start
                try:
                    record = ray.get(ref)
                    idle.append((w, record["worker"]))
                except RayActorError as e:
                    # The worker process died (killed, out of memory, segfault): this bag fails, a new worker
                    # takes the next one, and whatever the dead one left under .partial is removed.
                    shutil.rmtree(Path(opts.out_dir, PARTIAL, job.name), ignore_errors=True)
                    record = failed(job, f"worker died: {str(e).splitlines()[0]}", took, name)
                    ray.kill(w, no_restart=True)
                    if queue:
                        idle.append((new_worker(), None))
                except RayError as e:
                    record = failed(job, f"{type(e).__name__}: {str(e).splitlines()[0]}", took, name)
                    idle.append((w, name))
                if record["status"] != "ok":  # the bar's total counts only frames that will be done
                    bar.total -= job.frames - per_bag.get(job.name, 0)
                    bar.refresh()
                on_record(record)
        bar.update(sum(ray.get(counter.value.remote()).values()) - shown)
        return {"workers": n, "startup_s": t_ready - t0, "processing_s": time.perf_counter() - t_ready}
    finally:
        for a in actors:  # free their resources now: a session that goes on (or a cluster) keeps no idle models
            ray.kill(a, no_restart=True)


def _check_out_dir(out: Path) -> None:
    """Refuse (UsageError) an OUT that is a file or lies in a folder that cannot be written."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output-dir {out} is a file, not a folder")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--output-dir {out}: {existing} is not a writable folder")


def process_many(inputs: list[str], out_dir: str | Path, cfg, *, topic: str | None = None, opts: Options | None = None,
                 ray_opts: RayOptions | None = None, use_ray: bool = True, show_progress: bool = True) -> dict:
    """The command as a function: find the bags, skip those done, run the rest, append to the manifest.

    Nothing under OUT is touched until the inputs are found and planned and Ray is reached. Raises UsageError (two
    bags of one name, OUT not writable, Ray unreachable) and FileNotFoundError (an input names nothing). Returns a
    summary: ``processed``, ``failed``, ``already_done`` (bag names), ``frames``, ``workers``, ``startup_s`` (Ray and
    the workers' models), ``processing_s`` (first job dispatched to last job done), ``fps``.
    """
    from tqdm import tqdm

    out = Path(out_dir).resolve()
    _check_out_dir(out)
    bags = find_bags(inputs, out)
    clashes = sorted({b.name for b in bags if sum(c.name == b.name for c in bags) > 1})
    if clashes:
        raise UsageError(f"several input bags are named {', '.join(clashes)}; outputs are OUT/<bag name>, so rename "
                         "them or run them into different output folders")
    opts = opts or Options(str(out))
    opts.out_dir = str(out)
    summary: dict = {"processed": [], "failed": [], "already_done": [], "frames": 0}
    jobs, unplanned = [], []
    for b in bags:
        if (out / b.name).is_dir():
            summary["already_done"].append(b.name)
            continue
        t_plan = time.perf_counter()
        try:
            jobs.append(plan(b, topic))
        except Exception as e:  # noqa: BLE001 - unreadable bag, no image topic: this bag fails, others go on
            unplanned.append(failed(Job(str(b), b.name, topic), f"{type(e).__name__}: {e}",
                                    time.perf_counter() - t_plan))
    run = {"workers": 0, "startup_s": 0.0, "processing_s": 0.0}
    t_session = time.perf_counter()
    with ray_session(ray_opts or RayOptions()) if jobs and use_ray else nullcontext():
        t_session = time.perf_counter() - t_session
        out.mkdir(parents=True, exist_ok=True)
        (out / PARTIAL).mkdir(exist_ok=True)
        with open(out / MANIFEST, "a") as manifest:

            def on_record(record: dict) -> None:
                manifest.write(json.dumps(record) + "\n")
                manifest.flush()
                ok = record["status"] == "ok"
                summary["processed" if ok else "failed"].append(record["name"])
                summary["frames"] += record["frames"]
                line = (f"ok     {record['name']}: {record['frames']} frames ({record['skipped']} skipped) in "
                        f"{record['seconds']:.1f} s, {record['fps']:.2f} fps" if ok else
                        f"FAILED {record['name']}: {record['error']}")
                tqdm.write(line, file=sys.stdout)

            for record in unplanned:
                on_record(record)
            if summary["already_done"]:
                print(f"{len(summary['already_done'])} bags already done in {out}, skipped: "
                      f"{', '.join(summary['already_done'])}")
            if jobs:
                with tqdm(total=sum(j.frames for j in jobs), unit="frame", disable=not show_progress,
                          file=sys.stderr, desc=f"{len(jobs)} bags") as bar:
                    if use_ray:
                        run = run_on_ray(jobs, opts, cfg, ray_opts or RayOptions(), on_record, bar)
                    else:
                        run = run_in_process(jobs, opts, cfg, on_record, bar)
                run["startup_s"] += t_session  # Ray's start (or joining a cluster) belongs to the start-up
    summary.update(run)
    summary["fps"] = summary["frames"] / run["processing_s"] if run["processing_s"] else 0.0
    return summary


# --- command line -------------------------------------------------------------------------------------------------
def add_parser(sub) -> None:
    """Add ``process-many`` to mastsam-bag's subcommands."""
    m = sub.add_parser("process-many", help="many bags through the tracker, one job per bag, on Ray",
                       description="Process many bags, one job (and tracker) per bag, on a local Ray instance, a Ray "
                       "cluster (--ray-address) or in this process (--no-ray). Writes OUT/<bag name>/ (the topics "
                       "of `process`) and OUT/manifest.jsonl; a re-run skips the bags already done. Exit code 0: "
                       "every bag done, 1: some failed, 2: a usage error (nothing written).")
    m.add_argument("inputs", nargs="+", metavar="INPUT", help="bag folders, folders holding bags, or glob patterns")
    m.add_argument("--output-dir", "-o", required=True, help="OUT: one bag folder per input bag, and the manifest")
    m.add_argument("--topic", help="image topic to process (default: each bag's first Image/CompressedImage topic)")
    m.add_argument("--config", help="params file (config/tracker.yaml format); default: built-in defaults")
    m.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    m.add_argument("--storage", choices=("mcap", "sqlite3"), help="output storage (default: each input's)")
    m.add_argument("--output-prefix", default="/tracker", help="namespace of the output topics (default /tracker)")
    m.add_argument("--no-copy-input", dest="copy_input", action="store_false", help="do not copy the input topic")
    m.add_argument("--pipeline", action="store_true", help="each bag's stream prepares frames ahead (same outputs)")
    m.add_argument("--max-input-pixels", type=int, default=MAX_INPUT_PIXELS,
                   help=f"as for `process` (default {MAX_INPUT_PIXELS})")
    m.add_argument("--workers", type=int, default=0,
                   help="Ray workers (actors), each holding its own models (default: as many as the resources allow)")
    m.add_argument("--cpus-per-job", type=float, default=1.0, help="CPUs Ray reserves per worker (default 1)")
    m.add_argument("--gpus-per-job", type=float, default=0.0,
                   help="GPUs Ray reserves per worker (default 0; 1 = one tracker per GPU)")
    m.add_argument("--ray-address", help="join this Ray cluster (auto, HOST:PORT, ray://head:10001); default: start "
                   "a local instance for this command")
    m.add_argument("--ray-timeout", type=float, default=RAY_TIMEOUT_S,
                   help=f"seconds to wait for --ray-address to answer (default {RAY_TIMEOUT_S:g})")
    m.add_argument("--ray-cpus", type=int, default=0,
                   help="CPUs of the local instance (default: workers x cpus-per-job, or all of this machine's)")
    m.add_argument("--no-ray", dest="use_ray", action="store_false", help="run in this process, one bag after another")
    m.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    m.set_defaults(func=command)


def command(args) -> int:
    from mastsam_ros.core.config import Config, parse_overrides

    if not args.use_ray and args.workers > 1:
        raise UsageError("--no-ray runs one worker in this process; drop --workers or drop --no-ray")
    if args.workers < 0 or args.cpus_per_job < 0 or args.gpus_per_job < 0 or args.ray_cpus < 0:
        raise UsageError("--workers, --cpus-per-job, --gpus-per-job and --ray-cpus must not be negative")
    if args.max_input_pixels <= 0:
        raise UsageError(f"--max-input-pixels must be > 0, got {args.max_input_pixels}")
    if not (math.isfinite(args.ray_timeout) and args.ray_timeout > 0):
        raise UsageError(f"--ray-timeout must be a finite number of seconds > 0, got {args.ray_timeout}")
    overrides = parse_overrides(args.set)
    cfg = Config.from_yaml(args.config, overrides) if args.config else Config().update(overrides)
    opts = Options(args.output_dir, args.storage, args.output_prefix, args.copy_input, args.pipeline,
                   args.max_input_pixels)
    ray_opts = RayOptions(args.ray_address, args.workers, args.cpus_per_job, args.gpus_per_job, args.ray_cpus,
                          args.ray_timeout)
    s = process_many(args.inputs, args.output_dir, cfg, topic=args.topic, opts=opts, ray_opts=ray_opts,
                     use_ray=args.use_ray, show_progress=args.progress)
    print(f"{len(s['processed'])} bags processed, {len(s['failed'])} failed, {len(s['already_done'])} already done; "
          f"{s['frames']} frames in {s['processing_s']:.1f} s ({s['fps']:.2f} fps) on {s['workers']} workers "
          f"(start-up {s['startup_s']:.1f} s); manifest: {Path(args.output_dir, MANIFEST)}")
    return 1 if s["failed"] else 0
