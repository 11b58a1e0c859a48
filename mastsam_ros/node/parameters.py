"""Parameters of the ``tracker`` node: ``node.*`` (:class:`NodeSection`, the ROS front end's own; the core never
sees them), and declaring any config field as a ROS parameter with a ParameterDescriptor built from its metadata, so
that node parameters are declared and validated by exactly the same code as the core's (mastsam_ros/core/config.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

# _param: the core's field factory (description, range, choices, read_only metadata)
from mastsam_ros.core.config import Config, ConfigError, validate
from mastsam_ros.core.config import config_field as _param
from mastsam_ros.node import inputs


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
        "History depth of the image subscription (keep-last). Frames the tracker has no time for are replaced at"
        " the stream's one-slot entrance either way (counted as frames_dropped); a deeper queue lets frames that arrive"
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
        True, "Prepare the next frame (segmenter embedding, with the matcher's flow beside it) while this one is"
        " tracked, so the encoder runs beside the tracking (a GPU stays busy); outputs stay in frame order, latency"
        " grows by up to a frame. Off: the same stream with nothing prepared ahead (the step embeds and matches), the"
        " lowest latency; config/cpu.yaml turns it off (on a CPU the encoder needs the cores the other stages use).",
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


def declare_all(node, fields, section=None):
    """Declare each ``(name, field, default)`` as a parameter of ``node`` (the params file overrides defaults) and
    return the filled config: ``section`` (a dataclass such as :class:`NodeSection`), or a new :class:`Config`."""
    target = section if section is not None else Config()
    for name, fld, default in fields:
        value = node.declare_parameter(name, default, descriptor(name, fld)).value
        try:
            value = validate(name, fld, value)  # choices have no ROS descriptor; check them here too
        except ConfigError as e:
            raise ConfigError(f"parameter {e}") from None
        if section is not None:
            setattr(section, name.split(".", 1)[1], value)
        else:
            target.set(name, value)
    return target
