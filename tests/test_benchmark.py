"""scripts/benchmark.py in its smallest form: both result files and their rows, and the
step-memory probe of ``scripts/bench/``."""

from __future__ import annotations

import ast
import importlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
TINY = [
    "--quick",
    "--io-configs",
    "20",
    "--train-steps",
    "2",
    "--memory-graphs",
    "2",
    "--memory-nodes",
    "300",
    "--memory-configs",
    "40",
]
REQUIRED = {"what", "unit", "median", "min", "max", "runs", "device"}


@pytest.fixture(scope="module")
def bench():
    """The ``bench`` package, imported as ``scripts/benchmark.py`` imports it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(SCRIPTS))
        yield importlib.import_module("bench")


@pytest.fixture(scope="module")
def runner(bench):
    return importlib.import_module("bench.runner")


def _check(out: Path, groups: list[str]) -> dict:
    results = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    assert sorted(results) == sorted(groups)
    for group in groups:
        assert f"## {group}" in markdown
        rows = results[group]["rows"]
        assert rows, group
        for row in rows:
            assert set(row) >= REQUIRED, row
            assert math.isfinite(row["median"]) and row["median"] > 0, row
            assert row["min"] <= row["median"] <= row["max"], row
            assert f"| {row['what']} | {row['device']} |" in markdown
    return results


def test_every_group_module_is_registered(runner):
    assert sorted(runner.GROUPS) == [
        "gst_memory",
        "gst_speed",
        "io",
        "memory",
        "metrics",
        "recipe",
        "score_items",
        "scoring",
        "training",
    ]
    assert set(runner.COLUMNS) == {"io", "memory", "recipe", "score_items", "scoring", "training"}


def test_the_docstrings_name_every_registered_group(bench, runner):
    """The groups ``--help``'s readers and the package's are told of are the ones that run."""
    script = ast.get_docstring(ast.parse((SCRIPTS / "benchmark.py").read_text()))
    paragraph = script.split("\nGroups: ")[1].split("\n\n")[0]
    assert re.findall(r"``(\w+)``", paragraph.split(". ")[0]) == list(runner.GROUPS)
    paragraph = bench.__doc__.split("\nGroups: ")[1].split("\n\n")[0]
    modules = {m.__name__.rpartition(".")[2] for m in runner.MODULES}
    assert set(re.findall(r":mod:`\.(\w+)`", paragraph)) == {*modules, "training_cases"}


def test_quick_writes_the_committed_results_only_when_out_names_them(runner):
    assert runner.parse_args([]).out == runner.OUT
    assert runner.parse_args(["--quick"]).out == runner.QUICK_OUT != runner.OUT
    assert runner.parse_args(["--quick", "--out", str(runner.OUT)]).out == runner.OUT


@pytest.mark.slow
def test_cheap_groups(runner, tmp_path):
    groups = ["metrics", "io", "training"]
    assert runner.main([*TINY, "--out", str(tmp_path), "--only", *groups]) == 0
    results = _check(tmp_path, groups)

    io = results["io"]["rows"]
    assert any(r["what"].startswith("read_layout with cache_dir, cache hit") for r in io)
    assert {r["unit"] for r in io} == {"MB/s", "ms"}

    training = results["training"]["rows"]
    labels = ("tile SAGE", "layout SAGE 2x256", "layout GCN 3x64", "layout GAT 3x64", "layout GST")
    for label in labels:
        assert any(label in r["what"] for r in training), label
    assert {r["precision"] for r in training} == {"fp32", "bf16"}
    for row in training:
        assert row["runs"] == 2 and row["unit"] == "configs/s"
        assert row["parameters"] > 0
        assert math.isfinite(row["node_states_per_s"]) and row["node_states_per_s"] > 0
        assert row["node_states_per_s"] == pytest.approx(
            row["median"] * row["node_states_per_step"] / row["configs_per_step"]
        )
    markdown = (tmp_path / "results.md").read_text()
    assert "| node-states/s | parameters |" in markdown


@pytest.mark.slow
def test_recipe_group_times_the_recipe_runs_steps(runner, tmp_path):
    assert runner.main([*TINY, "--out", str(tmp_path), "--only", "recipe"]) == 0
    rows = _check(tmp_path, ["recipe"])["recipe"]["rows"]
    assert [r["what"].split("synthetic ")[1].split(" ")[0] for r in rows] == [
        "layout:xla:random",
        "layout:xla:default",
    ]
    for row in rows:
        assert row["unit"] == "steps/s" and row["device"] == "cpu"
        # --quick: 6 steps, the first left out of the median
        assert row["runs"] == 5
        assert row["step_seconds_median"] == pytest.approx(1 / row["median"])
        assert row["peak_rss_mb"] > 0
    assert "| s/step | peak RSS MB |" in (tmp_path / "results.md").read_text()


@pytest.mark.slow
def test_score_items_group_scores_one_graph_both_ways(runner, tmp_path):
    assert runner.main([*TINY, "--out", str(tmp_path), "--only", "score_items"]) == 0
    rows = _check(tmp_path, ["score_items"])["score_items"]["rows"]
    # --quick: the xla graph only, chunks of 64 and 256, each in items of one chunk and in
    # budgeted items.
    assert [(r["config_chunk"], r["what"].split(", ")[-1]) for r in rows] == [
        (64, "items of one chunk"),
        (64, "budgeted items"),
        (256, "items of one chunk"),
        (256, "budgeted items"),
    ]
    for row in rows:
        assert "unet_3d.4x4.bf16" in row["what"] and row["unit"] == "configs/s"
        assert row["median"] == pytest.approx(1965 / row["seconds_median"])
        assert row["rss_added_mb"] > 0
    assert "| seconds | RSS added MB |" in (tmp_path / "results.md").read_text()


@pytest.mark.slow
def test_memory_group(runner, tmp_path):
    assert runner.main([*TINY, "--out", str(tmp_path), "--only", "memory"]) == 0
    rows = _check(tmp_path, ["memory"])["memory"]["rows"]
    cpu = [r for r in rows if r["device"] == "cpu"]
    assert sorted({r["graphs"] for r in cpu}) == [1, 2]
    for row in cpu:
        assert row["unit"] == "MB" and "capped" not in row
        assert row["nodes_per_graph"] == 300 and row["configs_per_graph"] == 40
        assert 0 < row["largest_graph_mb"] <= row["collection_mb"]
        # The kernel's RSS counters are batched per CPU / thread and so approximate: a peak
        # read after the epoch may sit a few tens of KB under the RSS read just before it
        # when the epoch allocated nothing new (CI saw 468.105 MB vs 468.141 MB).
        assert row["median"] >= row["rss_before_epoch_mb"] - 1.0
        assert row["rss_before_epoch_mb"] > 0


def test_results_merge_and_default_out(runner, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "OUT", tmp_path / "unused")
    runner.main(["--quick", "--out", str(tmp_path), "--only", "metrics"])
    first = json.loads((tmp_path / "results.json").read_text())
    runner.write({**first, "other": {**first["metrics"], "rows": []}}, tmp_path)
    runner.main(["--quick", "--out", str(tmp_path), "--only", "metrics"])
    merged = json.loads((tmp_path / "results.json").read_text())
    assert sorted(merged) == ["metrics", "other"]
    assert merged["metrics"]["command"] == (
        f"python scripts/benchmark.py --quick --out {tmp_path} --only metrics"
    )
    assert not (tmp_path / "unused").exists()


@pytest.mark.slow
def test_the_script_runs_from_any_folder(tmp_path):
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, str(SCRIPTS / "benchmark.py"), "--quick", "--only", "metrics"]
        + ["--out", str(out)],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=240,
    )
    _check(out, ["metrics"])


@pytest.mark.slow
def test_step_memory_probe_runs_every_mode_in_a_fresh_process(bench):
    from bench.step_memory import MODES, measure_step_memory, step_memory

    for mode in MODES:
        probe = measure_step_memory(1500, mode, timeout_s=240)
        assert "capped" not in probe, probe
        assert probe["num_segments"] == 2
        step = probe["step"]
        assert step["peak_mb"] >= step["base_mb"] - 1.0 > 0 and step["seconds"] > 0
        assert ("first" in probe) == (mode == "gst")
    probe = measure_step_memory(1500, "gst", timeout_s=240, halo_hops=2, max_age=0)
    assert "capped" not in probe and probe["step"]["peak_mb"] > 0
    with pytest.raises(ValueError, match="mode must be one of"):
        step_memory(100, "everything")
