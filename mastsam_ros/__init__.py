"""mastsam_ros: temporally consistent instance masks (MAST-SAM) as a ROS 2 node, an offline runner and a bag tool."""

import os

# OpenMP worker threads that busy-wait after each parallel region cost torch ~16 ms per small op when the cores are
# shared (a robot's other nodes, a loaded CI machine); passive waiting keeps those ops under a millisecond. Set here,
# before anything imports torch, and only if the user has not chosen otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
