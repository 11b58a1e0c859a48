"""Run the tracker and the baselines over DAVIS sequences and write a Markdown results page (docs/RESULTS.md).

    python -m mastsam_ros.evaluation.results --davis ../shared/data/davis2016 --out docs/RESULTS.md

Settings: method in {tracker, baseline_a .. baseline_e} x segmenter in {oracle, classical, sam_sim} x matcher in
{flow, xfeat}; the matcher only matters to the tracker and baseline_c, so baselines a and b run once per segmenter
and appear in every matcher's table. ``sam_sim`` (evaluation only, SAM's failure modes on the ground truth) runs at
each of ``--severities`` (named ``sam_sim@<severity>``); its J&F against severity is plotted to ``--plot`` (default:
robustness.png beside ``--out``); ``--sim-seed`` sets its draws. Baselines d (per-frame Felzenszwalb) and e
(per-frame SLIC) segment by themselves: they run once, under the ``classical`` segmenter. Subsets for quick
iteration: ``--sequences``, ``--methods``, ``--segmenters``, ``--matchers``, ``--limit N`` (first N frames). Jobs
(one method, setting and sequence each) run in ``--jobs`` processes with one thread each; predictions go to
``--work`` (a temporary directory unless given) and are scored with the same code as ``mastsam-eval``. Each finished
job leaves ``<work>/records/<job>.json``; rerunning with the same ``--work`` (and the same ``--set`` / ``--limit`` /
``--sim-seed``) skips recorded jobs, so an interrupted run resumes.
Exit codes: 0 every job scored; 1 a job failed or the page could not be written; 2 usage (a wrong ``--davis`` or
sequence name); 130 interrupted (Ctrl-C). Errors end with one line naming the problem.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import davis
from .baselines import METHODS, OWN_SEGMENTATION, USES_MATCHER
from .runner import MATCHERS, SEGMENTERS, parse_segmenter

METHOD_LABEL = {
    "tracker": "tracker",
    "baseline_a": "(a) per-frame",
    "baseline_b": "(b) greedy IoU",
    "baseline_c": "(c) prototype",
    "baseline_d": "(d) Felzenszwalb + IoU",
    "baseline_e": "(e) SLIC + IoU",
}
SEVERITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def expand_segmenters(segmenters, severities) -> list[str]:
    """``sam_sim`` becomes one ``sam_sim@<severity>`` per severity; other names stay."""
    out = []
    for s in segmenters:
        if s == "sam_sim":
            out += [f"sam_sim@{v:g}" for v in severities]
        else:
            out.append(s)
    return out


def _limit_threads() -> None:
    # two processes on two cores: each must stay single-threaded or they fight over the cores
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _job(args: tuple) -> dict:
    method, segmenter, matcher, davis_root, seq, work, overrides, limit, seed = args
    from .runner import evaluate_run, run_sequence

    out = Path(work) / f"{method}-{segmenter}-{matcher or 'none'}"
    rec = {"method": method, "segmenter": segmenter, "matcher": matcher or "-", "sequence": seq}
    try:
        info = run_sequence(method, segmenter, matcher, davis_root, seq, out, overrides, limit, seed)
        res = evaluate_run(out, davis_root, seq, limit)
        rec.update(frames=info.frames, seconds=info.seconds, result=res.as_dict())
    except Exception as e:  # one failing job must not lose the others' hours
        rec.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    rec.update(overrides=overrides, limit=limit, sim_seed=seed)
    path = _record_path(work, method, segmenter, matcher, seq)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1))
    return rec


def plan(methods, segmenters, matchers, sequences) -> list[tuple[str, str, str | None, str]]:
    jobs = []
    for seg in segmenters:
        for method in methods:
            if method in OWN_SEGMENTATION and seg != "classical":
                continue
            for m in matchers if USES_MATCHER[method] else [None]:
                for seq in sequences:
                    jobs.append((method, seg, m, seq))
    return jobs


def _record_path(work, method, segmenter, matcher, seq) -> Path:
    return Path(work) / "records" / f"{method}-{segmenter}-{matcher or 'none'}-{seq}.json"


def run_all(jobs, davis_root, work, overrides, limit, n_proc, seed: int = 0) -> list[dict]:
    """Run the jobs not already recorded under ``work/records`` (a rerun with the same ``--work`` resumes);
    ``seed``: the draws of ``sam_sim``."""
    import multiprocessing as mp

    out, todo = [], []
    for m, s, mt, seq in jobs:
        rec_path = _record_path(work, m, s, mt, seq)
        if rec_path.is_file():
            rec = json.loads(rec_path.read_text())
            same = rec.get("overrides") == overrides and rec.get("limit") == limit and rec.get("sim_seed", 0) == seed
            if same and "error" not in rec:
                out.append(rec)
                continue
        todo.append((m, s, mt, seq))
    if out:
        print(f"resuming: {len(out)} jobs already recorded under {work}/records", file=sys.stderr, flush=True)
    args = [(m, s, mt, str(davis_root), seq, str(work), overrides, limit, seed) for m, s, mt, seq in todo]
    # slowest first so the two workers finish together: classical before oracle, tracker/c before a/b
    cost = {"classical": 2, "oracle": 0}
    args.sort(key=lambda a: -(cost.get(parse_segmenter(a[1])[0], 1) + (1 if a[0] in ("tracker", "baseline_c") else 0)))
    if n_proc <= 1:  # in-process: keep the caller's thread settings
        for a in args:
            out.append(_job(a))
            _progress(out[-1], len(out), len(jobs))
        return out
    with mp.get_context("spawn").Pool(n_proc, initializer=_limit_threads) as pool:
        for rec in pool.imap_unordered(_job, args):
            out.append(rec)
            _progress(rec, len(out), len(jobs))
    return out


def _progress(rec: dict, done: int, total: int) -> None:
    tag = f"[{done}/{total}] {rec['method']} {rec['segmenter']} {rec['matcher']} {rec['sequence']}"
    if "error" in rec:
        print(f"{tag}: ERROR {rec['error']}", file=sys.stderr, flush=True)
    else:
        r = rec["result"]
        print(f"{tag}: J&F {r['JF']:.3f} ids {r['ids']:.0f} ({rec['seconds']:.0f} s)", file=sys.stderr, flush=True)


def _revision() -> str:
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return f"git {sha.stdout.strip()}" + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"


def _mean(xs):
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def _accelerator() -> str:
    """What the machine offers: the CUDA device torch sees, or "no GPU" (torch absent or without CUDA)."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001 - a broken CUDA install is still "no usable GPU" for this page
        pass
    return "no GPU"


def render(
    records: list[dict], command: str, wall: float, methods, segmenters, matchers, sequences, limit, revision: str = "",
    processes: int = 1, accelerator: str = "no GPU",
) -> str:
    """The Markdown page. ``processes``: jobs that ran side by side; ``accelerator``: :func:`_accelerator`."""
    by = {(r["method"], r["segmenter"], r["matcher"], r["sequence"]): r for r in records}

    def get(method, seg, matcher, seq):
        return by.get((method, seg, matcher if USES_MATCHER[method] else "-", seq))

    lines = [
        f"# Results on DAVIS ({len(sequences)} sequences: {', '.join(sequences)})",
        "",
        "Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        f"- date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; code: {revision or _revision()} (at the start)",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, {accelerator}; "
        f"Python {platform.python_version()}; load average at the end {os.getloadavg()[0]:.1f} "
        "(other processes slow the jobs down)",
        f"- wall time of this invocation: {wall / 60:.1f} min ({len(records)} jobs; jobs recorded by an "
        "earlier, interrupted invocation with the same --work are reused, see fps for per-job speed)",
        f"- frames: {'all' if limit is None else f'first {limit} per sequence'}",
        "",
        "Protocol: DAVIS-2017 unsupervised (J region IoU, F boundary F-measure, one Hungarian assignment of predicted",
        "ids to ground-truth objects per sequence on (J+F)/2, averaged over all frames), implemented in",
        "`mastsam_ros/evaluation/davis.py`. `ids`: distinct predicted ids that covered the object (largest-overlap id",
        "with IoU >= 0.5) over the sequence; 1 is ideal, 0 means never covered. Segmenters: `oracle` answers from the",
        "ground truth (objects and a grid of background regions; evaluation only), `sam_sim@s` answers from the",
        "ground truth with SAM's failure modes at severity s (evaluation only, `mastsam_ros/evaluation/sam_sim.py`),",
        "`classical` is the weight-free fallback (not SAM). Baselines (a) and (b) use no matcher; their numbers repeat",
        "in each matcher's table. Baselines (d) and (e) segment by themselves and appear under `classical`.",
        "fps: frames per second of the per-frame loop " + (
            "(jobs ran one at a time in one process, with the libraries' default thread counts)." if processes == 1
            else f"in single-threaded worker processes ({processes} jobs ran side by side)."),
        "",
        "## Summary (mean over sequences)",
        "",
        "| segmenter | matcher | method | J&F | J | F | ids | fps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seg in segmenters:
        for mt in matchers:
            for method in methods:
                recs = [get(method, seg, mt, s) for s in sequences]
                ok = [r for r in recs if r and "result" in r]
                if not ok:
                    continue
                fps = sum(r["frames"] for r in ok) / max(sum(r["seconds"] for r in ok), 1e-9)
                partial = "" if len(ok) == len(sequences) else f" ({len(ok)}/{len(sequences)} seqs)"
                lines.append(
                    f"| {seg} | {mt if USES_MATCHER[method] else '-'} | {METHOD_LABEL[method]}{partial} | "
                    f"{_mean([r['result']['JF'] for r in ok]):.3f} | {_mean([r['result']['J'] for r in ok]):.3f} | "
                    f"{_mean([r['result']['F'] for r in ok]):.3f} | {_mean([r['result']['ids'] for r in ok]):.1f} | "
                    f"{fps:.2f} |"
                )
    lines += robustness_table(records, methods, matchers, sequences)
    for seg in segmenters:
        for mt in matchers:
            present = [m for m in methods if any(get(m, seg, mt, s) for s in sequences)]
            if not present:
                continue
            lines += [
                "",
                f"## segmenter `{seg}`, matcher `{mt}`",
                "",
                "J&F per sequence (ids in brackets: distinct ids that covered the object).",
                "",
                "| sequence | frames | " + " | ".join(METHOD_LABEL[m] for m in present) + " |",
                "|---|---|" + "---|" * len(present),
            ]
            for s in sequences:
                cells, frames = [], ""
                for m in present:
                    r = get(m, seg, mt, s)
                    if r is None:
                        cells.append("")
                    elif "error" in r:
                        cells.append("error")
                    else:
                        frames = str(r["frames"])
                        cells.append(f"{r['result']['JF']:.3f} ({r['result']['ids']:.0f})")
                lines.append(f"| {s} | {frames} | " + " | ".join(cells) + " |")
            means = []
            for m in present:
                ok = [get(m, seg, mt, s) for s in sequences]
                ok = [r for r in ok if r and "result" in r]
                means.append(f"**{_mean([r['result']['JF'] for r in ok]):.3f}**" if ok else "")
            lines.append("| mean | | " + " | ".join(means) + " |")
    errors = [r for r in records if "error" in r]
    if errors:
        lines += ["", "## Errors", ""]
        for r in errors:
            lines.append(f"- {r['method']} {r['segmenter']} {r['matcher']} {r['sequence']}: `{r['error']}`")
    return "\n".join(lines) + "\n"


def robustness(records: list[dict], methods, matchers, sequences) -> dict[tuple[str, str], list[tuple]]:
    """{(method, matcher): [(severity, mean J&F, mean ids, sequences scored), ...]} over the sam_sim records."""
    out: dict[tuple[str, str], list[tuple]] = {}
    by = {(r["method"], r["segmenter"], r["matcher"], r["sequence"]): r for r in records}
    sevs = sorted({parse_segmenter(r["segmenter"])[1] for r in records if r["segmenter"].startswith("sam_sim@")})
    for method in methods:
        for mt in matchers if USES_MATCHER[method] else ["-"]:
            rows = []
            for v in sevs:
                ok = [by.get((method, f"sam_sim@{v:g}", mt, s)) for s in sequences]
                ok = [r for r in ok if r and "result" in r]
                if ok:
                    rows.append((v, _mean([r["result"]["JF"] for r in ok]), _mean([r["result"]["ids"] for r in ok]),
                                 len(ok)))
            if rows:
                out[(method, mt)] = rows
    return out


def robustness_table(records, methods, matchers, sequences) -> list[str]:
    rob = robustness(records, methods, matchers, sequences)
    if not rob:
        return []
    sevs = sorted({v for rows in rob.values() for v, *_ in rows})
    lines = [
        "",
        "## Robustness: `sam_sim` severity (mean J&F over sequences, mean ids in brackets)",
        "",
        "| method | matcher | " + " | ".join(f"{v:g}" for v in sevs) + " |",
        "|---|---|" + "---|" * len(sevs),
    ]
    for (method, mt), rows in rob.items():
        cell = {v: f"{jf:.3f} ({ids:.1f})" + ("" if n == len(sequences) else f" [{n} seqs]") for v, jf, ids, n in rows}
        lines.append(f"| {METHOD_LABEL[method]} | {mt} | " + " | ".join(cell.get(v, "") for v in sevs) + " |")
    return lines


def plot_robustness(records, methods, matchers, sequences, path: Path, limit: int | None = None) -> bool:
    """J&F against sam_sim severity, one line per method (and matcher); False when there is nothing to plot."""
    rob = robustness(records, methods, matchers, sequences)
    if not rob:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for (method, mt), rows in rob.items():
        label = METHOD_LABEL[method] + (f" ({mt})" if mt != "-" and len(matchers) > 1 else "")
        ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", label=label)
    ax.set_xlabel("sam_sim severity (0 = ground truth, 1 = every failure mode at its full rate)")
    frames = "" if limit is None else f", first {limit} frames"
    ax.set_ylabel(f"mean J&F, {len(sequences)} DAVIS sequences{frames}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mastsam_ros.evaluation.results", description=__doc__.split("\n\n")[0])
    ap.add_argument("--davis", required=True, help="DAVIS root (JPEGImages/480p, Annotations/480p)")
    ap.add_argument("--out", type=Path, default=Path("docs/RESULTS.md"), help="Markdown page to write")
    ap.add_argument("--json", type=Path, help="also write every job's record (scores, timings, errors) as JSON")
    ap.add_argument("--work", type=Path, help="where predictions are written (default: a temporary directory)")
    ap.add_argument("--sequences", nargs="+", help="default: every annotated sequence")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--segmenters", nargs="+", choices=SEGMENTERS, default=list(SEGMENTERS))
    ap.add_argument("--matchers", nargs="+", choices=MATCHERS, default=list(MATCHERS))
    ap.add_argument("--severities", nargs="+", type=float, default=list(SEVERITIES),
                    help="sam_sim severities in [0, 1] (default 0 0.25 0.5 0.75 1)")
    ap.add_argument("--plot", type=Path,
                    help="PNG of J&F against sam_sim severity (default: robustness.png beside --out)")
    ap.add_argument("--limit", type=int, help="only the first N frames of each sequence (quick runs)")
    ap.add_argument("--sim-seed", type=int, default=0,
                    help="seed of sam_sim's draws (default 0): a seed moves single sequences a lot, compare means over"
                    " several")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default 2)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every run, e.g. --set tracker.keyframe_interval=20")
    args = ap.parse_args(argv)

    from ..core.config import parse_overrides

    try:
        overrides = parse_overrides(args.overrides)
        annotated = davis.sequence_names(args.davis)  # before hours of jobs: a wrong --davis is a usage error
        sequences = args.sequences or annotated
        for seq in sequences:
            if seq not in annotated:
                raise FileNotFoundError(f"no annotations for sequence {seq} under {args.davis}")
            davis.frame_paths(args.davis, seq)
    except (FileNotFoundError, ValueError) as e:
        print(f"{ap.prog}: {e} (--davis: a DAVIS root holding JPEGImages/480p and Annotations/480p)", file=sys.stderr)
        return 2
    if any(not 0.0 <= v <= 1.0 for v in args.severities):
        ap.error(f"--severities must lie in [0, 1], got {args.severities}")
    segmenters = expand_segmenters(args.segmenters, args.severities)
    jobs = plan(args.methods, segmenters, args.matchers, sequences)
    command = "python -m mastsam_ros.evaluation.results " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    revision = _revision()
    t0 = time.perf_counter()
    try:
        if args.work:
            records = run_all(jobs, args.davis, args.work, overrides, args.limit, args.jobs, args.sim_seed)
        else:
            with tempfile.TemporaryDirectory(prefix="mastsam-results-") as work:
                records = run_all(jobs, args.davis, work, overrides, args.limit, args.jobs, args.sim_seed)
    except KeyboardInterrupt:
        print(f"{ap.prog}: interrupted (finished jobs are recorded under --work, a rerun with it resumes)",
              file=sys.stderr)
        return 130
    wall = time.perf_counter() - t0
    page = render(records, command, wall, args.methods, segmenters, args.matchers, sequences, args.limit, revision,
                  processes=max(1, min(args.jobs, len(jobs))), accelerator=_accelerator())
    plot = args.plot or args.out.parent / "robustness.png"
    if plot_robustness(records, args.methods, args.matchers, sequences, plot, args.limit):
        page = page.replace("## Robustness:", f"Plot: `{plot}`.\n\n## Robustness:", 1)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(page)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(records, indent=2))
    except OSError as e:
        print(page)
        print(f"{ap.prog}: cannot write {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(page)
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
