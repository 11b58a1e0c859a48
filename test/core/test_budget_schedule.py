"""The prompt budget and the re-segmentation schedule, on their own."""

import numpy as np

from mastsam_ros.core.budget import DOUBT_FLOOR, PromptBudget
from mastsam_ros.core.config import TrackerSection
from mastsam_ros.core.schedule import Resegmentation


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
    assert b.last_prompted(2) == 1 and b.last_prompted(1) == -1


def test_budget_warp_error_is_per_unprompted_frame_and_weighted():
    b = PromptBudget(warp_weight=5.0)
    b.prompted(7, index=0)
    b.prompted(7, index=4, warp_iou=0.6)  # 4 frames unprompted, 1 - IoU = 0.4: 0.1 a frame
    b.accrue(7, 1.0)
    b.accrue(8, 1.0)
    assert b.choose([7, 8], 1) == [7]
    assert np.isclose(b._state[7].doubt, DOUBT_FLOOR + 5.0 * 0.1)
    b.keep({8})
    assert b.last_prompted(7) == -1  # forgotten once the track is gone


GRID = np.arange(20, dtype=np.float32).reshape(10, 2)  # ten seeds


def test_schedule_first_frame_and_requests_run_the_whole_grid_at_once():
    s = Resegmentation(TrackerSection(keyframe_interval=30, resegment_seeds_per_frame=4, new_region_interval=5))
    a = s.next(0, has_tracks=False, requested=False, grid=GRID)
    assert (a.kind, a.keyframe) == ("automatic", True)
    assert s.next(1, True, True, GRID).kind == "automatic"
    assert s.next(2, True, False, GRID).kind == "none"


def test_schedule_spreads_a_keyframe_and_never_restarts_it():
    s = Resegmentation(TrackerSection(keyframe_interval=2, resegment_seeds_per_frame=4, new_region_interval=0))
    a = s.next(2, True, False, GRID)
    assert (a.kind, a.keyframe, len(a.seeds)) == ("slice", True, 4)
    b = s.next(3, True, False, GRID)
    assert (b.kind, b.keyframe) == ("slice", False) and np.array_equal(b.seeds, GRID[4:8])
    c = s.next(4, True, False, GRID)  # a keyframe falls due while one is under way: it continues, not restarts
    assert c.kind == "slice" and np.array_equal(c.seeds, GRID[8:]) and not s.active
    assert s.next(5, True, False, GRID).kind == "none"


def test_schedule_new_area_between_keyframes_and_live_config():
    cfg = TrackerSection(keyframe_interval=0, resegment_seeds_per_frame=4, new_region_interval=5)
    s = Resegmentation(cfg)
    assert [s.next(i, True, False, GRID).kind for i in range(1, 11)].count("new_area") == 2
    cfg.new_region_interval = 0  # the section is read at every call
    assert all(s.next(i, True, False, GRID).kind == "none" for i in range(11, 21))
