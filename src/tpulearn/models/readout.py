"""Readout: from per-node vectors to one vector per (config, graph).

Node vectors come in two parts: ``base`` [N, D], one value for all configs, and ``dep``,
the per-config values of the dependent nodes (a tensor [C, |S|, D] or a
:class:`~tpulearn.models.dedup.StateLayer`). Pools add the config-free part once and the
dependent part per config, never expanding the graph C times.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from . import dedup

READOUTS = ("sum", "mean", "max")


class Readout:
    """Jumping knowledge, graph pooling and the late config join, mixed into
    :class:`~tpulearn.models.ConfigGNN`.

    Reads the model's ``jk``, ``num_layers``, ``readout``, ``task``, ``config_encoder``
    and ``late_config``.
    """

    def _jumping_knowledge(self, layers):
        """Combine layer outputs; dependent values of earlier layers are widened to the
        final dependent set with their base values."""
        final_mask, base, dep = layers[-1]
        if self.jk == "last" or self.num_layers == 0:
            return base, dep
        outs = layers[1:]
        bases = [b for _, b, _ in outs]
        deps = [widen(m, b, d, final_mask) for m, b, d in outs]
        if self.jk == "cat":
            return torch.cat(bases, -1), torch.cat(deps, -1)
        return torch.stack(bases).amax(0), torch.stack(deps).amax(0)

    def _readout(self, base, dep, mask, batch, num_graphs):
        """Pool node vectors per (config, graph): [C, B, D * len(readout)]; ``dep`` is a
        per-config tensor [C, |S|, D] or a :class:`~.dedup.StateLayer`."""
        num_configs = dep.index.shape[0] if isinstance(dep, dedup.StateLayer) else dep.shape[0]
        free, dep_batch = ~mask, batch[mask]
        pooled = []
        for kind in self.readout:
            if kind in ("sum", "mean"):
                fixed = scatter(base[free], batch[free], 0, dim_size=num_graphs, reduce="sum")
                if isinstance(dep, dedup.StateLayer):
                    var = dedup.pool(dep, dep_batch, num_graphs, "sum")
                else:
                    var = scatter(dep, dep_batch, 1, dim_size=num_graphs, reduce="sum")
                out = fixed.unsqueeze(0) + var
                if kind == "mean":
                    count = torch.bincount(batch, minlength=num_graphs).clamp(min=1)
                    out = out / count.view(1, -1, 1).to(out.dtype)
            else:
                fixed = scatter_max(base[free], batch[free], num_graphs, 0)
                if isinstance(dep, dedup.StateLayer):
                    var = dedup.pool(dep, dep_batch, num_graphs, "max")
                else:
                    var = scatter_max(dep, dep_batch, num_graphs, 1)
                out = torch.maximum(fixed.unsqueeze(0).expand_as(var), var)
            pooled.append(out.expand(num_configs, -1, -1))
        return torch.cat(pooled, -1)

    def _config_node_pool(self, data, base, dep, mask, batch, num_graphs):
        """Mean of the configurable nodes' final vectors per (config, group of ``batch``)."""
        ids = data.node_config_ids
        graph_of = batch[ids]
        pos = torch.cumsum(mask.long(), 0) - 1
        if isinstance(dep, dedup.StateLayer):  # every configurable node is dependent
            config_states = dedup.StateLayer(dep.values, dep.index[:, pos[ids]])
            return dedup.pool(config_states, graph_of, num_graphs, "mean")
        vecs = dep[:, pos[ids]] if bool(mask[ids].all()) else base[ids].expand(dep.shape[0], -1, -1)
        return scatter(vecs, graph_of, 1, dim_size=num_graphs, reduce="mean")

    def _late_config(self, data, base, cfg, batch, num_graphs):
        """Late join: one config vector per (config, group of ``batch``), [C, B, H]."""
        feats = self.config_encoder(cfg)
        if self.task == "tile":
            return self.late_config(feats).transpose(0, 1)
        ids = data.node_config_ids
        graph_of = batch[ids]
        node_vec = base[ids].unsqueeze(0).expand(feats.shape[0], -1, -1)
        per_node = self.late_config(torch.cat([node_vec, feats], -1))
        return scatter(per_node, graph_of, 1, dim_size=num_graphs, reduce="mean")


def parse_readout(readout: str | Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(readout.split("+")) if isinstance(readout, str) else tuple(readout)
    if not kinds or any(k not in READOUTS for k in kinds):
        raise ValueError(f"readout must be one or more of {READOUTS}, got {readout!r}")
    return kinds


def widen(mask: Tensor, base: Tensor, dep: Tensor, final_mask: Tensor) -> Tensor:
    """Per-config values of one layer on the final dependent set [C, |S_final|, D]."""
    out = base[final_mask].unsqueeze(0).repeat(dep.shape[0], 1, 1)
    pos = torch.cumsum(final_mask.long(), 0) - 1
    out[:, pos[mask.nonzero().squeeze(1)]] = dep
    return out


def scatter_max(x: Tensor, index: Tensor, size: int, dim: int) -> Tensor:
    """Max over groups, -inf-free: empty groups give the lowest finite value."""
    out = scatter(x, index, dim, dim_size=size, reduce="max")
    counts = torch.bincount(index, minlength=size)
    empty = (counts == 0).view([-1 if d == dim else 1 for d in range(x.dim())])
    return out.masked_fill(empty, torch.finfo(x.dtype).min)
