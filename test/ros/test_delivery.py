"""The delivery benchmark runs end to end: publisher and receiver processes, one row per measurement."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO, require_ros


def test_delivery_table_measures_one_row(ros):
    require_ros()
    out = subprocess.run(
        [sys.executable, "-m", "mastsam_ros.cli.delivery", "table", "--sizes", "320x240", "--rates", "15",
         "--pub-qos", "reliable", "--node-qos", "reliable", "--transports", "profile:large_data", "--seconds", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| 320x240 ")]
    assert len(rows) == 1, out.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    received, published = (int(x) for x in cells[7].split(" (")[0].split(" / "))
    assert published == 15 and 0 < received <= published, rows[0]
    assert cells[3] == "reliable" and cells[4] == "5" and cells[5] == "profile:large_data"
