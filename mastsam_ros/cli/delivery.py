"""``python -m mastsam_ros.cli.delivery``: how many camera frames reach the node's image callback over real DDS.

    python -m mastsam_ros.cli.delivery table --seconds 3 --markdown out/delivery.md
    python -m mastsam_ros.cli.delivery table --sizes 1280x720 --rates 30 --pub-qos sensor_data \
        --transports default,node:profile:udp_input --receiver node

Each measurement runs a publisher in one process (rgb8 sensor_msgs/Image, a fixed random frame, stamped with the wall
clock at publish time) and a receiver in another, both with a domain id of their own and
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (or ``--discovery-range SUBNET``, ROS 2's default; under LOCALHOST
rmw_fastrtps adds a default shared-memory and a UDPv4 transport to whatever the environment or a profile configured,
so a participant there always offers shared memory, whatever ``FASTDDS_BUILTIN_TRANSPORTS`` says). The publisher
waits until the receiver matched, publishes ``--seconds`` at ``--rate`` Hz, and reports how many it published; the
receiver counts what reached its callback. Receivers:

- ``subscriber``: a bare rclpy subscription with the node's own input QoS (:func:`mastsam_ros.node.inputs.input_qos`)
  that only counts, measures latency (callback time - header stamp) and its CPU time;
- ``node``: the real ``tracker`` node (classical segmenter, flow matcher), whose worker processes frames meanwhile;
  the count is its ``frames_received`` diagnostics value (callbacks run, before the one-slot buffer), and the last
  column its ``frames_lost_transport`` (the middleware's message-lost count).

Transports are Fast DDS settings, for both processes through the environment, as a user would set them for a whole
robot: ``default`` (nothing set), ``shm`` / ``udp`` / ``large_data`` (``FASTDDS_BUILTIN_TRANSPORTS`` = SHM, UDPv4,
LARGE_DATA), ``profile:NAME`` (a profile XML this package ships in ``config/``, see
:data:`mastsam_ros.node.inputs.DDS_PROFILES`, or a path to an ``.xml``; through ``FASTDDS_DEFAULT_PROFILES_FILE``) and
``env:NAME=VALUE`` (any variable, e.g. ``RMW_FASTRTPS_PUBLICATION_MODE``). The node otherwise loads nothing of its
own (``MASTSAM_DDS_PROFILE=none``), except with ``run`` (``node:run``): the node started as ``ros2 run mastsam_ros
tracker`` starts it, the package's ``lib/mastsam_ros/tracker`` with no profile in its environment, so that it loads
its own default (:func:`mastsam_ros.node.inputs.apply_dds_profile`). A ``node:`` prefix applies a setting to the
receiver only (e.g. ``node:profile:udp_input``: the camera driver left on Fast DDS's defaults), ``pub:`` to the
publisher only; ``+`` joins settings, e.g. ``pub:profile:large_data+node:profile:udp_input``. CPU is process time
(user + system) over the measured window, in % of one core. The machine's load average is printed with the table,
since other work on it changes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..node.inputs import DDS_PROFILES, INPUT_DEPTH, PROFILE_ENV, dds_environment

TRANSPORTS = ("default", "shm", "udp", "large_data", "run", *(f"profile:{n}" for n in DDS_PROFILES))
BENCH_FRAME_ID = "delivery_bench"


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


# --- child processes -----------------------------------------------------------------------------------------------
def publish(args) -> None:
    """Publisher process: wait for a subscriber, publish for ``--seconds`` at ``--rate``; print a JSON line."""
    import array

    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    w, h = _parse_size(args.size)
    rclpy.init()
    node = rclpy.create_node("delivery_publisher")
    rel = ReliabilityPolicy.RELIABLE if args.qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
    # A camera driver's usual profiles: sensor_data = best effort depth 5; reliable = the default depth 10.
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5 if args.qos == "sensor_data" else 10, reliability=rel)
    pub = node.create_publisher(Image, args.topic, qos)
    rng = np.random.default_rng(0)
    msg = Image(height=h, width=w, encoding="rgb8", step=w * 3,
                data=array.array("B", rng.integers(0, 256, h * w * 3, dtype=np.uint8).tobytes()))
    msg.header.frame_id = BENCH_FRAME_ID
    end = time.monotonic() + args.wait
    while pub.get_subscription_count() < args.subscribers and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    matched = pub.get_subscription_count()
    time.sleep(args.settle)  # discovery finishes in both directions before the first frame
    period = 1.0 / args.rate
    n = int(round(args.seconds * args.rate))
    cpu0, t0 = _cpu_s(), time.monotonic()
    late = 0
    for i in range(n):
        target = t0 + i * period
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late += 1
        now = time.time()
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
        pub.publish(msg)
    wall = time.monotonic() - t0
    cpu = _cpu_s() - cpu0
    print(json.dumps({"published": n, "matched": matched, "late": late, "wall_s": wall,
                      "cpu_pct": 100.0 * cpu / wall}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def receive(args) -> None:
    """Receiver process (bare subscription with the node's input QoS): count until SIGINT; print a JSON line."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image

    from ..node.inputs import input_qos

    stop: list[bool] = []
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    node = rclpy.create_node("delivery_receiver")
    latencies: list[float] = []
    first: list[float] = []

    def on_image(msg) -> None:
        if msg.header.frame_id != BENCH_FRAME_ID:
            return
        now = time.time()
        if not first:
            first.extend([time.monotonic(), _cpu_s()])
        latencies.append(now - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))

    node.create_subscription(Image, args.topic, on_image, input_qos(args.qos, args.depth))
    while not stop:
        rclpy.spin_once(node, timeout_sec=0.1)
    wall = time.monotonic() - first[0] if first else 0.0
    cpu = _cpu_s() - first[1] if first else 0.0
    lat = np.array(latencies) * 1e3
    print(json.dumps({
        "received": len(latencies),
        "latency_ms_mean": float(lat.mean()) if lat.size else float("nan"),
        "latency_ms_p95": float(np.percentile(lat, 95)) if lat.size else float("nan"),
        "cpu_pct": 100.0 * cpu / wall if wall > 0 else float("nan"),
    }), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


# --- the orchestrator ------------------------------------------------------------------------------------------------
@dataclass
class Row:
    size: str
    rate: float
    pub_qos: str
    node_qos: str
    transport: str
    receiver: str
    depth: int
    published: int
    received: int
    latency_ms_mean: float
    latency_ms_p95: float
    pub_cpu_pct: float
    recv_cpu_pct: float
    lost: int = -1  # the node's frames_lost_transport (-1: the bare subscriber, which does not count them)

    @property
    def fraction(self) -> float:
        return self.received / self.published if self.published else 0.0


def _side_settings(transport: str, side: str) -> list[str]:
    """The settings in ``transport`` that apply to ``side`` (``publisher`` or ``receiver``).

    ``transport`` is one setting or several joined by ``+``; a setting with a ``node:`` prefix applies to the
    receiver only, one with ``pub:`` to the publisher only, one without a prefix to both."""
    out = []
    for part in transport.split("+"):
        if part.startswith("node:"):
            if side == "receiver":
                out.append(part[5:])
        elif part.startswith("pub:"):
            if side == "publisher":
                out.append(part[4:])
        else:
            out.append(part)
    return out


def _env(transport: str, domain: int, side: str, discovery_range: str = "LOCALHOST") -> dict[str, str]:
    """The environment of one side (``publisher`` or ``receiver``) for ``transport`` (see :func:`_side_settings`)."""
    env = dict(os.environ)
    for k in ("FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE",
              "RMW_FASTRTPS_USE_QOS_FROM_XML", "RMW_FASTRTPS_PUBLICATION_MODE"):
        env.pop(k, None)
    env["ROS_DOMAIN_ID"] = str(domain)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = discovery_range
    env[PROFILE_ENV] = "none"  # the node adds no profile of its own: each side carries what the transport names
    for setting in _side_settings(transport, side):
        if setting == "run":
            env.pop(PROFILE_ENV)
        elif setting in ("shm", "udp", "large_data"):
            env["FASTDDS_BUILTIN_TRANSPORTS"] = {"shm": "SHM", "udp": "UDPv4", "large_data": "LARGE_DATA"}[setting]
        elif setting.startswith("profile:"):
            env.update(dds_environment(setting.split(":", 1)[1]))
        elif setting.startswith("env:") and "=" in setting:
            name, value = setting[4:].split("=", 1)
            env[name] = value
        elif setting != "default":
            raise SystemExit(f"unknown transport {setting!r} (one of: {', '.join(TRANSPORTS)}, env:NAME=VALUE)")
    return env


def _child(mode: str, env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mastsam_ros.cli.delivery", mode, *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _last_json(out: str) -> dict:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no result line in child output:\n{out}")


def _node_received(env: dict[str, str], timeout: float) -> tuple[int, int]:
    """The tracker node's frames_received and frames_lost_transport from its newest /diagnostics (one sent after
    this call)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    from rclpy.executors import SingleThreadedExecutor

    got: list = []
    os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = env["ROS_AUTOMATIC_DISCOVERY_RANGE"]
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("delivery_diag", context=ctx)
    node.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    asked = time.time()
    end = time.monotonic() + timeout
    values = None
    while time.monotonic() < end and values is None:
        executor.spin_once(timeout_sec=0.2)
        for m in got:
            if m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 > asked:
                for s in m.status:
                    if s.name.endswith(": tracker"):
                        values = {kv.key: kv.value for kv in s.values}
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)
    if values is None:
        raise RuntimeError("the tracker node sent no diagnostics")
    return int(values["frames_received"]), int(values["frames_lost_transport"])


def measure(size: str, rate: float, pub_qos: str, node_qos: str, transport: str, receiver: str, seconds: float,
            domain: int, depth: int, discovery_range: str = "LOCALHOST") -> Row:
    env = _env(transport, domain, "receiver", discovery_range)
    topic = "/delivery/image"
    if receiver == "subscriber":
        recv = _child("receive", env, "--qos", node_qos, "--topic", topic, "--depth", str(depth))
    else:
        repo = Path(__file__).resolve().parents[2]
        executable = Path(sys.prefix) / "lib" / "mastsam_ros" / "tracker"  # what `ros2 run mastsam_ros tracker` runs
        if "run" in _side_settings(transport, "receiver") and executable.is_file():
            cmd = [str(executable)]
        else:
            cmd = [sys.executable, "-m", "mastsam_ros.node.tracker_node"]
        recv = subprocess.Popen(
            [*cmd, "--ros-args", "--params-file",
             str(repo / "config" / "tracker.yaml"), "-p", f"node.qos:={node_qos}", "-r", f"image:={topic}",
             "-p", "node.diagnostics_period:=0.5", "-p", f"node.input_depth:={depth}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cpu_t0 = _proc_cpu_s(recv.pid)
    pub = _child("publish", _env(transport, domain, "publisher", discovery_range), "--size", size, "--rate",
                 str(rate), "--qos", pub_qos, "--seconds", str(seconds), "--topic", topic)
    try:
        out, err = pub.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        pub.kill()
        recv.kill()
        raise
    p = _last_json(out + "\n" + err)
    if p["matched"] < 1:
        recv.kill()
        raise RuntimeError(f"the publisher never matched a receiver ({size} {pub_qos} -> {node_qos} {transport})")
    time.sleep(1.0)  # frames in flight arrive
    if receiver == "subscriber":
        recv.send_signal(signal.SIGINT)
        try:
            r = _last_json(recv.communicate(timeout=20)[0])
        except subprocess.TimeoutExpired:
            recv.kill()
            recv.communicate()
            raise RuntimeError("the receiver did not stop within 20 s of SIGINT") from None
    else:
        received, lost = _node_received(env, timeout=10)
        cpu = _proc_cpu_s(recv.pid) - cpu_t0
        recv.send_signal(signal.SIGINT)
        recv.communicate(timeout=20)
        r = {"received": received, "latency_ms_mean": float("nan"), "latency_ms_p95": float("nan"),
             "cpu_pct": 100.0 * cpu / (p["wall_s"] + 1.0), "lost": lost}
    return Row(size, rate, pub_qos, node_qos, transport, receiver, depth, p["published"], r["received"],
               r["latency_ms_mean"], r["latency_ms_p95"], p["cpu_pct"], r["cpu_pct"], r.get("lost", -1))


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def markdown(rows: list[Row], command: str, load: str, discovery_range: str = "LOCALHOST") -> str:
    lines = [f"`{command}` (load average before: {load}; ROS_AUTOMATIC_DISCOVERY_RANGE={discovery_range})", "",
             "| size | Hz | publisher QoS | node QoS | depth | transport | receiver | received / published | latency ms"
             " mean / p95 | CPU % pub / recv | lost (node) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lat = "-" if np.isnan(r.latency_ms_mean) else f"{r.latency_ms_mean:.1f} / {r.latency_ms_p95:.1f}"
        lines.append(f"| {r.size} | {r.rate:g} | {r.pub_qos} | {r.node_qos} | {r.depth} | {r.transport} | "
                     f"{r.receiver} | {r.received} / {r.published} ({100 * r.fraction:.0f}%) | {lat} | "
                     f"{r.pub_cpu_pct:.0f} / {r.recv_cpu_pct:.0f} | {'-' if r.lost < 0 else r.lost} |")
    return "\n".join(lines) + "\n"


def table(args) -> int:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    rows, failed = [], []
    # 215-232: valid for the default port mapping and outside the tests' range (20-99)
    domain = 215 + os.getpid() % 18
    for transport in args.transports.split(","):
        for size in args.sizes.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                for pub_qos in args.pub_qos.split(","):
                    for node_qos in args.node_qos.split(","):
                        if pub_qos == "sensor_data" and node_qos == "reliable":
                            continue  # a reliable reader never matches a best-effort writer (DDS rule)
                        try:
                            row = measure(size, rate, pub_qos, node_qos, transport, args.receiver, args.seconds,
                                          domain, args.depth, args.discovery_range)
                        except (RuntimeError, subprocess.TimeoutExpired) as e:
                            print(f"FAILED {size} {rate} {pub_qos} {node_qos} {transport}: {e}", flush=True)
                            failed.append(f"{size} {rate:g} Hz {pub_qos} -> {node_qos} {transport}: {e}")
                            continue
                        rows.append(row)
                        print(json.dumps({**asdict(row), "fraction": round(row.fraction, 3)}), flush=True)
    command = "python -m mastsam_ros.cli.delivery " + " ".join(sys.argv[1:])
    text = markdown(rows, command, load, args.discovery_range) + "".join(f"\nFailed: {f}\n" for f in failed)
    print(text)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mastsam_ros.cli.delivery", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("table", help="run the measurements and print a markdown table")
    t.add_argument("--sizes", default="640x480,1280x720,1920x1080")
    t.add_argument("--rates", default="15,30")
    t.add_argument("--pub-qos", default="sensor_data,reliable")
    t.add_argument("--node-qos", default="sensor_data")
    t.add_argument("--transports", default="default")
    t.add_argument("--receiver", choices=("subscriber", "node"), default="subscriber")
    t.add_argument("--seconds", type=float, default=3.0)
    t.add_argument("--depth", type=int, default=INPUT_DEPTH,
                   help="the receiver's subscription depth (node.input_depth; default: its default)")
    t.add_argument("--discovery-range", choices=("LOCALHOST", "SUBNET"), default="LOCALHOST",
                   help="ROS_AUTOMATIC_DISCOVERY_RANGE of both processes (SUBNET: ROS 2's default, Fast DDS's "
                        "transports as configured; LOCALHOST: rmw_fastrtps adds its own shared memory + UDPv4)")
    t.add_argument("--markdown", help="also write the table to this file")
    p = sub.add_parser("publish")
    p.add_argument("--size", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--qos", choices=("sensor_data", "reliable"), required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--subscribers", type=int, default=1)
    p.add_argument("--wait", type=float, default=20.0)
    p.add_argument("--settle", type=float, default=0.5)
    r = sub.add_parser("receive")
    r.add_argument("--qos", choices=("sensor_data", "reliable"), required=True)
    r.add_argument("--topic", required=True)
    r.add_argument("--depth", type=int, default=INPUT_DEPTH, help="subscription history depth")
    args = ap.parse_args(argv)
    if args.mode == "publish":
        publish(args)
    elif args.mode == "receive":
        receive(args)
    else:
        return table(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
