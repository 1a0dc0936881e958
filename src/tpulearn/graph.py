"""Pure graph helpers shared by the data, the models and the segments.

Edge directions, k-hop growth of a node set, induced subgraphs, and the configurable
nodes' context as a data transform (:class:`ConfigContext`). This module sits at the bottom
layer with :mod:`tpulearn.data`: it imports torch, PyG and the argument checks only, so the
datasets, :mod:`tpulearn.models` and :mod:`tpulearn.segments` all use it without importing
each other.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import BaseTransform

from ._checks import check_choice

EDGE_DIRECTIONS = ("stored", "reversed", "both")


def directed_edges(edge_index: Tensor, direction: str) -> Tensor:
    """The edges messages flow along, [2, E] or [2, 2E] for ``"both"``.

    Args:
        edge_index: [2, E] as stored in the files (consumer -> producer).
        direction: ``"stored"``, ``"reversed"`` or ``"both"`` (each edge and its reverse).
    """
    check_choice("direction", direction, EDGE_DIRECTIONS)
    if direction == "stored":
        return edge_index
    if direction == "reversed":
        return edge_index.flip(0)
    return torch.cat([edge_index, edge_index.flip(0)], dim=1)


def grow(nodes: Tensor, edge_index: Tensor, hops: int, limit: int | None = None) -> Tensor:
    """``nodes`` (bool [N]) and the nodes within ``hops`` hops of them (either direction),
    at most ``limit`` added: nearer hops first; within the hop that reaches the limit, the
    nodes with the most edges into the set so far, then the lowest ids."""
    src, dst = edge_index
    budget = limit
    for _ in range(hops):
        links = torch.zeros(nodes.shape, dtype=torch.long, device=nodes.device)
        links.index_add_(0, dst, nodes[src].long())
        links.index_add_(0, src, nodes[dst].long())
        new = ((links > 0) & ~nodes).nonzero().squeeze(1)
        if budget is not None and new.numel() > budget:
            order = torch.sort(-links[new], stable=True).indices
            new = new[order[:budget]]
        nodes = nodes.clone()
        nodes[new] = True
        if budget is not None:
            budget -= new.numel()
            if budget == 0:
                break
    return nodes


def context_nodes(data: Data, hops: int) -> Tensor:
    """The configurable nodes and the nodes within ``hops`` hops of one (either edge
    direction), bool [N]."""
    ids = data.node_config_ids
    keep = torch.zeros(data.num_nodes, dtype=torch.bool, device=ids.device)
    keep[ids] = True
    return grow(keep, data.edge_index, hops)


# Per-node and per-edge tensors of a graph (beyond ``edge_index`` and the configurable
# nodes): what a cut of the graph (a context here, a segment in tpulearn.segments) cuts.
NODE_KEYS = ("node_feat", "node_opcode", "node_layout", "node_shape", "node_width")
EDGE_KEYS = ("edge_slot",)


def induced_subgraph(data: Data, keep: Tensor) -> Data:
    """A shallow copy of ``data`` (one graph or a ``Batch``) restricted to the nodes ``keep``
    (bool [N]) and the edges among them, relabelled in node order.

    Per-node tensors (features, opcodes, layouts, ``batch``, a segment's ``owned``) and
    per-edge ones (``edge_slot``) are cut; every configurable node must be kept (their
    config columns are not cut).
    """
    subset = keep.nonzero().squeeze(1)
    new_id = torch.full((data.num_nodes,), -1, dtype=torch.long, device=keep.device)
    new_id[subset] = torch.arange(subset.numel(), device=keep.device)
    a, b = data.edge_index
    out = copy.copy(data)
    edges = keep[a] & keep[b]
    for key in NODE_KEYS:
        if key in data:
            out[key] = data[key][subset]
    for key in EDGE_KEYS:
        if key in data:
            out[key] = data[key][edges]
    out.edge_index = new_id[data.edge_index[:, edges]]
    out.node_config_ids = new_id[data.node_config_ids]
    if isinstance(data, Batch):
        out.batch = data.batch[subset]
    if "owned" in data:
        out.owned = data.owned[subset]
    out.num_nodes = subset.numel()
    return out


def config_context(data: Data, hops: int) -> Data:
    """A shallow copy of ``data`` restricted to the configurable nodes and the nodes within
    ``hops`` hops of one (either edge direction), relabelled in node order."""
    return induced_subgraph(data, context_nodes(data, hops))


class ConfigContext(BaseTransform):
    """Data transform: keep the configurable nodes and the nodes within ``hops`` hops of
    one (edges in both directions), as the Kaggle winners did.

    Faster than the whole graph, but the model then no longer sees it. Datasets apply it
    to each item (``LayoutDataset(transform=...)``, set from ``data.context_hops``), so
    training, evaluation and prediction see the same nodes; a segment model partitions the
    transformed graph. Applying it to the graphs one by one and then batching gives the
    batch of the transformed graphs (``Batch`` inputs work too).

    Args:
        hops: the neighbourhood's radius; 0 keeps the configurable nodes only.

    Raises:
        ValueError: ``hops`` < 0.
    """

    def __init__(self, hops: int):
        if hops < 0:
            raise ValueError(f"context hops must be >= 0, got {hops}")
        self.hops = hops

    def forward(self, data: Data) -> Data:
        return config_context(data, self.hops)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hops={self.hops})"
