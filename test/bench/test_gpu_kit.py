"""The GPU kit's CPU side (scripts/gpu/): its shell scripts parse, and summary.py reads real mastsam-bench JSON and
sets the figures beside the floors as documented (docs/PERFORMANCE.md, section 10)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mastsam_ros.cli import bench

REPO = Path(__file__).resolve().parents[2]
KIT = REPO / "scripts" / "gpu"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"gpukit_{name}", KIT / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("script", ["make_kit.sh", "run_on_device.sh"])
def test_kit_scripts_parse(script):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    subprocess.run([bash, "-n", str(KIT / script)], check=True, timeout=30)


def test_summary_of_real_bench_json(tmp_path, source):
    """Two real bench runs (classical segmenter: no model needed) stand in for the flow and cadence configurations,
    an overhead run for the overhead step; floors.json is written by hand with round numbers, so the composite
    floor's arithmetic can be checked exactly."""
    work = tmp_path / "work"
    work.mkdir()
    small = ["--source", str(source), "--segmenter", "classical", "--frames", "3", "--size", "240x136", "--quiet"]
    assert bench.main([*small, "--matcher", "flow", "--compare", "none",
                       "--json", str(work / "vit_h_fp16_flow.json")]) == 0
    assert bench.main([*small, "--matcher", "cadence", "--set", "matcher.anchor_backend=flow",
                       "--set", "matcher.anchor_interval=5", "--set", "matcher.anchor_mode=async", "--compare", "none",
                       "--json", str(work / "vit_h_fp16_mast3r_cadence_async.json")]) == 0
    assert bench.main(["--overhead", "--source", str(source), "--frames", "3", "--size", "240x136", "--tracks", "4",
                       "--quiet", "--json", str(work / "overhead_8.json")]) == 0
    for name in ("vit_h_fp16_flow", "vit_h_fp16_mast3r_cadence_async", "overhead_8"):
        (work / f"{name}.rc").write_text("0\n")
    (work / "vit_h_fp16_mast3r.rc").write_text("124\n")  # a step that timed out and wrote no JSON
    (work / "floors.json").write_text(json.dumps({
        "gpu": None, "autocast_dtype": "None", "rope": "pytorch",
        "mast3r": {k: {"median_ms": v} for k, v in
                   (("push", 10.0), ("prepare", 30.0), ("carry", 10.0), ("per_frame", 50.0))}}))

    summary = _module("summary")
    lines, out = summary.summarise(work)
    text = "\n".join(lines)
    flow = json.loads((work / "vit_h_fp16_flow.json").read_text())["tracker"]
    cad = json.loads((work / "vit_h_fp16_mast3r_cadence_async.json").read_text())["tracker"]
    c = out["configurations"]

    assert c["vit_h_fp16_flow"]["fps_end_to_end"] == flow["fps"]
    assert c["vit_h_fp16_flow"]["step_over_floor_median"] == flow["floor"]["step_over_floor_median"]
    assert c["vit_h_fp16_flow"]["overhead_ms_median"] == flow["floor"]["overhead_ms_median"]
    assert "floor_with_mast3r_ms" not in c["vit_h_fp16_flow"]  # a flow configuration has no MASt3R share
    # cadence: the flow run's floor + 50 ms / 5
    row = c["vit_h_fp16_mast3r_cadence_async"]
    assert row["anchor"] == {"interval": 5, "mode": "async"}
    assert row["floor_with_mast3r_ms"] == round(flow["floor"]["floor_ms_median"] + 10.0, 2)
    assert row["step_over_floor_with_mast3r"] == round(
        cad["stages"]["total"]["median_ms"] / (flow["floor"]["floor_ms_median"] + 10.0), 3)
    o8 = json.loads((work / "overhead_8.json").read_text())["overhead"]
    assert c["overhead_8"]["overhead_ms_median"] == o8["overhead_ms_median"]
    assert c["overhead_8"]["probe_ms_median"] == o8["probe_ms_median"] > 0
    # missing steps are named with their exit status, and their targets have no figure
    assert "vit_h_fp16_mast3r                  124: no JSON" in text
    assert "vit_t_flow                         not run: no JSON" in text
    verdicts = {t["target"]: t["verdict"] for t in out["targets"]}
    assert verdicts["vit_t + flow >= 50 fps end-to-end"] == "no figure"
    assert verdicts["(b) seed loop >= 5x slower"] == "no figure"
    assert verdicts["vit_h_fp16_mast3r_cadence_async >= 10 fps"] == (
        "met" if cad["fps"] >= 10 else "not met")

    assert summary.main([str(work), str(tmp_path / "s.txt"), str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "s.txt").read_text().splitlines() == lines


def test_summary_of_the_pipeline_step(tmp_path, source):
    """The kit's last step is scripts/bench_pipeline.py (there with --model vit_t on the GPU); here its GPU stand-in
    writes the JSON, briefly, and the summary reports each mode's figures and their ratios from it."""
    spec = importlib.util.spec_from_file_location("bench_pipeline", REPO / "scripts" / "bench_pipeline.py")
    bench_pipeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_pipeline)
    if not sorted(Path(source).glob("*.jpg")):
        pytest.skip(f"no JPEG frames in {source}")
    assert bench_pipeline.main(["--source", str(source), "--frames", "4", "--encoder-ms", "5", "--seconds", "2",
                                "--repeats", "1", "--rate", "20", "--json", str(tmp_path / "node_pipeline_vit_t.json")
                                ]) == 0
    runs = {r["mode"]: r for r in json.loads((tmp_path / "node_pipeline_vit_t.json").read_text())["runs"]}
    _, out = _module("summary").summarise(tmp_path)
    row = out["configurations"]["node_pipeline_vit_t"]
    assert set(row) == {"serial", "pipeline", "pipeline_over_serial"}
    for mode in ("serial", "pipeline"):
        assert row[mode]["fps"] == runs[mode]["fps"] and row[mode]["latency_ms_median"] == runs[mode][
            "latency_ms_median"]
    assert row["pipeline_over_serial"]["fps"] == round(runs["pipeline"]["fps"] / runs["serial"]["fps"], 2)


def test_summary_judges_comparison_a_only_on_the_32_grid(tmp_path):
    summary = _module("summary")
    run = {"run": {"device": "cuda", "resolution": [854, 480]}, "machine": {"gpu": "x"}, "config": {},
           "memory": {"gpu_peak_mb": 1.0},
           "tracker": {"frames": 3, "tracks": {"min": 8, "max": 8}, "fps": 40.0,
                       "floor": {"floor_ms_median": 20.0, "step_over_floor_median": 1.25, "overhead_ms_median": 5.0},
                       "stages": {k: {"median_ms": 25.0} for k in ("total", "encoder", "decoder", "matcher")}},
           "comparisons": {"automatic": {"points_per_side": 2, "throughput_ratio": 30.0,
                                         "ms_per_frame": {"mean_ms": 750.0}}}}
    (tmp_path / "vit_t_flow.json").write_text(json.dumps(run))
    _, out = summary.summarise(tmp_path)
    verdicts = {t["target"]: (t["value"], t["verdict"]) for t in out["targets"]}
    assert verdicts["(a) automatic 32x32 >= 20x slower"] == (None, "no figure")
    assert verdicts["vit_t + flow >= 50 fps end-to-end"] == (40.0, "not met")
    assert verdicts["vit_t + flow <= 1.2x its floor"] == (1.25, "not met")
    run["comparisons"]["automatic"]["points_per_side"] = 32
    (tmp_path / "vit_t_flow.json").write_text(json.dumps(run))
    _, out = summary.summarise(tmp_path)
    verdicts = {t["target"]: (t["value"], t["verdict"]) for t in out["targets"]}
    assert verdicts["(a) automatic 32x32 >= 20x slower"] == (30.0, "met")
