"""pip install for the Python side of mastsam_ros (core, offline tools, node).

On a ROS 2 install the package is built by colcon through CMakeLists.txt instead; this file serves plain venvs.
Dependencies are pinned once, in requirements.txt.
"""

from pathlib import Path

from setuptools import find_packages, setup


def core_requirements():
    reqs, section = [], None
    for line in (Path(__file__).parent / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line.startswith("# ---"):
            section = line[5:].split()[0]
        elif line and not line.startswith("#") and section == "core":
            reqs.append(line)
    return reqs


setup(
    name="mastsam_ros",
    version="0.1.0",
    description="Temporally consistent instance masks from SAM and dense correspondences, as a ROS 2 node",
    license="Apache-2.0",
    packages=find_packages(include=["mastsam_ros", "mastsam_ros.*"]),
    python_requires=">=3.10",
    install_requires=core_requirements(),
    entry_points={
        "console_scripts": [
            "mastsam-track = mastsam_ros.cli.track:main",
            "mastsam-eval = mastsam_ros.evaluation.cli:main",
            "mastsam-bag = mastsam_ros.cli.bag:main",
            "mastsam-bench = mastsam_ros.cli.bench:main",
            "tracker = mastsam_ros.node.tracker_node:main",
        ]
    },
)
