"""Statistics of TpuGraphs files and collections: sizes, opcodes, neighbourhoods, cuts.

Used by the dataset tour (``notebooks/02_dataset_tour.ipynb``) and :mod:`tpulearn.plots`.
Files are read with the validating readers of :mod:`tpulearn.data.io`, one at a time, so a
broken file raises :class:`~tpulearn.data.schema.TpuGraphsFormatError` naming it. Edge
arrays are in the stored layout, ``[num_edges, 2]`` with row ``[u, v]``: u consumes v.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .io import read_graph, read_layout_graph, read_tile
from .schema import COLLECTIONS, NUM_OPCODES, SPLITS, collection_dir, parse_collection

# Columns of :func:`collection_stats` rows, in table order.
STAT_COLUMNS = (
    "collection",
    "split",
    "graphs",
    "labelled",
    "nodes_mean",
    "nodes_min",
    "nodes_max",
    "edges_mean",
    "configs_mean",
    "configs_min",
    "configs_max",
    "configurable_nodes_mean",
)


def graph_stats(path: str | Path, task: str | None = None) -> dict:
    """Sizes of one tile or layout file.

    Args:
        path: an ``.npz`` file.
        task: ``"tile"`` or ``"layout"``; by default read from the released folder layout
            (``npz/tile/xla/<split>/`` or ``npz/layout/<source>/<search>/<split>/``).

    Returns:
        ``{"graph", "nodes", "edges", "configs", "configurable_nodes", "labelled"}``;
        ``configurable_nodes`` is None for tile files (every node takes the tile config).
    """
    path = Path(path)
    if task is None:
        task = _task_of(path)
    if task == "tile":
        record = read_tile(path)
        configurable = None
    elif task == "layout":
        # Without the config features: the largest nlp graphs hold gigabytes of them.
        node_feat, _, edge_index, ids, runtime = read_layout_graph(path)
        return {
            "graph": path.stem,
            "nodes": int(node_feat.shape[0]),
            "edges": int(edge_index.shape[0]),
            "configs": int(runtime.shape[0]),
            "configurable_nodes": int(ids.shape[0]),
            "labelled": bool(runtime.any()),
        }
    else:
        raise ValueError(f"task must be 'tile' or 'layout', got {task!r}")
    return {
        "graph": record.stem,
        "nodes": record.num_nodes,
        "edges": int(record.edge_index.shape[0]),
        "configs": record.num_configs,
        "configurable_nodes": configurable,
        "labelled": record.labelled,
    }


def _task_of(path: Path) -> str:
    parts = path.parts
    if len(parts) >= 5 and parts[-5:-2] == ("npz", "tile", "xla"):
        return "tile"
    if len(parts) >= 6 and parts[-6] == "npz" and parts[-5] == "layout":
        return "layout"
    raise ValueError(
        f"{path}: cannot tell a tile file from a layout file outside the released folder "
        "layout (npz/tile/xla/<split>/ or npz/layout/<source>/<search>/<split>/); pass task="
    )


def collection_stats(
    root: str | Path,
    collections: Sequence[str] = COLLECTIONS,
    splits: Sequence[str] = SPLITS,
) -> list[dict]:
    """One row of size statistics per (collection, split) found under a data root.

    Args:
        root: a data root laid out as released (``<root>/npz/...``), e.g.
            :func:`~tpulearn.data.sample_root`.
        collections: collections to look at; folders that do not exist are skipped.
        splits: splits to look at.

    Returns:
        Rows with the keys of :data:`STAT_COLUMNS`: graph and labelled-graph counts, mean /
        min / max nodes and configs per graph, mean edges and configurable nodes
        (None for tile).

    Raises:
        ValueError: an unknown collection or split name.
        FileNotFoundError: no npz file under any of the folders looked at.
    """
    rows = []
    for collection in collections:
        task = parse_collection(collection)[0]
        for split in splits:
            files = sorted(collection_dir(root, collection, split).glob("*.npz"))
            if not files:
                continue
            graphs = [graph_stats(f, task) for f in files]
            rows.append(_summary(collection, split, graphs))
    if not rows:
        raise FileNotFoundError(
            f"{Path(root) / 'npz'}: no npz files of {', '.join(collections)} "
            f"({'/'.join(splits)}); expected a data root laid out as released"
        )
    return rows


def _summary(collection: str, split: str, graphs: list[dict]) -> dict:
    def column(key):
        return np.array([g[key] for g in graphs], dtype=np.float64)

    nodes, configs = column("nodes"), column("configs")
    configurable = [g["configurable_nodes"] for g in graphs]
    return {
        "collection": collection,
        "split": split,
        "graphs": len(graphs),
        "labelled": sum(g["labelled"] for g in graphs),
        "nodes_mean": float(nodes.mean()),
        "nodes_min": int(nodes.min()),
        "nodes_max": int(nodes.max()),
        "edges_mean": float(column("edges").mean()),
        "configs_mean": float(configs.mean()),
        "configs_min": int(configs.min()),
        "configs_max": int(configs.max()),
        "configurable_nodes_mean": (
            None if configurable[0] is None else float(np.mean(configurable))
        ),
    }


def stats_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of dict rows (e.g. :func:`collection_stats`); floats get one decimal,
    None shows as ``-``."""
    if not rows:
        raise ValueError("stats_table needs at least one row")
    columns = list(columns or rows[0])

    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.1f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def opcode_counts(paths: Iterable[str | Path]) -> np.ndarray:
    """How many nodes of each opcode the files hold together.

    Returns:
        ``[NUM_OPCODES]`` int64 counts, indexed by opcode id.
    """
    counts = np.zeros(NUM_OPCODES, dtype=np.int64)
    for path in paths:
        _, node_opcode, _ = read_graph(path)
        counts += np.bincount(node_opcode, minlength=NUM_OPCODES)
    return counts


def _check_edges(edge_index, num_nodes: int | None = None) -> np.ndarray:
    edges = np.asarray(edge_index)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(
            f"edge_index must be [num_edges, 2] (the stored layout, row [consumer, producer]), "
            f"got shape {edges.shape}"
        )
    if edges.dtype.kind not in "iu":
        raise ValueError(f"edge_index must hold integer node ids, got dtype {edges.dtype}")
    if num_nodes is not None and edges.size and (edges.min() < 0 or edges.max() >= num_nodes):
        raise ValueError(f"edge_index holds node ids outside [0, {num_nodes})")
    return edges.astype(np.int64, copy=False)


def k_hop_nodes(
    edge_index, center: int, hops: int, num_nodes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The nodes within ``hops`` edges of ``center``, edges taken in both directions.

    Args:
        edge_index: ``[num_edges, 2]`` as stored.
        center: the node the neighbourhood is drawn around.
        hops: the largest distance kept (0 keeps only ``center``).
        num_nodes: the graph's node count (default: the largest id in ``edge_index`` + 1,
            or ``center`` + 1).

    Returns:
        ``(nodes, distance)``: node ids and their hop distance from ``center``, ordered by
        distance, then by id (so a prefix is a smaller neighbourhood).
    """
    edges = _check_edges(edge_index)
    if num_nodes is None:
        num_nodes = max(int(edges.max()) + 1 if edges.size else 0, int(center) + 1)
    edges = _check_edges(edges, num_nodes)
    if not 0 <= center < num_nodes:
        raise ValueError(f"center must be a node id in [0, {num_nodes}), got {center}")
    if hops < 0:
        raise ValueError(f"hops must be >= 0, got {hops}")
    # Undirected adjacency in CSR form.
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    order = np.argsort(src, kind="stable")
    indptr = np.searchsorted(src[order], np.arange(num_nodes + 1))
    neighbours = dst[order]
    distance = {int(center): 0}
    queue = deque([int(center)])
    while queue:
        node = queue.popleft()
        if distance[node] == hops:
            continue
        for other in neighbours[indptr[node] : indptr[node + 1]].tolist():
            if other not in distance:
                distance[other] = distance[node] + 1
                queue.append(other)
    ranked = sorted(distance.items(), key=lambda item: (item[1], item[0]))
    nodes = np.array([n for n, _ in ranked], dtype=np.int64)
    return nodes, np.array([d for _, d in ranked], dtype=np.int64)


def segment_edge_counts(assignment, edge_index) -> np.ndarray:
    """Edges within and between the segments of a partition.

    Args:
        assignment: ``[num_nodes]`` segment of every node (a
            :attr:`~tpulearn.segments.Partition.assignment`, tensor or array).
        edge_index: ``[num_edges, 2]`` as stored.

    Returns:
        ``[num_segments, num_segments]`` int64, symmetric: the diagonal counts the edges
        inside a segment, entry ``(a, b)`` the edges between segments a and b (the edges a
        segment model drops).
    """
    segment = np.asarray(assignment).astype(np.int64, copy=False)
    if segment.ndim != 1 or segment.size == 0:
        raise ValueError(f"assignment must be a non-empty [num_nodes] array, got {segment.shape}")
    if segment.min() < 0:
        raise ValueError("assignment holds negative segment ids")
    edges = _check_edges(edge_index, segment.size)
    k = int(segment.max()) + 1
    a, b = segment[edges[:, 0]], segment[edges[:, 1]]
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (np.minimum(a, b), np.maximum(a, b)), 1)
    return counts + np.triu(counts, 1).T
