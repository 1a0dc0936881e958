"""Partitions: contiguous and METIS segments, the partition cache."""

import importlib
import math
import sys
import types

import numpy as np
import pytest
import torch
from segment_inputs import tiny_graph

from tpulearn.segments import PartitionCache, partition


def check_cover(part, num_nodes, limit):
    assert part.assignment.shape == (num_nodes,)
    assert int(part.sizes.sum()) == num_nodes
    assert int(part.sizes.max()) <= limit
    for s in range(part.num_segments):
        nodes = part.nodes(s)
        assert nodes.numel() == int(part.sizes[s]) > 0
        assert torch.equal(part.local_index[nodes], torch.arange(nodes.numel()))


@pytest.mark.parametrize("n,limit", [(1, 1000), (999, 1000), (1000, 1000), (1001, 1000), (10, 3)])
def test_contiguous_partition_is_balanced_ranges(n, limit):
    part = partition((n, torch.zeros(2, 0, dtype=torch.long)), limit)
    check_cover(part, n, limit)
    assert part.num_segments == math.ceil(n / limit)
    assert int(part.sizes.max() - part.sizes.min()) <= 1
    assert bool((part.assignment.diff() >= 0).all())  # node-id ranges
    assert part.key is None


def test_real_graph_splits_into_three_contiguous_segments(unet3d):
    _, data = unet3d
    part = partition(data)
    check_cover(part, 2774, 1000)
    assert part.sizes.tolist() == [924, 925, 925]
    assert part.key == "unet3d:2774:contiguous:1000"


@pytest.mark.parametrize("limit", [1000, 300, 64])
def test_metis_partition_covers_nodes_within_the_limit(unet3d, limit):
    pytest.importorskip("pymetis")
    _, data = unet3d
    part = partition(data, limit, method="metis")
    check_cover(part, data.num_nodes, limit)
    assert part.num_segments >= math.ceil(data.num_nodes / limit)
    first = [int(part.nodes(s)[0]) for s in range(part.num_segments)]
    assert first == sorted(first)  # numbered by smallest node


@pytest.mark.parametrize("first_split", ["lopsided", "none"])
def test_metis_parts_above_the_limit_are_split_again(monkeypatch, first_split):
    # A stand-in for METIS: its first answer is unbalanced (80% in one part) or no split at
    # all; later answers are balanced. Every segment must still respect the limit.
    calls = []

    def fake_parts(pymetis, n, src, dst, nparts, seed):
        calls.append((n, nparts))
        if len(calls) == 1:
            lopsided = np.where(np.arange(n) < 0.8 * n, 0, 1 + np.arange(n) % (nparts - 1))
            return lopsided if first_split == "lopsided" else np.zeros(n, dtype=np.int64)
        return np.arange(n) * nparts // n

    monkeypatch.setitem(sys.modules, "pymetis", types.ModuleType("pymetis"))
    monkeypatch.setattr(
        importlib.import_module("tpulearn.segments.partition"), "_metis_parts", fake_parts
    )
    edges = torch.stack([torch.arange(1, 100), torch.arange(99)])
    part = partition((100, edges), 30, method="metis")
    check_cover(part, 100, 30)
    assert calls[0] == (100, 4)
    assert len(calls) == (2 if first_split == "lopsided" else 1)


def test_metis_without_pymetis_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymetis", None)
    with pytest.raises(ImportError, match=r"pip install tpulearn\[gst\]"):
        partition(tiny_graph(), 3, method="metis")


def test_partition_cache_computes_once_per_key():
    cache = PartitionCache()
    data = tiny_graph()
    first = cache.get(data, 3)
    assert cache.get(tiny_graph(seed=1), 3) is first  # same stem and size: cached
    assert cache.get(data, 4) is not first
    assert len(cache) == 2
    assert first.key == "tiny:7:contiguous:3"
