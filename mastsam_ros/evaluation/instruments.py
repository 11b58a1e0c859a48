"""Measurement instruments of ``mastsam-bench`` and the benchmark scripts: stand-ins that fix or remove what a
measurement must not depend on, and clocks. They are not models and never segment or match anything for real: the
stand-in segmenters answer every call with fixed rectangles (after the real model's full computation, or instead of
it at the cost of a lookup; :class:`ChurningRegions` makes them come and go for the permanence soak),
:class:`ReplayFlow` replays DIS fields computed before the timed run, :class:`MachineProbe` times a fixed piece of
work to tell the machine's speed of the moment, and :class:`DecoderClock` times a segmenter's prompt decoding by
delegation. Evaluation-only, like the rest of ``mastsam_ros.evaluation``: never imported by the core, the stream or
the node, never selectable by configuration.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import cv2
import numpy as np
from scipy import ndimage as ndi

from ..core.config import MatcherSection
from ..core.matchers.flow import FlowMatcher
from ..core.segmenters.base import Segmenter, grid_points
from ..core.types import PointPrompt, Proposal


def _cells(h: int, w: int, count: int, x0: float = 0.0):
    """(index, y0, y1, x0, x1) of ``count`` cells of a near-square grid over the h x w area from column ``x0``."""
    cols = int(np.ceil(np.sqrt(count * w / h)))
    rows = int(np.ceil(count / cols))
    for i in range(count):
        r, c = divmod(i, cols)
        yield i, r * h / rows, (r + 1) * h / rows, x0 + c * w / cols, x0 + (c + 1) * w / cols


def stand_in_regions(shape: tuple[int, int], count: int) -> np.ndarray:
    """H x W int32 map of ``count`` rectangles (ids 1..count, 0 = gap): a grid of cells, each rectangle the middle
    70% x 70% of its cell, so about half the frame is covered and the gaps form one large uncovered area (the tracker
    keeps segmenting it as newly visible area, as it does around real objects)."""
    out = np.zeros(shape, np.int32)
    for i, y0, y1, x0, x1 in _cells(*shape, count):
        my, mx = 0.15 * (y1 - y0), 0.15 * (x1 - x0)
        out[int(y0 + my) : int(y1 - my), int(x0 + mx) : int(x1 - mx)] = i + 1
    return out


class StandInRegions:
    """``count`` fixed regions of a frame (:func:`stand_in_regions`, or the map ``regions`` with ids 1..count)
    answering as a segmenter would, each call a lookup: a prompt gets the region holding most of its positive points
    (when none does: the region whose centre is nearest their mean, as SAM never answers with nothing, or with
    ``nearest`` False an empty mask: the object is gone), automatic masks are the regions holding a seed, best first.
    Masks and probability maps are prepared once per answer size and shared read-only: a caller that wrote into one
    would fail loudly."""

    def __init__(self, shape: tuple[int, int], count: int, regions: np.ndarray | None = None, nearest: bool = True):
        self.regions = stand_in_regions(shape, count) if regions is None else regions
        self.count, self.nearest = count, nearest
        self._answers: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
        ys, xs = np.indices(shape)
        ids = np.arange(1, count + 1)
        self._centres = np.stack([ndi.mean(xs, self.regions, ids), ndi.mean(ys, self.regions, ids)], axis=1)

    def answers(self, shape: tuple[int, int] | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """(mask, probability map) of region 0..count at ``shape`` (the frame's when None), then an empty one."""
        shape = tuple(shape or self.regions.shape)
        if shape not in self._answers:
            small = cv2.resize(self.regions, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
            answers = []
            for i in [*range(self.count + 1), -1]:
                mask = small == i
                soft = mask.astype(np.float32)
                mask.flags.writeable = soft.flags.writeable = False
                answers.append((mask, soft))
            self._answers[shape] = answers
        return self._answers[shape]

    def lookup(self, pts: np.ndarray) -> np.ndarray:
        h, w = self.regions.shape
        xy = np.clip(np.round(pts).astype(int), 0, [w - 1, h - 1])
        return self.regions[xy[:, 1], xy[:, 0]]

    def generate(self, shape, seeds) -> list[Proposal]:
        answers = self.answers(shape)
        ids = sorted({int(i) for i in self.lookup(np.asarray(seeds, np.float32).reshape(-1, 2))} - {0})
        return [Proposal(answers[i][0], score=0.95 - 0.01 * i, stability=0.95, soft=answers[i][1]) for i in ids]

    def predict(self, shape, prompts) -> list[Proposal]:
        if not prompts:
            return []
        answers = self.answers(shape)
        pos = [np.asarray(p.points, np.float32)[np.asarray(p.labels) == 1] for p in prompts]
        # one lookup and one count for all prompts: votes[i, r] = prompt i's positive points in region r
        owner = np.repeat(np.arange(len(pos)), [len(q) for q in pos])
        votes = np.bincount(owner * (self.count + 1) + self.lookup(np.concatenate(pos)),
                            minlength=len(pos) * (self.count + 1)).reshape(len(pos), self.count + 1)
        votes[:, 0] = 0  # outside every region
        out = []
        for q, best, most in zip(pos, votes.argmax(axis=1).tolist(), votes.max(axis=1).tolist()):
            if not most:
                if not self.nearest:
                    out.append(Proposal(answers[-1][0], score=0.0, stability=0.0, soft=answers[-1][1]))
                    continue
                best = 1 + int(np.argmin(np.linalg.norm(self._centres - q.mean(axis=0), axis=1)))
            out.append(Proposal(answers[best][0], score=0.9, stability=0.9, soft=answers[best][1]))
        return out


class StandInMasks(Segmenter):
    """Runs ``inner``'s full computation for every call, then answers with fixed regions instead of its masks.

    With random weights SAM's masks are noise, and the tracker's filters would make tracks appear and die at random,
    so the track count (which drives the cost of prompting, merging and clustering) would be whatever the noise
    gives. Here every call still runs the real encoder / prompt encoder / mask decoder / upscaling / filtering, but:

    - ``predict``: each prompt gets the region that holds most of its positive points (if none does, the region
      whose centre is nearest their mean: SAM never answers a prompt with nothing);
    - ``generate``: the regions that hold at least one of the seeds (the grid of ``points_per_side``, limited to
      ``region``, or the given ``seeds``), best first.

    ``limit`` (used for the prototype baseline, which has no track cap) keeps at most that many automatic masks.

    The answers have the size the tracker asks for (``mask_shape``, passed on to ``inner`` so that SAM decodes at
    that size as it does in the tracker) and carry probability maps as SAM's do there.
    """

    is_fallback = False

    def __init__(self, inner: Segmenter, count: int, substitute: bool = True, limit: int | None = None):
        self.inner, self.count, self.substitute, self.limit = inner, count, substitute, limit
        self.name = f"{inner.name}+stand-in" if substitute else inner.name
        self._regions: StandInRegions | None = None
        self._points_per_side = getattr(getattr(inner, "cfg", None), "points_per_side", 16)

    @property
    def mask_shape(self) -> tuple[int, int] | None:
        return self.inner.mask_shape

    @mask_shape.setter
    def mask_shape(self, shape: tuple[int, int] | None) -> None:
        self.inner.mask_shape = shape

    @property
    def embeds_ahead(self) -> bool:
        return self.inner.embeds_ahead

    def set_image(self, image: np.ndarray) -> None:
        self.inner.set_image(image)
        self._fit(image.shape[:2])

    def embed(self, image: np.ndarray) -> object:
        """The inner segmenter's embedding (computed ahead in a stream when it can), with the frame's size."""
        return self.inner.embed(image), image.shape[:2]

    def set_embedding(self, embedding: object) -> None:
        inner, shape = embedding
        self.inner.set_embedding(inner)
        self._fit(shape)

    def _fit(self, shape: tuple[int, int]) -> None:
        if self._regions is None or self._regions.regions.shape != shape:
            self._regions = StandInRegions(shape, self.count)

    def generate(self, region=None, seeds=None) -> list[Proposal]:
        props = self.inner.generate(region, seeds=seeds)
        if self.substitute:
            shape = self._regions.regions.shape
            pts = grid_points(shape, self._points_per_side, region) if seeds is None else seeds
            props = self._regions.generate(self.mask_shape, pts)
        return props[: self.limit] if self.limit else props

    def predict(self, prompts) -> list[Proposal]:
        props = self.inner.predict(prompts)
        if not self.substitute:
            return props
        return [
            dataclasses.replace(answer, score=prop.score, stability=prop.stability)
            for answer, prop in zip(self._regions.predict(self.mask_shape, prompts), props)
        ]


class ZeroCostSegmenter(Segmenter):
    """Fixed regions (:class:`StandInRegions`) as answers, at the tracker's working resolution, so a call costs a
    lookup. Each answer carries its probability map too, as SAM's do at the working size (:class:`Proposal`'s
    ``soft``)."""

    name = "zero-cost"
    is_fallback = True

    def __init__(self, shape: tuple[int, int], count: int):
        self.stand_in = StandInRegions(shape, count)
        self.regions, self.count = self.stand_in.regions, count

    def set_image(self, image: np.ndarray) -> None:
        pass

    def generate(self, region=None, seeds=None) -> list[Proposal]:
        pts = grid_points(self.regions.shape, 16) if seeds is None else seeds
        return self.stand_in.generate(self.mask_shape, pts)

    def predict(self, prompts) -> list[Proposal]:
        return self.stand_in.predict(self.mask_shape, prompts)


def churn_regions(shape: tuple[int, int], count: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """H x W int32 map of ``count`` rectangles (ids 1..count, 0 = gap) in the left (``side`` 0) or the right half of
    the frame: the half cut into a grid of cells, in each cell one rectangle of random size (40-90% of the cell's
    sides) at a random place inside it, so no two touch."""
    h, w = shape
    half = w // 2
    out = np.zeros(shape, np.int32)
    for i, y0, y1, x0, x1 in _cells(h, half, count, side * half):
        ch, cw = (y1 - y0) * rng.uniform(0.4, 0.9), (x1 - x0) * rng.uniform(0.4, 0.9)
        top, left = y0 + rng.uniform(0, y1 - y0 - ch), x0 + rng.uniform(0, x1 - x0 - cw)
        out[int(top) + 1 : int(top + ch), int(left) + 1 : int(left + cw)] = i + 1
    return out


class ChurningRegions(Segmenter):
    """Stand-in objects that come and go, for the permanence soak (``mastsam-bench --soak N --soak-churn K``):
    ``count`` rectangles (:func:`churn_regions`), a new set every ``period`` frames (counted by ``set_image``),
    alternately in the left and the right half of the frame, each set at new random places and sizes (``seed``). So
    the objects of a set are all gone when the next appears: a prompt whose points lie in no rectangle is answered
    with an empty mask, the track is not confirmed and leaves after ``tracker.max_age`` frames, and the new set's
    rectangles are found as new tracks (newly visible area, re-segmentation). Otherwise it answers as
    :class:`StandInRegions` at the tracker's working size, each call a lookup."""

    name = "churning-stand-in"
    is_fallback = True

    def __init__(self, shape: tuple[int, int], count: int, period: int, seed: int = 0):
        if period < 1 or count < 1:
            raise ValueError(f"churning regions need count >= 1 and period >= 1, got {count} and {period}")
        self.shape, self.count, self.period = tuple(shape), count, period
        self._rng = np.random.default_rng(seed)
        self.frames = self.sets = 0  # set_image calls, region sets shown so far
        self.stand_in: StandInRegions | None = None

    def set_image(self, image: np.ndarray) -> None:
        if image.shape[:2] != self.shape:
            raise ValueError(f"churning regions made for {self.shape} frames, got {image.shape[:2]}")
        if self.frames % self.period == 0:
            regions = churn_regions(self.shape, self.count, self.sets % 2, self._rng)
            self.stand_in = StandInRegions(self.shape, self.count, regions=regions, nearest=False)
            self.sets += 1
        self.frames += 1

    def generate(self, region=None, seeds=None) -> list[Proposal]:
        pts = grid_points(self.shape, 16, region) if seeds is None else seeds
        return self.stand_in.generate(self.mask_shape, pts)

    def predict(self, prompts) -> list[Proposal]:
        return self.stand_in.predict(self.mask_shape, prompts)


class DecoderClock(Segmenter):
    """Delegates every call to ``inner`` and times its ``predict`` calls (the prompt decoder), each between two
    ``synchronize`` calls when given (``torch.cuda.synchronize``, as the tracker's stages), so a call is charged with
    the device work it queued. :meth:`take` returns the milliseconds summed since the last take: the bench takes it
    after each frame's step, in the thread that ran the step, and sets the frame's model floor (encoder + decoder)
    beside its ``Tracker.step``."""

    def __init__(self, inner: Segmenter, synchronize: Callable[[], None] | None = None):
        self.inner, self.synchronize, self.ms = inner, synchronize, 0.0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def is_fallback(self) -> bool:
        return self.inner.is_fallback

    @property
    def embeds_ahead(self) -> bool:
        return self.inner.embeds_ahead

    @property
    def mask_shape(self) -> tuple[int, int] | None:
        return self.inner.mask_shape

    @mask_shape.setter
    def mask_shape(self, shape: tuple[int, int] | None) -> None:
        self.inner.mask_shape = shape

    def settings(self) -> dict:
        return self.inner.settings()

    def set_image(self, image: np.ndarray) -> None:
        self.inner.set_image(image)

    def embed(self, image: np.ndarray) -> object:
        return self.inner.embed(image)

    def set_embedding(self, embedding: object) -> None:
        self.inner.set_embedding(embedding)

    def generate(self, region=None, seeds=None) -> list[Proposal]:
        return self.inner.generate(region, seeds=seeds)

    def predict(self, prompts: list[PointPrompt]) -> list[Proposal]:
        sync = self.synchronize or (lambda: None)
        sync()
        t0 = time.perf_counter()
        try:
            return self.inner.predict(prompts)
        finally:
            sync()
            self.ms += (time.perf_counter() - t0) * 1e3

    def take(self) -> float:
        ms, self.ms = self.ms, 0.0
        return ms


class ReplayFlow(FlowMatcher):
    """The flow matcher with its DIS fields computed before the timed run (``pair_ahead`` of each consecutive pair of
    ``frames``); ``push`` then installs the next recorded pair (``push_ahead``), so carrying points and warping masks
    cost what they cost and the flow itself nothing. For a tracker stepped without a pair computed ahead (a stream
    with ``ahead=False``), which pushes each frame once, in order."""

    name = "flow-replay"

    def __init__(self, cfg: MatcherSection, frames: list[np.ndarray]):
        super().__init__(cfg)
        self._recorded = [self.pair_ahead(prev, frame) for prev, frame in zip([None, *frames[:-1]], frames)]
        self._next = 0

    def push(self, image: np.ndarray) -> None:
        ahead = self._recorded[self._next % len(self._recorded)]
        self._next += 1
        self.push_ahead(image, ahead)

    def reset(self) -> None:
        super().reset()
        self._next = 0


class MachineProbe:
    """A fixed piece of work that does not use the project's code, timed before each frame of ``--overhead``: the
    machine's speed at the time of the run. A shared machine's speed moves by up to 2x at the same load, and the
    ratio of the overhead to the probe moves much less than either, so runs taken at different times can be read
    together. The work is of the tracker's kinds, about 0.4 ms: a threshold and OpenCV's connected components on a
    fixed 256 x 144 map of random 8 x 8 blocks, 96 small NumPy calls, and an 854 x 480 uint32 fill. It must stay the
    same from one version of the project to the next."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self._map = cv2.resize(rng.random((18, 32), dtype=np.float32), (256, 144), interpolation=cv2.INTER_NEAREST)
        self._small = [rng.random(16, dtype=np.float32) for _ in range(8)]
        self._big = np.empty((480, 854), np.uint32)

    def __call__(self) -> float:
        t0 = time.perf_counter()
        cv2.connectedComponents((self._map >= 0.5).view(np.uint8), connectivity=8)
        for a in self._small * 4:
            np.flatnonzero(np.concatenate([a, a]) > 0.5)
        self._big.fill(7)
        return (time.perf_counter() - t0) * 1e3
