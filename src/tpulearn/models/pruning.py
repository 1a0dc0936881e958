"""Which nodes depend on the config, and the subgraphs that update them.

With config features joined early on the configurable nodes, a node's layer-l embedding
can depend on the config only if a configurable node lies within l message-passing hops
upstream of it. Every other node has one embedding for all configs. The model therefore
runs every layer once for the whole graph with no config (the "base" pass), and per config
only on the dependent set S_l, reading the base values of neighbours outside S_{l-1}.
:class:`DependentSets` plans these sets and the subgraphs that update them. Subgraphs keep
every incoming edge of the nodes they update, so mean/attention/normalised aggregations
see exactly the neighbourhood of the full graph. :func:`tpulearn.graph.config_context` is
the inexact alternative: drop the nodes far from any configurable node before the model runs.
"""

from __future__ import annotations

import warnings

import torch

from ..graph import config_context, grow  # noqa: F401 (re-exported until the models move)


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
