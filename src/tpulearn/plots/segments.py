"""Figures of graph segment training: partitions and measured memory."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.stats import segment_edge_counts
from ._base import _colormap, _figure, _numpy

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def partition_figure(partition: Any, edge_index: Any, title: str | None = None) -> Figure:
    """A partition of a graph into segments: node id against segment, and the segment graph.

    Left: every node at (node id, segment), so contiguous ranges show as a staircase and
    METIS parts as scattered ids. Right: the segments as a ring, marker area proportional to
    size, a line between two segments as wide as the log of the edges the partition cuts
    between them.

    Args:
        partition: a :class:`~tpulearn.segments.Partition` or its ``[num_nodes]`` assignment.
        edge_index: ``[num_edges, 2]`` as stored.
        title: figure title (by default the method, when a Partition is given).
    """
    assignment = _numpy(getattr(partition, "assignment", partition)).astype(np.int64)
    counts = segment_edge_counts(assignment, edge_index)
    k = counts.shape[0]
    sizes = np.bincount(assignment, minlength=k)
    cut = int(np.triu(counts, 1).sum())
    edges = int(np.triu(counts).sum())
    fig = _figure(10.0, 4.2)
    left, right = fig.subplots(1, 2, width_ratios=(1.6, 1.0))
    cmap = _colormap("tab20")
    left.scatter(np.arange(assignment.size), assignment, s=2, c=cmap(assignment % 20))
    left.set_xlabel("node id")
    left.set_ylabel("segment")
    left.set_title(f"{assignment.size:,} nodes in {k} segments", fontsize=9)
    angle = 2 * np.pi * np.arange(k) / k
    xy = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    peak = max(1, int(np.triu(counts, 1).max()))
    for a, b in zip(*np.triu_indices(k, 1), strict=True):
        if counts[a, b]:
            width = 0.5 + 3.5 * math.log1p(counts[a, b]) / math.log1p(peak)
            right.plot(*xy[[a, b]].T, color="0.5", lw=width, zorder=1)
    right.scatter(*xy.T, s=600 * sizes / sizes.max(), c=cmap(np.arange(k) % 20), zorder=2)
    for i, (x, y) in enumerate(xy):
        right.text(1.18 * x, 1.18 * y, str(i), ha="center", va="center", fontsize=7)
    right.set_xlim(-1.4, 1.4)
    right.set_ylim(-1.4, 1.4)
    right.set_aspect("equal")
    right.set_axis_off()
    share = cut / edges if edges else 0.0
    right.set_title(f"segment graph: {cut:,} of {edges:,} edges cut ({share:.1%})", fontsize=9)
    method = getattr(partition, "method", None)
    fig.suptitle(title or (f"{method} partition" if method else "partition"), fontsize=10)
    return fig


def memory_figure(
    num_nodes: Sequence[int],
    series: Mapping[str, Sequence[float]],
    ylabel: str = "peak RSS (MB)",
    title: str | None = None,
) -> Figure:
    """Measured memory against graph size, one line per training mode.

    Args:
        num_nodes: ``[P]`` graph sizes.
        series: ``{label: [P] values}`` (NaN for a size not measured).
        ylabel: the unit measured.
        title: figure title.
    """
    x = np.asarray(num_nodes, dtype=np.float64).reshape(-1)
    if x.size == 0 or not series:
        raise ValueError("memory_figure needs graph sizes and at least one series")
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot()
    for label, values in series.items():
        y = np.asarray(values, dtype=np.float64).reshape(-1)
        if y.shape != x.shape:
            raise ValueError(f"series {label!r} has {y.size} values for {x.size} graph sizes")
        ax.plot(x, y, marker="o", label=label)
    ax.set_xlabel("nodes in the graph")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title(title or "memory of one training step", fontsize=10)
    return fig
