"""Write ``config/tracker.yaml`` from the config metadata, comments included: the core's sections and ``node.*``.

    python -m mastsam_ros.node.params_file [PATH]     # default: config/tracker.yaml of this source tree
    python -m mastsam_ros.node.params_file --check    # exit 1 when the file differs from the metadata

Run it after changing a field, its default, description, range or flags (mastsam_ros/core/config.py, or
``NodeSection`` in tracker_node.py, ``DepthSection`` / ``ObjectsSection`` in spatial.py); test/ros/test_params.py
fails while the file is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mastsam_ros.core.config import Config, params_yaml
from mastsam_ros.node.spatial import DepthSection, ObjectsSection
from mastsam_ros.node.tracker_node import NodeSection

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "tracker.yaml"
NODE_COMMENT = "Parameters of the ROS node only (mastsam_ros/node/tracker_node.py, NodeSection); the core ignores them."
DEPTH_COMMENT = ("The node's synchronised depth input (mastsam_ros/node/spatial.py, DepthSection; docs/ROS.md,"
                 " \"3D instances\"). A key with a dot nests like a nested map: node.depth.enabled.")
OBJECTS_COMMENT = "The node's 3D outputs ~/objects, ~/markers, ~/points (mastsam_ros/node/spatial.py, ObjectsSection)."


def render() -> str:
    """The text of config/tracker.yaml: every default of the core and of the node, with its comment."""
    return params_yaml(Config(), [("node", NodeSection(), NODE_COMMENT),
                                  ("node.depth", DepthSection(), DEPTH_COMMENT),
                                  ("node.objects", ObjectsSection(), OBJECTS_COMMENT)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mastsam_ros.node.params_file", description=__doc__.split("\n\n")[0])
    ap.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when the file is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        same = args.path.is_file() and args.path.read_text() == text
        print(f"{args.path}: {'up to date' if same else 'stale, regenerate it'}")
        return 0 if same else 1
    args.path.write_text(text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
