"""Which nodes depend on the config, and the subgraphs that update them.

With config features joined early on the configurable nodes, a node's layer-l embedding
can depend on the config only if a configurable node lies within l message-passing hops
upstream of it. Every other node has one embedding for all configs. The model therefore
runs every layer once for the whole graph with no config (the "base" pass), and per config
only on the dependent set S_l, reading the base values of neighbours outside S_{l-1}.
:class:`DependentSets` plans these sets and the subgraphs that update them. Subgraphs keep
every incoming edge of the nodes they update, so mean/attention/normalised aggregations
see exactly the neighbourhood of the full graph. :func:`config_context` is the inexact
alternative: drop the nodes far from any configurable node before the model runs.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data


class DependentSets:
    """Dependent-set planning, mixed into :class:`~tpulearn.models.ConfigGNN`.

    Reads the model's ``join``, ``task``, ``prune``, ``num_layers``, ``propagates``,
    ``sparse_aggregation`` and ``aggregation``.
    """

    def _plan(self, data, edge_index, weight, num_nodes, device):
        """Config-dependent node sets and the subgraphs that update them, per layer.

        Returns a list of ``num_layers + 1`` entries; entry l holds the mask of S_l and,
        for l >= 1, the subgraph: its node ids U_l (S_l and all their in-neighbours),
        local edge endpoints, the kept-edge selector (for edge weights), the positions of
        S_{l-1} and S_l inside U_l, and (layers with a linear aggregation) the sparse
        aggregation matrix [|S_l|, |U_l|].
        """
        mask = torch.zeros(num_nodes, dtype=torch.bool, device=device)
        if self.join == "early":
            if self.task == "tile" or not self.prune:
                mask[:] = True
            else:
                mask[data.node_config_ids] = True
        plans = [(mask,)]
        src, dst = edge_index
        for _ in range(self.num_layers):
            prev = mask
            mask = prev.clone()
            if self.propagates:
                mask[dst[prev[src]]] = True
            keep = mask[dst]
            nodes = mask.clone()
            nodes[src[keep]] = True
            node_ids = nodes.nonzero().squeeze(1)
            local = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
            local[node_ids] = torch.arange(node_ids.numel(), device=device)
            plans.append(
                (
                    mask,
                    node_ids,
                    torch.stack([local[src[keep]], local[dst[keep]]]),
                    keep,
                    local[prev.nonzero().squeeze(1)],
                    local[mask.nonzero().squeeze(1)],
                    self._aggregation_matrix(mask, local, src, dst, keep, weight, node_ids),
                )
            )
        return plans

    def _aggregation_matrix(self, mask, local, src, dst, keep, weight, node_ids):
        """CSR matrix A with (A @ x)[i] = the layer's aggregation at the i-th node of S_l,
        for layers whose aggregation is linear in the neighbours (mean, sum, weighted)."""
        if not (self.sparse_aggregation and self.aggregation):
            return None
        rows = (torch.cumsum(mask.long(), 0) - 1)[dst[keep]]
        cols = local[src[keep]]
        num_rows = int(mask.sum())
        if self.aggregation == "weighted":
            values = weight[keep].float()
        elif self.aggregation == "mean":
            degree = torch.bincount(rows, minlength=num_rows).clamp(min=1)
            values = 1.0 / degree[rows].float()
        else:
            values = torch.ones(rows.numel(), device=rows.device)
        with warnings.catch_warnings():
            # torch flags sparse CSR as beta; the product used here is long-standing.
            warnings.simplefilter("ignore", UserWarning)
            adj = torch.sparse_coo_tensor(
                torch.stack([rows, cols]), values, (num_rows, node_ids.numel())
            )
            return adj.coalesce().to_sparse_csr()


def config_context(data: Data, hops: int) -> Data:
    """A shallow copy of ``data`` restricted to the configurable nodes and the nodes within
    ``hops`` hops of one (either edge direction), relabelled in node order."""
    num_nodes = data.num_nodes
    ids = data.node_config_ids
    keep = torch.zeros(num_nodes, dtype=torch.bool, device=ids.device)
    keep[ids] = True
    keep = grow(keep, data.edge_index, hops)
    a, b = data.edge_index
    subset = keep.nonzero().squeeze(1)
    new_id = torch.full((num_nodes,), -1, dtype=torch.long, device=ids.device)
    new_id[subset] = torch.arange(subset.numel(), device=ids.device)
    inner = keep[a] & keep[b]
    out = copy.copy(data)
    out.node_feat = data.node_feat[subset]
    out.node_opcode = data.node_opcode[subset]
    out.edge_index = new_id[data.edge_index[:, inner]]
    out.node_config_ids = new_id[ids]
    if isinstance(data, Batch):
        out.batch = data.batch[subset]
    if "owned" in data:
        out.owned = data.owned[subset]
    out.num_nodes = subset.numel()
    return out


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
