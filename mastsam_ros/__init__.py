"""mastsam_ros: temporally consistent instance masks (MAST-SAM) as a ROS 2 node, an offline runner and a bag tool."""

import os

# OpenMP worker threads that busy-wait after each parallel region cost torch ~16 ms per small op when the cores are
# shared (a robot's other nodes, a loaded CI machine); passive waiting keeps those ops under a millisecond. Set here,
# before anything imports torch, and only if the user has not chosen otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# In a venv, the messages generated from msg/ live in a directory of their own (scripts/setup_ros.sh) named by a
# .pkg file; extend_path joins it to this package so `import mastsam_ros.msg` works. With colcon both share one
# directory and this is a no-op.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
