"""The per-frame prompt budget: which tracks get a decoder pass when not all of them can.

With ``tracker.max_prompts_per_frame`` set, each frame decodes at most that many track prompts. Every track gains
doubt each frame it goes unprompted; the most doubtful tracks are prompted first (ties: the longest unprompted, then
the oldest id), and a prompt clears the doubt. The others keep their previous mask warped along the matcher's field.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Doubt a track gains per unprompted frame even when all its points were carried with full confidence.
DOUBT_FLOOR = 0.1
#: Weight of a track's measured warp error (1 - IoU of its warped and its prompted mask at its last prompt, per frame
#: it went unprompted before) in the doubt it gains per frame. 5 was best of 2, 5, 10, 20 (docs/RESULTS.md).
WARP_WEIGHT = 5.0


@dataclass
class _Doubt:
    doubt: float = 0.0  # accumulated since the last prompt
    last_prompted: int = -1  # frame index of the last prompt (-1: never)
    warp_error: float = 0.0  # 1 - IoU of warped and prompted mask at the last prompt, per unprompted frame before it


class PromptBudget:
    """Doubt bookkeeping per track id. ``limit`` 0 means no limit: every candidate is prompted."""

    def __init__(self, warp_weight: float | None = None, floor: float | None = None):
        self.warp_weight = WARP_WEIGHT if warp_weight is None else warp_weight
        self.floor = DOUBT_FLOOR if floor is None else floor
        self._state: dict[int, _Doubt] = {}

    def accrue(self, track_id: int, point_confidence: float) -> None:
        """One more frame for ``track_id``: ``point_confidence`` is the mean confidence of its carried points (a lost
        point counts 0; 0 when it had none). Doubt grows by the floor, the points' lack of confidence and the warp
        error measured at its last prompt."""
        s = self._state.setdefault(track_id, _Doubt())
        s.doubt += self.floor + (1.0 - point_confidence) + self.warp_weight * s.warp_error

    def choose(self, candidates: list[int], limit: int) -> list[int]:
        """The ids to prompt this frame, in order: all of ``candidates`` without a limit, else the most doubtful."""
        if not limit or len(candidates) <= limit:
            return list(candidates)

        def key(i: int):
            s = self._state.get(i, _Doubt())
            return (-s.doubt, s.last_prompted, i)

        return sorted(candidates, key=key)[:limit]

    def prompted(self, track_id: int, index: int, warp_iou: float | None = None) -> None:
        """``track_id`` was prompted in frame ``index``; ``warp_iou`` is the IoU of its warped mask and the answer
        (None when the answer was rejected or not measured): it sets the warp error per unprompted frame."""
        s = self._state.setdefault(track_id, _Doubt())
        if warp_iou is not None and s.last_prompted >= 0:
            s.warp_error = (1.0 - warp_iou) / max(index - s.last_prompted, 1)
        s.last_prompted, s.doubt = index, 0.0

    def keep(self, alive: set[int]) -> None:
        """Forget tracks that no longer exist (merged or retired)."""
        self._state = {k: v for k, v in self._state.items() if k in alive}
