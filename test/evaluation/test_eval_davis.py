"""Oracle, baselines and the evaluation CLI on real DAVIS frames (skipped when ../shared is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mastsam_ros.core.config import Config
from mastsam_ros.core.types import PointPrompt
from mastsam_ros.evaluation import cli, davis
from mastsam_ros.evaluation.baselines import GreedyIoU, PerFrame
from mastsam_ros.evaluation.oracle import OracleSegmenter
from mastsam_ros.labels_io import save_label_png

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DAVIS = SHARED / "data" / "davis2016"
SEQ = "horsejump-high"


@pytest.fixture(scope="module")
def seq10():
    if not (DAVIS / "JPEGImages" / "480p" / SEQ).is_dir():
        pytest.skip(f"DAVIS frames not found at {DAVIS} (../shared beside the project)")
    frames = davis.load_frames(DAVIS, SEQ, limit=10)
    stems, gt = davis.load_gt(DAVIS, SEQ, limit=10)
    return frames, stems, gt


def test_oracle_answers_with_ground_truth(seq10):
    frames, _, gt = seq10
    oracle = OracleSegmenter(gt, frames=frames)
    oracle.set_image(frames[3])
    obj = gt[3] == 1
    ys, xs = np.nonzero(obj)
    pick = np.random.default_rng(0).choice(len(xs), 3, replace=False)
    pts = np.stack([xs[pick], ys[pick]], 1).astype(np.float32)
    (p,) = oracle.predict([PointPrompt(pts, np.ones(3, np.int32))])
    assert np.array_equal(p.mask, obj) and p.score == 1.0
    # two points on the background and one on the object: the majority wins
    bg = np.array([[5, 5], [10, 8]], np.float32)
    (q,) = oracle.predict([PointPrompt(np.vstack([bg, pts[:1]]), np.ones(3, np.int32))])
    assert not q.mask[obj].any() and q.mask[5, 5]
    # automatic masks: the object whole, plus several background regions; together they partition the image
    props = oracle.generate()
    assert len(props) >= 3 and np.array_equal(props[0].mask, obj)
    assert np.array_equal(np.sum([p.mask for p in props], axis=0), np.ones(obj.shape))
    # a region limits the answer to the masks it touches
    only = oracle.generate(region=obj)
    assert len(only) == 1 and np.array_equal(only[0].mask, obj)
    # frames are found by content, so going back works
    oracle.set_image(frames[0])
    assert np.array_equal(oracle.generate()[0].mask, gt[0] == 1)


def test_oracle_counts_frames_without_them(seq10):
    frames, _, gt = seq10
    oracle = OracleSegmenter(gt)
    for i in range(3):
        oracle.set_image(frames[i])
        oracle.set_image(frames[i])  # the same image twice does not advance
    assert oracle.frame == 2
    assert np.array_equal(oracle.generate()[0].mask, gt[2] == 1)


def _run(method, frames, stems, out: Path):
    for stem, rgb in zip(stems, frames):
        save_label_png(out / SEQ / f"{stem}.png", method.step(rgb))


def test_baseline_b_keeps_ids_that_a_loses(seq10, tmp_path):
    frames, stems, gt = seq10
    cfg = Config()
    _run(PerFrame(cfg, OracleSegmenter(gt, frames)), frames, stems, tmp_path / "a")
    _run(GreedyIoU(cfg, OracleSegmenter(gt, frames)), frames, stems, tmp_path / "b")
    ra = davis.evaluate_sequence(SEQ, davis.load_pred(tmp_path / "a", SEQ, stems), gt)
    rb = davis.evaluate_sequence(SEQ, davis.load_pred(tmp_path / "b", SEQ, stems), gt)
    assert rb.objects[0].ids == 1 and rb.objects[0].switches == 0
    assert ra.objects[0].ids == 10  # a fresh id every frame
    assert rb.JF > ra.JF
    assert rb.JF == pytest.approx(1.0)  # with the oracle, association is all that (b) needs


def test_eval_cli_end_to_end(seq10, tmp_path, capsys):
    _, stems, gt = seq10
    gt_root = tmp_path / "gt"
    pred = tmp_path / "pred"
    for stem, g in zip(stems, gt):
        save_label_png(gt_root / "Annotations" / "480p" / SEQ / f"{stem}.png", g)
        lab = np.zeros(g.shape, np.uint32)
        lab[g == 1] = 4
        lab[:40, :40] = 9  # a stray id in a corner
        save_label_png(pred / SEQ / f"{stem}.png", lab)
    rc = cli.main(["--pred", str(pred), "--gt", str(gt_root), "--json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert SEQ in out and "J&F" in out
    import json

    s = json.loads((tmp_path / "s.json").read_text())
    (r,) = s["sequences"]
    assert r["objects"][0]["pred_id"] == 4 and r["pred_ids"] == 2
    assert r["JF"] > 0.95  # the corner only trims object pixels that were in it
    # a missing prediction frame is an error, not a silently empty frame
    (pred / SEQ / f"{stems[-1]}.png").unlink()
    assert cli.main(["--pred", str(pred), "--gt", str(gt_root)]) == 2


def test_results_command_on_a_small_subset(seq10, tmp_path, monkeypatch):
    from mastsam_ros.evaluation import results

    monkeypatch.setattr(results, "_accelerator", lambda: "GPU Test Device")  # the page reports what it found
    out = tmp_path / "RESULTS.md"
    argv = ["--davis", str(DAVIS), "--out", str(out), "--work", str(tmp_path / "work"), "--sequences", SEQ,
            "--methods", "baseline_a", "baseline_b", "--segmenters", "oracle", "--matchers", "flow",
            "--limit", "4", "--jobs", "1"]
    assert results.main(argv) == 0
    page = out.read_text()
    assert "| oracle | - | (b) greedy IoU | 1.000 |" in page  # the oracle with IoU association is perfect
    assert "--limit 4" in page and SEQ in page
    # It says what happened: one job at a time (--jobs 1), on the machine's accelerator.
    assert "jobs ran one at a time" in page and "side by side" not in page
    assert "GPU Test Device" in page and "no GPU" not in page
    # a second run resumes from the records instead of running again
    records = sorted((tmp_path / "work" / "records").glob("*.json"))
    assert len(records) == 2
    stamp = [r.stat().st_mtime_ns for r in records]
    assert results.main(argv) == 0
    assert [r.stat().st_mtime_ns for r in records] == stamp


def test_results_command_sweeps_sam_sim_severities_and_plots(seq10, tmp_path):
    from mastsam_ros.evaluation import results

    out = tmp_path / "R.md"
    plot = tmp_path / "robustness.png"
    argv = ["--davis", str(DAVIS), "--out", str(out), "--work", str(tmp_path / "work"), "--sequences", SEQ,
            "--methods", "baseline_b", "baseline_d", "--segmenters", "sam_sim", "classical", "--matchers", "flow",
            "--severities", "0", "1", "--limit", "4", "--jobs", "1", "--plot", str(plot)]
    assert results.main(argv) == 0
    page = out.read_text()
    assert "## Robustness: `sam_sim` severity" in page
    row = next(line for line in page.splitlines() if line.startswith("| (b) greedy IoU | - | 1.000"))
    assert float(row.split("|")[4].split()[0]) < 1.0  # severity 1 costs the greedy baseline J&F
    assert "| classical | - | (d) Felzenszwalb + IoU |" in page  # (d) runs once, under classical only
    assert "sam_sim@1 | - | (d)" not in page
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        results.main(argv[:-2] + ["--severities", "1.5"])


def test_results_command_sim_seed_sets_sam_sims_draws(seq10, tmp_path):
    """``--sim-seed`` reaches sam_sim (other draws, other predictions) and is part of what a resumed run must match."""
    from mastsam_ros.evaluation import results

    work = tmp_path / "work"
    argv = ["--davis", str(DAVIS), "--out", str(tmp_path / "R.md"), "--work", str(work), "--sequences", SEQ,
            "--methods", "baseline_b", "--segmenters", "sam_sim", "--matchers", "flow", "--severities", "1",
            "--limit", "4", "--jobs", "1", "--plot", str(tmp_path / "r.png")]

    def predictions() -> list[bytes]:
        return [p.read_bytes() for p in sorted((work / "baseline_b-sam_sim@1-none" / SEQ).glob("*.png"))]

    assert results.main(argv) == 0
    (record,) = (work / "records").glob("*.json")
    seed0 = predictions()
    assert len(seed0) == 4 and json.loads(record.read_text())["sim_seed"] == 0
    assert results.main(argv + ["--sim-seed", "1"]) == 0  # not resumed from the seed-0 record: run again
    assert json.loads(record.read_text())["sim_seed"] == 1
    assert predictions() != seed0
    assert results.main(argv) == 0  # and seed 0 again gives seed 0's predictions
    assert predictions() == seed0
