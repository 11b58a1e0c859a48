"""Leave and return (issue 24): the three edits keep frames and ground truth aligned, and the re-ID scores on
hand-made label sequences. Synthetic arrays everywhere, plus one short real DAVIS check (skipped without ../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mastsam_ros.evaluation import davis
from mastsam_ros.evaluation import leave_return as L

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DAVIS = SHARED / "data" / "davis2016"


def _clip(T=40, H=60, W=100, size=8, seed=0, x0=10, speed=1):
    """Noise frames (all distinct) with one square object moving right by ``speed`` px a frame."""
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(T)]
    gt = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        x = x0 + speed * t
        gt[t, 20 : 20 + size, x : x + size] = 1
    return frames, gt


def _absent(gt) -> list[int]:
    return np.flatnonzero(~L._present(gt)).tolist()


# ----------------------------------------------------------------------------------------------------------------
# edits


def test_look_away_inserts_other_sequences_with_their_objects():
    frames, gt = _clip()
    fa, ga = _clip(T=5, seed=1)
    fb, gb = _clip(T=10, seed=2)
    c = L.look_away("s", frames, gt, 8, [("a", fa, ga), ("b", fb, gb)])
    k = L.edit_start(40)
    assert (c.k, c.gap, len(c.frames)) == (k, (k, k + 8), 48)
    assert c.gt.shape == c.seg_gt.shape == (48, 60, 100)
    assert _absent(c.gt) == list(range(k, k + 8))  # the object is absent exactly during the gap
    # frames: the sequence, then a[0:5], b[0:3], then the sequence again, each with its own ground truth
    assert all(c.frames[t] is frames[t] for t in range(k))
    assert all(np.array_equal(c.frames[k + j], fa[j]) for j in range(5))
    assert all(np.array_equal(c.frames[k + 5 + j], fb[j]) for j in range(3))
    assert all(c.frames[k + 8 + t] is frames[k + t] for t in range(40 - k))
    assert np.array_equal(c.gt[k + 8 :], gt[k:]) and np.array_equal(c.seg_gt[:k], gt[:k])
    # the segmenter sees the inserted objects, each inserted sequence's as a distinct object
    assert np.array_equal(c.seg_gt[k + 2] == 2, ga[2] == 1)
    assert np.array_equal(c.seg_gt[k + 6] == 3, gb[1] == 1)
    assert c.info["inserted"] == ["a[0:5]", "b[0:3]"]
    with pytest.raises(L.EditImpossible, match="only 5 frames"):
        L.look_away("s", frames, gt, 8, [("a", fa, ga)])


def test_occluder_covers_the_object_for_exactly_K_frames():
    frames, gt = _clip()
    c = L.occluder("s", frames, gt, 6, texture=None, transit=3, margin=2)
    assert c.gap[1] - c.gap[0] == 6 and len(c.frames) == 40 and c.gt.shape == gt.shape
    assert _absent(c.gt) == list(range(*c.gap))  # absent exactly during the gap, present in every other frame
    assert c.span[0] == c.k and c.span[0] <= c.gap[0] < c.gap[1] <= c.span[1]
    patch = c.seg_gt == L.OCCLUDER_LABEL
    for t in range(40):
        if c.span[0] <= t < c.span[1]:
            assert np.all(c.frames[t][patch[t]] == L.GREY)  # the patch is painted, opaque
            assert not np.any(c.gt[t][patch[t]])  # and hides the object in the ground truth
            assert np.array_equal(c.gt[t][~patch[t]], gt[t][~patch[t]])  # the rest of the object stays
            assert np.array_equal(c.frames[t][~patch[t]], frames[t][~patch[t]])
        else:
            assert not patch[t].any() and np.array_equal(c.gt[t], gt[t]) and c.frames[t] is frames[t]
    # it crosses: enters on one side, leaves on the other
    boxes = c.info["boxes"]
    first, last = boxes[min(boxes)], boxes[max(boxes)]
    assert (first[0] == 0) != (last[0] == 0)
    # a textured patch shows the texture
    tex = np.full((30, 30, 3), 77, np.uint8)
    ct = L.occluder("s", frames, gt, 6, texture=tex, transit=3, margin=2)
    assert np.all(ct.frames[ct.gap[0]][ct.seg_gt[ct.gap[0]] == L.OCCLUDER_LABEL] == 77)
    with pytest.raises(L.EditImpossible, match="patch"):
        L.occluder("s", frames, gt, 6, transit=3, margin=2, max_cover=0.01)
    with pytest.raises(L.EditImpossible, match="frames"):
        L.occluder("s", frames, gt, 30, transit=3)


def test_pan_crops_frames_and_ground_truth_alike():
    frames, gt = _clip()
    c = L.pan("s", frames, gt, 7, pan_window=0.4, transit=3, smooth=3)
    wh, ww = 24, 40
    assert c.info["window"] == [ww, wh] and c.gt.shape == (40, wh, ww) and len(c.frames) == 40
    assert c.gap[1] - c.gap[0] == 7 and _absent(c.gt) == list(range(*c.gap))
    corners = c.info["corners"]
    for t, (y, x) in enumerate(corners):
        assert 0 <= y <= 60 - wh and 0 <= x <= 100 - ww
        assert c.frames[t].shape == (wh, ww, 3)
        assert np.array_equal(c.frames[t], frames[t][y : y + wh, x : x + ww])
        assert np.array_equal(c.gt[t], gt[t][y : y + wh, x : x + ww])
    # the window follows the object before the edit and is elsewhere during the gap
    assert corners[c.gap[0]] != corners[c.k - 1]
    assert c.gt[c.k - 1].any() and np.array_equal(c.seg_gt, c.gt)
    with pytest.raises(L.EditImpossible, match="no .* window"):
        big = np.ones_like(gt)  # the object fills the frame: no window leaves it out of view
        L.pan("s", frames, big, 7, transit=3)


def test_make_edit_refuses_more_than_one_object():
    frames, gt = _clip()
    with pytest.raises(ValueError, match="unknown edit"):
        L.make_edit("zoom", "s", frames, gt, 5)
    gt[0, 0, 0] = 2
    with pytest.raises(ValueError, match="one object"):
        L.make_edit("pan", "s", frames, gt, 5)


@pytest.fixture(scope="module")
def libby():
    if not (DAVIS / "JPEGImages" / "480p" / "libby").is_dir():
        pytest.skip(f"DAVIS frames not found at {DAVIS} (../shared beside the project)")
    frames = davis.load_frames(DAVIS, "libby")
    _, gt = davis.load_gt(DAVIS, "libby")
    other = davis.load_frames(DAVIS, "horsejump-high", limit=10)
    _, other_gt = davis.load_gt(DAVIS, "horsejump-high", limit=10)
    return frames, gt, other, other_gt


@pytest.mark.parametrize("edit", L.EDITS)
def test_edits_of_a_real_sequence_stay_aligned(libby, edit):
    frames, gt, other, other_gt = libby
    c = L.make_edit(edit, "libby", frames, gt, 10, others=[("horsejump-high", other, other_gt)], texture=other[0])
    assert len(c.frames) == len(c.gt) == len(c.seg_gt)
    assert all(f.shape == c.gt.shape[1:] + (3,) and f.dtype == np.uint8 for f in c.frames)
    assert c.gap[1] - c.gap[0] == 10 and _absent(c.gt) == list(range(*c.gap))
    assert len(c.frames) - c.gap[1] >= 5  # room to score the return
    if edit == "pan":
        for t, (y, x) in enumerate(c.info["corners"]):
            h, w = c.gt.shape[1:]
            assert np.array_equal(c.gt[t], gt[t][y : y + h, x : x + w])
            assert np.array_equal(c.frames[t], frames[t][y : y + h, x : x + w])


# ----------------------------------------------------------------------------------------------------------------
# scores on hand-made label sequences

GAP = (4, 8)


def _scene(T=14):
    """8 x 8 frames; the object (1) is the top-left 3 x 3 block, absent during GAP; another region at the bottom."""
    gt = np.zeros((T, 8, 8), np.uint8)
    gt[:, :3, :3] = 1
    gt[GAP[0] : GAP[1]] = 0
    labels = np.zeros((T, 8, 8), np.uint32)
    return gt, labels


OBJ = (slice(0, 3), slice(0, 3))
OTHER = (slice(5, 8), slice(0, 8))


def test_perfect_reid_scores_recall_one():
    gt, lab = _scene()
    for t in range(len(gt)):
        if t not in range(*GAP):
            lab[t][OBJ] = 5
        lab[t][OTHER] = 6  # an unrelated track everywhere
    s = L.score_return(lab, gt, GAP)
    assert (s.before_id, s.after_id, s.scored, s.reid, s.false_reid) == (5, 5, True, True, False)
    assert s.after_share == 1.0 and s.gap_frames_with_id == 0


def test_new_id_after_the_return_scores_zero():
    gt, lab = _scene()
    lab[: GAP[0]][:, :3, :3] = 5
    lab[GAP[1] :][:, :3, :3] = 9
    s = L.score_return(lab, gt, GAP)
    assert (s.before_id, s.after_id, s.reid, s.false_reid) == (5, 9, False, False)


def test_the_object_id_on_something_else_during_the_gap_is_a_false_reid():
    gt, lab = _scene()
    lab[: GAP[0]][:, :3, :3] = 5
    lab[GAP[1] :][:, :3, :3] = 5
    lab[GAP[0] + 2][OTHER] = 5  # an inserted frame's region takes the id (3rd gap frame: past the grace)
    s = L.score_return(lab, gt, GAP)
    assert s.reid and s.false_reid and s.false_during and s.gap_frames_with_id == 1
    # within the grace frames (a lost mask still painted for a frame or two) it is not counted
    lab[GAP[0] + 2][OTHER] = 0
    lab[GAP[0]][OTHER] = 5
    lab[GAP[0] + 1][OTHER] = 5
    s = L.score_return(lab, gt, GAP)
    assert not s.false_reid and s.gap_frames_with_id == 2
    assert L.score_return(lab, gt, GAP, grace=0).false_during


def test_a_dormant_id_given_to_another_object_after_the_return_is_a_false_reid():
    gt, lab = _scene()
    lab[: GAP[0]][:, :3, :3] = 5
    lab[GAP[1] :][:, :3, :3] = 9  # the object comes back under a new id
    lab[GAP[1] :][:, 5:, :] = 5  # and its old id goes to a different object
    s = L.score_return(lab, gt, GAP)
    assert not s.reid and s.false_reid and s.false_after and not s.false_during


def test_the_object_taking_an_id_seen_in_the_gap_is_a_false_reid():
    gt, lab = _scene()
    lab[: GAP[0]][:, :3, :3] = 5
    lab[GAP[0] : GAP[1]][:, 5:, :] = 7  # an inserted object's id
    lab[GAP[1] :][:, :3, :3] = 7  # given to the returning object
    s = L.score_return(lab, gt, GAP)
    assert s.after_id == 7 and not s.reid and s.false_taken and s.false_reid


def test_an_untracked_object_is_not_scored_and_the_gap_must_be_empty():
    gt, lab = _scene()
    lab[GAP[1] :][:, :3, :3] = 9
    s = L.score_return(lab, gt, GAP)
    assert not s.scored and not s.reid and not s.false_reid
    with pytest.raises(ValueError, match="visible inside the gap"):
        L.score_return(lab, gt, (2, 8))
    with pytest.raises(ValueError, match="differ"):
        L.score_return(lab[:, :4], gt, GAP)


def test_summary_table_and_plot(tmp_path):
    def rec(seq, reid, false, scored=True, K=10):
        res = {"reid": reid, "false_reid": false, "false_during": false, "false_after": False, "false_taken": False,
               "left": True, "reid_event": False, "scored": scored, "JF": 0.5, "JF_visible": 0.4,
               "before_id": 1 if scored else 0, "after_id": 1, "after_share": 1.0}
        return {"label": "t", "segmenter": "oracle", "sequence": seq, "edit": "look_away", "K": K, "frames": 50,
                "seconds": 2.0, "result": res}

    records = [rec("a", True, False), rec("b", False, True), rec("c", False, False, scored=False),
               rec("a", False, False, K=30),
               {"label": "t", "segmenter": "oracle", "sequence": "d", "edit": "look_away", "K": 10,
                "impossible": "d look_away K=10: too short"}]
    rows = L.summarise(records)
    (r10,) = [r for r in rows if r["K"] == 10]
    assert (r10["clips"], r10["scored"], r10["impossible"]) == (3, 2, 1)
    assert r10["recall"] == 0.5 and r10["false_reid"] == 0.5 and r10["JF"] == 0.5
    assert r10["JF_visible"] == pytest.approx(0.4)
    page = L.render(records, rows, "cmd", 60.0, "rev", "p.png")
    assert "| t | oracle | look_away | 10 | 2 / 3 | 0.50 | 0.50 |" in page and "too short" in page
    assert L.plot_recall(rows, tmp_path / "r.png") and (tmp_path / "r.png").stat().st_size > 0


def test_plot_gives_a_series_one_colour_in_every_panel_and_names_all_in_the_legend(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, *a, **k: saved.append(fig))

    def row(label, seg, edit, K, recall):
        return {"label": label, "segmenter": seg, "edit": edit, "K": K, "recall": recall, "scored": 2}

    # "a, oracle" only in the first panel: "b, sam_sim@0" must not take its colour in the second, and the legend (on
    # the last panel) names both
    rows = [row("a", "oracle", "look_away", 10, 1.0), row("b", "sam_sim@0", "look_away", 10, 0.5),
            row("b", "sam_sim@0", "pan", 10, 0.0), row("b", "sam_sim@0", "pan", 30, 0.5)]
    assert L.plot_recall(rows, tmp_path / "r.png")
    (fig,) = saved
    colour = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            assert colour.setdefault(line.get_label(), line.get_color()) == line.get_color()
    assert len(set(colour.values())) == 2
    legend = fig.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["a, oracle", "b, sam_sim@0"]


def test_command_runs_the_tracker_and_writes_table_json_and_plot(tmp_path):
    if not (DAVIS / "JPEGImages" / "480p" / "libby").is_dir():
        pytest.skip(f"DAVIS frames not found at {DAVIS}")
    rc = L.main(["--davis", str(DAVIS), "--out", str(tmp_path), "--sequences", "libby", "--edits", "occluder",
                 "--k", "10", "--segmenters", "oracle", "--jobs", "1", "--label", "today", "--sim-seed", "1"])
    assert rc == 0
    data = json.loads((tmp_path / "leave_return.json").read_text())
    (clip,) = data["clips"]
    assert clip["sim_seed"] == 1  # recorded (the oracle draws nothing)
    assert clip["frames"] == 49 and clip["gap"][1] - clip["gap"][0] == 10
    assert clip["result"]["before_id"] != 0  # with the oracle the tracker holds the object before it leaves
    assert 0.0 <= clip["result"]["JF"] <= 1.0 and 0.0 <= clip["result"]["JF_visible"] <= 1.0
    assert "| today | oracle | occluder | 10 | 1 / 1 |" in (tmp_path / "leave_return.md").read_text()
    assert (tmp_path / "leave_return.png").is_file()
    assert L.main(["--davis", str(DAVIS), "--out", str(tmp_path), "--segmenters", "classical"]) == 2


def test_sam_sim_seeds_draw_other_noise_on_the_same_clip():
    from mastsam_ros.core.config import Config
    from mastsam_ros.evaluation.runner import build_segmenter_for

    gt = np.zeros((2, 60, 80), np.uint8)
    gt[:, 10:40, 20:60] = 1
    frames = [np.full((60, 80, 3), 100, np.uint8)] * 2
    a, b, a2 = (build_segmenter_for("sam_sim@0.5", Config(), gt, frames, seed=s) for s in (0, 1, 0))
    assert (a.seed, b.seed) == (0, 1)
    masks = []
    for seg in (a, b, a2):
        seg.set_image(frames[0])
        masks.append(np.stack([p.mask for p in seg.generate()]))
    assert np.array_equal(masks[0], masks[2])  # a seed's draws are reproducible
    assert masks[0].shape != masks[1].shape or not np.array_equal(masks[0], masks[1])
