"""Shrunken DAVIS (mastsam_ros/evaluation/shrunken.py): the composition keeps the ground truth on the placed object,
the filler's object is a distractor to the segmenter and background to the score, and the timed backends leave the
tracker's output unchanged."""

import json

import numpy as np
import pytest

from mastsam_ros.core.tracker import Tracker
from mastsam_ros.evaluation import davis
from mastsam_ros.evaluation import shrunken as S
from mastsam_ros.evaluation.runner import build_segmenter_for, make_config


def _synthetic(H=48, W=80):
    """A target frame with a 20 x 40 object (and a void strip), a filler frame with its own object."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    gt = np.zeros((H, W), np.uint8)
    gt[8:28, 20:60] = 1  # on whole 4 x 4 blocks: exactly s^2 of it at s = 0.5 and 0.25
    gt[0:2, :] = davis.VOID
    f_rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    f_gt = np.zeros((H, W), np.uint8)
    f_gt[5:45, 0:30] = 1  # reaches under the placed copy at s = 0.5
    return rgb, gt, f_rgb, f_gt


def test_placement_is_centred_and_scaled():
    assert S.placement((480, 854), 1.0) == (0, 0, 480, 854)
    assert S.placement((480, 854), 0.5) == (120, 213, 240, 427)
    assert S.placement((480, 854), 0.25) == (180, 320, 120, 214)
    with pytest.raises(ValueError, match="scale"):
        S.placement((480, 854), 0.0)
    with pytest.raises(ValueError, match="scale"):
        S.placement((480, 854), 1.5)


@pytest.mark.parametrize("s", [1.0, 0.5, 0.25])
def test_compose_keeps_the_object_in_the_box_and_the_filler_out_of_the_score(s):
    rgb, gt, f_rgb, f_gt = _synthetic()
    frame, seg_gt, scored = S.compose_frame(rgb, gt, f_rgb, f_gt, s)
    y0, x0, h, w = S.placement(gt.shape, s)
    inside = np.zeros(gt.shape, bool)
    inside[y0:y0 + h, x0:x0 + w] = True
    # the object: s^2 of its pixels, all inside the placed box
    obj = scored == S.TARGET
    assert np.count_nonzero(obj) == 800 * s * s
    assert not obj[~inside].any()
    # the scored ground truth holds the target and void only; the segmenter's adds the filler's object outside the box
    assert set(np.unique(scored).tolist()) <= {0, S.TARGET, davis.VOID}
    assert np.array_equal(seg_gt[inside], scored[inside])
    assert np.array_equal(seg_gt[~inside] == S.DISTRACTOR, f_gt[~inside] > 0)
    assert not (seg_gt[inside] == S.DISTRACTOR).any()
    # void of the copy stays void, on its scaled rows
    assert (scored[y0, x0:x0 + w] == davis.VOID).all()
    # pixels: the filler outside the box, the resized frame inside
    assert np.array_equal(frame[~inside], f_rgb[~inside])
    if s == 1.0:
        assert np.array_equal(frame, rgb) and np.array_equal(scored, gt)
    else:
        assert not np.array_equal(frame[inside], f_rgb[inside])


def test_compose_refuses_frames_of_different_sizes():
    rgb, gt, f_rgb, f_gt = _synthetic()
    with pytest.raises(ValueError, match="agree in size"):
        S.compose_frame(rgb, gt, f_rgb[:-1], f_gt[:-1], 0.5)


def test_filler_is_the_next_sequence_cyclic():
    names = ["b", "a", "c"]
    assert S.filler_of("a", names) == "b"
    assert S.filler_of("c", names) == "a"
    with pytest.raises(ValueError, match="at least two"):
        S.filler_of("a", ["a"])
    with pytest.raises(ValueError, match="not one of"):
        S.filler_of("x", names)


def test_filler_plays_forwards_then_backwards():
    """No jump back to the filler's first frame: that would be a scene cut to the tracker."""
    assert [S.filler_index(t, 4) for t in range(9)] == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert [S.filler_index(t, 1) for t in range(3)] == [0, 0, 0]
    steps = np.abs(np.diff([S.filler_index(t, 49) for t in range(200)]))
    assert steps.max() == 1


def test_shrunken_davis_frames_follow_both_sequences(davis_root):
    names = davis.sequence_names(davis_root)
    sh = S.shrink_sequence(davis_root, "libby", 0.25, limit=2, names=names)
    assert sh.filler == S.filler_of("libby", names)
    _, gt = davis.load_gt(davis_root, "libby", limit=2)
    f_frames = davis.load_frames(davis_root, sh.filler, limit=2)
    _, f_gt = davis.load_gt(davis_root, sh.filler, limit=2)
    y0, x0, h, w = S.placement(gt.shape[1:], 0.25)
    inside = np.zeros(gt.shape[1:], bool)
    inside[y0:y0 + h, x0:x0 + w] = True
    for t in range(2):
        obj = sh.scored_gt[t] == S.TARGET
        ratio = np.count_nonzero(obj) / np.count_nonzero(gt[t] == 1)
        assert 0.25 ** 2 * 0.8 <= ratio <= 0.25 ** 2 * 1.2
        assert not obj[~inside].any()
        assert np.array_equal(sh.frames[t][~inside], f_frames[t][~inside])
        # the filler's object is in the segmenter's ground truth (where the copy does not hide it), not in the score
        assert np.array_equal(sh.seg_gt[t][~inside] == S.DISTRACTOR, f_gt[t][~inside] == 1)
        assert np.count_nonzero(sh.seg_gt[t] == S.DISTRACTOR) > 0
        assert not (sh.scored_gt[t] == S.DISTRACTOR).any()


def test_timed_backends_leave_the_output_unchanged(davis_root):
    """The overhead accounting (answers at the working size, flow computed in its own call, no overlap thread) gives
    the label maps of the plain tracker with the plain segmenter and matcher."""
    sh = S.shrink_sequence(davis_root, "car-roundabout", 0.5, limit=5)
    cfg = make_config("oracle", "flow")
    plain = Tracker(cfg, segmenter=build_segmenter_for("oracle", cfg, sh.seg_gt, sh.frames))
    expected = [plain.step(f).labels for f in sh.frames]
    plain.close()
    cfg2 = S.run_config("oracle", cfg.tracker.work_max_side)
    seg = S.TimedSegmenter(build_segmenter_for("oracle", cfg2, sh.seg_gt, sh.frames))
    flow = S.TimedFlow(cfg2.matcher)
    timed = Tracker(cfg2, segmenter=seg, matcher=flow)
    for f, e in zip(sh.frames, expected):
        assert np.array_equal(timed.step(f).labels, e)
    timed.close()
    assert seg.ms > 0 and flow.ms > 0


def test_cli_writes_the_table_and_json(davis_root, tmp_path):
    out = tmp_path / "shr"
    rc = S.main(["--out", str(out), "--davis", str(davis_root), "--sequences", "libby", "--scales", "0.5",
                 "--segmenters", "oracle", "--work-max-side", "256", "--limit", "4"])
    assert rc == 0
    data = json.loads((out / "shrunken.json").read_text())
    assert len(data["records"]) == 1 and len(data["rows"]) == 1
    rec = data["records"][0]
    assert (rec["sequence"], rec["scale"], rec["segmenter"], rec["work_max_side"]) == ("libby", 0.5, "oracle", 256)
    assert rec["work_shape"] == [144, 256] and rec["frames"] == 4
    assert len(rec["overhead_ms"]) == 3  # frame 0 left out
    assert rec["JF"] >= 0.8  # the oracle's masks on the first frames of a shrunken object
    page = (out / "shrunken.md").read_text()
    assert "| oracle | 256 |" in page and "libby" in page


def test_cli_refuses_bad_input(davis_root, tmp_path, capsys):
    assert S.main(["--out", str(tmp_path), "--davis", str(davis_root), "--sequences", "nope"]) == 2
    assert "no such sequence" in capsys.readouterr().err
    assert S.main(["--out", str(tmp_path), "--davis", str(davis_root), "--segmenters", "classical"]) == 2
    assert "not one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        S.main(["--out", str(tmp_path), "--davis", str(davis_root), "--scales", "2"])
