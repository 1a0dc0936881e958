"""tpulearn.data.stats: collection sizes, opcode counts, neighbourhoods and segment cuts."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tpulearn.data import read_graph, sample_root
from tpulearn.data.stats import (
    STAT_COLUMNS,
    collection_stats,
    graph_stats,
    k_hop_nodes,
    opcode_counts,
    segment_edge_counts,
    stats_table,
)

VALID = "npz/layout/xla/default/valid/unet_3d.4x4.bf16.npz"

# A small graph as stored: row [u, v] means u consumes v (u > v).
#   0 -> 1 -> 3 -> 4, 0 -> 2 -> 3, 5 -> 4
EDGES = np.array([[1, 0], [2, 0], [3, 1], [3, 2], [4, 3], [4, 5]])


def test_collection_stats_of_the_sample():
    rows = {(r["collection"], r["split"]): r for r in collection_stats(sample_root())}
    assert len(rows) == 11  # every npz folder of the bundled sample
    valid = rows[("layout:xla:default", "valid")]
    assert list(valid) == list(STAT_COLUMNS)
    assert valid["graphs"] == valid["labelled"] == 1
    assert (valid["nodes_min"], valid["configs_max"]) == (3163, 1965)
    assert valid["edges_mean"] == 5112.0 and valid["configurable_nodes_mean"] == 62.0
    test = rows[("layout:nlp:default", "test")]
    assert test["labelled"] == 0 and test["nodes_max"] == 21918
    assert rows[("tile:xla", "valid")]["configurable_nodes_mean"] is None


def test_collection_stats_reject_a_root_without_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no npz files of tile:xla"):
        collection_stats(tmp_path, collections=["tile:xla"])
    with pytest.raises(ValueError, match="unknown collection"):
        collection_stats(sample_root(), collections=["layout:xla"])


def test_graph_stats_reads_the_task_from_the_folder_layout(tmp_path):
    stats = graph_stats(sample_root() / VALID)
    assert stats == {
        "graph": "unet_3d.4x4.bf16",
        "nodes": 3163,
        "edges": 5112,
        "configs": 1965,
        "configurable_nodes": 62,
        "labelled": True,
    }
    loose = shutil.copy(sample_root() / VALID, tmp_path / "g.npz")
    with pytest.raises(ValueError, match="pass task="):
        graph_stats(loose)
    assert graph_stats(loose, task="layout")["nodes"] == 3163
    with pytest.raises(ValueError, match="task must be 'tile' or 'layout'"):
        graph_stats(loose, task="layouts")


def test_opcode_counts_add_up_over_files():
    paths = [sample_root() / VALID, sample_root() / "npz/layout/xla/default/train/unet3d.npz"]
    counts = opcode_counts(paths)
    assert counts.shape == (128,) and counts.sum() == 3163 + 2774
    _, opcode, _ = read_graph(paths[0])
    np.testing.assert_array_equal(opcode_counts(paths[:1])[:5], np.bincount(opcode)[:5])


def test_k_hop_nodes_walk_both_directions():
    nodes, dist = k_hop_nodes(EDGES, 3, 1)
    assert nodes.tolist() == [3, 1, 2, 4] and dist.tolist() == [0, 1, 1, 1]
    nodes, dist = k_hop_nodes(EDGES, 3, 2)
    assert nodes.tolist() == [3, 1, 2, 4, 0, 5] and dist.tolist() == [0, 1, 1, 1, 2, 2]
    assert k_hop_nodes(EDGES, 5, 0)[0].tolist() == [5]
    assert k_hop_nodes(EDGES, 7, 3, num_nodes=8)[0].tolist() == [7]  # an isolated node


def test_k_hop_nodes_reject_bad_input():
    with pytest.raises(ValueError, match=r"\[num_edges, 2\]"):
        k_hop_nodes(EDGES.T, 0, 1)
    with pytest.raises(ValueError, match=r"center must be a node id in \[0, 6\)"):
        k_hop_nodes(EDGES, 6, 1, num_nodes=6)
    with pytest.raises(ValueError, match="hops must be >= 0"):
        k_hop_nodes(EDGES, 0, -1)


def test_segment_edge_counts():
    counts = segment_edge_counts(np.array([0, 0, 1, 1, 2, 2]), EDGES)
    # Inside: 1-0 (seg 0), 3-2 (seg 1), 4-5 (seg 2); between: 2-0 (0,1), 3-1 (0,1), 4-3 (1,2).
    np.testing.assert_array_equal(counts, [[1, 2, 0], [2, 1, 1], [0, 1, 1]])
    assert np.triu(counts).sum() == len(EDGES)
    with pytest.raises(ValueError, match="outside"):
        segment_edge_counts(np.array([0, 0, 1]), EDGES)


def test_stats_table_is_markdown():
    table = stats_table([{"a": "x", "b": 1234, "c": 2.25, "d": None}])
    assert table.splitlines() == [
        "| a | b | c | d |",
        "|---|---|---|---|",
        "| x | 1,234 | 2.2 | - |",
    ]
    with pytest.raises(ValueError, match="at least one row"):
        stats_table([])
