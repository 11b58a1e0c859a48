"""The prompt budget and the re-segmentation schedule, on their own."""

from pathlib import Path

import numpy as np
import pytest

from mastsam_ros.core.budget import DOUBT_FLOOR, PromptBudget
from mastsam_ros.core.config import Config, TrackerSection
from mastsam_ros.core.schedule import Resegmentation, seeds_per_frame
from mastsam_ros.core.segmenters.base import grid_points

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_budget_without_limit_prompts_every_candidate():
    b = PromptBudget()
    assert b.choose([3, 1, 2], 0) == [3, 1, 2]
    assert b.choose([3, 1], 5) == [3, 1]


def test_budget_goes_to_doubt_then_to_the_longest_waiting():
    b = PromptBudget()
    for i in (1, 2, 3):
        b.accrue(i, 1.0)  # confident points: each gains only the floor
    b.accrue(2, 0.0)  # track 2's points were all lost once: the most doubt
    assert b.choose([1, 2, 3], 1) == [2]
    b.prompted(2, index=1)
    for i in (1, 2, 3):
        b.accrue(i, 1.0)
    # 1 and 3 now have twice the floor, 2 has one floor: 1 and 3 first, the older id breaking the tie
    assert b.choose([1, 2, 3], 2) == [1, 3]
    # equal doubt: the track prompted longest ago goes first, a never-prompted one before any, whatever its id
    b = PromptBudget()
    b.prompted(1, index=1)
    b.prompted(2, index=2)
    for i in (1, 2, 3):
        b.accrue(i, 1.0)
    assert b.choose([1, 2, 3], 2) == [3, 1]


def test_budget_warp_error_is_per_unprompted_frame_and_weighted():
    b = PromptBudget(warp_weight=5.0)
    b.prompted(7, index=0)
    b.prompted(7, index=4, warp_iou=0.6)  # 4 frames unprompted, 1 - IoU = 0.4: 0.1 a frame
    b.accrue(7, 1.0)
    b.accrue(8, 1.0)
    assert b.choose([7, 8], 1) == [7]
    assert np.isclose(b._state[7].doubt, DOUBT_FLOOR + 5.0 * 0.1)
    b.keep({8})
    # forgotten once the track is gone: a prompt of that id again measures no warp error (no earlier prompt)
    b.prompted(7, index=9, warp_iou=0.0)
    b.accrue(7, 1.0)
    assert np.isclose(b._state[7].doubt, DOUBT_FLOOR)


GRID = np.arange(20, dtype=np.float32).reshape(10, 2)  # ten seeds


def test_schedule_first_frame_and_requests_run_the_whole_grid_at_once():
    s = Resegmentation(TrackerSection(keyframe_interval=30, resegment_seeds_per_frame=4, new_region_interval=5))
    a = s.next(0, has_tracks=False, requested=False, grid=GRID)
    assert (a.kind, a.keyframe, a.new_area) == ("automatic", True, False)  # the whole grid: no new-area search
    assert s.next(1, True, True, GRID).kind == "automatic"
    assert s.next(2, True, False, GRID).kind == "none"


def test_seeds_per_frame_is_a_floor_raised_to_end_within_the_interval():
    assert seeds_per_frame(TrackerSection(keyframe_interval=30, resegment_seeds_per_frame=8), 256) == 9
    assert seeds_per_frame(TrackerSection(keyframe_interval=30, resegment_seeds_per_frame=20), 256) == 20
    assert seeds_per_frame(TrackerSection(keyframe_interval=256, resegment_seeds_per_frame=1), 256) == 1
    assert seeds_per_frame(TrackerSection(keyframe_interval=30, resegment_seeds_per_frame=0), 256) == 0  # at once
    assert seeds_per_frame(TrackerSection(keyframe_interval=0, resegment_seeds_per_frame=8), 256) == 8


def test_schedule_spreads_a_keyframe_over_its_interval_and_restarts_on_the_next():
    s = Resegmentation(TrackerSection(keyframe_interval=4, resegment_seeds_per_frame=1, new_region_interval=0))
    kinds = [s.next(i, True, False, GRID) for i in range(4, 12)]
    # ten seeds in four frames: three a frame, the floor of one raised so the grid is done before frame 8
    assert [(a.kind, a.keyframe, 0 if a.seeds is None else len(a.seeds)) for a in kinds] == [
        ("slice", True, 3), ("slice", False, 3), ("slice", False, 3), ("slice", False, 1),
        ("slice", True, 3), ("slice", False, 3), ("slice", False, 3), ("slice", False, 1)]
    assert np.array_equal(np.concatenate([a.seeds for a in kinds[:4]]), GRID)


def test_schedule_keyframe_interval_one_or_seed_floor_zero_decode_the_grid_at_once():
    for cfg in (TrackerSection(keyframe_interval=1, resegment_seeds_per_frame=1, new_region_interval=1),
                TrackerSection(keyframe_interval=3, resegment_seeds_per_frame=0, new_region_interval=1)):
        s = Resegmentation(cfg)
        acts = [s.next(i, True, False, GRID) for i in range(0, 6)]
        every = cfg.keyframe_interval
        assert [a.kind for a in acts] == ["automatic" if i % every == 0 else "none" for i in range(6)]
        assert [a.new_area for a in acts] == [a.kind != "automatic" for a in acts]


def test_schedule_a_request_or_a_shorter_interval_drops_the_spread_one_and_starts_anew():
    cfg = TrackerSection(keyframe_interval=5, resegment_seeds_per_frame=2, new_region_interval=0)
    s = Resegmentation(cfg)
    assert s.next(5, True, False, GRID).kind == "slice"
    r = s.next(6, True, True, GRID)  # requested: the whole grid at once replaces the rest of the spread one
    assert (r.kind, r.keyframe) == ("automatic", True)
    assert s.next(7, True, False, GRID).kind == "none"
    assert s.next(10, True, False, GRID).keyframe
    cfg.keyframe_interval = 2  # a run-time change: the next keyframe (12) comes before the one of 10 has ended
    a = s.next(11, True, False, GRID)
    assert (a.kind, a.keyframe) == ("slice", False) and np.array_equal(a.seeds, GRID[2:4])  # the started rate
    b = s.next(12, True, False, GRID)
    assert (b.kind, b.keyframe) == ("slice", True) and np.array_equal(b.seeds, GRID[:5])  # anew, ten seeds / 2


def test_schedule_new_area_between_keyframes_and_live_config():
    cfg = TrackerSection(keyframe_interval=0, resegment_seeds_per_frame=4, new_region_interval=5)
    s = Resegmentation(cfg)
    acts = [s.next(i, True, False, GRID) for i in range(1, 11)]
    assert [i for i, a in enumerate(acts, 1) if a.new_area] == [5, 10] and {a.kind for a in acts} == {"none"}
    cfg.new_region_interval = 0  # the section is read at every call
    assert not any(s.next(i, True, False, GRID).new_area for i in range(11, 21))


@pytest.mark.parametrize("source", ["defaults", "cpu.yaml"])
def test_schedule_keeps_its_word_over_600_frames(source):
    """Keyframes at 0, N, 2N...; each one starts a re-segmentation that decodes the whole grid, each seed once, and
    ends before the next keyframe; new area is searched every new_region_interval frames, also while one is spread
    (but not on a frame that decodes the whole grid at once)."""
    cfg = Config() if source == "defaults" else Config.from_yaml(CONFIG / "cpu.yaml")
    t = cfg.tracker
    grid = grid_points((480, 854), cfg.segmenter.points_per_side)
    rate = seeds_per_frame(t, len(grid))
    s = Resegmentation(t)
    acts = [s.next(i, has_tracks=i > 0, requested=False, grid=grid) for i in range(600)]
    keyframes = [i for i, a in enumerate(acts) if a.keyframe]
    assert keyframes == list(range(0, 600, t.keyframe_interval)) and len(keyframes) >= 3
    assert acts[0].kind == "automatic"
    for start in keyframes[1:]:
        end = min(start + t.keyframe_interval, 600)
        run = [i for i in range(start, end) if acts[i].kind == "slice"]
        assert run == list(range(start, run[-1] + 1)), "slices one a frame from the keyframe on"
        decoded = np.concatenate([acts[i].seeds for i in run])
        assert all(len(acts[i].seeds) <= rate for i in run)
        if end < start + t.keyframe_interval:  # the walk stops before this one's interval is over: in grid order
            assert np.array_equal(decoded, grid[: len(decoded)])
            continue
        assert np.array_equal(decoded, grid), "the whole grid, each seed once, before the next keyframe"
        assert all(acts[i].kind == "none" for i in range(run[-1] + 1, end))
    searched = [i for i, a in enumerate(acts) if a.new_area]
    assert searched == [i for i in range(600) if i % t.new_region_interval == 0 and acts[i].kind != "automatic"]
    assert any(acts[i].kind == "slice" for i in searched)  # searched while one is spread
    if source == "cpu.yaml":  # its per-frame cost stays one seed a frame
        assert rate == 1 and t.resegment_seeds_per_frame == 1
