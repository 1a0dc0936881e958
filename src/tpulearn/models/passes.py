"""The layer passes: once with no config, then per config on the dependent nodes only.

:class:`ConfigGNN <tpulearn.models.ConfigGNN>` runs every layer once for the whole graph
with no config (the "base" pass, :meth:`LayerPasses.base`) and, per config, only on the
dependent sets S_l planned by :mod:`tpulearn.models.plan`, reading the base values of
neighbours outside S_{l-1} (:meth:`LayerPasses.run`). The per-config layer takes one of
three paths, all computing the same values:

- distinct states (layout models, :mod:`tpulearn.models.dedup`): each distinct
  (node, layer) state once for all configs that share it;
- sparse product (layers with a linear aggregation): all configs aggregated with one
  sparse matrix product (:func:`spmm`);
- C copies: the PyG layer on C disjoint copies of the subgraph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import dedup
from .plan import LayerPlan, aggregation_matrix

# A dependent set's per-config values: a tensor [C, |S_l|, H] or, on the distinct-state
# path, a dedup.StateLayer.
Dependent = Tensor | dedup.StateLayer


class LayerPasses:
    """The model's layers run on one graph, config-free or per config.

    Args:
        convs, norms, acts: the model's layers, one per depth (the model owns them: their
            parameters stay in its ``state_dict``).
        run_conv: ``(conv, x [n, H], edge_index, weight) -> [n, H]``, the layer type's
            call of its PyG layer.
        combine: ``(conv, agg, x_self) -> out``, the layer's output from its aggregated
            neighbours and its own input (layer types with a linear aggregation).
        edge_index: [2, E] the edges messages flow along; ``weight`` [E] or ``None``.
        base_aggregation: the linear aggregation with which the base pass computes only
            the rows outside the dependent set (the others are never read); ``None``
            runs the whole layer.
        directed: per layer, the ``Linear(len(directions) * H, H)`` that reads the means of
            each node's in-neighbours along each edge direction (added to the layer's
            output before its norm and activation), or ``None``: undirected layers.
        directions: the edges [2, E_d] of each direction (with ``directed``).
        dropout, residual, l2_normalize, training: applied after every layer, as the
            model's options of those names (``training``: dropout is active). Dropout
            draws one mask per (layer, node) for the whole forward: every config of the
            graph, and its config-free pass, see the same mask, so dropout regularises
            without adding noise to the score differences between configs that a ranking
            loss reads (per-config masks bury them; see
            :class:`~tpulearn.models.base.ConfigSharedDropout`).
    """

    def __init__(
        self,
        convs: nn.ModuleList,
        norms: nn.ModuleList,
        acts: nn.ModuleList,
        run_conv: Callable,
        combine: Callable,
        edge_index: Tensor,
        weight: Tensor | None,
        base_aggregation: str | None,
        dropout: float,
        residual: bool,
        l2_normalize: bool,
        training: bool,
        directed: nn.ModuleList | None = None,
        directions: list[Tensor] | None = None,
    ):
        self.convs, self.norms, self.acts = convs, norms, acts
        self.directed, self.directions = directed, directions
        self.run_conv, self.combine = run_conv, combine
        self.edge_index, self.weight = edge_index, weight
        self.base_aggregation = base_aggregation
        self.dropout, self.residual, self.l2_normalize = dropout, residual, l2_normalize
        self.training = training
        self._masks: dict[int, Tensor] = {}
        self._every_row_directions: list[Tensor] | None = None

    def _mask(self, i: int, like: Tensor, nodes: Tensor | None) -> Tensor | None:
        """Layer i's dropout mask at ``nodes`` ([R] node ids; ``None``: every node), [R, H]
        scaled by 1 / (1 - p); drawn once per forward for all N nodes (``like`` [N, H])."""
        if not (self.training and self.dropout > 0):
            return None
        mask = self._masks.get(i)
        if mask is None:
            keep = 1.0 - self.dropout
            mask = torch.empty(like.shape, device=like.device).bernoulli_(keep) / keep
            self._masks[i] = mask
        return mask if nodes is None else mask[nodes]

    def base(self, i: int, x: Tensor, dependent: Tensor) -> Tensor:
        """Layer i of the config-free pass: [N, H] -> [N, H].

        With ``base_aggregation`` only the rows outside ``dependent`` (bool [N], S_{i+1})
        are computed; the others are left at 0 (the per-config values replace them).
        """
        ids = torch.arange(x.shape[0], device=x.device)
        if self.base_aggregation is None:
            out = self.run_conv(self.convs[i], x, self.edge_index, self.weight)
            if self.directed is not None and self._every_row_directions is None:
                # Every row, the same matrices for every layer: built once.
                every = torch.ones_like(dependent)
                self._every_row_directions = self._direction_matrices(every, ids)
            out = self._add_directed(i, out, self._every_row_directions, x)
            return self._post(i, out, x, self._mask(i, x, None))
        rows = (~dependent).nonzero().squeeze(1)
        out = x.new_zeros(x.shape)  # every layer keeps the hidden width
        if rows.numel() == 0:
            return out
        keep = ~dependent[self.edge_index[1]]
        matrix = aggregation_matrix(
            self.base_aggregation, ~dependent, ids, self.edge_index, keep, self.weight, x.shape[0]
        )
        x_self = x[rows]
        value = self._layer(i, matrix, x, x_self)
        value = self._add_directed(i, value, self._direction_matrices(~dependent, ids), x)
        value = self._post(i, value, x_self, self._mask(i, x, rows))
        return out.index_copy(0, rows, value.to(out.dtype))

    def run(self, i: int, plan: LayerPlan, base: Tensor, dep: Dependent) -> Dependent:
        """Layer i on the dependent nodes, for every config of the chunk.

        Args:
            i: the layer (0-based); ``plan`` its :class:`LayerPlan` (S_{i+1}).
            base: [N, H] the config-free layer-i values.
            dep: the layer-i values of S_i, [C, |S_i|, H] or a :class:`~.dedup.StateLayer`.

        Returns:
            The layer-(i+1) values of S_{i+1}, in the same form as ``dep``.
        """
        if isinstance(dep, dedup.StateLayer):
            return self._distinct(i, plan, base, dep)
        if plan.node_ids.numel() == 0:
            return dep
        if plan.adj is not None:
            return self._sparse(i, plan, base, dep)
        return self._copies(i, plan, base, dep)

    def _sparse(self, i: int, plan: LayerPlan, base: Tensor, dep: Tensor) -> Tensor:
        # Node-major [U, C, H]: one sparse product aggregates every config at once,
        # configs becoming columns of the dense operand.
        num_configs = dep.shape[0]
        x = base[plan.node_ids].unsqueeze(1).repeat(1, num_configs, 1)
        x[plan.prev_pos] = dep.transpose(0, 1)
        x_self = x[plan.upd]
        mask = self._mask(i, base, plan.node_ids[plan.upd])
        mask = None if mask is None else mask.unsqueeze(1)  # shared by the configs
        out = self._add_directed(i, self._layer(i, plan.adj, x, x_self), plan.directions, x)
        return self._post(i, out, x_self, mask).transpose(0, 1)

    def _copies(self, i: int, plan: LayerPlan, base: Tensor, dep: Tensor) -> Tensor:
        # C disjoint copies of the subgraph, one per config, through the PyG layer.
        num_configs, u = dep.shape[0], plan.node_ids.numel()
        x = base[plan.node_ids].unsqueeze(0).repeat(num_configs, 1, 1)  # [C, U, H]
        x[:, plan.prev_pos] = dep
        offsets = (torch.arange(num_configs, device=x.device) * u).view(-1, 1, 1)
        edges = (plan.edges.unsqueeze(0) + offsets).transpose(0, 1).reshape(2, -1)
        weight = None if self.weight is None else self.weight[plan.edge_keep].repeat(num_configs)
        out = self.run_conv(self.convs[i], x.reshape(num_configs * u, -1), edges, weight)
        out = out.view(num_configs, u, -1)[:, plan.upd]
        if plan.directions is not None:  # node-major for the products, as _sparse
            out = out + self._directed(i, plan.directions, x.transpose(0, 1)).transpose(0, 1)
        mask = self._mask(i, base, plan.node_ids[plan.upd])
        mask = None if mask is None else mask.unsqueeze(0)  # shared by the configs
        return self._post(i, out, x[:, plan.upd], mask)

    def _distinct(
        self, i: int, plan: LayerPlan, base: Tensor, prev: dedup.StateLayer
    ) -> dedup.StateLayer:
        # Each distinct state of S_{i+1} computed once, from one config that has it.
        table, slot_of = dedup.layer_inputs(prev, base, plan.node_ids, plan.prev_pos)
        index, rep_config, rep_row = dedup.distinct_rows(prev, slot_of, plan.upd, plan.adj)
        matrix = dedup.aggregation_rows(plan.adj, prev, slot_of, rep_config, rep_row)
        x_self = table[dedup.self_rows(prev, slot_of, plan.upd, rep_config, rep_row)]
        out = self._layer(i, matrix, table, x_self)
        if plan.directions is not None:
            by_direction = [
                dedup.aggregation_rows(m, prev, slot_of, rep_config, rep_row)
                for m in plan.directions
            ]
            out = self._add_directed(i, out, by_direction, table)
        mask = self._mask(i, base, plan.node_ids[plan.upd[rep_row]])  # each state's node
        return dedup.StateLayer(self._post(i, out, x_self, mask), index)

    def _layer(self, i: int, matrix: Tensor, table: Tensor, x_self: Tensor) -> Tensor:
        """Layer i's output (before norm and activation) at the rows of ``matrix``: the
        one step the base, sparse and distinct-state paths share (attention layers
        override it, :mod:`tpulearn.models.attention`).

        Args:
            matrix: CSR [R, T], the aggregation at each row over the rows of ``table``.
            table: [T, *, H] the inputs the rows read (``*``: configs on the sparse path).
            x_self: [R, *, H] each row's own input.

        Returns:
            [R, *, H].
        """
        flat = table.reshape(table.shape[0], -1)  # configs become columns of the product
        agg = spmm(matrix, flat).view(-1, *table.shape[1:])
        return self.combine(self.convs[i], agg, x_self)

    def _direction_matrices(self, rows: Tensor, ids: Tensor) -> list[Tensor] | None:
        """The base pass's mean matrices [R, N] along each direction at ``rows`` (bool
        [N]), or ``None`` without directed layers."""
        if self.directed is None:
            return None
        n = rows.shape[0]
        return [
            aggregation_matrix("mean", rows, ids, d, rows[d[1]], None, n) for d in self.directions
        ]

    def _directed(self, i: int, matrices: Sequence[Tensor], table: Tensor) -> Tensor:
        """Layer i's directed term [R, *, H] at the rows of ``matrices`` (each CSR [R, T], a
        mean along one direction over the rows of ``table`` [T, *, H]): one Linear of the
        concatenated means."""
        flat = table.reshape(table.shape[0], -1)
        means = [spmm(m, flat).view(-1, *table.shape[1:]) for m in matrices]
        return self.directed[i](torch.cat(means, -1))

    def _add_directed(self, i: int, out: Tensor, matrices, table: Tensor) -> Tensor:
        """``out`` plus layer i's directed term; ``matrices`` ``None``: ``out`` unchanged."""
        return out if matrices is None else out + self._directed(i, matrices, table)

    def _post(self, i: int, h: Tensor, h_in: Tensor, mask: Tensor | None) -> Tensor:
        h = self.acts[i](self.norms[i](h))
        if mask is not None:
            h = h * mask.to(h.dtype)
        if self.residual:
            h = h + h_in
        if self.l2_normalize:
            h = F.normalize(h, dim=-1)
        return h


def spmm(adj: Tensor, x: Tensor) -> Tensor:
    """adj [R, U] (CSR, float32) @ x [U, D], outside autocast: sparse kernels have no bf16
    version on CPU, so reduced-precision inputs are aggregated in float32 and cast back."""
    with torch.autocast(x.device.type, enabled=False):
        if x.dtype == torch.float64:
            return adj.to(torch.float64) @ x
        if x.dtype != torch.float32:
            return (adj @ x.float()).to(x.dtype)
        return adj @ x
