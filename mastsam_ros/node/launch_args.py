"""What launch/tracker.launch.py decides, as plain functions (no ``launch`` import), so it is tested anywhere.

The launch file reads its arguments, calls :func:`plan` and turns the :class:`LaunchPlan` into actions; every check
here runs before any process starts, so a bad argument or a missing rviz2 stops the launch with nothing left behind.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mastsam_ros.node.inputs import DDS_PROFILES, DEFAULT_DDS_PROFILE, PROFILE_ENV, dds_environment

TRUE, FALSE = ("true", "1"), ("false", "0")  # what launch's own IfCondition accepts, case-insensitively
QOS_CHOICES = ("sensor_data", "reliable")
# udp_input makes every writer send to the node over UDPv4; the kernel caps the node's socket receive buffer at
# net.core.rmem_max. 1920x1080 rgb8 frames at 30 Hz arrived with a cap of 4 MiB, not with Linux's usual 208 KB
# (docs/ROS.md, "Delivery").
UDP_INPUT_RMEM_MAX = 4 * 1024 * 1024
RMEM_MAX_FILE = Path("/proc/sys/net/core/rmem_max")


class LaunchArgumentError(ValueError):
    """A launch argument the launch file refuses; the message names the argument and what it accepts."""


def choices(param: str) -> tuple[str, ...]:
    """The values a config field with choices accepts (``matcher.backend``), from the config metadata: the launch
    file names them in its argument descriptions, so they cannot drift from what the node accepts."""
    from mastsam_ros.core.config import Config

    for name, fld, _ in Config().fields():
        if name == param and fld.metadata.get("choices"):
            return tuple(fld.metadata["choices"])
    raise KeyError(f"{param} is not a config field with choices")


def parse_bool(name: str, text: str) -> bool | None:
    """``true``/``false`` (or ``1``/``0``, any case) -> bool; empty -> None (not given); anything else is an error."""
    value = text.strip().lower()
    if not value:
        return None
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise LaunchArgumentError(f"launch argument {name}:={text!r} is not a boolean: use true or false")


def resolve_params_file(text: str, share_dir: Path, cwd: Path | None = None) -> Path:
    """An absolute params file path: absolute as given, else relative to the working directory, else relative to
    the package share (``config/cpu.yaml`` works from anywhere). Refuses a file found in none of them."""
    given = Path(text.strip()).expanduser()
    if not text.strip():
        raise LaunchArgumentError("launch argument params_file is empty")
    candidates = [given] if given.is_absolute() else [(cwd or Path.cwd()) / given, share_dir / given]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise LaunchArgumentError(
        f"params_file {text!r} not found (looked at: {', '.join(str(c) for c in candidates)})")


def rviz_missing(which=shutil.which) -> str | None:
    """None when rviz2 can be started, else a message saying it is not installed."""
    if which("rviz2"):
        return None
    try:
        from ament_index_python.packages import get_package_prefix

        prefix = Path(get_package_prefix("rviz2"))
        if (prefix / "lib" / "rviz2" / "rviz2").exists():
            return None
    except Exception:  # noqa: BLE001, S110 - no ament index, or rviz2 not in it: missing either way
        pass
    return "rviz:=true but rviz2 is not installed (apt install ros-$ROS_DISTRO-rviz2), or start without rviz:=true"


def read_rmem_max(path: Path = RMEM_MAX_FILE) -> int | None:
    """net.core.rmem_max in bytes, or None where it cannot be read (not Linux)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def rmem_warning(profile: str, rmem_max=read_rmem_max) -> str | None:
    """A warning when the udp_input profile is chosen and the kernel caps UDP receive buffers below what full-size
    frames need, else None."""
    if profile != "udp_input":
        return None
    value = rmem_max()
    if value is None or value >= UDP_INPUT_RMEM_MAX:
        return None
    return (f"dds_profile:=udp_input receives camera frames over UDP, but net.core.rmem_max is {value} bytes: frames "
            f"over a few hundred KB will be lost. Raise it (sudo sysctl -w net.core.rmem_max={UDP_INPUT_RMEM_MAX}), "
            "or give the camera driver and the node dds_profile large_data (docs/ROS.md, \"Delivery\")")


def cuda_available() -> tuple[bool, str]:
    """(whether torch sees a CUDA device, why not)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "torch.cuda.is_available() is false"
    return True, ""


def cuda_warning(devices: dict[str, str], probe=cuda_available) -> str | None:
    """A warning when any of ``devices`` ({parameter: device}) asks for CUDA and none is usable, else None.

    Checked for every device parameter whatever the backends: the classical segmenter and the flow matcher ignore
    their device, so a wrong device would otherwise go unnoticed until the backend is changed.
    """
    wanted = {k: v for k, v in devices.items() if str(v).strip().lower().startswith("cuda")}
    if not wanted:
        return None
    ok, why = probe()
    if ok:
        return None
    return (f"{', '.join(f'{k}={v}' for k, v in sorted(wanted.items()))} requested but no CUDA device is usable "
            f"({why}): a backend that uses its device will fail to start")


@dataclass
class LaunchPlan:
    params_file: Path
    overrides: dict[str, object] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    rviz: bool = False
    warnings: list[str] = field(default_factory=list)
    managed: bool = True  # the lifecycle node (tracker --managed)
    autostart: bool = True  # managed only: configure, then activate, at start
    remappings: dict[str, str] = field(default_factory=dict)  # node topic -> the topic given


def plan(args: dict[str, str], share_dir: Path, cwd: Path | None = None, which=shutil.which,
         cuda=cuda_available, rmem_max=read_rmem_max) -> LaunchPlan:
    """Check the launch arguments (strings as given) and say what to start; raise :class:`LaunchArgumentError`."""
    from mastsam_ros.core.config import Config, ConfigError

    params_file = resolve_params_file(args.get("params_file", ""), share_dir, cwd)
    overrides: dict[str, object] = {}
    device = args.get("device", "").strip()
    if device:
        overrides["segmenter.device"] = overrides["matcher.device"] = device
    for arg, param in (("segmenter", "segmenter.backend"), ("matcher", "matcher.backend")):
        if args.get(arg, "").strip():
            overrides[param] = args[arg].strip()
    use_compressed = parse_bool("use_compressed", args.get("use_compressed", ""))
    if use_compressed is not None:
        overrides["node.use_compressed"] = use_compressed
    depth_enabled = parse_bool("depth_enabled", args.get("depth_enabled", ""))
    if depth_enabled is not None:
        overrides["node.depth.enabled"] = depth_enabled
    remappings = {}
    for topic in ("image", "depth", "camera_info"):
        if topic not in args:
            continue
        value = args[topic].strip()
        if not value:
            raise LaunchArgumentError(f"launch argument {topic} is empty: give a topic name")
        remappings[topic] = value
    managed = parse_bool("managed", args.get("managed", "true"))
    managed = True if managed is None else managed
    autostart = parse_bool("autostart", args.get("autostart", "true"))
    autostart = True if autostart is None else autostart
    qos = args.get("qos", "").strip()
    if qos:
        if qos not in QOS_CHOICES:
            raise LaunchArgumentError(f"launch argument qos:={qos!r}: use one of {', '.join(QOS_CHOICES)}")
        overrides["node.qos"] = qos
    rviz = bool(parse_bool("rviz", args.get("rviz", "false")))
    if rviz:
        missing = rviz_missing(which)
        if missing:
            raise LaunchArgumentError(missing)

    profile = args.get("dds_profile", DEFAULT_DDS_PROFILE).strip()
    env: dict[str, str] = {PROFILE_ENV: "none"}  # none: the node must not load its default either
    if profile and profile != "none":
        try:
            env = dds_environment(profile, share_dir / "config")
        except ValueError as e:
            raise LaunchArgumentError(f"launch argument dds_profile: {e} (or none)") from None

    try:
        cfg = Config.from_yaml(params_file, {k: v for k, v in overrides.items() if not k.startswith("node.")})
    except ConfigError as e:
        raise LaunchArgumentError(f"{params_file}: {e}") from None
    warnings = []
    w = rmem_warning(profile, rmem_max)
    if w:
        warnings.append(w)
    w = cuda_warning({"segmenter.device": cfg.segmenter.device, "matcher.device": cfg.matcher.device}, cuda)
    if w:
        warnings.append(w)
    return LaunchPlan(params_file, overrides, env, rviz, warnings, managed, autostart, remappings)


__all__ = ["DDS_PROFILES", "DEFAULT_DDS_PROFILE", "LaunchArgumentError", "LaunchPlan", "choices", "parse_bool", "plan",
           "resolve_params_file", "rviz_missing", "cuda_warning", "rmem_warning", "read_rmem_max"]
