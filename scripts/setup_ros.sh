#!/usr/bin/env bash
# Makes .venv a ROS 2 environment without a ROS install: installs the ROS 2 wheels pinned in the "# --- ros" section
# of requirements.txt and builds this package's messages (msg/*.msg) into the venv with CMake, the way
# ../shared/ROS2_FROM_PYPI.md measured it.
#
# Layout it produces (docs/ROS.md explains why):
#   .venv/lib/libmastsam_ros__*.so                       C/C++ type support, found through LD_LIBRARY_PATH, which the
#                                                        ros_wheels_bootstrapper sets to include .venv/lib
#   .venv/share/mastsam_ros/...                          ament index and interface files
#   .venv/lib/mastsam_ros_interfaces/mastsam_ros/msg/    generated Python messages, kept OFF sys.path so they never
#                                                        shadow the editable mastsam_ros package...
#   .venv/lib/python3.11/site-packages/mastsam_ros.pkg   ...and joined to it by this path file (pkgutil.extend_path)
#   .venv/lib/mastsam_ros/tracker                        the node's executable, where `ros2 run/launch` look for it
#   .venv/share/mastsam_ros/{launch,config}/*            links to the checkout's launch/ and config/ files
#   .venv/bin/activate                                   also puts .venv on AMENT_PREFIX_PATH (a marked block), so
#                                                        ros2 finds the package after `. .venv/bin/activate`
#
# With ../shared/ros2 beside the checkout (CI, this team) it then runs ../shared/ros2/install.sh, which adds the
# upstream launch stack (launch, launch_ros, `ros2 launch`) and message_filters to the venv; without it they come
# from a ROS 2 install (docs/ROS.md, "Install").
#
# Idempotent: a second run with unchanged pins, messages and launch/ and config/ file names only checks that the
# messages (and the launch stack) import.
# Called by scripts/setup.sh; can be run alone after it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "setup_ros: .venv missing; run scripts/setup.sh first" >&2; exit 1; }
. .venv/bin/activate
quiet() { grep -v -e "^WARNING: Location" -e "is ignored: it is neither" || true; }

ros_reqs=$(sed -n '/^# --- ros/,/^# --- /p' requirements.txt | grep -v -e '^#' -e '^[[:space:]]*$')
# The file names in launch/ and config/ count too: each file is installed as a link of its own.
inputs_hash=$( { echo "$ros_reqs"; cat CMakeLists.txt package.xml msg/*.msg; ls launch config; } \
    | sha256sum | cut -d' ' -f1)
stamp=.venv/.mastsam_ros_interfaces.sha256
check_import() {
    python - <<'EOF'
from mastsam_ros.node.interfaces import load_messages
load_messages()
EOF
}

build_interfaces() {
    echo "setup_ros: installing ROS 2 wheels"
    # shellcheck disable=SC2086 # one requirement per word on purpose
    pip install -q --disable-pip-version-check $ros_reqs 2>&1 | quiet

    # The wheels' CMake files name the include directories of the machine that built them; point them at ours.
    # Harmless to repeat (nothing matches the second time); must be repeated after any later `pip install ros-*`.
    PYINC=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
    NPINC=$(python -c "import numpy; print(numpy.get_include())")
    { grep -rl /opt/python/cp311-cp311 "$VIRTUAL_ENV/share" --include='*.cmake' || true; } | xargs -r sed -i \
        -e "s|/opt/python/cp311-cp311/include/python3.11|$PYINC|g" \
        -e "s|/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include|$NPINC|g"

    echo "setup_ros: building msg/ into .venv"
    interfaces_dir=lib/mastsam_ros_interfaces
    mkdir -p build
    cmake -S . -B build/ros -Wno-dev \
        -DCMAKE_PREFIX_PATH="$VIRTUAL_ENV" -DCMAKE_INSTALL_PREFIX="$VIRTUAL_ENV" \
        -DPython3_EXECUTABLE="$VIRTUAL_ENV/bin/python" -DBUILD_TESTING=OFF \
        -DMASTSAM_INSTALL_PYTHON=OFF -DPYTHON_INSTALL_DIR="$interfaces_dir" \
        -DMASTSAM_TRACKER_PYTHON="$VIRTUAL_ENV/bin/python" -DMASTSAM_LINK_SHARE=ON >build/ros.log 2>&1 \
        || { cat build/ros.log >&2; exit 1; }
    cmake --build build/ros -j2 >>build/ros.log 2>&1 || { tail -40 build/ros.log >&2; exit 1; }
    cmake --install build/ros >>build/ros.log 2>&1 || { tail -40 build/ros.log >&2; exit 1; }

    site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    echo "$VIRTUAL_ENV/$interfaces_dir/mastsam_ros" >"$site/mastsam_ros.pkg"

    check_import || { echo "setup_ros: the built messages do not import" >&2; exit 1; }
    echo "$inputs_hash" >"$stamp"
    echo "setup_ros: messages built (log in build/ros.log)"
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs_hash" ] && check_import 2>/dev/null; then
    echo "setup_ros: ROS 2 wheels and mastsam_ros messages up to date"
else
    build_interfaces
fi

# ament (ros2 launch, get_package_share_directory) finds packages through AMENT_PREFIX_PATH: the activation adds the
# venv to it. Appended once, between markers; `deactivate` leaves the variable as it is.
marker="# >>> mastsam_ros: AMENT_PREFIX_PATH (scripts/setup_ros.sh) >>>"
if ! grep -qF "$marker" .venv/bin/activate; then
    cat >>.venv/bin/activate <<'EOF'

# >>> mastsam_ros: AMENT_PREFIX_PATH (scripts/setup_ros.sh) >>>
case ":${AMENT_PREFIX_PATH:-}:" in
    *":$VIRTUAL_ENV:"*) ;;
    *) AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"; export AMENT_PREFIX_PATH ;;
esac
# <<< mastsam_ros <<<
EOF
fi

# The launch stack and message_filters: from ../shared/ros2 when it is beside the checkout, else from a ROS 2 install.
# Checked from / so that the checkout's own launch/ folder cannot pass for the `launch` package.
launch_stack_imports() {
    [ -x .venv/bin/ros2 ] && (cd / && "$VIRTUAL_ENV/bin/python" -c "import launch.actions, launch_ros.actions, \
ros2launch, message_filters, composition_interfaces.srv") 2>/dev/null
}
if launch_stack_imports; then
    echo "setup_ros: launch stack and message_filters present"
elif [ -f ../shared/ros2/install.sh ]; then
    echo "setup_ros: installing the launch stack and message_filters from ../shared/ros2"
    bash ../shared/ros2/install.sh .venv
else
    echo "setup_ros: no ../shared/ros2 beside the checkout: ros2 launch and message_filters come from a ROS 2 install" \
        "(docs/ROS.md, \"Install\")"
fi
echo "setup_ros: done"
