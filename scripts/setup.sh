#!/usr/bin/env bash
# Creates .venv in the repository root and installs the project with every pinned dependency (requirements.txt).
# Idempotent: a second run only checks what is there. Needs Python 3.11 (ROS 2 Kilted wheels are cp311).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
python -c "import mastsam_ros" || { echo "setup failed: mastsam_ros does not import" >&2; exit 1; }
bash scripts/setup_ros.sh  # ROS 2 wheels, msg/ build, the launch stack from ../shared/ros2 when there (docs/ROS.md)
