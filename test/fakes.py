"""Stub backends for the tests: answers fixed in advance, calls that record what they were given, and hold points
(a call waits on an event the test sets) where a test needs one thing to happen before another in another thread.
A test orders threads with these events, never with sleeps or durations."""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np

from mastsam_ros.core.errors import MastSamError
from mastsam_ros.core.matchers.base import Matcher
from mastsam_ros.core.segmenters.base import Segmenter
from mastsam_ros.core.types import Proposal

SHAPE = (120, 160)  # H, W of :func:`frame`


def frame(v: int, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """A flat grey H x W x 3 uint8 RGB frame whose first pixel says which frame it is (``v``, 0..255):
    :class:`BoxSegmenter` reads it back."""
    f = np.full((*shape, 3), 40, np.uint8)
    f[0, 0, 0] = v
    return f


class BoxSegmenter(Segmenter):
    """Four fixed 40 x 60 boxes on a 120 x 160 frame: ``generate`` answers all four, ``predict`` the box holding
    most of a prompt's positive points. It embeds ahead (``embeds_ahead``) and knows each frame by its first pixel
    (:func:`frame`).

    Records: ``embedded`` (v of each ``embed`` call, and in ``embed_threads`` the thread it ran in), ``stepped`` (v
    of each image made current by ``set_image`` / ``set_embedding``), ``current`` (the current v).

    Calls are named ``embed``, ``set`` (making an image current), ``generate`` and ``predict`` (on the current
    frame). ``reached(call, v)``: an event set when that call on frame v starts. ``hold[(call, v)] = event``: that
    call waits for the event (at most ``wait_s`` seconds; ``timeouts`` counts the waits that ran out, which a test
    asserts to be 0). ``fail`` (a set of (call, v)): that call raises MastSamError.
    """

    name = "boxes"
    embeds_ahead = True

    def __init__(self, wait_s: float = 30.0):
        self.boxes = []
        for y, x in [(10, 10), (10, 90), (70, 10), (70, 90)]:
            m = np.zeros(SHAPE, bool)
            m[y : y + 40, x : x + 60] = True
            self.boxes.append(m)
        self.wait_s = wait_s
        self.hold: dict[tuple[str, int], threading.Event] = {}
        self.fail: set[tuple[str, int]] = set()
        self.timeouts = 0
        self.embedded: list[int] = []
        self.embed_threads: list[str] = []
        self.stepped: list[int] = []
        self.current: int | None = None
        self._lock = threading.Lock()
        self._reached: dict[tuple[str, int], threading.Event] = defaultdict(threading.Event)

    def reached(self, call: str, v: int) -> threading.Event:
        with self._lock:
            return self._reached[(call, v)]

    def _at(self, call: str, v: int) -> None:
        self.reached(call, v).set()
        held = self.hold.get((call, v))
        if held is not None and not held.wait(self.wait_s):
            with self._lock:
                self.timeouts += 1
        if (call, v) in self.fail:
            raise MastSamError(f"{call} of frame {v} fails on purpose")

    def embed(self, image):
        v = int(image[0, 0, 0])
        self._at("embed", v)
        with self._lock:
            self.embedded.append(v)
            self.embed_threads.append(threading.current_thread().name)
        return ("boxes", v)

    def set_embedding(self, embedding):
        if not (isinstance(embedding, tuple) and embedding[0] == "boxes"):
            raise MastSamError("not an embedding of a BoxSegmenter")
        self._at("set", embedding[1])
        self.current = embedding[1]
        self.stepped.append(embedding[1])

    def set_image(self, image):
        self.set_embedding(self.embed(image))

    def generate(self, region=None, seeds=None):
        self._at("generate", self.current)
        return [Proposal(m.copy(), 0.9, 0.9) for m in self.boxes]

    def predict(self, prompts):
        self._at("predict", self.current)
        out = []
        for p in prompts:
            xy = np.round(p.points[p.labels == 1]).astype(int)
            k = int(np.argmax([m[xy[:, 1], xy[:, 0]].sum() for m in self.boxes]))
            out.append(Proposal(self.boxes[k].copy(), 0.9, 0.9))
        return out


class StillMatcher(Matcher):
    """A static scene: every point stays where it is with full confidence, every label map is warped onto itself.
    Counts its pushes."""

    name = "still"

    def __init__(self):
        self.pushed = 0

    def push(self, image):
        self.pushed += 1

    def carry(self, points):
        return np.asarray(points, np.float32).copy(), np.ones(len(points), np.float32)

    def warp_labels(self, labels):
        return labels.copy()
