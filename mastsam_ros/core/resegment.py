"""A requested re-segmentation, for front ends: a full re-segmentation of the next frame and, with the cadence
matcher, a fresh anchor on that same frame.

:meth:`Tracker.request_keyframe` asks the tracker for a keyframe (a full automatic segmentation) on the next frame.
With ``matcher.backend: cadence`` the points the tracker carries into that frame would otherwise still come from the
flow chain since the last anchor frame; :func:`request_resegmentation` also makes that frame an anchor frame
(:meth:`CadenceMatcher.request_anchor`), so a user who asks to start over from the image also gets the anchor
matcher's correspondences, not the drift that may have prompted the request.
"""

from __future__ import annotations

from .tracker import Tracker


def request_resegmentation(tracker: Tracker) -> bool:
    """Re-segment the next frame fully, and make it an anchor frame where the matcher has anchors (thread-safe: both
    requests are flags read at the next step). Returns whether an anchor was requested too.

    A matcher rebuilt between this call and the next frame (a parameter change) starts with an anchor frame anyway.
    """
    tracker.request_keyframe()
    request_anchor = getattr(tracker.matcher, "request_anchor", None)
    if request_anchor is None:
        return False
    request_anchor()
    return True
