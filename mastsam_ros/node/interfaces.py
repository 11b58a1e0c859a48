"""Find this package's generated ROS messages (``mastsam_ros.msg``) next to our own Python package.

rosidl generates a Python package with the same name as the ROS package, ``mastsam_ros``, holding ``msg/`` and the
type-support extension modules. Two layouts put it in reach:

- colcon on a ROS install: CMake installs our Python package and the generated code into the same
  ``site-packages/mastsam_ros`` directory, so ``mastsam_ros.msg`` simply imports;
- the venv (scripts/setup_ros.sh): our package is installed editable from the source tree, and the generated code
  lives in a directory of its own (``.venv/lib/mastsam_ros_interfaces/mastsam_ros``) named by a
  ``site-packages/mastsam_ros.pkg`` path file. Putting it in ``site-packages/mastsam_ros`` instead would shadow the
  editable package for every import that does not start in the repository root.

``pkgutil.extend_path`` joins every ``mastsam_ros`` directory on ``sys.path`` and every directory listed in
``mastsam_ros.pkg`` files to the package's ``__path__``, which covers both layouts (and a source checkout run with
``python -m`` beside a colcon install).
"""

from __future__ import annotations

import pkgutil
from types import ModuleType


def load_messages() -> ModuleType:
    """Return the generated ``mastsam_ros.msg`` module (``Instance``, ``InstanceArray``).

    Raises ``ImportError`` with the setup step to run when the messages were not built.
    """
    import mastsam_ros

    mastsam_ros.__path__ = pkgutil.extend_path(mastsam_ros.__path__, mastsam_ros.__name__)
    try:
        from mastsam_ros import msg
    except ImportError as e:
        raise ImportError(
            "mastsam_ros messages are not built: run scripts/setup_ros.sh (venv) or colcon build "
            f"(ROS install) and source the workspace ({e})"
        ) from e
    return msg
