"""scripts/benchmark.py in its smallest form: both result files and their rows."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "benchmark.py"
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
def benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get("benchmark")
    sys.modules["benchmark"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        if previous is None:
            sys.modules.pop("benchmark", None)
        else:
            sys.modules["benchmark"] = previous


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


def test_cheap_groups(benchmark, tmp_path):
    groups = ["metrics", "io", "training"]
    assert benchmark.main([*TINY, "--out", str(tmp_path), "--only", *groups]) == 0
    results = _check(tmp_path, groups)

    io = results["io"]["rows"]
    assert any(r["what"].startswith("read_layout with cache_dir, cache hit") for r in io)
    assert {r["unit"] for r in io} == {"MB/s", "ms"}

    training = results["training"]["rows"]
    labels = ("tile SAGE", "layout SAGE 2x256", "layout GST")
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


def test_memory_group(benchmark, tmp_path):
    assert benchmark.main([*TINY, "--out", str(tmp_path), "--only", "memory"]) == 0
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


def test_results_merge_and_default_out(benchmark, tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, "OUT", tmp_path / "unused")
    benchmark.main(["--quick", "--out", str(tmp_path), "--only", "metrics"])
    first = json.loads((tmp_path / "results.json").read_text())
    benchmark.write({**first, "other": {**first["metrics"], "rows": []}}, tmp_path)
    benchmark.main(["--quick", "--out", str(tmp_path), "--only", "metrics"])
    merged = json.loads((tmp_path / "results.json").read_text())
    assert sorted(merged) == ["metrics", "other"]
    assert merged["metrics"]["command"] == (
        f"python scripts/benchmark.py --quick --out {tmp_path} --only metrics"
    )
    assert not (tmp_path / "unused").exists()
