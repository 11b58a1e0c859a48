"""The docs agree with the code: docs/ROS.md's parameter tables are the generator's output from the config metadata
(every core and node parameter, read-only ones included), the hand-written kinds table names fields of the kind it
says, the launch file names every backend the config accepts, and docs/PERFORMANCE.md stays one short page whose
JSONs exist."""

from __future__ import annotations

import dataclasses
import re
import pytest

from mastsam_ros.core.config import Config

from .conftest import REPO, require_ros

ROS_MD = REPO / "docs" / "ROS.md"
REGENERATE = "python -m mastsam_ros.node.params_file"


def _params_file():
    require_ros()  # the node's sections live beside rclpy code
    from mastsam_ros.node import params_file

    return params_file


def _table_rows(text: str) -> dict[str, list[str]]:
    """``{parameter: [default, allowed, at run time, meaning]}`` from the generated tables in ``text``."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| `([a-z0-9_.]+)` \| (.*) \|$", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} listed twice"
            rows[m.group(1)] = re.split(r"(?<!\\) \| ", m.group(2))
    return rows


def _all_parameters(params_file) -> dict[str, dataclasses.Field]:
    fields = {name: fld for name, fld, _ in Config().fields()}
    for prefix, section, _ in params_file.node_sections():
        fields.update({f"{prefix}.{f.name}": f for f in dataclasses.fields(section)})
    return fields


def test_ros_md_tables_are_the_generators_output():
    params_file = _params_file()
    text = ROS_MD.read_text()
    assert params_file.with_tables(text) == text, f"docs/ROS.md's parameter tables are stale: run {REGENERATE}"


def test_tables_list_every_parameter_once_with_its_kind_and_default():
    params_file = _params_file()
    rows = _table_rows(params_file.param_tables())
    fields = _all_parameters(params_file)
    assert set(rows) == set(fields)
    assert len(rows) == len(fields) > 70
    for name, (default, allowed, kind, meaning) in rows.items():
        meta = fields[name].metadata
        assert kind == ("read-only" if meta["read_only"] else
                        f"rebuilds the {name.split('.')[0]} backend" if meta["rebuild"] else "live"), name
        assert meaning.startswith(meta["description"][:20].replace("<", "\\<").replace("*", "\\*")), name
        if meta["choices"]:
            assert allowed == ", ".join(f"`{c}`" for c in meta["choices"]), name
    # The read-only node parameters the hand-written table used to leave out.
    for name in ("node.input_depth", "node.pipeline", "node.depth.enabled", "node.depth.slop", "node.depth.queue_size",
                 "node.depth.wait"):
        assert rows[name][2] == "read-only", name
    assert rows["tracker.keyframe_interval"][0] == f"`{Config().tracker.keyframe_interval}`"
    assert rows["matcher.backend"][1].count("`") == 2 * len(fields["matcher.backend"].metadata["choices"])


def test_with_tables_replaces_only_the_marked_block_and_refuses_a_file_without_markers():
    params_file = _params_file()
    text = f"# Title\n\nbefore\n\n{params_file.BEGIN}\nold table\n{params_file.END}\n\nafter\n"
    out = params_file.with_tables(text, "NEW")
    assert out == "# Title\n\nbefore\n\nNEW\n\nafter\n"
    for broken in ("no markers", f"{params_file.END}\n{params_file.BEGIN}", f"{params_file.BEGIN}\n{params_file.BEGIN}"
                   f"\n{params_file.END}"):
        with pytest.raises(ValueError, match="params:begin"):
            params_file.with_tables(broken, "NEW")


def test_check_reports_a_stale_docs_file_and_names_the_command(tmp_path, capsys):
    params_file = _params_file()
    yaml, docs = tmp_path / "tracker.yaml", tmp_path / "ROS.md"
    docs.write_text(f"intro\n{params_file.BEGIN}\n| `tracker.gone` | `1` | any | live | x |\n{params_file.END}\n")
    assert params_file.main([str(yaml), "--docs", str(docs), "--check"]) == 1
    assert REGENERATE in capsys.readouterr().out
    assert params_file.main([str(yaml), "--docs", str(docs)]) == 0
    assert params_file.main([str(yaml), "--docs", str(docs), "--check"]) == 0
    assert "tracker.gone" not in docs.read_text() and docs.read_text().startswith("intro\n")
    assert "`node.pipeline`" in docs.read_text()


def test_the_kinds_table_names_fields_of_the_kind_it_says():
    params_file = _params_file()
    fields = _all_parameters(params_file)
    text = ROS_MD.read_text()
    kinds = {"read-only": "read_only", "rebuild": "rebuild", "live": None}
    seen = 0
    for line in text[text.index("| Kind | Fields |"):].splitlines()[2:5]:
        kind, named = line.split(" | ")[0].strip("| "), line.split(" | ")[1]
        for token in re.findall(r"`([a-z0-9_]+\.[a-z0-9_.*]+)`", named):
            names = [n for n in fields if n.startswith(token[:-1])] if token.endswith("*") else [token]
            for name in names:
                if token.endswith("*") and kind == "live":
                    continue  # "`tracker.*` but ..." names a section, not each field
                assert name in fields, f"docs/ROS.md's kinds table names {name}, which is no parameter"
                meta = fields[name].metadata
                flags = {"read_only": meta["read_only"], "rebuild": meta["rebuild"]}
                if kinds[kind]:
                    assert flags[kinds[kind]], f"docs/ROS.md says {name} is {kind}"
                else:
                    assert not any(flags.values()), f"docs/ROS.md says {name} is live"
                seen += 1
    assert seen >= 10


def test_launch_file_names_every_backend_the_config_accepts():
    from .test_launch import _launch_module

    module = _launch_module()
    from launch.actions import DeclareLaunchArgument

    described = {a.name: a.description for a in module.generate_launch_description().entities
                 if isinstance(a, DeclareLaunchArgument)}
    for arg, param in (("segmenter", "segmenter.backend"), ("matcher", "matcher.backend")):
        fld = next(f for name, f, _ in Config().fields() if name == param)
        for choice in fld.metadata["choices"]:
            assert re.search(rf"\b{choice}\b", described[arg]), (arg, choice, described[arg])
    assert "cadence" in described["matcher"]


def test_performance_page_is_short_and_its_jsons_exist():
    text = (REPO / "docs" / "PERFORMANCE.md").read_text()
    assert len(text.splitlines()) <= 200, "docs/PERFORMANCE.md: the current page; dated rounds go to docs/perf/LOG.md"
    named = set()
    for token in re.findall(r"[\w{},./]+\.json", text):
        if token.startswith("/tmp/") or token == "summary.json":  # where a command wrote; the GPU kit's output
            continue
        token = token.removeprefix("docs/perf/")
        m = re.fullmatch(r"(.*)\{([^}]*)\}(.*)", token)
        named.update([m.group(1) + part + m.group(3) for part in m.group(2).split(",")] if m else [token])
    assert len(named) >= 8, named
    missing = sorted(n for n in named if not (REPO / "docs" / "perf" / n).is_file())
    assert not missing, f"docs/PERFORMANCE.md names JSONs that docs/perf/ does not hold: {missing}"
    assert (REPO / "docs" / "perf" / "LOG.md").is_file()


def test_readme_and_performance_quote_the_same_cpu_yaml_figures():
    """README's `config/cpu.yaml` sentence quotes PERFORMANCE.md's step / encoder and oracle J&F figures."""
    readme = (REPO / "README.md").read_text()
    perf = (REPO / "docs" / "PERFORMANCE.md").read_text()
    quoted = re.search(r"step (\d\.\d+)x the encoder.*?oracle J&F (0\.\d+) against (0\.\d+)", readme, re.S)
    step = re.search(r"\*\*Step / encoder (\d\.\d+) \(median", perf)
    quality = re.search(r"J&F \*\*(0\.\d+)\*\* against \*\*(0\.\d+)\*\*", perf)
    assert quoted and step and quality, "a sentence changed shape: keep README's cpu.yaml figures PERFORMANCE.md's"
    assert quoted.groups() == (step.group(1), *quality.groups()), "README and docs/PERFORMANCE.md differ"
