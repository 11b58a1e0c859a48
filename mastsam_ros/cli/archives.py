"""``mastsam-bag process-many``: a whole archive of bags through the tracker, one job per bag, on Ray.

Each input bag is one job with a tracker of its own (ids are per stream), written as ``OUT/<bag name>/`` with the
topics ``mastsam-bag process`` writes, byte for byte; ``OUT/manifest.jsonl`` gets one line per bag attempt. Jobs run
on Ray actors: each actor builds the segmenter and matcher once and reuses them for every bag it is given (a fresh
Tracker, and fresh k-means state, per bag, so a bag's output does not depend on which bags its worker saw before).
``--ray-address`` joins a running cluster; without it a local Ray instance starts and stops with the command;
``--no-ray`` runs the jobs one after the other in this process (debugging).

Faults stay with their bag: a bag that cannot be opened, has no image topic, has no decodable frame, or whose worker
dies is marked ``failed`` with its reason, and the other bags go on. Output is written under ``OUT/.partial/`` and
renamed into place only on success, so a bag folder in OUT is always complete; a re-run with the same OUT skips the
bags whose folder exists (resumable) and retries the failed ones.

Testing hook: with the environment variable ``MASTSAM_BAG_CRASH_ON=<bag name>`` set for the command, a Ray worker
given that bag kills its own process (``os._exit``) before reading it, the way an out-of-memory kill or a segfault
would end it. Only Ray workers obey it (``--no-ray`` would kill the command itself).

Ray is imported here only, and only when the command runs on Ray.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

log = logging.getLogger("mastsam-bag")

MANIFEST = "manifest.jsonl"
PARTIAL = ".partial"
CRASH_ENV = "MASTSAM_BAG_CRASH_ON"
CRASH_EXIT = 70


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

    A folder that is no bag and holds none is returned as it is, so that it fails with its reason. Bags inside OUT
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
                inner = sorted(m.parent for m in p.rglob("metadata.yaml"))
                inner = [b for b in inner if out_dir != b and out_dir not in b.parents]
                found.extend(inner or [p])
            else:
                found.append(p)
    unique = list(dict.fromkeys(found))
    return [b for b in unique if out_dir != b and out_dir not in b.parents]


def image_topic(reader, wanted: str | None) -> tuple[str, int]:
    """(topic, message count) of the image topic to process in an open rosbags Reader; raises TopicError."""
    from mastsam_ros.cli.bag import COMPRESSED, IMAGE, TopicError

    images = [c for c in reader.connections if c.msgtype in (IMAGE, COMPRESSED)]
    if wanted is not None:
        images = [c for c in images if c.topic == wanted]
    if not images:
        have = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections) or "no topics"
        what = f"image topic {wanted}" if wanted else f"{IMAGE} or {COMPRESSED} topic"
        raise TopicError(f"no {what}; the bag has: {have}")
    topic = sorted({c.topic for c in images})[0]
    return topic, sum(c.msgcount for c in images if c.topic == topic)


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

    def __init__(self, cfg, threads: int = 0, crash_on: str | None = None):
        from mastsam_ros.core.clustering import build_clustering
        from mastsam_ros.core.matchers import build_matcher
        from mastsam_ros.core.segmenters import build_segmenter

        if threads:
            import cv2

            cv2.setNumThreads(threads)
        self.cfg = cfg
        self.crash_on = crash_on
        self.segmenter = build_segmenter(cfg.segmenter)
        self.matcher = build_matcher(cfg.matcher)
        # k-means holds an RNG, so each bag gets a new one; resolve "auto" once so that is said once.
        self.clustering_cfg = replace(cfg.clustering, backend=build_clustering(cfg.clustering).name)

    def ready(self) -> str:
        return f"{os.getpid()}@{socket.gethostname()}"

    def run(self, job: Job, opts: Options, progress=None) -> dict:
        """Process one bag into ``OUT/.partial/<name>``, rename it to ``OUT/<name>`` on success; a manifest record.

        ``progress``: a callable taking a frame count, or a Ray actor handle with ``add(name, count)``.
        Every error is caught and returned as a failed record, so one bad bag never ends the worker.
        """
        from mastsam_ros.cli.bag import process_bag
        from mastsam_ros.core.clustering import build_clustering
        from mastsam_ros.core.tracker import Tracker

        t0, cpu0 = time.perf_counter(), time.process_time()
        partial, final = Path(opts.out_dir, PARTIAL, job.name), Path(opts.out_dir, job.name)
        if self.crash_on is not None and self.crash_on == job.name:
            os._exit(CRASH_EXIT)  # the documented testing hook: this worker dies as an OOM kill would end it
        on_frame, flush = self._reporter(job, progress)
        record = {"bag": job.bag, "name": job.name, "topic": job.topic, "worker": self.ready()}
        try:
            shutil.rmtree(partial, ignore_errors=True)  # what an earlier, interrupted attempt left
            partial.parent.mkdir(parents=True, exist_ok=True)
            # The models are shared across bags; the tracker (ids from 1, its RNG) and the k-means state are not.
            tracker = Tracker(self.cfg, segmenter=self.segmenter, matcher=self.matcher,
                              clustering=build_clustering(self.clustering_cfg))
            args = argparse.Namespace(input=job.bag, output=str(partial), topic=job.topic, storage=opts.storage,
                                      output_prefix=opts.output_prefix, copy_input=opts.copy_input, verbose=False)
            n_ok, n_bad = process_bag(args, tracker, on_frame)
            if n_ok == 0:
                raise ValueError(f"no frame of {job.topic} could be processed ({n_bad} skipped)")
            os.rename(partial, final)  # atomic on one file system: OUT/<name> appears only complete
            record.update(status="ok", output=str(final), frames=n_ok, skipped=n_bad, error=None)
        except Exception as e:  # noqa: BLE001 - any failure belongs to this bag, reported in the manifest
            shutil.rmtree(partial, ignore_errors=True)
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
    """Run ``jobs`` on Ray actors; calls ``on_record`` as each bag ends. Starts (and stops) a local instance unless
    Ray is already initialised in this process or ``ro.address`` names a cluster to join."""
    import ray
    from ray.exceptions import RayActorError, RayError

    t0 = time.perf_counter()
    started, actors = False, []
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if ro.address:
            ray.init(address=ro.address, configure_logging=False)
        else:
            cpus = ro.local_cpus or (int(max(1, ro.workers * ro.cpus_per_job)) if ro.workers else os.cpu_count())
            # A small object store: jobs exchange only records; the bags go through the file system.
            ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=100 * 2**20,
                     configure_logging=False)
        started = True
    try:
        res = ray.cluster_resources()
        n = ro.workers
        if not n:
            n = int(res.get("CPU", 1) // ro.cpus_per_job) if ro.cpus_per_job else len(jobs)
            if ro.gpus_per_job:
                n = min(n, int(res.get("GPU", 0) // ro.gpus_per_job))
            n = max(1, min(n, len(jobs)))
        crash_on = os.environ.get(CRASH_ENV) or None
        threads = max(1, int(ro.cpus_per_job))
        Worker = ray.remote(BagWorker)
        counter = ray.remote(num_cpus=0)(_Counter).remote()
        actors.append(counter)

        def new_worker():
            actors.append(Worker.options(num_cpus=ro.cpus_per_job, num_gpus=ro.gpus_per_job, max_restarts=0).remote(
                cfg, threads, crash_on))
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
        if started:
            ray.shutdown()


def process_many(inputs: list[str], out_dir: str | Path, cfg, *, topic: str | None = None, opts: Options | None = None,
                 ray_opts: RayOptions | None = None, use_ray: bool = True, show_progress: bool = True) -> dict:
    """The command as a function: find the bags, skip those done, run the rest, append to the manifest.

    Returns a summary: ``processed``, ``failed``, ``already_done`` (bag names), ``frames``, ``workers``,
    ``startup_s`` (Ray and the workers' models), ``processing_s`` (first job dispatched to last job done), ``fps``.
    """
    from tqdm import tqdm

    out = Path(out_dir).resolve()
    bags = find_bags(inputs, out)
    clashes = sorted({b.name for b in bags if sum(c.name == b.name for c in bags) > 1})
    if clashes:
        raise ValueError(f"several input bags are named {', '.join(clashes)}; outputs are OUT/<bag name>, so rename "
                         "them or run them into different output folders")
    opts = opts or Options(str(out))
    opts.out_dir = str(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"processed": [], "failed": [], "already_done": [], "frames": 0}
    manifest = open(out / MANIFEST, "a")

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

    try:
        jobs = []
        for b in bags:
            if (out / b.name).is_dir():
                summary["already_done"].append(b.name)
                continue
            t0 = time.perf_counter()
            try:
                jobs.append(plan(b, topic))
            except Exception as e:  # noqa: BLE001 - unreadable bag, no image topic: this bag fails, others go on
                on_record(failed(Job(str(b), b.name, topic), f"{type(e).__name__}: {e}", time.perf_counter() - t0))
        if summary["already_done"]:
            print(f"{len(summary['already_done'])} bags already done in {out}, skipped: "
                  f"{', '.join(summary['already_done'])}")
        run = {"workers": 0, "startup_s": 0.0, "processing_s": 0.0}
        if jobs:
            with tqdm(total=sum(j.frames for j in jobs), unit="frame", disable=not show_progress, file=sys.stderr,
                      desc=f"{len(jobs)} bags") as bar:
                if use_ray:
                    run = run_on_ray(jobs, opts, cfg, ray_opts or RayOptions(), on_record, bar)
                else:
                    run = run_in_process(jobs, opts, cfg, on_record, bar)
    finally:
        manifest.close()
    summary.update(run)
    summary["fps"] = summary["frames"] / run["processing_s"] if run["processing_s"] else 0.0
    return summary


# --- command line -------------------------------------------------------------------------------------------------
def add_parser(sub) -> None:
    """Add ``process-many`` to mastsam-bag's subcommands."""
    m = sub.add_parser("process-many", help="many bags through the tracker, one job per bag, on Ray",
                       description="Process many bags, one job (and tracker) per bag, on a local Ray instance, a Ray "
                       "cluster (--ray-address) or in this process (--no-ray). Writes OUT/<bag name>/ (the topics "
                       "of `process`) and OUT/manifest.jsonl; a re-run skips the bags already done.")
    m.add_argument("inputs", nargs="+", metavar="INPUT", help="bag folders, folders holding bags, or glob patterns")
    m.add_argument("--output-dir", "-o", required=True, help="OUT: one bag folder per input bag, and the manifest")
    m.add_argument("--topic", help="image topic to process (default: each bag's first Image/CompressedImage topic)")
    m.add_argument("--config", help="params file (config/tracker.yaml format); default: built-in defaults")
    m.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    m.add_argument("--storage", choices=("mcap", "sqlite3"), help="output storage (default: each input's)")
    m.add_argument("--output-prefix", default="/tracker", help="namespace of the output topics (default /tracker)")
    m.add_argument("--no-copy-input", dest="copy_input", action="store_false", help="do not copy the input topic")
    m.add_argument("--workers", type=int, default=0,
                   help="Ray workers (actors), each holding its own models (default: as many as the resources allow)")
    m.add_argument("--cpus-per-job", type=float, default=1.0, help="CPUs Ray reserves per worker (default 1)")
    m.add_argument("--gpus-per-job", type=float, default=0.0,
                   help="GPUs Ray reserves per worker (default 0; 1 = one tracker per GPU)")
    m.add_argument("--ray-address", help="join this Ray cluster (e.g. auto, ray://head:10001); default: start a "
                   "local instance for this command")
    m.add_argument("--ray-cpus", type=int, default=0,
                   help="CPUs of the local instance (default: workers x cpus-per-job, or all of this machine's)")
    m.add_argument("--no-ray", dest="use_ray", action="store_false", help="run in this process, one bag after another")
    m.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    m.set_defaults(func=command)


def command(args) -> int:
    from mastsam_ros.core.config import Config, parse_overrides

    if not args.use_ray and args.workers > 1:
        log.error("--no-ray runs one worker in this process; drop --workers or drop --no-ray")
        return 2
    if args.workers < 0 or args.cpus_per_job < 0 or args.gpus_per_job < 0:
        log.error("--workers, --cpus-per-job and --gpus-per-job must not be negative")
        return 2
    overrides = parse_overrides(args.set)
    cfg = Config.from_yaml(args.config, overrides) if args.config else Config().update(overrides)
    opts = Options(args.output_dir, args.storage, args.output_prefix, args.copy_input)
    ray_opts = RayOptions(args.ray_address, args.workers, args.cpus_per_job, args.gpus_per_job, args.ray_cpus)
    try:
        s = process_many(args.inputs, args.output_dir, cfg, topic=args.topic, opts=opts, ray_opts=ray_opts,
                         use_ray=args.use_ray, show_progress=args.progress)
    except ValueError as e:
        log.error("%s", e)
        return 2
    print(f"{len(s['processed'])} bags processed, {len(s['failed'])} failed, {len(s['already_done'])} already done; "
          f"{s['frames']} frames in {s['processing_s']:.1f} s ({s['fps']:.2f} fps) on {s['workers']} workers "
          f"(start-up {s['startup_s']:.1f} s); manifest: {Path(args.output_dir, MANIFEST)}")
    return 1 if s["failed"] else 0

