"""The ``tracker`` node: images in, stable instance masks out. A thin rclpy front end on the ROS-free core.

Topics (relative names, remap them in launch):
- in  ``image`` (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8; padded rows allowed), or with
  ``node.use_compressed`` ``<image>/compressed`` (sensor_msgs/CompressedImage);
- out ``~/labels`` (sensor_msgs/Image mono16, 0 = background, value = ``Instance.label``), ``~/instances``
  (mastsam_ros/InstanceArray), ``~/overlay`` (rgb8, rendered only while someone subscribes), ``/diagnostics``.
  Every output carries the input image's header.
Services: ``~/reset`` and ``~/resegment`` (std_srvs/Trigger; with the cadence matcher a re-segmentation also makes
the next frame an anchor frame: ``Tracker.request_keyframe``).

Threading: the subscription callback only checks the message (O(1)) and overwrites a one-slot buffer; one worker
thread owns the tracker and always takes the newest frame, so the node never works through a backlog, and every
overwritten frame is counted as dropped. With ``node.pipeline`` the one slot is the entrance of a three-stage
pipeline (mastsam_ros/core/pipeline.py): one thread decodes the next frame, one computes its segmenter embedding
(the GPU encoder) while the third tracks and publishes the frame before it; outputs stay in frame order and frames
are dropped only at the entrance. Parameter changes (validated in the on-set callback, applied in the
post-set one) and service requests reach the worker through state it reads between frames: it hands parameter
changes to ``Tracker.configure``, which rebuilds a backend when a field it copied at build time changed. No callback
lets an exception escape: it is logged (throttled) and counted in diagnostics.
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import gc
import os
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

# _f: the core's field factory (description, range, choices, read_only metadata), reused so that node parameters
# are declared and validated by exactly the same code as the core's.
from mastsam_ros.core.config import Config, ConfigError, validate
from mastsam_ros.core.config import config_field as _param
from mastsam_ros.core.errors import BadImage, FrameTooSmall, MastSamError
from mastsam_ros.core.frames import MIN_SIDE
from mastsam_ros.core.pipeline import Outcome, Pipeline
from mastsam_ros.core.render import overlay
from mastsam_ros.core.tracker import Tracker
from mastsam_ros.labels_io import LabelMapper
from mastsam_ros.node import inputs, logbridge
from mastsam_ros.node.conversions import (
    check_image, image_msg, image_to_rgb, instance_array_msg, rclpy_types, stamp_ns,
)
from mastsam_ros.node.interfaces import load_messages
from mastsam_ros.node.spatial import Spatial

THROTTLE_S = 5.0  # seconds between two warnings from the same place


@dataclass
class NodeSection:
    """Parameters of the ROS front end only (``node.*``); the core never sees them."""

    qos: str = _param(
        "sensor_data", "Input QoS: sensor_data (best effort) or reliable; history keep-last, node.input_depth deep.",
        choices=("sensor_data", "reliable"), read_only=True,
    )
    use_compressed: bool = _param(
        False, "Subscribe <image>/compressed (sensor_msgs/CompressedImage) instead of image.", read_only=True
    )
    diagnostics_period: float = _param(
        1.0, "Seconds between two /diagnostics messages.", range=(0.1, 60.0), read_only=True
    )
    reset_on_time_jump: bool = _param(
        True, "Reset the tracker when input stamps go backwards (a bag restarted or looped)."
    )
    input_depth: int = _param(
        inputs.INPUT_DEPTH,
        "History depth of the image subscription (keep-last). Frames the worker has no time for are replaced in"
        " the node's one-slot buffer either way (counted as frames_dropped); a deeper queue lets frames that arrive"
        " while the executor is late still reach the callback instead of being replaced inside DDS, uncounted.",
        range=(1, 100), read_only=True,
    )
    max_input_pixels: int = _param(
        1920 * 1080, "Largest frame processed as it is (width x height). A larger raw image, or a JPEG up to 64 times"
        " larger, is downscaled to fit (counted as downscaled); a larger PNG or other compressed image is refused"
        " from its header before decoding (counted as too_large). Outputs are at the processed size.",
        range=(64 * 64, 100_000_000),
    )
    pipeline: bool = _param(
        True, "Decode, encode (segmenter embedding, with the matcher's flow beside it) and track in three threads,"
        " so the encoder of the next frame runs while this one is tracked (a GPU stays busy); outputs stay in frame"
        " order, latency grows by up to a frame. Off: one worker decodes and tracks each frame in turn, the lowest"
        " latency; config/cpu.yaml turns it off (on a CPU the encoder needs the cores the other stages would use).",
        read_only=True,
    )


def node_fields(section: NodeSection):
    for f in dataclasses.fields(section):
        yield f"node.{f.name}", f, getattr(section, f.name)


def descriptor(name: str, fld: dataclasses.Field) -> ParameterDescriptor:
    """A ParameterDescriptor from a config field's metadata: description, numeric range, choices, read_only."""
    meta = fld.metadata
    d = ParameterDescriptor(name=name, description=meta["description"], read_only=bool(meta["read_only"]))
    if meta.get("choices"):
        # ROS has no enum constraint; name the choices for `ros2 param describe`, the callback enforces them.
        d.additional_constraints = "one of: " + ", ".join(meta["choices"])
    lo_hi = meta.get("range")
    if lo_hi is not None:
        if isinstance(fld.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(lo_hi[0]), to_value=float(lo_hi[1]))]
        else:
            d.integer_range = [IntegerRange(from_value=int(lo_hi[0]), to_value=int(lo_hi[1]), step=0)]
    return d


class _Slot:
    """A one-slot buffer: ``put`` overwrites (and says whether it overwrote), ``take`` waits for an item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None

    def put(self, item: Any) -> bool:
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> Any:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item


class TrackerNode(Node):
    """See the module docstring. Raises ConfigError (a ValueError) at construction on an invalid parameter set."""

    def __init__(self, **kwargs) -> None:
        super().__init__("tracker", **kwargs)
        # Unmanaged: all three phases at once. The managed node (mastsam_ros/node/lifecycle.py) runs them, and
        # their reverses, on lifecycle transitions.
        self._setup()
        self._configure()
        self._activate()

    # --- phases: setup (parameters), configure (models, outputs), activate (inputs, worker) -------------------
    def _setup(self) -> None:
        """Parameters and bookkeeping only; no model is built and nothing is published or subscribed."""
        self._msgs = rclpy_types(load_messages())
        self._lock = threading.Lock()  # guards counters, stats and pending parameter changes
        self._counters: Counter[str] = Counter()
        self._latencies: deque[float] = deque(maxlen=300)  # ms, receive -> published, newest frames
        self._processing: deque[float] = deque(maxlen=300)  # ms, tracker.step only
        self._matcher_ms: deque[float] = deque(maxlen=300)  # ms, the matcher's work inside tracker.step
        self._published_at: deque[float] = deque(maxlen=300)  # monotonic s, for the output rate
        self._tracks = 0
        self._last_stamp: int | None = None
        self._last_shape: tuple[int, int] | None = None
        self._pending: dict[str, Any] = {}
        self._gaps = inputs.StampGaps()
        self._publish_lock = threading.Lock()  # held while publishing one frame's outputs; close() waits for it
        self._log_handler = None  # the core's log records -> this node's logger, while configured

        # --- parameters: declared once, from the config dataclasses --------------------------------------
        self._cfg = self._declare_all(Config().fields())
        self._node = self._declare_all(node_fields(NodeSection()), section=NodeSection())
        self._spatial = Spatial(self, descriptor)  # node.depth.*, node.objects.*: the 3D inputs and outputs
        self._cfg.check()
        self._core_names = {name for name, _, _ in self._cfg.fields()}
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self._tracker: Tracker | None = None
        self._outputs: list = []  # publishers and services of the configured node
        self._inputs: list = []  # subscriptions and timers of the active node
        self._worker: threading.Thread | Pipeline | None = None  # or a closed pipeline still in a frame
        self._pipeline: Pipeline | None = None  # node.pipeline: replaces the worker and its slot while active
        self._stop = threading.Event()
        self._slot = _Slot()
        self._input_topic = self.resolve_topic_name("image")

    def _configure(self) -> None:
        """Build the tracker and its models, the publishers and the services. Raises what the backends raise."""
        # The worker owns the tracker (and its models); nothing else touches it except the thread-safe requests.
        # The core's log records go to this node's logger from here on (backends log while they are built).
        self._log_handler = logbridge.install(self.get_logger(), THROTTLE_S)
        try:
            self._tracker = Tracker(copy.deepcopy(self._cfg))
        except BaseException:
            logbridge.uninstall(self._log_handler)
            raise
        self._labels = LabelMapper()
        self._last_stamp, self._last_shape = None, None

        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self._pub_labels = self.create_publisher(Image, "~/labels", out_qos)
        self._pub_instances = self.create_publisher(self._msgs.InstanceArray, "~/instances", 10)
        self._pub_overlay = self.create_publisher(Image, "~/overlay", out_qos)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if self._spatial.wants_objects(self._tracker.matcher):
            self._spatial.create_publishers(load_messages(), out_qos)
        self._outputs = [
            self._pub_labels, self._pub_instances, self._pub_overlay, self._pub_diag,
            self.create_service(Trigger, "~/reset", self._on_reset),
            self.create_service(Trigger, "~/resegment", self._on_resegment),
        ]

    def _activate(self) -> None:
        """Subscribe, start the diagnostics timer and the worker thread."""
        in_qos = inputs.input_qos(self._node.qos, self._node.input_depth)
        if self._spatial.depth_input:
            self._input_topic = self.resolve_topic_name("image")
            self._spatial.subscribe(
                lambda image, depth, info: self._on_image(image, self._spatial.check(image, depth, info)), in_qos)
        elif self._node.use_compressed:
            # image_transport's convention: the compressed stream is <base topic>/compressed, after remapping.
            self._input_topic = self.resolve_topic_name("image") + "/compressed"
            self._inputs.append(
                self.create_subscription(CompressedImage, self._input_topic, self._on_compressed, in_qos))
        else:
            self._input_topic = self.resolve_topic_name("image")
            self._inputs.append(self.create_subscription(Image, "image", self._on_image, in_qos))
        self._inputs.append(self.create_timer(self._node.diagnostics_period, self._publish_diagnostics))

        self._slot = _Slot()
        self._stop = threading.Event()
        if self._node.pipeline:
            stop = self._stop  # this activation's, as the worker's below
            self._pipeline = Pipeline(self._tracker, lambda out: self._deliver(out, stop),
                                      decode=lambda payload: self._to_rgb(payload[0]),
                                      between=self._apply_pending, name="mastsam_tracker")
        else:
            # The worker gets its own stop event: one that outlives a deactivation (a long frame) never sees the next.
            self._worker = threading.Thread(target=self._work, args=(self._stop,), name="mastsam_tracker", daemon=True)
            self._worker.start()
        c = self._cfg
        self.get_logger().info(
            f"tracking {self._input_topic} ({self._node.qos}) with segmenter {c.segmenter.backend} "
            f"on {c.segmenter.device}, matcher {c.matcher.backend}"
            + (f", pipelined (segmenter embeds ahead: {str(self._tracker.segmenter.embeds_ahead).lower()})"
               if self._pipeline else "")
        )

    # --- parameters --------------------------------------------------------------------------------------------
    def _declare_all(self, fields, section=None):
        """Declare each field as a parameter (the params file overrides defaults) and return the filled config."""
        target = section if section is not None else Config()
        for name, fld, default in fields:
            value = self.declare_parameter(name, default, descriptor(name, fld)).value
            try:
                value = validate(name, fld, value)  # choices have no ROS descriptor; check them here too
            except ConfigError as e:
                raise ConfigError(f"parameter {e}") from None
            if section is not None:
                setattr(section, name.split(".", 1)[1], value)
            else:
                target.set(name, value)
        return target

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate only: the change with the core's rules on a copy; refuse all of it with the core's message if any
        part fails. rclpy then stores the values and calls :meth:`_after_set_parameters`, which applies them."""
        try:
            trial = copy.deepcopy(self._cfg)
            node_fields_by_name = {name: fld for name, fld, _ in node_fields(self._node)}
            spatial_fields = self._spatial.names()
            for p in params:
                if p.name in self._core_names:
                    trial.set(p.name, p.value)
                elif p.name in node_fields_by_name:
                    validate(p.name, node_fields_by_name[p.name], p.value)
                elif p.name in spatial_fields:
                    validate(p.name, spatial_fields[p.name], p.value)
            trial.check()
        except ConfigError as e:
            return SetParametersResult(successful=False, reason=str(e))
        except Exception as e:  # noqa: BLE001 - a parameter callback must answer, never raise
            return SetParametersResult(successful=False, reason=f"{type(e).__name__}: {e}")
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params) -> None:
        """Post-set: apply accepted values. ``node.*`` at once; core fields go to the worker, which hands them to
        ``Tracker.configure`` between two frames (a field a backend copied when built rebuilds that backend)."""
        try:
            node_fields_by_name = {name: fld for name, fld, _ in node_fields(self._node)}
            with self._lock:
                for p in params:
                    if p.name in self._core_names:
                        self._cfg.set(p.name, p.value)
                        self._pending[p.name] = self._cfg.as_dict()[p.name]
                    elif p.name in node_fields_by_name:
                        value = validate(p.name, node_fields_by_name[p.name], p.value)
                        setattr(self._node, p.name.split(".", 1)[1], value)
                    elif p.name in self._spatial.names():
                        self._spatial.set_parameter(p.name, validate(p.name, self._spatial.names()[p.name], p.value))
        except Exception as e:  # noqa: BLE001 - validated already; never let a callback raise
            self._callback_error(e)

    def _apply_pending(self) -> None:
        """Worker thread, between two frames: hand accepted parameter changes to the tracker."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            rebuilt = self._tracker.configure(pending)
        except Exception as e:  # noqa: BLE001 - a failed rebuild must not stop the worker
            self._count("tracker_errors")
            self.get_logger().error(f"applying {sorted(pending)} failed: {type(e).__name__}: {e}")
            return
        self._count("parameter_changes", len(pending))
        self._count("backend_rebuilds", len(rebuilt))
        self.get_logger().info(
            f"applied {', '.join(f'{k}={v}' for k, v in pending.items())}"
            + (f"; rebuilt {', '.join(rebuilt)}" if rebuilt else "")
        )

    # --- input callbacks (executor thread): O(1), never raise ------------------------------------------------
    def _on_image(self, msg: Image, extra=None) -> None:
        """``extra``: the frame's checked (depth, camera_info) from the synchronised input, or None."""
        self._count("received")
        self._count_gap(msg)
        try:
            check_image(msg)
            self._check_size(msg.width, msg.height)
        except BadImage as e:
            self._count(e.kind)
            self.get_logger().warning(f"skipping image: {e}", throttle_duration_sec=THROTTLE_S)
            return
        except Exception as e:  # noqa: BLE001 - a malformed message must not kill spin
            self._callback_error(e)
            return
        self._enqueue(msg, extra)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._count("received")
        self._count_gap(msg)
        self._enqueue(msg)  # decoding is real work: the worker does it and counts failures

    def _count_gap(self, msg) -> None:
        """Frames lost before this callback, from the stamp step (every received message counts, good or bad)."""
        try:
            lost = self._gaps.update(stamp_ns(msg.header))
        except Exception as e:  # noqa: BLE001
            self._callback_error(e)
            return
        if lost:
            self._count("lost_transport", lost)

    def _check_size(self, width: int, height: int) -> tuple[int, int]:
        """The size a ``width`` x ``height`` frame is processed at (after the ``node.max_input_pixels`` bound); raise
        :class:`BadImage` (``too_small``) when the core would refuse it: under its minimum side, or under what the
        matcher can process (the flow matcher's bound comes from OpenCV DIS, see core/matchers/flow.py)."""
        w, h = inputs.fit_pixels(width, height, self._node.max_input_pixels)
        if min(w, h) < MIN_SIDE:
            raise BadImage("too_small", f"image of {width}x{height} pixels processed at {w}x{h}: a side is under "
                                        f"{MIN_SIDE} px")
        try:
            self._tracker.matcher.check_size(h, w)
        except FrameTooSmall as e:
            raise BadImage("too_small", str(e)) from None
        return w, h

    def _enqueue(self, msg, extra=None) -> None:
        try:
            if not self._check_stamp(msg.header):
                return
            if self._pipeline is not None:
                replaced = self._pipeline.submit((msg, extra), arrived=time.monotonic())
            else:
                replaced = self._slot.put((msg, time.monotonic(), extra))
            if replaced:
                self._count("dropped")
        except Exception as e:  # noqa: BLE001
            self._callback_error(e)

    def _check_stamp(self, header) -> bool:
        """Count stamps that repeat or go backwards; False when the frame must be skipped."""
        ns = stamp_ns(header)
        last, self._last_stamp = self._last_stamp, ns
        if last is None or ns == 0:  # drivers without a clock send 0: nothing to compare
            return True
        if ns == last:
            # Most often the same frame delivered twice; a second answer under one stamp would confuse consumers
            # that synchronise by exact stamp.
            self._count("stamp_repeated")
            self.get_logger().warning(f"skipping image with repeated stamp {ns} ns", throttle_duration_sec=THROTTLE_S)
            return False
        if ns < last:
            self._count("stamp_backwards")
            action = "resetting the tracker" if self._node.reset_on_time_jump else "continuing"
            self.get_logger().warning(
                f"input stamp went backwards by {(last - ns) / 1e9:.3f} s: {action}", throttle_duration_sec=THROTTLE_S
            )
            if self._node.reset_on_time_jump:
                self._tracker.request_reset()
        return True

    # --- services -----------------------------------------------------------------------------------------------
    def _on_reset(self, request, response):
        self._tracker.request_reset()
        self._last_stamp = None
        self._gaps.reset()
        response.success, response.message = True, "the tracker resets before the next frame"
        return response

    def _on_resegment(self, request, response):
        anchor = self._tracker.request_keyframe()
        response.success = True
        response.message = "the next frame is fully re-segmented" + (" and an anchor frame" if anchor else "")
        return response

    # --- the worker ---------------------------------------------------------------------------------------------
    def _work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            item = self._slot.take(timeout=0.2)
            self._apply_pending()  # also while no frames arrive, so diagnostics show what is in force
            if item is None:
                continue
            try:
                self._process(*item, stop=stop)
            except Exception as e:  # noqa: BLE001 - the worker must outlive any one frame
                if not self._failed(e, stop):
                    return

    def _failed(self, e: Exception, stop: threading.Event) -> bool:
        """Count and log one frame's failure; False when it came from shutting down (the worker then ends)."""
        if isinstance(e, BadImage):
            self._count(e.kind)
            self.get_logger().warning(f"skipping image: {e}", throttle_duration_sec=THROTTLE_S)
        elif isinstance(e, FrameTooSmall):  # the core's own size check: a counted refusal, like the node's
            self._count("too_small")
            self.get_logger().warning(f"tracker refused a frame: {e}", throttle_duration_sec=THROTTLE_S)
        elif isinstance(e, MastSamError):
            self._count("bad_frame")
            self.get_logger().warning(f"tracker refused a frame: {e}", throttle_duration_sec=THROTTLE_S)
        else:
            if stop.is_set() or not rclpy.ok():
                return False
            self._count("tracker_errors")
            self.get_logger().error(f"frame failed: {type(e).__name__}: {e}", throttle_duration_sec=THROTTLE_S)
        return True

    def _deliver(self, out: Outcome, stop: threading.Event) -> None:
        """The pipeline's tracking thread, one outcome in frame order: publish it, or count its failure."""
        msg, extra = out.payload
        if out.error is not None:
            self._failed(out.error, stop)
            return
        try:
            self._process(msg, out.arrived, extra, stop=stop, rgb=out.frame, result=out.result,
                          step_ms=out.stage_ms["track"])
        except Exception as e:  # noqa: BLE001 - counted like the worker's failures
            self._failed(e, stop)

    def _process(self, msg, received: float, extra=None, stop: threading.Event | None = None, rgb=None, result=None,
                 step_ms: float = 0.0) -> None:
        """One frame: track, then publish all its outputs (2D and 3D) at once under the publish lock, unless
        ``stop`` (the worker's stop event; default the current one) was set meanwhile. The pipeline passes the
        frame decoded (``rgb``) and tracked (``result``, in ``step_ms``) already."""
        stop = self._stop if stop is None else stop
        if rgb is None:
            rgb = self._to_rgb(msg)
        if self._last_shape is not None and rgb.shape[:2] != self._last_shape:
            self._count("size_changes")
            self.get_logger().warning(
                f"image size changed from {self._last_shape[1]}x{self._last_shape[0]} to "
                f"{rgb.shape[1]}x{rgb.shape[0]}: tracker reset", throttle_duration_sec=THROTTLE_S,
            )
        self._last_shape = rgb.shape[:2]

        if result is None:
            t0 = time.perf_counter()
            result = self._tracker.step(rgb)
            step_ms = (time.perf_counter() - t0) * 1e3
        if result.reset:
            self._labels.reset()
        labels16, label_of = self._labels.assign(result)

        T = self._msgs
        outputs = [(self._pub_labels, image_msg(T, msg.header, labels16)),
                   (self._pub_instances, instance_array_msg(T, msg.header, result, label_of)),
                   *self._spatial.outputs(msg.header, result, label_of, extra, self._tracker.matcher)]
        if self._pub_overlay.get_subscription_count() > 0:
            outputs.append((self._pub_overlay, image_msg(T, msg.header, overlay(rgb, result))))
        with self._publish_lock:  # all of a frame's outputs or none: close() never cuts a frame's set in half
            if stop.is_set():
                return
            for pub, out in outputs:
                pub.publish(out)

        now = time.monotonic()
        with self._lock:
            self._counters["processed"] += 1
            self._counters["keyframes"] += int(result.keyframe)
            self._counters["resets"] += int(result.reset)
            self._tracks = len(result.tracks)
            self._latencies.append((now - received) * 1e3)
            self._processing.append(step_ms)
            self._matcher_ms.append(float(result.timings.get("matcher", 0.0)))
            self._published_at.append(now)

    def _to_rgb(self, msg) -> np.ndarray:
        """Decode and bound one input message: H x W x 3 uint8 RGB with at most ``node.max_input_pixels`` pixels."""
        limit = self._node.max_input_pixels
        if isinstance(msg, CompressedImage):
            width, height, fmt = inputs.compressed_size(msg.data)  # header only: nothing decoded yet
            self._check_size(width, height)
            rgb, downscaled = inputs.decode_compressed(msg.data, fmt, width, height, limit)
        else:
            width, height = msg.width, msg.height
            rgb = image_to_rgb(msg)
            size = inputs.fit_pixels(width, height, limit)
            downscaled = size != (width, height)
            if downscaled:
                rgb = inputs.downscale_to(rgb, size)
        if downscaled:
            self._count("downscaled")
            self.get_logger().warning(
                f"image of {width}x{height} pixels is over node.max_input_pixels={limit}: processed at "
                f"{rgb.shape[1]}x{rgb.shape[0]} (outputs at that size)", throttle_duration_sec=THROTTLE_S)
        return rgb

    # --- diagnostics --------------------------------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] += n

    def _callback_error(self, e: Exception) -> None:
        self._count("callback_errors")
        self.get_logger().error(f"callback failed: {type(e).__name__}: {e}", throttle_duration_sec=THROTTLE_S)

    BAD_INPUT = ("bad_encoding", "bad_size", "bad_data", "bad_frame", "too_small", "too_large", "stamp_backwards",
                 "stamp_repeated")
    COUNTERS = ("received", "processed", "dropped", "lost_transport", "keyframes", "resets", "size_changes",
                "downscaled", *BAD_INPUT, "tracker_errors", "callback_errors", "parameter_changes", "backend_rebuilds")

    def diagnostics(self) -> DiagnosticStatus:
        """One DiagnosticStatus with rates, latencies, counters (cumulative since start), tracks and backends."""
        now = time.monotonic()
        with self._lock:
            counters = dict(self._counters)
            recent = [t for t in self._published_at if now - t <= 5.0]
            latencies = list(self._latencies)[-len(recent):] if recent else []
            processing = list(self._processing)[-len(recent):] if recent else []
            matcher_ms = list(self._matcher_ms)[-len(recent):] if recent else []
            tracks = self._tracks
            previous = getattr(self, "_previous_counters", {})
            self._previous_counters = counters
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        new = {k: counters.get(k, 0) - previous.get(k, 0) for k in self.COUNTERS}

        level, message = DiagnosticStatus.OK, "tracking" if recent else "waiting for images"
        if new["tracker_errors"] or new["callback_errors"]:
            level, message = DiagnosticStatus.ERROR, "errors while processing frames (see log)"
        elif any(new[k] for k in self.BAD_INPUT) or new["size_changes"]:
            level, message = DiagnosticStatus.WARN, "bad input: " + ", ".join(
                f"{k} +{new[k]}" for k in (*self.BAD_INPUT, "size_changes") if new[k]
            )

        spatial, spatial_bad = self._spatial.diagnostics(), self._spatial.new_bad()
        if level == DiagnosticStatus.OK and spatial_bad:
            level, message = DiagnosticStatus.WARN, "bad depth input: " + ", ".join(spatial_bad)

        c = self._cfg
        values = {
            "rate_hz": f"{rate:.2f}",
            "latency_ms_mean": f"{np.mean(latencies):.1f}" if latencies else "nan",
            "latency_ms_median": f"{np.median(latencies):.1f}" if latencies else "nan",
            "latency_ms_p95": f"{np.percentile(latencies, 95):.1f}" if latencies else "nan",
            "latency_ms_max": f"{np.max(latencies):.1f}" if latencies else "nan",
            "processing_ms_mean": f"{np.mean(processing):.1f}" if processing else "nan",
            "matcher_ms_median": f"{np.median(matcher_ms):.1f}" if matcher_ms else "nan",
            "pipeline": str(self._node.pipeline).lower(),
            **self._pipeline_figures(),
            **{f"frames_{k}" if k in ("received", "processed", "dropped", "lost_transport") else k:
               str(counters.get(k, 0))
               for k in self.COUNTERS},
            "tracks": str(tracks),
            "segmenter": c.segmenter.backend,
            "matcher": c.matcher.backend,
            "device": c.segmenter.device,
            "input_topic": self._input_topic,
            "qos": self._node.qos,
            **self._backend_settings(),
            **spatial,
        }
        return DiagnosticStatus(
            level=level, name=f"{self.get_name()}: tracker", message=message,
            hardware_id=self.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )

    def _pipeline_figures(self) -> dict[str, str]:
        """With ``node.pipeline``: each stage's mean work (ms), the mean wait between arrival and result and the
        median time of the matcher's pair computed in stage 2 (``pipeline_flow_ms_median``: the flow ahead), over the
        pipeline's newest frames; whether the segmenter's encoder really runs ahead (its ``embeds_ahead``); and,
        cumulative, the pairs stage 2 computed (``pipeline_paired_ahead``), the frames whose step installed one
        (``pipeline_pair_used``) or did not (``pipeline_pair_not_used``: it computed the flow itself, or had no pair
        to compute: the first frame, after a reset or a size change), pairs that failed in stage 2 and pairs made by
        a matcher rebuilt meanwhile (``pipeline_rematched``)."""
        pipe = self._pipeline
        if pipe is None:
            return {}
        st = pipe.stats()
        counters = pipe.counts()
        return {
            **{f"pipeline_{k}": f"{st[k]:.1f}" for k in ("decode_ms_mean", "encode_ms_mean", "track_ms_mean",
                                                           "wait_ms_mean", "flow_ms_median")},
            "pipeline_in_flight": str(pipe.in_flight),
            "pipeline_embeds_ahead": str(self._tracker.segmenter.embeds_ahead).lower(),
            **{f"pipeline_{k}": str(counters[k]) for k in ("paired_ahead", "pair_used", "pair_not_used",
                                                          "pair_failed", "rematched")},
        }

    def _backend_settings(self) -> dict[str, str]:
        """What the built backends hold, read back from them (``matcher.max_side``...), not what was last set."""
        t = self._tracker
        return {f"{section}.{k}": str(v) for section, backend in
                (("segmenter", t.segmenter), ("matcher", t.matcher), ("clustering", t.kmeans))
                for k, v in backend.settings().items()}

    def _publish_diagnostics(self) -> None:
        try:
            msg = DiagnosticArray(status=[self.diagnostics()])
            msg.header.stamp = self.get_clock().now().to_msg()
            self._pub_diag.publish(msg)
        except Exception as e:  # noqa: BLE001
            self._callback_error(e)

    def _deactivate(self, timeout: float = 60.0, warn: bool = True) -> bool:
        """Unsubscribe and stop the worker (its current frame is waited for up to ``timeout`` s, then abandoned:
        it publishes nothing after its stop event is set); a frame still waiting in the slot is dropped. True when
        the worker has ended."""
        self._spatial.unsubscribe()
        for entity in self._inputs:
            (self.destroy_timer if hasattr(entity, "timer_period_ns") else self.destroy_subscription)(entity)
        self._inputs = []
        self._stop.set()
        ended = True
        abandoned = None
        if self._pipeline is not None:
            pipe, self._pipeline = self._pipeline, None
            ended = pipe.close(timeout=timeout)
            if not ended:
                abandoned = pipe
                if warn:
                    self.get_logger().warning(
                        f"the pipeline is still in a frame after {timeout:.0f} s; it stops after it")
        if self._worker is not None:
            self._worker.join(timeout=timeout)
            ended = ended and not self._worker.is_alive()
            if not self._worker.is_alive():
                self._worker = None
            elif warn:
                self.get_logger().warning(f"the worker is still in a frame after {timeout:.0f} s; it stops after it")
        if abandoned is not None:
            self._worker = abandoned  # still in a frame: seen as the worker (is_alive, join) until it ends
        with self._publish_lock:  # a frame being published completes; none is published after this
            pass
        self._slot.take(timeout=0.0)
        return ended

    def _cleanup(self) -> None:
        """Destroy the outputs and release the tracker and its models (and torch's cached GPU memory)."""
        self._spatial.destroy_publishers()
        for entity in self._outputs:
            (self.destroy_service if hasattr(entity, "srv_type") else self.destroy_publisher)(entity)
        self._outputs = []
        self._tracker = None
        self._uninstall_log_bridge()
        gc.collect()  # the backends hold reference cycles (modules, hooks); free their tensors now
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        try:  # glibc keeps freed heap pages for reuse; hand them back so the release shows in the process's RSS
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass  # not glibc: the memory is free for the process to reuse, just not returned to the system

    # --- shutdown -----------------------------------------------------------------------------------------------
    def close(self, timeout: float = 1.0) -> bool:
        """Stop the worker before the node's publishers go away; True when it ended within ``timeout`` seconds.

        A frame still in the tracker after ``timeout`` is abandoned: once this returns nothing more is published
        (the worker checks its stop flag under the publish lock, which :meth:`_deactivate` waits for), so a frame's
        outputs are published whole or not at all. ``ros2 launch`` escalates to SIGTERM then SIGKILL after 5 s;
        stopping must fit well inside that even in the middle of a long frame.
        """
        ended = self._deactivate(timeout=timeout, warn=False)
        self._uninstall_log_bridge()
        return ended

    def _uninstall_log_bridge(self) -> None:
        if self._log_handler is not None:
            logbridge.uninstall(self._log_handler)
            self._log_handler = None


def main(args=None) -> int:
    """Entry point of ``ros2 run mastsam_ros tracker`` and the ``tracker`` console script.

    ``tracker --managed``: the lifecycle node (mastsam_ros/node/lifecycle.py), which starts unconfigured.
    """
    rclpy.init(args=args)
    node = None
    code = 0
    managed = "--managed" in rclpy.utilities.remove_ros_args(sys.argv if args is None else args)[1:]
    try:
        if managed:
            from mastsam_ros.node.lifecycle import ManagedTrackerNode  # noqa: PLC0415 - imports this module

            node = ManagedTrackerNode()
        else:
            node = TrackerNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or SIGTERM: rclpy's signal handler shut the context down; fall through to cleanup
    except RCLError:
        # The signal can land while the executor builds its wait set: rcl then reports the context it just lost.
        # That is the same clean stop; any other rcl failure is not.
        if rclpy.ok():
            raise
    except (MastSamError, ParameterException, ImportError) as e:
        # Invalid parameters, a missing backend or unbuilt messages: say what, and exit non-zero without a trace.
        (node.get_logger() if node else rclpy.logging.get_logger("tracker")).fatal(str(e))
        code = 1
    finally:
        abandoned = False
        if node is not None:
            abandoned = not node.close()
            if abandoned:
                # Straight to stderr: the signal already shut the context down, so /rosout is gone.
                print("[WARN] [tracker]: stopping in the middle of a frame: that frame is abandoned", file=sys.stderr)
            node.destroy_node()
        rclpy.try_shutdown()
    if abandoned:
        # The worker thread is still inside the tracker (numpy / OpenCV / torch); interpreter teardown would wait
        # for it or tear modules down under it. Nothing is left to publish or save: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
