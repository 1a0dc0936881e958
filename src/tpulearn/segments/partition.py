"""Partitions of a graph into segments of at most ``max_segment_nodes`` nodes.

Two methods, as in GST (Cao et al., arXiv 2305.12322) and its TpuGraphs ablation:

* ``"contiguous"``: node-id ranges. TpuGraphs nodes are topologically ordered (producers
  first), so a range is a run of consecutive operations. ``ceil(n / max)`` ranges of
  near-equal size (they differ by at most one node).
* ``"metis"``: a METIS min-cut partition of the undirected graph (the paper's best run),
  through the optional ``pymetis`` package (``pip install tpulearn[gst]``). METIS balances
  parts only approximately, so parts above the limit are partitioned again until none is.

Segments are numbered by their smallest node id; nodes keep their relative order inside a
segment. Edges between segments are dropped when a segment is cut out (see
:mod:`.subgraph`). A partition depends only on the graph structure, so
:class:`PartitionCache` computes it once per (graph, method, limit).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._checks import check_choice

METHODS = ("contiguous", "metis")
METIS_HINT = "METIS partitions need the optional pymetis package: pip install tpulearn[gst]"


@dataclass(frozen=True)
class Partition:
    """A graph's nodes split into segments.

    Attributes:
        assignment: segment of every node, ``[num_nodes]`` int64 (CPU).
        local_index: position of every node inside its segment, ``[num_nodes]`` int64.
        sizes: nodes per segment, ``[num_segments]`` int64.
        method: ``"contiguous"`` or ``"metis"``.
        max_segment_nodes: the limit the partition was made for.
        key: cache / history-table key (``stem:num_nodes:method:limit``), or None.
    """

    assignment: Tensor
    local_index: Tensor
    sizes: Tensor
    method: str
    max_segment_nodes: int
    key: str | None = None

    @property
    def num_segments(self) -> int:
        return int(self.sizes.numel())

    @property
    def num_nodes(self) -> int:
        return int(self.assignment.numel())

    def nodes(self, segment: int) -> Tensor:
        """Sorted node ids of one segment, ``[sizes[segment]]``."""
        return (self.assignment == segment).nonzero().squeeze(1)


def partition(
    graph,
    max_segment_nodes: int = 1000,
    method: str = "contiguous",
    seed: int = 0,
) -> Partition:
    """Split a graph into segments of at most ``max_segment_nodes`` nodes.

    Args:
        graph: a :class:`~tpulearn.data.TpuGraphData` (uses ``num_nodes``, ``edge_index``
            and ``stem`` for the key) or a tuple ``(num_nodes, edge_index)`` with
            ``edge_index`` ``[2, num_edges]`` (the key is then None).
        max_segment_nodes: the most nodes one segment may hold.
        method: ``"contiguous"`` or ``"metis"``.
        seed: METIS random seed (contiguous partitions are deterministic).

    Returns:
        The :class:`Partition`; every node in exactly one segment, none above the limit.

    Raises:
        ImportError: ``method="metis"`` without pymetis installed.
    """
    num_nodes, edge_index, stem = _graph_parts(graph)
    if max_segment_nodes < 1:
        raise ValueError(f"max_segment_nodes must be >= 1, got {max_segment_nodes}")
    if num_nodes < 1:
        raise ValueError("cannot partition a graph with no nodes")
    check_choice("method", method, METHODS)
    if method == "contiguous":
        assignment = _contiguous(num_nodes, max_segment_nodes)
    else:
        assignment = _metis(num_nodes, edge_index, max_segment_nodes, seed)
    key = None if stem is None else partition_key(stem, num_nodes, method, max_segment_nodes)
    return _make_partition(assignment, method, max_segment_nodes, key)


def partition_key(stem: str, num_nodes: int, method: str, max_segment_nodes: int) -> str:
    """The key a graph's partition is cached and its history stored under."""
    return f"{stem}:{num_nodes}:{method}:{max_segment_nodes}"


def key_stem(key: str) -> str:
    """The graph stem of a :func:`partition_key` (stems may themselves contain ':')."""
    return key.rsplit(":", 3)[0]


class PartitionCache:
    """Partitions computed once per (graph stem, num nodes, method, limit).

    Args:
        max_entries: least recently used partitions beyond this many are forgotten (a
            partition holds three int64 vectors of the graph's node count).
    """

    def __init__(self, max_entries: int = 4096):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Partition] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, data, max_segment_nodes: int = 1000, method: str = "contiguous") -> Partition:
        """The partition of ``data`` (a graph with a ``stem``), computed on first use."""
        stem = getattr(data, "stem", None)
        if not isinstance(stem, str):
            raise ValueError("a cached partition needs the graph's `stem` (its file name)")
        key = partition_key(stem, int(data.num_nodes), method, max_segment_nodes)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        part = partition(data, max_segment_nodes, method)
        self._entries[key] = part
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return part


# ---------------------------------------------------------------------- helpers


def _graph_parts(graph) -> tuple[int, Tensor | None, str | None]:
    if isinstance(graph, tuple):
        num_nodes, edge_index = graph
        return int(num_nodes), edge_index, None
    stem = getattr(graph, "stem", None)
    return int(graph.num_nodes), graph.edge_index, stem if isinstance(stem, str) else None


def _contiguous(num_nodes: int, limit: int) -> Tensor:
    num_segments = math.ceil(num_nodes / limit)
    # Boundaries floor(i * n / S): sizes differ by at most one and none exceeds ceil(n / S).
    bounds = torch.arange(1, num_segments) * num_nodes // num_segments
    return torch.bucketize(torch.arange(num_nodes), bounds, right=True)


def _metis(num_nodes: int, edge_index: Tensor | None, limit: int, seed: int) -> Tensor:
    try:
        import pymetis
    except ImportError as err:
        raise ImportError(METIS_HINT) from err
    if edge_index is None:
        raise ValueError("a METIS partition needs the graph's edge_index")
    edges = edge_index.detach().cpu().numpy()
    assignment = np.zeros(num_nodes, dtype=np.int64)
    _metis_split(pymetis, np.arange(num_nodes), edges, limit, seed, assignment, [0])
    return torch.from_numpy(assignment)


def _metis_split(pymetis, nodes, edges, limit, seed, assignment, next_id) -> None:
    """Partition the induced subgraph on ``nodes``; parts above the limit recurse.

    Writes segment ids into ``assignment`` (``next_id`` is a one-element counter).
    """
    if nodes.size <= limit:
        assignment[nodes] = next_id[0]
        next_id[0] += 1
        return
    nparts = math.ceil(nodes.size / limit)
    local = np.full(assignment.size, -1, dtype=np.int64)
    local[nodes] = np.arange(nodes.size)
    src, dst = local[edges[0]], local[edges[1]]
    inside = (src >= 0) & (dst >= 0) & (src != dst)
    membership = _metis_parts(pymetis, nodes.size, src[inside], dst[inside], nparts, seed)
    parts = [nodes[membership == p] for p in range(nparts)]
    parts = [p for p in parts if p.size]
    if len(parts) == 1:
        # METIS could not split (e.g. no edges): fall back to node-id ranges.
        parts = np.array_split(nodes, nparts)
    inner = edges[:, (local[edges[0]] >= 0) & (local[edges[1]] >= 0)]
    for part in parts:
        _metis_split(pymetis, part, inner, limit, seed, assignment, next_id)


def _metis_parts(pymetis, n, src, dst, nparts, seed) -> np.ndarray:
    """METIS membership of n vertices for the undirected edges (src, dst)."""
    pairs = np.unique(np.concatenate([np.stack([src, dst]), np.stack([dst, src])], 1), axis=1)
    order = np.lexsort((pairs[1], pairs[0]))
    pairs = pairs[:, order]
    xadj = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs[0], minlength=n), out=xadj[1:])
    options = pymetis.Options(seed=seed)
    if hasattr(pymetis, "CSRAdjacency"):  # pymetis >= 2025.2; xadj/adjncy are deprecated
        graph = {"adjacency": pymetis.CSRAdjacency(xadj, pairs[1])}
    else:
        graph = {"xadj": xadj, "adjncy": pairs[1]}
    _, membership = pymetis.part_graph(nparts, **graph, options=options)
    return np.asarray(membership, dtype=np.int64)


def _make_partition(assignment: Tensor, method: str, limit: int, key: str | None) -> Partition:
    """Renumber segments by their smallest node and compute in-segment positions."""
    assignment = assignment.long()
    num_nodes = assignment.numel()
    first = torch.full((int(assignment.max()) + 1,), num_nodes, dtype=torch.long)
    first.scatter_reduce_(0, assignment, torch.arange(num_nodes), reduce="amin")
    used = (first < num_nodes).nonzero().squeeze(1)
    # Renumber: segments in the order of their first node, empty ids removed.
    new_id = torch.full_like(first, -1)
    new_id[used[first[used].argsort()]] = torch.arange(used.numel())
    assignment = new_id[assignment]
    sizes = torch.bincount(assignment)
    # Stable sort by segment keeps node order inside each segment.
    order = torch.sort(assignment, stable=True).indices
    starts = torch.cumsum(sizes, 0) - sizes
    local_index = torch.empty(num_nodes, dtype=torch.long)
    local_index[order] = torch.arange(num_nodes) - starts[assignment[order]]
    if int(sizes.max()) > limit:
        raise RuntimeError(f"partition has a segment of {int(sizes.max())} > {limit} nodes")
    return Partition(assignment, local_index, sizes, method, limit, key)
