"""Throughput of ``mastsam-bag process-many`` with 1 and with 2 Ray workers, side by side in one run.

Makes ``--bags`` bags of ``--frames`` bedroom frames each (../shared/data/bedroom, downscaled to ``--max-side``), starts
one local Ray instance (``--cpus`` CPUs, no dashboard), then runs the whole archive ``--rounds`` times with 1 worker
and with 2 (alternating which goes first, so a change of machine load hits both), each into a fresh OUT. Throughput is
frames / processing time (first job dispatched to last job done); Ray's and the workers' start-up is reported apart.
Also measured: each worker's seconds per frame (from the manifest) and the CPU time that Ray's own processes and the
driver spent during each run, which is what the second core shares with the workers.

    PYTHONPATH=$PWD .venv/bin/python scripts/bench_archives.py --json docs/perf/archives_2v1.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mastsam_ros.cli import archives, bag  # noqa: E402
from mastsam_ros.core.config import Config  # noqa: E402

BEDROOM = REPO.parent / "shared" / "data" / "bedroom"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: set[int]) -> float:
    """utime + stime (s) of the processes ``pids`` (those that are gone count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / TICK


def make_bags(root: Path, n_bags: int, frames: int, max_side: int) -> list[Path]:
    files = sorted(BEDROOM.glob("*.jpg"))
    if len(files) < frames:
        raise SystemExit(f"{BEDROOM} missing or too short")
    bags = []
    for i in range(n_bags):
        src = root / f"frames{i}"
        src.mkdir()
        start = (i * 23) % (len(files) - frames + 1)  # different frames per bag (wrapping over the sequence)
        for f in files[start:start + frames]:
            (src / f.name).symlink_to(f)
        out = root / "bags" / f"bag{i:02d}"
        with open(os.devnull, "w") as null:
            stdout, sys.stdout = sys.stdout, null
            try:
                assert bag.main(["from-images", str(src), str(out), "--max-side", str(max_side)]) == 0
            finally:
                sys.stdout = stdout
        bags.append(out)
    return bags


def one_run(bags: list[Path], out: Path, cfg: Config, workers: int) -> dict:
    daemons = archives.ray_processes(workers=False)
    cpu0, me0, load0 = cpu_seconds(daemons), time.process_time(), os.getloadavg()[0]
    s = archives.process_many([str(b) for b in bags], out, cfg, ray_opts=archives.RayOptions(workers=workers),
                              show_progress=False)
    records = [json.loads(x) for x in (out / archives.MANIFEST).read_text().splitlines()]
    assert len(s["processed"]) == len(bags), s
    per_frame = [r["seconds"] / r["frames"] for r in records]
    return {
        "workers": workers, "frames": s["frames"], "processing_s": round(s["processing_s"], 3),
        "fps": round(s["fps"], 3), "startup_s": round(s["startup_s"], 3),
        "worker_s_per_frame_mean": round(statistics.mean(per_frame), 4),
        # CPU seconds the workers got per second of processing: 2.0 would be both cores, all the time.
        "worker_cores_used": round(sum(r["cpu_s"] for r in records) / s["processing_s"], 3),
        "worker_cpu_s_per_frame": round(sum(r["cpu_s"] for r in records) / s["frames"], 4),
        "ray_daemons_cpu_s": round(cpu_seconds(daemons) - cpu0, 2), "driver_cpu_s": round(time.process_time() - me0, 2),
        "load_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bags", type=int, default=8)
    p.add_argument("--frames", type=int, default=15)
    p.add_argument("--max-side", type=int, default=320)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance (default 2)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cfg = Config()  # the defaults: classical segmenter (the weight-free fallback, not SAM), flow matcher
    report: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "bags": args.bags,
                    "frames_per_bag": args.frames, "max_side": args.max_side, "segmenter": cfg.segmenter.backend,
                    "matcher": cfg.matcher.backend, "ray": ray.__version__, "cpus": args.cpus,
                    "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                                "load_start": [round(x, 2) for x in os.getloadavg()]}, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench_archives_") as tmp:
        bags = make_bags(Path(tmp), args.bags, args.frames, args.max_side)
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, object_store_memory=100 * 2**20, configure_logging=False)
        report["ray_init_s"] = round(time.perf_counter() - t0, 2)
        try:
            for r in range(args.rounds):
                for w in ((1, 2) if r % 2 == 0 else (2, 1)):
                    run = one_run(bags, Path(tmp) / f"out_r{r}_w{w}", cfg, w)
                    run["round"] = r
                    report["runs"].append(run)
                    print(json.dumps(run), flush=True)
        finally:
            ray.shutdown()
    report["machine"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    fps = {w: [x["fps"] for x in report["runs"] if x["workers"] == w] for w in (1, 2)}
    report["fps_mean"] = {str(w): round(statistics.mean(v), 3) for w, v in fps.items()}
    report["speedup_2_vs_1"] = [round(b / a, 3) for a, b in zip(fps[1], fps[2])]
    report["speedup_2_vs_1_mean"] = round(report["fps_mean"]["2"] / report["fps_mean"]["1"], 3)
    print(f"\n{args.bags} bags x {args.frames} frames, {args.max_side} px, {cfg.segmenter.backend} + "
          f"{cfg.matcher.backend}, local Ray with {args.cpus} CPUs (init {report['ray_init_s']} s)")
    print(f"{'workers':>7} {'round':>5} {'fps':>7} {'proc s':>7} {'start s':>7} {'s/frame/worker':>14} "
          f"{'cores used':>10} {'cpu s/frame':>11} {'ray cpu s':>9} {'driver cpu s':>12} {'load 1m':>11}")
    for x in report["runs"]:
        print(f"{x['workers']:>7} {x['round']:>5} {x['fps']:>7.2f} {x['processing_s']:>7.1f} {x['startup_s']:>7.1f} "
              f"{x['worker_s_per_frame_mean']:>14.3f} {x['worker_cores_used']:>10.2f} "
              f"{x['worker_cpu_s_per_frame']:>11.3f} "
              f"{x['ray_daemons_cpu_s']:>9.2f} {x['driver_cpu_s']:>12.2f} "
              f"{x['load_1min'][0]:>5.2f}-{x['load_1min'][1]:<5.2f}")
    print(f"2 workers vs 1: {report['speedup_2_vs_1']} per round, {report['speedup_2_vs_1_mean']}x on the mean fps; "
          f"load {report['machine']['load_start']} -> {report['machine']['load_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
