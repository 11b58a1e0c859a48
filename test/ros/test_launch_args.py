"""The launch file's decisions (mastsam_ros.node.launch_args), tested without ROS 2 `launch`."""

from __future__ import annotations

from pathlib import Path

import pytest

from mastsam_ros.node.launch_args import (
    DEFAULT_DDS_PROFILE, LaunchArgumentError, cuda_warning, parse_bool, plan, read_rmem_max, resolve_params_file,
    rviz_missing,
)

from .conftest import REPO

SHARE = REPO  # a source checkout has the share layout: config/, launch/


def _args(**kw):
    base = {"image": "/camera/image_raw", "params_file": str(REPO / "config" / "tracker.yaml"), "device": "",
            "segmenter": "", "matcher": "", "use_compressed": "", "qos": "", "dds_profile": "large_data",
            "rviz": "false"}
    return {**base, **kw}


def _no_cuda():
    return False, "torch.cuda.is_available() is false"


@pytest.mark.parametrize("text, value", [("true", True), ("True", True), ("1", True), ("false", False),
                                         ("FALSE", False), ("0", False), ("", None), ("  ", None)])
def test_booleans_parse_strictly(text, value):
    assert parse_bool("use_compressed", text) is value


@pytest.mark.parametrize("text", ["maybe", "yes please", "2", "on"])
def test_a_bad_boolean_is_a_clear_error(text):
    with pytest.raises(LaunchArgumentError, match=f"use_compressed:='{text}' is not a boolean"):
        parse_bool("use_compressed", text)
    with pytest.raises(LaunchArgumentError, match="not a boolean"):
        plan(_args(use_compressed=text), SHARE, cuda=_no_cuda)
    with pytest.raises(LaunchArgumentError, match="rviz:="):
        plan(_args(rviz=text), SHARE, cuda=_no_cuda)


def test_relative_params_file_resolves_against_cwd_then_the_share(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # outside the repository: config/cpu.yaml is the package's
    assert resolve_params_file("config/cpu.yaml", SHARE, cwd=elsewhere) == (SHARE / "config" / "cpu.yaml").resolve()
    # a file of that name in the working directory wins, as a shell user expects
    (elsewhere / "config").mkdir()
    (elsewhere / "config" / "cpu.yaml").write_text("{}\n")
    assert resolve_params_file("config/cpu.yaml", SHARE, cwd=elsewhere) == (elsewhere / "config" / "cpu.yaml")
    p = plan(_args(params_file="config/cpu.yaml"), SHARE, cwd=tmp_path, cuda=_no_cuda)
    assert p.params_file == (SHARE / "config" / "cpu.yaml").resolve()


def test_a_params_file_found_nowhere_is_refused_naming_where_it_looked(tmp_path):
    with pytest.raises(LaunchArgumentError, match="not found") as e:
        plan(_args(params_file="config/nope.yaml"), SHARE, cwd=tmp_path, cuda=_no_cuda)
    assert str(tmp_path / "config" / "nope.yaml") in str(e.value)
    assert str(SHARE / "config" / "nope.yaml") in str(e.value)
    with pytest.raises(LaunchArgumentError, match="not found"):
        resolve_params_file(str(tmp_path / "absent.yaml"), SHARE)


def test_rviz_missing_stops_the_plan_before_anything_starts():
    assert rviz_missing(which=lambda name: None) is not None
    assert rviz_missing(which=lambda name: "/usr/bin/rviz2") is None
    with pytest.raises(LaunchArgumentError, match="rviz2 is not installed"):
        plan(_args(rviz="true"), SHARE, which=lambda name: None, cuda=_no_cuda)
    p = plan(_args(rviz="true"), SHARE, which=lambda name: "/usr/bin/rviz2", cuda=_no_cuda)
    assert p.rviz


def test_cuda_requested_and_absent_warns_whatever_the_backends(tmp_path):
    # classical + flow ignore their device: still a warning
    p = plan(_args(device="cuda"), SHARE, cuda=_no_cuda)
    assert p.overrides["segmenter.device"] == "cuda" and len(p.warnings) == 1
    assert "segmenter.device=cuda" in p.warnings[0] and "matcher.device=cuda" in p.warnings[0]
    # from the params file too
    f = tmp_path / "gpu.yaml"
    f.write_text("/**:\n  ros__parameters:\n    matcher:\n      device: cuda:1\n")
    p = plan(_args(params_file=str(f)), SHARE, cuda=_no_cuda)
    assert p.warnings and "matcher.device=cuda:1" in p.warnings[0] and "segmenter" not in p.warnings[0]
    # no warning when CUDA is there, or not asked for
    assert not plan(_args(device="cuda"), SHARE, cuda=lambda: (True, "")).warnings
    assert not plan(_args(), SHARE, cuda=_no_cuda).warnings
    assert cuda_warning({"segmenter.device": "cpu"}, _no_cuda) is None


def test_qos_and_dds_profile_arguments():
    p = plan(_args(qos="reliable"), SHARE, cuda=_no_cuda)
    assert p.overrides == {"node.qos": "reliable"}
    assert Path(p.env["FASTDDS_DEFAULT_PROFILES_FILE"]) == SHARE / "config" / "fastdds_large_data.xml"
    assert plan(_args(dds_profile="none"), SHARE, cuda=_no_cuda).env == {"MASTSAM_DDS_PROFILE": "none"}
    ds = plan(_args(dds_profile="data_sharing"), SHARE, cuda=_no_cuda).env
    assert ds["RMW_FASTRTPS_USE_QOS_FROM_XML"] == "1"
    with pytest.raises(LaunchArgumentError, match="qos:='best'"):
        plan(_args(qos="best"), SHARE, cuda=_no_cuda)
    with pytest.raises(LaunchArgumentError, match="unknown DDS profile"):
        plan(_args(dds_profile="fastest"), SHARE, cuda=_no_cuda)


def test_default_dds_profile_is_udp_input_and_a_small_rmem_max_warns(tmp_path):
    args = _args()
    del args["dds_profile"]  # the launch file's default
    assert DEFAULT_DDS_PROFILE == "udp_input"
    p = plan(args, SHARE, cuda=_no_cuda, rmem_max=lambda: 4 * 1024 * 1024)
    assert Path(p.env["FASTDDS_DEFAULT_PROFILES_FILE"]) == SHARE / "config" / "fastdds_udp_input.xml"
    assert p.warnings == []
    p = plan(args, SHARE, cuda=_no_cuda, rmem_max=lambda: 212992)
    assert len(p.warnings) == 1 and "net.core.rmem_max is 212992" in p.warnings[0], p.warnings
    assert "large_data" in p.warnings[0]
    # large_data (shared memory both ways) and an unreadable rmem_max do not warn
    assert plan(_args(dds_profile="large_data"), SHARE, cuda=_no_cuda, rmem_max=lambda: 212992).warnings == []
    assert plan(args, SHARE, cuda=_no_cuda, rmem_max=lambda: None).warnings == []
    (tmp_path / "rmem_max").write_text("212992\n")
    assert read_rmem_max(tmp_path / "rmem_max") == 212992
    assert read_rmem_max(tmp_path / "missing") is None


def test_3d_and_lifecycle_arguments():
    p = plan(_args(), SHARE, cuda=_no_cuda)
    assert (p.managed, p.autostart) == (True, True)  # defaults: the lifecycle node, configured and activated
    assert "node.depth.enabled" not in p.overrides  # empty: the params file decides
    p = plan(_args(depth_enabled="TRUE", managed="false", autostart="0", depth="/rs/depth", camera_info="/rs/info"),
             SHARE, cuda=_no_cuda)
    assert p.overrides == {"node.depth.enabled": True}
    assert (p.managed, p.autostart) == (False, False)
    assert p.remappings["depth"] == "/rs/depth" and p.remappings["camera_info"] == "/rs/info"
    for name in ("depth_enabled", "managed", "autostart"):
        with pytest.raises(LaunchArgumentError, match=f"{name}:='yes please'"):
            plan(_args(**{name: "yes please"}), SHARE, cuda=_no_cuda)
    with pytest.raises(LaunchArgumentError, match="camera_info is empty"):
        plan(_args(camera_info=" "), SHARE, cuda=_no_cuda)
