"""Figures of the data: opcode histogram, runtime distributions, a node's neighbourhood."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.stats import k_hop_nodes
from ._base import _figure, _numpy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The configurable opcodes of layout graphs (the only opcode names the dataset documents).
CONFIGURABLE_OPCODES = {26: "convolution", 34: "dot", 75: "reshape"}


def _opcode_label(opcode: int) -> str:
    name = CONFIGURABLE_OPCODES.get(opcode)
    return f"{opcode} {name}" if name else str(opcode)


def opcode_histogram_figure(
    counts: Any | Mapping[str, Any], top: int = 30, title: str | None = None
) -> Figure:
    """Node counts of the most frequent opcodes (ids; the configurable ones named).

    Args:
        counts: ``[num_opcodes]`` counts indexed by opcode id
            (:func:`tpulearn.data.stats.opcode_counts`), or ``{label: counts}`` to compare
            several groups (e.g. collections) as shares of their nodes.
        top: how many opcodes to show, the most frequent over all groups.
        title: figure title.
    """
    groups = dict(counts) if isinstance(counts, Mapping) else {"nodes": counts}
    arrays = {k: _numpy(v).astype(np.float64).reshape(-1) for k, v in groups.items()}
    for label, a in arrays.items():
        if (a < 0).any() or a.sum() == 0:
            raise ValueError(f"counts of {label!r} must be non-negative with at least one node")
    if not arrays or len({a.size for a in arrays.values()}) != 1:
        raise ValueError("counts must be [num_opcodes] arrays, all of the same length")
    share = len(arrays) > 1
    if share:
        arrays = {k: a / a.sum() for k, a in arrays.items()}
    total = sum(arrays.values())
    shown = [int(i) for i in np.argsort(-total, kind="stable")[:top] if total[i] > 0]
    fig = _figure(max(6.0, 0.28 * len(shown) + 1.5), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / len(arrays)
    x = np.arange(len(shown))
    for j, (label, a) in enumerate(arrays.items()):
        ax.bar(x + (j - (len(arrays) - 1) / 2) * width, a[shown], width, label=label)
    ax.set_xticks(x, [_opcode_label(i) for i in shown], rotation=90, fontsize=7)
    ax.set_xlabel("opcode")
    ax.set_ylabel("share of nodes" if share else "nodes")
    ax.set_yscale("log")
    if share:
        ax.legend(fontsize=7)
    ax.set_title(title or f"the {len(shown)} most frequent opcodes", fontsize=10)
    return fig


def runtime_distribution_figure(runtimes: Mapping[str, Any], title: str | None = None) -> Figure:
    """Cumulative distributions of each graph's config runtimes, as slowdowns over its best.

    The slowdown of a config is ``runtime / fastest runtime - 1``, drawn on a log axis:
    runtimes are often within a percent of the best with a few configs several times slower,
    and a log axis shows both ends. Configs as fast as the best (slowdown 0) lie left of the
    axis; a curve starts at their share.

    Args:
        runtimes: ``{graph label: [num_configs] runtimes}`` (labelled graphs: positive).
        title: figure title.
    """
    if not runtimes:
        raise ValueError("runtimes is empty: expected {graph label: [num_configs] runtimes}")
    slowdowns = {}
    for label, r in runtimes.items():
        r = _numpy(r).astype(np.float64).reshape(-1)
        if r.size == 0 or (r <= 0).any():
            raise ValueError(f"runtimes of {label!r} must be positive (a labelled graph)")
        slowdowns[label] = np.sort(r / r.min() - 1.0)
    positive = np.concatenate([s[s > 0] for s in slowdowns.values()])
    low = positive.min() / 2 if positive.size else 1e-3
    high = max(positive.max() * 1.5 if positive.size else 1.0, low * 10)
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot()
    for label, s in slowdowns.items():
        share = np.arange(1, s.size + 1) / s.size
        x = np.concatenate([[low], np.maximum(s, low), [high]])
        y = np.concatenate([[np.mean(s == 0)], share, [1.0]])
        ax.step(x, y, where="post", lw=1.5, label=f"{label} ({s.size:,} configs)")
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.set_xlabel("slowdown over the graph's fastest config (runtime / fastest - 1)")
    ax.set_ylabel("share of configs at most this slow")
    ax.set_ylim(0, 1.02)
    fig.set_figheight(3.8 + 0.16 * len(slowdowns))
    fig.legend(fontsize=7, loc="outside lower center")
    ax.set_title(title or "runtime distribution per graph", fontsize=10)
    return fig


def _layers(nodes: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Longest-path depth of each node inside the subgraph (producers before consumers)."""
    position = {int(n): i for i, n in enumerate(nodes)}
    depth = np.zeros(nodes.size, dtype=np.int64)
    producers: dict[int, list[int]] = {}
    for u, v in edges.tolist():
        producers.setdefault(position[u], []).append(position[v])
    # Node ids are topologically ordered in TpuGraphs (u > v), so ascending ids work.
    for i in np.argsort(nodes, kind="stable").tolist():
        for p in producers.get(i, ()):
            depth[i] = max(depth[i], depth[p] + 1)
    return depth


def neighbourhood_figure(
    edge_index: Any,
    node_opcode: Any,
    center: int,
    hops: int = 2,
    configurable: Any = None,
    max_nodes: int = 60,
    title: str | None = None,
) -> Figure:
    """A drawing of the k-hop neighbourhood of one node (edges in both directions).

    Nodes are laid out in layers by their longest path inside the drawn subgraph, so data
    flows left to right (producer to consumer); each node is labelled with its opcode id.

    Args:
        edge_index: ``[num_edges, 2]`` as stored (row ``[consumer, producer]``).
        node_opcode: ``[num_nodes]`` opcode ids.
        center: the node to draw around (e.g. a configurable node).
        hops: neighbourhood radius.
        configurable: node ids to highlight (e.g. ``node_config_ids``), or None.
        max_nodes: the nearest nodes kept when the neighbourhood is larger (by hop
            distance, then id); the title says how many were left out.
        title: figure title.
    """
    opcode = _numpy(node_opcode).astype(np.int64).reshape(-1)
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
    nodes, distance = k_hop_nodes(edge_index, center, hops, num_nodes=opcode.size)
    total = nodes.size
    nodes, distance = nodes[:max_nodes], distance[:max_nodes]
    edges = np.asarray(edge_index, dtype=np.int64)
    inside = np.isin(edges[:, 0], nodes) & np.isin(edges[:, 1], nodes)
    edges = edges[inside]
    depth = _layers(nodes, edges)
    xy = np.zeros((nodes.size, 2))
    for layer in np.unique(depth):
        members = np.flatnonzero(depth == layer)
        xy[members, 0] = layer
        xy[members, 1] = np.arange(members.size) - (members.size - 1) / 2
    configurable_set = set() if configurable is None else set(_numpy(configurable).tolist())
    fig = _figure(
        max(5.0, 1.0 * (depth.max() + 1) + 1.5), max(4.0, 0.45 * np.bincount(depth).max())
    )
    ax = fig.add_subplot()
    position = {int(n): i for i, n in enumerate(nodes)}
    arrow = {"arrowstyle": "-|>", "color": "0.55", "lw": 0.7, "shrinkA": 7, "shrinkB": 7}
    for u, v in edges.tolist():
        ax.annotate("", xy=xy[position[u]], xytext=xy[position[v]], arrowprops=arrow)
    colors = [
        "tab:red" if n == center else "tab:orange" if n in configurable_set else "tab:blue"
        for n in nodes.tolist()
    ]
    ax.scatter(xy[:, 0], xy[:, 1], s=260, c=colors, zorder=2, edgecolors="white")
    for (x, y), n in zip(xy, nodes.tolist(), strict=True):
        ax.text(x, y, str(opcode[n]), ha="center", va="center", fontsize=6, color="white", zorder=3)
    legend = {"tab:red": f"node {center}", "tab:orange": "configurable", "tab:blue": "other"}
    for color, label in legend.items():
        ax.scatter([], [], s=60, c=color, label=label)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_axis_off()
    left_out = f", nearest {nodes.size} of {total}" if total > nodes.size else ""
    ax.set_title(
        title
        or f"{hops}-hop neighbourhood of node {center} ({nodes.size} nodes{left_out}); "
        "labels: opcode ids",
        fontsize=9,
    )
    return fig
