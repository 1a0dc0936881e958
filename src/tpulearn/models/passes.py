"""The layer passes: once with no config, then per config on the dependent nodes only.

:class:`ConfigGNN <tpulearn.models.ConfigGNN>` runs every layer once for the whole graph
with no config (the "base" pass) and, per config, only on the dependent sets S_l of
:mod:`tpulearn.models.pruning`, reading the base values of neighbours outside S_{l-1}.
Layers with a linear aggregation aggregate every config with one sparse matrix product
(:func:`spmm`); layout models may instead compute each distinct (node, layer) state once
for all configs that share it (:mod:`tpulearn.models.dedup`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import dedup


class LayerPasses:
    """The config-free and per-config layer passes, mixed into
    :class:`~tpulearn.models.ConfigGNN`.

    Reads the model's layers (``convs``, ``norms``, ``acts``, ``input_act``, the encoders)
    and options, and calls its hooks (``run_conv``, ``combine``) and ``_aggregation_matrix``.
    """

    def _join_inputs(self, data, enc, cfg, batch, mask):
        """Per-config encoder outputs of the layer-0 dependent nodes [C, |S_0|, H]."""
        num_configs = cfg.shape[1] if self.task == "tile" else cfg.shape[0]
        if self.join == "late":
            return enc.new_zeros(num_configs, 0, enc.shape[1])
        if self.task == "tile":
            # Tile configs are graph-level: every node sees them.
            cfg_vec = self.config_encoder(cfg).transpose(0, 1)  # [C, B, H]
            return enc.unsqueeze(0) + cfg_vec[:, batch]
        ids = data.node_config_ids
        dep = enc[mask].unsqueeze(0).repeat(num_configs, 1, 1)
        pos = torch.cumsum(mask.long(), 0) - 1  # node id -> position among dependent nodes
        dep[:, pos[ids]] += self.config_encoder(cfg)
        return dep

    def _base_layer(self, i, x, dependent, edge_index, weight):
        """Layer i of the config-free pass; with a linear aggregation only the rows outside
        the dependent set ``dependent`` are computed (the others are left at 0)."""
        if not (self.sparse_aggregation and self.aggregation and self.prune):
            return self._post(i, self.run_conv(self.convs[i], x, edge_index, weight), x)
        rows = (~dependent).nonzero().squeeze(1)
        out = x.new_zeros(x.shape[0], self.hidden_channels)
        if rows.numel() == 0:
            return out
        src, dst = edge_index
        keep = ~dependent[dst]
        ids = torch.arange(x.shape[0], device=x.device)
        matrix = self._aggregation_matrix(~dependent, ids, src, dst, keep, weight, ids)
        x_self = x[rows]
        value = self._post(i, self.combine(self.convs[i], spmm(matrix, x), x_self), x_self)
        return out.index_copy(0, rows, value.to(out.dtype))

    def _layer(self, i, plan, prev_mask, base, dep, weight):
        """Layer i on the dependent nodes, for every config of the chunk."""
        mask, node_ids, sub_edges, keep, prev_pos, upd, adj = plan
        num_configs, u = dep.shape[0], node_ids.numel()
        if u == 0:
            return dep
        if adj is not None:
            # Node-major [U, C, H]: one sparse product aggregates every config at once,
            # configs becoming columns of the dense operand.
            x = base[node_ids].unsqueeze(1).repeat(1, num_configs, 1)
            x[prev_pos] = dep.transpose(0, 1)
            agg = spmm(adj, x.view(u, -1)).view(-1, num_configs, x.shape[-1])
            x_self = x[upd]
            out = self._post(i, self.combine(self.convs[i], agg, x_self), x_self)
            return out.transpose(0, 1)
        x = base[node_ids].unsqueeze(0).repeat(num_configs, 1, 1)  # [C, U, H]
        x[:, prev_pos] = dep
        # C disjoint copies of the subgraph, one per config.
        offsets = (torch.arange(num_configs, device=x.device) * u).view(-1, 1, 1)
        edges = (sub_edges.unsqueeze(0) + offsets).transpose(0, 1).reshape(2, -1)
        sub_weight = None if weight is None else weight[keep].repeat(num_configs)
        out = self.run_conv(self.convs[i], x.reshape(num_configs * u, -1), edges, sub_weight)
        out = out.view(num_configs, u, -1)
        return self._post(i, out[:, upd], x[:, upd])

    def _post(self, i: int, h: Tensor, h_in: Tensor) -> Tensor:
        h = self.acts[i](self.norms[i](h))
        h = F.dropout(h, p=self.dropout, training=self.training)
        if self.residual:
            h = h + h_in
        if self.l2_normalize:
            h = F.normalize(h, dim=-1)
        return h

    def _use_distinct_states(self, data, plans) -> bool:
        """Distinct-state computation applies: layout, early join, exact pruning, a linear
        aggregation, and S_0 is exactly the (sorted) configurable nodes."""
        if not (
            self.distinct_states
            and self.task == "layout"
            and self.join == "early"
            and self.prune
            and self.propagates
            and self.num_layers > 0
            and all(plan[-1] is not None for plan in plans[1:])
        ):
            return False
        ids = data.node_config_ids
        return ids.numel() > 0 and int(plans[0][0].sum()) == ids.numel()

    def _distinct_deps(self, data, enc, cfg, bases, plans):
        """Dependent-node values per layer, computed once per distinct state (module
        :mod:`tpulearn.models.dedup`): the final layer's :class:`~.dedup.StateLayer` for
        ``jk="last"`` (pooled without expanding it), else per-config tensors."""
        ids = data.node_config_ids
        num_configs, k = cfg.shape[0], cfg.shape[1]
        slot = torch.arange(k, device=cfg.device).repeat(num_configs)
        rows = torch.cat([slot.unsqueeze(1).to(cfg.dtype), cfg.reshape(num_configs * k, -1)], 1)
        inverse, rep = dedup.unique_rows(rows)
        node, config = rep % k, rep // k
        values = self.input_act(enc[ids[node]] + self.config_encoder(cfg[config, node]))
        states = [dedup.StateLayer(values, inverse.view(num_configs, k))]
        for i in range(self.num_layers):
            _, node_ids, _, _, prev_pos, upd, adj = plans[i + 1]
            prev = states[-1]
            table, slot_of = dedup.layer_inputs(prev, bases[i], node_ids, prev_pos)
            index, rep_config, rep_row = dedup.distinct_rows(prev, slot_of, upd, adj)
            matrix = dedup.aggregation_rows(adj, prev, slot_of, rep_config, rep_row)
            x_self = table[dedup.self_rows(prev, slot_of, upd, rep_config, rep_row)]
            out = self.combine(self.convs[i], spmm(matrix, table), x_self)
            states.append(dedup.StateLayer(self._post(i, out, x_self), index))
        if self.jk == "last":  # the readout pools the states without expanding them
            return [None] * (len(states) - 1) + [states[-1]]
        return [None] + [s.dense() for s in states[1:]]


def spmm(adj: Tensor, x: Tensor) -> Tensor:
    """adj [R, U] (CSR, float32) @ x [U, D], outside autocast: sparse kernels have no bf16
    version on CPU, so reduced-precision inputs are aggregated in float32 and cast back."""
    with torch.autocast(x.device.type, enabled=False):
        if x.dtype == torch.float64:
            return adj.to(torch.float64) @ x
        if x.dtype != torch.float32:
            return (adj @ x.float()).to(x.dtype)
        return adj @ x
