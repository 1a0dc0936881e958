"""Cutting a graph into segment subgraphs.

A segment is an ordinary :class:`~tpulearn.data.TpuGraphData`: its nodes (in graph order),
the edges with both ends inside it (re-indexed; edges to other segments are dropped, as in
GST), its configurable nodes with their columns of ``node_config_feat``, and the same
configs as the graph (``config_runtime``, ``config_index``, tile ``config_feat``). So any
:class:`~tpulearn.models.ConfigGNN` scores a segment as it scores a graph, and a segment
without configurable nodes simply gets the same score for every config.

Halo (``halo_hops=k > 0``, an extension; GST drops cross-segment edges): the segment also
carries every node within k hops of it (either edge direction) as read-only context, with
the edges among all these nodes and the context's configurable nodes. A bool ``owned``
[n] marks the segment's own nodes; the segment model passes it to the model's ``owned``
argument, which pools only those, so each node is counted in exactly one segment. With k
at least the number of message-passing layers (one more for GCN's degree normalisation),
every owned node's final vector equals its whole-graph vector.
Hubs (a constant or parameter read by hundreds of operations) make k-hop halos of real
graphs several times the segment (2 hops: 2.2x on the bundled unet_3d, 9x on an nlp
graph of 22k nodes), so ``max_halo_nodes`` caps the context; a capped halo is approximate.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Batch

from ..data.datasets import TpuGraphData
from ..graph import EDGE_KEYS, NODE_KEYS, grow
from .partition import Partition

# Per-node tensors (NODE_KEYS) are cut with the node subset, per-edge ones (EDGE_KEYS) with
# the edges; everything else but the keys handled below (graph structure, configurable
# nodes) is config- or graph-level and copied unchanged.
_SPECIAL = (
    "edge_index",
    *EDGE_KEYS,
    "node_config_ids",
    "node_config_feat",
    "node_splits",
    "num_nodes",
)


def segment_data(
    data: TpuGraphData,
    part: Partition,
    segment: int,
    halo_hops: int = 0,
    max_halo_nodes: int | None = None,
) -> TpuGraphData:
    """One segment of ``data`` as a graph of its own.

    Args:
        data: one graph (not a batch), ``num_nodes`` N, any config count C.
        part: a partition of ``data``.
        segment: which segment, ``0 <= segment < part.num_segments``.
        halo_hops: also carry the nodes within this many hops as context (module
            docstring); 0: the segment alone, as in GST.
        max_halo_nodes: the most context nodes (None: no limit). Nearer hops come first;
            in the hop that reaches the limit, the nodes with the most edges into the
            segment and the context so far.

    Returns:
        The segment: ``node_feat`` [n_s, 140], ``edge_index`` [2, e_s] (local ids, inner
        edges only), layout ``node_config_ids`` [k_s] (local) and ``node_config_feat``
        [C, k_s, 18]; config-level tensors as in ``data``; with a halo also ``owned``
        [n_s] bool.
    """
    if not 0 <= segment < part.num_segments:
        raise IndexError(f"segment {segment} out of range for {part.num_segments} segments")
    if part.num_nodes != data.num_nodes:
        raise ValueError(
            f"partition of {part.num_nodes} nodes does not match a graph of {data.num_nodes}"
        )
    if halo_hops < 0:
        raise ValueError(f"halo_hops must be >= 0, got {halo_hops}")
    device = data.edge_index.device
    assignment = part.assignment.to(device)
    own = assignment == segment
    inside = grow(own, data.edge_index, halo_hops, max_halo_nodes) if halo_hops else own
    nodes = inside.nonzero().squeeze(1)
    if halo_hops:
        local = torch.full_like(assignment, -1)
        local[nodes] = torch.arange(nodes.numel(), device=device)
    else:
        local = part.local_index.to(device)

    out = TpuGraphData(num_nodes=nodes.numel())
    for key, value in data:
        if key in NODE_KEYS:
            out[key] = value[nodes]
        elif key not in _SPECIAL:
            out[key] = value
    src, dst = data.edge_index
    keep = inside[src] & inside[dst]
    out.edge_index = local[data.edge_index[:, keep]]
    for key in EDGE_KEYS:
        if key in data:
            out[key] = data[key][keep]
    if "node_config_ids" in data:
        cols = inside[data.node_config_ids].nonzero().squeeze(1)
        out.node_config_ids = local[data.node_config_ids[cols]]
        out.node_config_feat = data.node_config_feat[:, cols]
    if "node_splits" in data:
        out.node_splits = _segment_splits(data.node_splits, nodes)
    if halo_hops:
        out.owned = own[nodes]
    return out


def split_segments(
    data: TpuGraphData, part: Partition, halo_hops: int = 0, max_halo_nodes: int | None = None
) -> list[TpuGraphData]:
    """Every segment of ``data``, in segment order (see :func:`segment_data`)."""
    return [
        segment_data(data, part, s, halo_hops, max_halo_nodes) for s in range(part.num_segments)
    ]


def segment_batch(segments: list[TpuGraphData]) -> Batch:
    """A PyG ``Batch`` of segments that share the config count C (scores [S, C])."""
    return Batch.from_data_list(segments)


def _segment_splits(node_splits: Tensor, nodes: Tensor) -> Tensor:
    """Sub-computation boundaries inside a segment: positions where the sub-computation of
    consecutive segment nodes changes, with 0 and the segment size, ``[k']``."""
    splits = node_splits.reshape(-1)
    which = torch.bucketize(nodes, splits[1:-1], right=True)
    change = (which[1:] != which[:-1]).nonzero().squeeze(1) + 1
    ends = torch.tensor([0, nodes.numel()], dtype=splits.dtype, device=splits.device)
    return torch.cat([ends[:1], change.to(splits.dtype), ends[1:]])
