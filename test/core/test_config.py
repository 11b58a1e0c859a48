from pathlib import Path

import pytest

from mastsam_ros.core.config import Config, params_yaml, parse_overrides
from mastsam_ros.core.errors import ConfigError

YAML = Path(__file__).resolve().parents[2] / "config" / "tracker.yaml"


def test_yaml_defaults_equal_dataclass_defaults():
    # config/tracker.yaml is where users read defaults; it must not drift from the code.
    assert Config.from_yaml(YAML).as_dict() == Config().as_dict()


def test_yaml_is_generated_from_the_metadata_comments_included():
    """config/tracker.yaml is params_yaml's text (then the node's section, compared in test/ros/test_params.py):
    every comment sits right above its own key. Regenerate with `python -m mastsam_ros.node.params_file`."""
    text = YAML.read_text()
    core = params_yaml(Config())
    assert text[: len(core)] == core, "config/tracker.yaml is stale: run python -m mastsam_ros.node.params_file"
    assert text[len(core):].startswith("    node:\n")


def test_generated_comment_sits_above_its_key_with_range_and_flags():
    lines = params_yaml(Config()).splitlines()
    for key, expected in (("merge_overlap", "Two tracks whose masks overlap"), ("flow_preset", "(rebuilds the matcher"),
                          ("backend", "(read-only)")):
        i = next(n for n, line in enumerate(lines) if line.strip().startswith(key + ":"))
        above = []
        while lines[i - 1 - len(above)].strip().startswith("#"):
            above.insert(0, lines[i - 1 - len(above)])
        assert expected in " ".join(above), (key, above)
    assert all(len(line) <= 120 for line in lines)


def test_every_field_is_described_and_bounded():
    for name, field, value in Config().fields():
        assert field.metadata["description"], name
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert field.metadata["range"] is not None, f"{name} has no range"


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("tracker.keyframe_interval", -1, "outside"),
        ("tracker.merge_overlap", 1.5, "outside"),
        ("segmenter.backend", "yolo", "sam, mobile_sam, classical"),
        ("tracker.max_age", "soon", "cannot use"),
        ("tracker.nonexistent", 1, "unknown config key"),
        ("tracker.max_tracks", 2.5, "cannot use"),
    ],
)
def test_bad_values_are_refused_with_a_message(key, value, match):
    with pytest.raises(ConfigError, match=match):
        Config().set(key, value)


def test_overrides_are_coerced_and_cross_checked():
    cfg = Config().update(parse_overrides(["tracker.keyframe_interval=12", "tracker.negative_points=false"]))
    assert cfg.tracker.keyframe_interval == 12 and cfg.tracker.negative_points is False
    with pytest.raises(ConfigError, match="points_min"):
        Config().update({"tracker.points_min": 10, "tracker.points_max": 2})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["tracker.keyframe_interval"])


def test_node_section_is_ignored_by_the_core(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("tracker:\n  ros__parameters:\n    node:\n      qos: reliable\n    tracker:\n      max_age: 3\n")
    assert Config.from_yaml(p).tracker.max_age == 3
    with pytest.raises(ConfigError, match="not found"):
        Config.from_yaml(tmp_path / "missing.yaml")


def test_cpu_params_file_sets_only_known_keys():
    # config/cpu.yaml overrides a few keys and leaves the rest at their defaults (it is loaded on its own).
    cfg = Config.from_yaml(YAML.parent / "cpu.yaml")
    changed = {k: v for k, v in cfg.as_dict().items() if Config().as_dict()[k] != v}
    assert changed == {"tracker.max_prompts_per_frame": 4, "tracker.keyframe_interval": 256,
                       "tracker.resegment_seeds_per_frame": 1, "tracker.overlap_matcher": False}
