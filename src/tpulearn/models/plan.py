"""Which nodes depend on the config, and the subgraphs that update them.

With config features joined early on the configurable nodes, a node's layer-l embedding
can depend on the config only if a configurable node lies within l message-passing hops
upstream of it. Every other node has one embedding for all configs. The model therefore
runs every layer once for the whole graph with no config (the "base" pass), and per config
only on the dependent set S_l, reading the base values of neighbours outside S_{l-1}.
:class:`Planner` plans these sets and the subgraphs that update them, one
:class:`LayerPlan` per layer, collected in a :class:`Plan`. Subgraphs keep every incoming
edge of the nodes they update, so mean/attention/normalised aggregations see exactly the
neighbourhood of the full graph.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.data import Data

# Neighbour aggregations that are linear in the neighbours' vectors, and so can be written
# as one sparse matrix product: "mean", "sum", or "weighted" by per-edge weights.
LINEAR_AGGREGATIONS = ("mean", "sum", "weighted")


class LayerPlan(NamedTuple):
    """How one layer l >= 1 updates the dependent nodes of every config.

    U_l (the subgraph) is S_l and all their in-neighbours, in graph order; positions below
    index into ``node_ids``.

    Attributes:
        mask: bool [N], the dependent set S_l this layer computes per config.
        node_ids: long [|U_l|], the subgraph's node ids.
        edges: long [2, E_l], the edges into S_l with both ends as positions in U_l.
        edge_keep: bool [E], which edges of the full graph ``edges`` holds (selects their
            edge weights).
        prev_pos: long [|S_{l-1}|], where the previous layer's dependent nodes sit in U_l
            (their per-config values replace the base ones there).
        upd: long [|S_l|], where the updated nodes S_l sit in U_l.
        adj: CSR float32 [|S_l|, |U_l|] with ``(adj @ x)[i]`` the layer's aggregation at
            the i-th node of S_l, for layers with a linear aggregation (else ``None``).
        directions: with directed layers, one CSR float32 [|S_l|, |U_l|] per edge
            direction (its users, its operands): the mean of each node's in-neighbours
            along that direction (else ``None``).
    """

    mask: Tensor
    node_ids: Tensor
    edges: Tensor
    edge_keep: Tensor
    prev_pos: Tensor
    upd: Tensor
    adj: Tensor | None
    directions: tuple[Tensor, ...] | None = None


@dataclass(frozen=True)
class Plan:
    """The dependent sets of a graph and how each layer updates them.

    Attributes:
        inputs: bool [N], S_0: the nodes whose layer-0 input depends on the config.
        layers: one :class:`LayerPlan` per layer (S_1 .. S_L).
        distinct: each distinct (node, layer) state can be computed once for all configs
            (:mod:`tpulearn.models.dedup`): S_0 is exactly the configurable nodes and every
            layer aggregates with a sparse matrix.
    """

    inputs: Tensor
    layers: list[LayerPlan]
    distinct: bool = False

    @property
    def masks(self) -> list[Tensor]:
        """S_0 .. S_L, bool [N] each."""
        return [self.inputs] + [layer.mask for layer in self.layers]


@dataclass(frozen=True)
class Planner:
    """Plans the dependent sets and their subgraphs for a stack of layers.

    Args:
        num_layers: message-passing layers L.
        propagates: whether a layer reads its in-neighbours (``False``: each node reads
            only itself, so S_l = S_0).
        aggregation: the layers' linear aggregation (one of :data:`LINEAR_AGGREGATIONS`)
            to build sparse aggregation matrices for; ``None`` builds none.
        inputs: S_0: ``"configurable"`` (layout configs joined early on their nodes),
            ``"all"`` (tile configs joined early, or no pruning: C full copies) or
            ``"none"`` (configs joined late, after message passing).
    """

    num_layers: int
    propagates: bool
    aggregation: str | None
    inputs: str

    def plan(
        self,
        data: Data,
        edge_index: Tensor,
        weight: Tensor | None,
        directions: list[Tensor] | None = None,
    ) -> Plan:
        """The plan for one graph (or batch) ``data``.

        Args:
            data: the graph: ``num_nodes``, layout ``node_config_ids`` [K].
            edge_index: [2, E] the edges messages flow along (source, target).
            weight: [E] per-edge weights (``"weighted"`` aggregation) or ``None``.
            directions: directed layers: the edges [2, E_d] of each direction (each a
                subset of ``edge_index`` up to self-loops); every layer plan then holds
                their mean matrices (:attr:`LayerPlan.directions`).
        """
        inputs = torch.full((data.num_nodes,), self.inputs == "all", device=edge_index.device)
        if self.inputs == "configurable":
            inputs[data.node_config_ids] = True
        mask, layers = inputs, []
        for _ in range(self.num_layers):
            layers.append(self._layer(mask, edge_index, weight, directions))
            mask = layers[-1].mask
        distinct = (
            self.inputs == "configurable"
            and self.propagates
            and bool(layers)
            and all(layer.adj is not None for layer in layers)
            and 0 < data.node_config_ids.numel() == int(inputs.sum())
        )
        return Plan(inputs, layers, distinct)

    def _layer(
        self,
        prev: Tensor,
        edge_index: Tensor,
        weight: Tensor | None,
        directions: list[Tensor] | None,
    ) -> LayerPlan:
        """The plan of the layer that reads S_{l-1} (``prev``, bool [N])."""
        num_nodes, device = prev.shape[0], prev.device
        src, dst = edge_index
        mask = prev.clone()
        if self.propagates:
            mask[dst[prev[src]]] = True
        keep = mask[dst]
        nodes = mask.clone()
        nodes[src[keep]] = True
        node_ids = nodes.nonzero().squeeze(1)
        local = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
        local[node_ids] = torch.arange(node_ids.numel(), device=device)
        adj = None
        if self.aggregation:
            adj = aggregation_matrix(
                self.aggregation, mask, local, edge_index, keep, weight, node_ids.numel()
            )
        by_direction = None
        if directions is not None:
            # The sources of every edge into S_l are in U_l: the layer's edges hold them
            # (a self-loop's source is the node itself).
            by_direction = tuple(
                aggregation_matrix("mean", mask, local, d, mask[d[1]], None, node_ids.numel())
                for d in directions
            )
        return LayerPlan(
            mask=mask,
            node_ids=node_ids,
            edges=torch.stack([local[src[keep]], local[dst[keep]]]),
            edge_keep=keep,
            prev_pos=local[prev.nonzero().squeeze(1)],
            upd=local[mask.nonzero().squeeze(1)],
            adj=adj,
            directions=by_direction,
        )


def aggregation_matrix(
    kind: str,
    rows: Tensor,
    local: Tensor,
    edge_index: Tensor,
    keep: Tensor,
    weight: Tensor | None,
    num_cols: int,
) -> Tensor:
    """CSR matrix A [R, num_cols] with (A @ x)[i] the aggregation at the i-th node of
    ``rows``, for a linear aggregation ``kind``.

    Args:
        kind: ``"mean"``, ``"sum"`` or ``"weighted"`` (by ``weight``).
        rows: bool [N], the R nodes aggregated at.
        local: long [N], each node's column (position in the operand x).
        edge_index: [2, E] (source, target).
        keep: bool [E], the edges into ``rows`` (all of them, so degrees are the full
            graph's).
        weight: [E] edge weights for ``"weighted"``.
    """
    src, dst = edge_index
    row = (torch.cumsum(rows.long(), 0) - 1)[dst[keep]]
    col = local[src[keep]]
    num_rows = int(rows.sum())
    if kind == "weighted":
        values = weight[keep].float()
    elif kind == "mean":
        degree = torch.bincount(row, minlength=num_rows).clamp(min=1)
        values = 1.0 / degree[row].float()
    else:
        values = torch.ones(row.numel(), device=row.device)
    return csr_matrix(row, col, values, (num_rows, num_cols))


def csr_matrix(rows: Tensor, cols: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """The CSR matrix of ``size`` holding ``values[i]`` at ``(rows[i], cols[i])``: the
    same tensors as ``sparse_coo_tensor(...).coalesce().to_sparse_csr()`` (entries in row,
    then column order; the values of a repeated position summed), built from one sort of
    the positions when none repeats (the common case; coalescing does more work and was a
    twentieth of a recipe step)."""
    num_rows, num_cols = size
    key, order = torch.sort(rows * num_cols + cols)
    with warnings.catch_warnings():
        # torch flags sparse CSR as beta; the product used here is long-standing.
        warnings.simplefilter("ignore", UserWarning)
        if key.numel() > 1 and bool((key[1:] == key[:-1]).any()):
            matrix = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, size)
            return matrix.coalesce().to_sparse_csr()
        crow = torch.zeros(num_rows + 1, dtype=torch.long, device=rows.device)
        torch.cumsum(torch.bincount(rows, minlength=num_rows), 0, out=crow[1:])
        return torch.sparse_csr_tensor(crow, cols[order], values[order], size)
