"""``mastsam-eval``: score a directory of label PNGs with the DAVIS-2017 unsupervised protocol.

    mastsam-eval --pred OUT --gt DAVIS_ROOT [--sequences bmx-trees libby] [--json scores.json]

``OUT/<seq>/<frame>.png`` are indexed (or 16-bit) label maps with the JPEG frames' names; ``DAVIS_ROOT`` holds
``Annotations/480p/<seq>/``. Prints J, F, J&F, the number of distinct ids that covered each object and their switches.
Where ``mastsam-track`` wrote a ``tracks.jsonl`` beside the PNGs, a folder holding label PNGs it does not list (the
outputs of two runs mixed) is refused. Exit codes: 0 scored, 1 the ``--json`` file could not be written, 2 a usage
error or predictions that cannot be scored, 130 interrupted (one line naming the problem).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..labels_io import read_label_records
from . import davis


def check_listed(pred_dir: str | Path, seq: str) -> None:
    """Refuse (ValueError) a ``mastsam-track`` output folder ``<pred_dir>/<seq>`` whose ``tracks.jsonl`` does not
    list every label PNG beside it: those PNGs come from another run and would be scored as this one's."""
    d = Path(pred_dir) / seq
    if not (d / "tracks.jsonl").is_file():
        return  # plain label PNGs (baselines, other tools): nothing to check them against
    try:
        listed = set(read_label_records(d / "tracks.jsonl"))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{d / 'tracks.jsonl'} is not a mastsam-track record file ({type(e).__name__}: {e})") from None
    unlisted = sorted(p.name for p in d.glob("*.png") if p.stem not in listed)
    if unlisted:
        raise ValueError(f"{d} holds {len(unlisted)} label PNGs that its tracks.jsonl does not list (first: "
                         f"{unlisted[0]}): outputs of different runs are mixed; rerun mastsam-track with --overwrite")


def format_table(results: list[davis.SequenceResult]) -> str:
    head = f"{'sequence':<22}{'frames':>7}{'J':>8}{'F':>8}{'J&F':>8}{'ids':>6}{'switch':>8}{'pred ids':>10}"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.sequence:<22}{r.frames:>7}{r.J:>8.3f}{r.F:>8.3f}{r.JF:>8.3f}{r.ids:>6.1f}{r.switches:>8.1f}"
            f"{r.pred_ids:>10}"
        )
    if results:
        s = davis.summary(results)
        lines.append("-" * len(head))
        lines.append(
            f"{'mean':<22}{'':>7}{s['J']:>8.3f}{s['F']:>8.3f}{s['JF']:>8.3f}{s['ids']:>6.1f}{s['switches']:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mastsam-eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pred", required=True, help="prediction directory: PRED/<seq>/<frame>.png")
    ap.add_argument("--gt", required=True, help="DAVIS root holding Annotations/<resolution>/<seq>/")
    ap.add_argument("--sequences", nargs="+", help="sequences to score (default: every one under --pred that has GT)")
    ap.add_argument("--resolution", default="480p")
    ap.add_argument("--json", type=Path, help="also write per-sequence scores as JSON here")
    args = ap.parse_args(argv)

    try:
        seqs = args.sequences
        if not seqs:
            have = set(davis.sequence_names(args.gt, args.resolution))
            seqs = sorted(p.name for p in Path(args.pred).iterdir() if p.is_dir() and p.name in have)
            if not seqs:
                print(f"mastsam-eval: no sequence under {args.pred} has ground truth in {args.gt}", file=sys.stderr)
                return 2
        for seq in seqs:
            check_listed(args.pred, seq)
        results = davis.evaluate_dir(args.pred, args.gt, seqs, args.resolution)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"mastsam-eval: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mastsam-eval: interrupted", file=sys.stderr)
        return 130
    print(format_table(results))
    if args.json:
        payload = {"sequences": [r.as_dict() for r in results], "mean": davis.summary(results)}
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(payload, indent=2))
        except OSError as e:
            print(f"mastsam-eval: cannot write {args.json}: {e.strerror or e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
