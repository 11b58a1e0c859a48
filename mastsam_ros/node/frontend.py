"""The ``tracker`` node's front end: one object that holds everything the node builds (parameters, publishers,
services, the stream and its tracker, counters, diagnostics), driven by a plain Node
(:class:`mastsam_ros.node.tracker_node.TrackerNode`) or a LifecycleNode
(:class:`mastsam_ros.node.lifecycle.ManagedTrackerNode`). Images in, stable instance masks out.

Topics (relative names, remap them in launch):
- in  ``image`` (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8; padded rows allowed), or with
  ``node.use_compressed`` ``<image>/compressed`` (sensor_msgs/CompressedImage); with ``node.depth.enabled`` also
  ``depth`` and ``camera_info`` (mastsam_ros/node/spatial.py);
- out ``~/labels`` (sensor_msgs/Image mono16, 0 = background, value = ``Instance.label``), ``~/instances``
  (mastsam_ros/InstanceArray), ``~/events`` (mastsam_ros/TrackEventArray: the frame's track events, only for frames
  with events or a scene cut), ``~/overlay`` (rgb8, rendered only while someone subscribes), ``/diagnostics``, and
  the 3D outputs of spatial.py. Every output carries the input image's header.
Services: ``~/reset`` and ``~/resegment`` (std_srvs/Trigger; with the cadence matcher a re-segmentation also makes
the next frame an anchor frame: ``Tracker.request_keyframe``).

Phases, run by the driver (the object's state is what it holds: a tracker once configured, a stream while active):
- created: parameters declared and checked; nothing built;
- :meth:`configure`: the tracker and its models, the publishers (lifecycle publishers on a LifecycleNode), the
  services; parameter changes pending until then are dropped, the new tracker is built with them;
- :meth:`activate`: the stream (mastsam_ros/core/stream.py: decode, prepare ahead with ``node.pipeline``, track
  and publish, one thread each), the subscriptions, the diagnostics timer;
- :meth:`deactivate`: unsubscribe, close the stream (its frame in progress is waited for, then abandoned: nothing
  is published once this returns);
- :meth:`cleanup`: destroy the outputs, close the tracker, free its memory.

Threading: a subscription callback only checks the message (O(1)) and hands it to the stream's entrance, a one-slot
buffer: a newer frame replaces one still waiting there (counted as dropped), so the node never works through a
backlog. Outcomes come back in frame order in the stream's tracking thread, which publishes each frame's outputs
together. Parameter changes are validated in the on-set callback and applied in the post-set one; core fields reach
the tracker between two frames (``Tracker.configure``, in the tracking thread). No callback lets an exception
escape: it is logged (throttled) and counted.

Counts (:meth:`counts`), at every moment: ``received = processed + failed + dropped + refused + abandoned +
in_flight``: refused by the callback (bad input, a repeated stamp, not active), dropped at the stream's entrance,
failed (a counted error in the frame's place), abandoned by a deactivation, or processed (published).
"""

from __future__ import annotations

import copy
import ctypes
import gc
import os
import sys
import threading
import time
from collections import Counter, deque
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from mastsam_ros.core.config import Config, ConfigError, validate
from mastsam_ros.core.errors import BadImage, FrameTooSmall, MastSamError
from mastsam_ros.core.frames import MIN_SIDE
from mastsam_ros.core.render import overlay
from mastsam_ros.core.stream import Outcome, Stream
from mastsam_ros.core.tracker import Tracker
from mastsam_ros.node import inputs, logbridge
from mastsam_ros.node.conversions import (
    check_image, events_msg, image_msg, image_to_rgb, instance_array_msg, rclpy_types, stamp_ns,
)
from mastsam_ros.node.interfaces import load_messages
from mastsam_ros.node.parameters import NodeSection, declare_all, descriptor, node_fields
from mastsam_ros.node.spatial import Spatial

THROTTLE_S = 5.0  # seconds between two warnings from the same place
# Counters: of bad input (refused or failed, by kind: the diagnostics level reacts to them), of other kinds and
# events, and the frame counts published as frames_<name>.
BAD_INPUT = ("bad_encoding", "bad_size", "bad_data", "bad_frame", "too_small", "too_large", "stamp_backwards",
             "stamp_repeated")
KINDS = (*BAD_INPUT, "inactive", "tracker_errors", "callback_errors", "keyframes", "resets", "cuts", "size_changes",
         "downscaled", "parameter_changes", "backend_rebuilds")
FRAMES = ("received", "processed", "failed", "dropped", "refused", "abandoned", "in_flight", "lost_transport")
# Track events of the published frames, counted by kind as events_<kind> (mastsam_ros/core/types.py, TrackEvent),
# and the frames with a scene cut as cuts.
EVENTS = ("born", "hidden", "dormant", "reidentified", "merged", "retired")


def error_counter(e: BaseException) -> str:
    """The counter a frame's failure is counted under."""
    if isinstance(e, BadImage):
        return e.kind
    if isinstance(e, FrameTooSmall):  # the core's own size check: a counted refusal, like the node's
        return "too_small"
    if isinstance(e, MastSamError):
        return "bad_frame"
    return "tracker_errors"


class TrackerFrontEnd:
    """See the module docstring. Declares its parameters on ``node`` at construction; raises ConfigError (a
    ValueError) on an invalid parameter set."""

    def __init__(self, node) -> None:
        self.node = node
        self._log = node.get_logger()
        self._msgs = rclpy_types(load_messages())
        # _lock guards counters and pending changes, and is held across a submit so that a frame counted as received
        # is in the stream's counts at the same moment; lock order: _lock, then the stream's own lock.
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()  # held while publishing one frame's outputs; deactivate waits for it
        self._counters: Counter[str] = Counter()
        self._events: Counter[str] = Counter()  # track events of published frames, by kind
        self._refused: Counter[str] = Counter()  # by kind, frames refused before the stream's entrance
        self._past: Counter[str] = Counter()  # final counts of the streams of earlier activations
        self._latencies: deque[float] = deque(maxlen=300)  # ms, arrival -> published, newest frames
        self._published_at: deque[float] = deque(maxlen=300)  # monotonic s, for the output rate
        self._previous: dict[str, int] = {}  # counts at the last diagnostics message
        self._tracks = 0
        self._pending: dict[str, Any] = {}
        self._gaps = inputs.StampGaps()
        self._lost_source = "middleware"  # how frames lost in transport are counted: "middleware" or "stamps"
        self._dds_profile = inputs.dds_profile_in_use(os.environ)
        self._last_stamp: int | None = None
        self._last_shape: tuple[int, int] | None = None
        self._log_handler = None  # the core's log records -> this node's logger, while configured
        self.tracker: Tracker | None = None
        self.stream: Stream | None = None
        self._closing: Stream | None = None  # being closed by deactivate: still counted live
        self._retired: Stream | None = None  # closed while still in a frame (its thread ends after it)
        self._stop = threading.Event()  # set when the current activation ends: its stream publishes no more
        self._pubs: dict[str, Any] = {}
        self._services: list = []
        self._inputs: list = []  # subscriptions and timers of the active node
        self._create_pub = getattr(node, "create_lifecycle_publisher", node.create_publisher)
        self._destroy_pub = getattr(node, "destroy_lifecycle_publisher", node.destroy_publisher)

        self.cfg = declare_all(self.node, Config().fields())
        self.section = declare_all(self.node, node_fields(NodeSection()), section=NodeSection())
        self.spatial = Spatial(node, descriptor)  # node.depth.*, node.objects.*: the 3D inputs and outputs
        self.cfg.check()
        self._core_names = {name for name, _, _ in self.cfg.fields()}
        self._node_fields = {name: fld for name, fld, _ in node_fields(self.section)}
        node.add_on_set_parameters_callback(self._on_set_parameters)
        node.add_post_set_parameters_callback(self._after_set_parameters)
        self._input_topic = node.resolve_topic_name("image")
        if self._dds_profile.startswith("none"):
            self._log.warning(f"DDS profile {self._dds_profile}")
        else:
            self._log.info(f"DDS profile: {self._dds_profile}")

    # --- phases -------------------------------------------------------------------------------------------------
    def configure(self) -> None:
        """Build the tracker and its models, the publishers and the services. Raises what the backends raise (the
        driver then calls :meth:`cleanup` for what was built)."""
        self._log_handler = logbridge.install(self._log, THROTTLE_S)  # backends log while they are built
        with self._lock:
            cfg = copy.deepcopy(self.cfg)
            self._pending.clear()  # already in cfg: applied again they would rebuild backends for nothing
        try:
            self.tracker = Tracker(cfg)
        except BaseException:
            self._uninstall_log_bridge()
            raise
        self._last_stamp = self._last_shape = None
        self._gaps.reset()
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        create = self._create_pub
        self._pubs = {"labels": create(Image, "~/labels", qos),
                      "instances": create(self._msgs.InstanceArray, "~/instances", 10),
                      "events": create(self._msgs.TrackEventArray, "~/events", QoSProfile(
                          history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)),
                      "overlay": create(Image, "~/overlay", qos),
                      "diagnostics": create(DiagnosticArray, "/diagnostics", 10)}
        self.spatial.configure(self.tracker.matcher, load_messages(), qos, create)
        self._services = [self.node.create_service(Trigger, "~/reset", self._on_reset),
                          self.node.create_service(Trigger, "~/resegment", self._on_resegment)]

    def activate(self) -> None:
        """Start the stream, subscribe, start the diagnostics timer."""
        self._stop = stop = threading.Event()  # this activation's: a stream that outlives it never sees the next
        tracker = self.tracker
        stream = Stream(tracker, lambda out: self._deliver(out, stop), decode=self._decode,
                        ahead=self.section.pipeline, between=lambda: self._apply_pending(tracker),
                        name="mastsam_tracker", **self.spatial.stream_options())
        with self._lock:
            self.stream = stream
        node = self.node
        in_qos = inputs.input_qos(self.section.qos, self.section.input_depth)
        self._input_topic = node.resolve_topic_name("image")
        self._gaps.reset()  # a new activation: stamps from before it are not compared for losses

        def subscribe(events):
            if self.spatial.depth_input:
                self.spatial.subscribe(
                    lambda image, depth, info: self._on_image(image, self.spatial.check(image, depth, info)), in_qos,
                    image_events=events)
            elif self.section.use_compressed:
                # image_transport's convention: the compressed stream is <base topic>/compressed, after remapping.
                self._input_topic = node.resolve_topic_name("image") + "/compressed"
                self._inputs.append(node.create_subscription(CompressedImage, self._input_topic, self._on_compressed,
                                                             in_qos, event_callbacks=events))
            else:
                self._inputs.append(node.create_subscription(Image, "image", self._on_image, in_qos,
                                                             event_callbacks=events))

        try:  # losses in transport as the middleware reports them (sequence numbers the input never saw) ...
            subscribe(SubscriptionEventCallbacks(message_lost=self._on_message_lost))
            self._lost_source = "middleware"
        except UnsupportedEventTypeError:  # ... or, where the RMW cannot, estimated from the stamps
            subscribe(None)
            self._lost_source = "stamps"
        self._inputs.append(node.create_timer(self.section.diagnostics_period, self._publish_diagnostics))
        c = self.cfg
        ahead = str(self.tracker.segmenter.embeds_ahead).lower()
        self._log.info(f"tracking {self._input_topic} ({self.section.qos}) with segmenter {c.segmenter.backend} on "
                       f"{c.segmenter.device}, matcher {c.matcher.backend}"
                       + (f", pipelined (segmenter embeds ahead: {ahead})" if self.section.pipeline else ""))

    def deactivate(self, timeout: float = 60.0, warn: bool = True) -> bool:
        """Unsubscribe and close the stream: its frame in progress is waited for up to ``timeout`` s, then abandoned
        (nothing is published once this returns; frames not yet published count as abandoned). True when the
        stream's threads have ended."""
        self.spatial.unsubscribe()
        for entity in self._inputs:
            (self.node.destroy_timer if hasattr(entity, "timer_period_ns") else self.node.destroy_subscription)(entity)
        self._inputs = []
        self._stop.set()
        with self._lock:
            stream, self.stream, self._closing = self.stream, None, self.stream
        ended = True
        if stream is not None:
            ended = stream.close(timeout=timeout)  # its counts are final from here on
            with self._lock:
                c = stream.counts()
                self._past.update({k: c[k] for k in ("dropped", "delivered", "paired_ahead", "pair_used",
                                                     "pair_not_used")})
                self._past["abandoned"] += c["in_flight"]
                self._closing = None
            if not ended:
                self._retired = stream
                if warn:
                    self._log.warning(f"the stream is still in a frame after {timeout:.0f} s; it stops after it")
        with self._publish_lock:  # a frame being published completes; none is published after this
            pass
        return ended

    def cleanup(self) -> None:
        """Destroy the outputs, close the tracker and release it and its models (and torch's cached GPU memory)."""
        self.spatial.destroy_publishers(self._destroy_pub)
        for pub in self._pubs.values():
            self._destroy_pub(pub)
        for srv in self._services:
            self.node.destroy_service(srv)
        self._pubs, self._services = {}, []
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            tracker.close()
        del tracker
        if self._retired is not None and not self._retired.is_alive():
            self._retired = None  # it holds the tracker too
        self._uninstall_log_bridge()
        gc.collect()  # the backends hold reference cycles (modules, hooks); free their tensors now
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        try:  # glibc keeps freed heap pages for reuse; hand them back so the release shows in the process's RSS
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass  # not glibc: the memory is free for the process to reuse, just not returned to the system

    def close(self, timeout: float = 1.0) -> bool:
        """Deactivate and clean up as far as they apply (shutdown); True when no frame is left in the tracker after
        ``timeout`` s. A frame still there is abandoned (nothing more is published) and the tracker is then not
        closed under it. ``ros2 launch`` escalates to SIGTERM then SIGKILL after 5 s: this fits well inside."""
        ended = self.deactivate(timeout=timeout, warn=False)
        if self._retired is not None and self._retired.is_alive():
            ended = False
        if ended and self.tracker is not None:
            self.cleanup()
        self._uninstall_log_bridge()
        return ended

    def _uninstall_log_bridge(self) -> None:
        if self._log_handler is not None:
            logbridge.uninstall(self._log_handler)
            self._log_handler = None

    # --- parameters ---------------------------------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate only: the change with the core's rules on a copy; refuse all of it with the core's message if any
        part fails. rclpy then stores the values and calls :meth:`_after_set_parameters`, which applies them."""
        try:
            trial = copy.deepcopy(self.cfg)
            spatial_fields = self.spatial.names()
            for p in params:
                if p.name in self._core_names:
                    trial.set(p.name, p.value)
                elif p.name in self._node_fields:
                    validate(p.name, self._node_fields[p.name], p.value)
                elif p.name in spatial_fields:
                    validate(p.name, spatial_fields[p.name], p.value)
            trial.check()
        except ConfigError as e:
            return SetParametersResult(successful=False, reason=str(e))
        except Exception as e:  # noqa: BLE001 - a parameter callback must answer, never raise
            return SetParametersResult(successful=False, reason=f"{type(e).__name__}: {e}")
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params) -> None:
        """Post-set: apply accepted values. ``node.*`` at once; core fields are kept for the tracking thread, which
        hands them to ``Tracker.configure`` between two frames; while no tracker is built they only update the
        config it will be built from (:meth:`configure` drops what is pending)."""
        try:
            spatial_fields = self.spatial.names()
            with self._lock:
                for p in params:
                    if p.name in self._core_names:
                        self.cfg.set(p.name, p.value)
                        self._pending[p.name] = self.cfg.as_dict()[p.name]
                    elif p.name in self._node_fields:
                        setattr(self.section, p.name.split(".", 1)[1], validate(p.name, self._node_fields[p.name],
                                                                               p.value))
                    elif p.name in spatial_fields:
                        self.spatial.set_parameter(p.name, validate(p.name, spatial_fields[p.name], p.value))
                if self.tracker is None:
                    self._pending.clear()
                stream = self.stream
            if stream is not None and any(p.name in spatial_fields for p in params):
                o = self.spatial.objects
                stream.set_objects(pointmap_min_conf=o.pointmap_min_conf, trim=o.extent_trim)
        except Exception as e:  # noqa: BLE001 - validated already; never let a callback raise
            self._callback_error(e)

    def _apply_pending(self, tracker: Tracker) -> None:
        """Tracking thread, between two frames: hand accepted parameter changes to the stream's tracker."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            rebuilt = tracker.configure(pending)
        except Exception as e:  # noqa: BLE001 - a failed rebuild must not stop the stream
            self._count("tracker_errors")
            self._log.error(f"applying {sorted(pending)} failed: {type(e).__name__}: {e}")
            return
        self._count("parameter_changes", n=len(pending))
        self._count("backend_rebuilds", n=len(rebuilt))
        self._log.info(f"applied {', '.join(f'{k}={v}' for k, v in pending.items())}"
                       + (f"; rebuilt {', '.join(rebuilt)}" if rebuilt else ""))

    # --- input callbacks (executor thread): O(1), never raise ----------------------------------------------------
    def _on_image(self, msg: Image, extra=None) -> None:
        """``extra``: the frame's checked (depth, camera_info) from the synchronised input, or None."""
        self._enter(msg, extra, raw=True)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._enter(msg, None, raw=False)  # decoding is real work: the stream does it and counts failures

    def _enter(self, msg, extra, raw: bool) -> None:
        """Check one message and hand it to the stream's entrance, or refuse it; either way it is counted."""
        refusal, lost = None, 0
        try:
            if self._lost_source == "stamps":
                lost = self._gaps.update(stamp_ns(msg.header))  # every received message counts, good or bad
            if raw:
                check_image(msg)
                self._check_size(msg.width, msg.height)
            refusal = self._check_stamp(msg.header)
        except BadImage as e:
            refusal = e.kind
            self._log.warning(f"skipping image: {e}", throttle_duration_sec=THROTTLE_S)
        except Exception as e:  # noqa: BLE001 - a malformed message must not kill spin
            refusal = "callback_errors"
            self._log.error(f"callback failed: {type(e).__name__}: {e}", throttle_duration_sec=THROTTLE_S)
        with self._lock:
            self._counters["received"] += 1
            self._counters["lost_transport"] += lost
            if refusal is None and self.stream is None:
                refusal = "inactive"
            if refusal is None:
                self.stream.submit((msg, extra), arrived=time.monotonic())  # a frame it replaces: dropped
            else:
                self._refused[refusal] += 1

    def _on_message_lost(self, info) -> None:
        """The middleware's message-lost event of the image subscription: samples of a matched publisher that never
        reached this reader (best effort: a gap in the publisher's sequence numbers)."""
        try:
            self._count("lost_transport", n=int(info.total_count_change))
        except Exception as e:  # noqa: BLE001
            self._callback_error(e)

    def _check_size(self, width: int, height: int) -> None:
        """Raise :class:`BadImage` (``too_small``) when the core would refuse a ``width`` x ``height`` frame at the
        size it is processed at (after ``node.max_input_pixels``): under its minimum side, or under what the
        matcher can process (the flow matcher's bound comes from OpenCV DIS, see core/matchers/flow.py)."""
        w, h = inputs.fit_pixels(width, height, self.section.max_input_pixels)
        if min(w, h) < MIN_SIDE:
            raise BadImage("too_small", f"image of {width}x{height} pixels processed at {w}x{h}: a side is under "
                                        f"{MIN_SIDE} px")
        try:
            self.tracker.matcher.check_size(h, w)
        except FrameTooSmall as e:
            raise BadImage("too_small", str(e)) from None

    def _check_stamp(self, header) -> str | None:
        """Count stamps that repeat or go backwards; the refusal's counter when the frame must be skipped."""
        ns = stamp_ns(header)
        last, self._last_stamp = self._last_stamp, ns
        if last is None or ns == 0:  # drivers without a clock send 0: nothing to compare
            return None
        if ns == last:
            # Most often the same frame delivered twice; a second answer under one stamp would confuse consumers
            # that synchronise by exact stamp.
            self._log.warning(f"skipping image with repeated stamp {ns} ns", throttle_duration_sec=THROTTLE_S)
            return "stamp_repeated"
        if ns < last:
            self._count("stamp_backwards")
            action = "resetting the tracker" if self.section.reset_on_time_jump else "continuing"
            self._log.warning(f"input stamp went backwards by {(last - ns) / 1e9:.3f} s: {action}",
                              throttle_duration_sec=THROTTLE_S)
            if self.section.reset_on_time_jump:
                self.tracker.request_reset()
        return None

    # --- services -----------------------------------------------------------------------------------------------
    def _on_reset(self, request, response):
        self.tracker.request_reset()
        self._last_stamp = None
        self._gaps.reset()
        response.success, response.message = True, "the tracker resets before the next frame"
        return response

    def _on_resegment(self, request, response):
        anchor = self.tracker.request_keyframe()
        response.success = True
        response.message = "the next frame is fully re-segmented" + (" and an anchor frame" if anchor else "")
        return response

    # --- the stream's threads -----------------------------------------------------------------------------------
    def _decode(self, payload) -> np.ndarray:
        """Decoding thread: one message -> H x W x 3 uint8 RGB with at most ``node.max_input_pixels`` pixels."""
        msg, _ = payload
        limit = self.section.max_input_pixels
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
            self._log.warning(f"image of {width}x{height} pixels is over node.max_input_pixels={limit}: processed at "
                              f"{rgb.shape[1]}x{rgb.shape[0]} (outputs at that size)", throttle_duration_sec=THROTTLE_S)
        return rgb

    def _deliver(self, out: Outcome, stop: threading.Event) -> None:
        """Tracking thread, each outcome in frame order: publish it, or count its failure. Every outcome is counted
        once: processed, failed, or unpublished (``stop``: its activation ended first)."""
        if out.error is not None:
            kind = error_counter(out.error)
            self._count("failed", kind)
            if kind == "tracker_errors":
                self._log.error(f"frame failed: {type(out.error).__name__}: {out.error}",
                                throttle_duration_sec=THROTTLE_S)
            else:
                self._log.warning(f"skipping image: {out.error}", throttle_duration_sec=THROTTLE_S)
            return
        try:
            self._publish(out, stop)
        except Exception as e:  # noqa: BLE001 - one frame's outputs must not stop the stream
            self._count("failed", "callback_errors")
            self._log.error(f"publishing a frame failed: {type(e).__name__}: {e}", throttle_duration_sec=THROTTLE_S)

    def _publish(self, out: Outcome, stop: threading.Event) -> None:
        """All of one frame's outputs (2D and 3D) at once under the publish lock, unless ``stop`` was set."""
        msg, result = out.payload[0], out.result
        shape = out.frame.shape[:2]
        if self._last_shape is not None and shape != self._last_shape:
            self._count("size_changes")
            self._log.warning(f"image size changed from {self._last_shape[1]}x{self._last_shape[0]} to "
                              f"{shape[1]}x{shape[0]}: tracker reset", throttle_duration_sec=THROTTLE_S)
        self._last_shape = shape
        T, pubs = self._msgs, self._pubs
        outputs = [(pubs["labels"], image_msg(T, msg.header, out.labels)),
                   (pubs["instances"], instance_array_msg(T, msg.header, result, out.label_of)),
                   *self.spatial.outputs(msg.header, out)]
        if result.events or result.cut:
            outputs.append((pubs["events"], events_msg(T, msg.header, result)))
        if pubs["overlay"].get_subscription_count() > 0:
            outputs.append((pubs["overlay"], image_msg(T, msg.header, overlay(out.frame, result))))
        with self._publish_lock:  # all of a frame's outputs or none: deactivate never cuts a frame's set in half
            if stop.is_set():
                self._count("unpublished")
                return
            for pub, m in outputs:
                pub.publish(m)
        now = time.monotonic()
        with self._lock:
            c = self._counters
            c["processed"] += 1
            c["keyframes"] += int(result.keyframe)
            c["resets"] += int(result.reset)
            c["cuts"] += int(result.cut)
            self._events.update(e.kind for e in result.events)
            self._tracks = len(result.tracks)
            self._latencies.append((now - out.arrived) * 1e3)
            self._published_at.append(now)

    # --- counts and diagnostics ---------------------------------------------------------------------------------
    def _count(self, *keys: str, n: int = 1) -> None:
        with self._lock:
            for key in keys:
                self._counters[key] += n

    def _callback_error(self, e: Exception) -> None:
        self._count("callback_errors")
        self._log.error(f"callback failed: {type(e).__name__}: {e}", throttle_duration_sec=THROTTLE_S)

    def counts(self) -> dict[str, int]:
        """Cumulative counts since the node started, over every activation, taken at one moment (any thread):
        the frames (:data:`FRAMES`: ``received = processed + failed + dropped + refused + abandoned + in_flight``;
        in flight: past the entrance and not yet counted otherwise), each kind (:data:`KINDS`: refusals, failures,
        keyframes, resets, cuts...), the track events of the published frames by kind (``events_born``...:
        :data:`EVENTS`) and the pairs computed ahead (``paired_ahead``, ``pair_used``, ``pair_not_used``)."""
        with self._lock:
            c, s = Counter(self._counters), Counter(self._past)
            for stream in (self.stream, self._closing):
                if stream is not None:
                    live = stream.counts()
                    s.update({k: live[k] for k in ("dropped", "delivered", "in_flight", "paired_ahead", "pair_used",
                                                   "pair_not_used")})
            refused = Counter(self._refused)
            events = Counter(self._events)
        counted = c["processed"] + c["failed"] + c["unpublished"]  # outcomes delivered and counted by _deliver
        out = {k: c[k] + refused[k] for k in KINDS}
        out.update(received=c["received"], processed=c["processed"], failed=c["failed"], dropped=s["dropped"],
                   refused=sum(refused.values()), abandoned=s["abandoned"] + c["unpublished"],
                   in_flight=s["in_flight"] + s["delivered"] - counted, lost_transport=c["lost_transport"],
                   paired_ahead=s["paired_ahead"], pair_used=s["pair_used"], pair_not_used=s["pair_not_used"])
        out.update({f"events_{k}": events[k] for k in EVENTS})
        return out

    def diagnostics(self) -> DiagnosticStatus:
        """One DiagnosticStatus: rates, latencies, the stream's figures, counts (cumulative), tracks and backends."""
        now = time.monotonic()
        counts = self.counts()
        with self._lock:
            recent = [t for t in self._published_at if now - t <= 5.0]
            latencies = list(self._latencies)[-len(recent):] if recent else []
            tracks = self._tracks
        previous, self._previous = self._previous, counts
        new = {k: counts[k] - previous.get(k, 0) for k in (*KINDS, "lost_transport")}
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0

        level, message = DiagnosticStatus.OK, "tracking" if recent else "waiting for images"
        if new["tracker_errors"] or new["callback_errors"]:
            level, message = DiagnosticStatus.ERROR, "errors while processing frames (see log)"
        elif any(new[k] for k in BAD_INPUT) or new["size_changes"]:
            level, message = DiagnosticStatus.WARN, "bad input: " + ", ".join(
                f"{k} +{new[k]}" for k in (*BAD_INPUT, "size_changes") if new[k])
        spatial_bad = self.spatial.new_bad()
        if level == DiagnosticStatus.OK and spatial_bad:
            level, message = DiagnosticStatus.WARN, "bad depth input: " + ", ".join(spatial_bad)
        if level == DiagnosticStatus.OK and new["lost_transport"] > 0:
            level, message = DiagnosticStatus.WARN, (f"frames lost in transport: +{new['lost_transport']} "
                                                     f"(docs/ROS.md, \"Delivery\")")

        def ms(values, f) -> str:
            return f"{f(values):.1f}" if len(values) else "nan"

        stream, tracker, c = self.stream, self.tracker, self.cfg
        st = stream.stats() if stream is not None else {}
        values = {
            "rate_hz": f"{rate:.2f}",
            "latency_ms_mean": ms(latencies, np.mean),
            "latency_ms_median": ms(latencies, np.median),
            "latency_ms_p95": ms(latencies, lambda v: np.percentile(v, 95)),
            "latency_ms_max": ms(latencies, np.max),
            "processing_ms_mean": f"{st.get('track_ms_mean', float('nan')):.1f}",
            "matcher_ms_median": f"{st.get('matcher_ms_median', float('nan')):.1f}",
            "pipeline": str(self.section.pipeline).lower(),
            **{f"pipeline_{k}": f"{st.get(k, float('nan')):.1f}"
               for k in ("decode_ms_mean", "prepare_ms_mean", "track_ms_mean", "wait_ms_mean", "flow_ms_median")},
            "pipeline_embeds_ahead": str(bool(self.section.pipeline and tracker is not None
                                              and tracker.segmenter.embeds_ahead)).lower(),
            **{f"pipeline_{k}": str(counts[k]) for k in ("paired_ahead", "pair_used", "pair_not_used")},
            **{f"frames_{k}": str(counts[k]) for k in FRAMES},
            **{k: str(counts[k]) for k in KINDS},
            **{f"events_{k}": str(counts[f"events_{k}"]) for k in EVENTS},
            "tracks": str(tracks),
            "segmenter": c.segmenter.backend,
            "matcher": c.matcher.backend,
            "device": c.segmenter.device,
            "input_topic": self._input_topic,
            "qos": self.section.qos,
            "lost_transport_source": self._lost_source,
            "dds_profile": self._dds_profile,
            **self._backend_settings(tracker),
            **self.spatial.diagnostics(),
        }
        return DiagnosticStatus(level=level, name=f"{self.node.get_name()}: tracker", message=message,
                                hardware_id=self.node.get_fully_qualified_name(),
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])

    @staticmethod
    def _backend_settings(t: Tracker | None) -> dict[str, str]:
        """What the built backends hold, read back from them (``matcher.max_side``...), not what was last set."""
        if t is None:
            return {}
        return {f"{section}.{k}": str(v) for section, backend in
                (("segmenter", t.segmenter), ("matcher", t.matcher), ("clustering", t.kmeans))
                for k, v in backend.settings().items()}

    def _publish_diagnostics(self) -> None:
        try:
            msg = DiagnosticArray(status=[self.diagnostics()])
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self._pubs["diagnostics"].publish(msg)
        except Exception as e:  # noqa: BLE001
            self._callback_error(e)
