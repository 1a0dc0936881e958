"""Readout: from per-node vectors to one vector per (config, graph).

Node vectors come in two parts: ``base`` [N, D], one value for all configs, and ``dep``,
the per-config values of the dependent nodes (a tensor [C, |S|, D] or a
:class:`~tpulearn.models.dedup.StateLayer`). Pools add the config-free part once and the
dependent part per config, never expanding the graph C times.

Context nodes (a segment's halo, ``owned`` False) are pooled into an extra group that is
dropped: only owned nodes count in the graph vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter

from . import dedup

READOUTS = ("sum", "mean", "max", "attn")
_LOGIT_BOUND = 20.0  # the attn pool's logits lie in (-20, 20)


class Readout:
    """Jumping knowledge, graph pooling and the late config join, for one graph (or batch).

    Args:
        kinds: the pools, concatenated (see :func:`parse_readout`).
        jk: ``"last"``, ``"cat"`` or ``"max"`` over the layer outputs.
        config_node_readout: also mean-pool the configurable nodes.
        l2: L2-normalise the pooled vector (before the late join).
        task: ``"tile"`` (graph-level configs) or ``"layout"`` (per-node configs).
        config_encoder: the model's config encoder (read by the late join).
        late_config: the late join's layer; ``None`` for an early join.
        config_ids: [K] the configurable nodes (layout), else ``None``.
        batch: [N] graph of each node; ``num_graphs`` B.
        owned: bool [N], the nodes pooled (a segment's own nodes), or ``None``: all.
        gate: the ``attn`` pool's [D] -> [heads] logit layer (required with ``attn``).
        gate_free: the gate reads each node's config-free vector (every config then
            weighs a node alike), not its vector in each config; the call passes the
            weights (:meth:`node_weights`, computed once for every chunk).
    """

    def __init__(
        self,
        kinds: tuple[str, ...],
        jk: str,
        config_node_readout: bool,
        l2: bool,
        task: str,
        config_encoder: nn.Module,
        late_config: nn.Module | None,
        config_ids: Tensor | None,
        batch: Tensor,
        num_graphs: int,
        owned: Tensor | None = None,
        gate: nn.Module | None = None,
        gate_free: bool = False,
    ):
        if "attn" in kinds and gate is None:
            raise ValueError("the attn readout needs its gate layer")
        self.gate, self.gate_free = gate, gate_free
        self.kinds, self.jk, self.config_node_readout, self.l2 = kinds, jk, config_node_readout, l2
        self.task, self.config_encoder, self.late_config = task, config_encoder, late_config
        self.config_ids, self.num_graphs = config_ids, num_graphs
        # Unowned nodes go to group B, which is cut off after pooling.
        self.batch = batch if owned is None else torch.where(owned, batch, num_graphs)
        self.groups = num_graphs + (owned is not None)

    def __call__(
        self,
        masks: list[Tensor],
        bases: list[Tensor],
        deps: list,
        cfg: Tensor,
        node_weight: Tensor | None = None,
    ):
        """Graph vectors [C, B, D] of one chunk of C configs.

        Args:
            masks: S_0 .. S_L, bool [N] each.
            bases: config-free values per layer, [N, H] each (rows of S_l may be 0).
            deps: per-config values of S_l per layer ([C, |S_l|, H] or StateLayers).
            cfg: the chunk's raw config features (read by the late join).
            node_weight: with ``gate_free``, each node's gate weights [N, heads]
                (:meth:`node_weights`).
        """
        if self.gate_free and node_weight is None:
            raise ValueError(
                "a config-free gate needs the weights of its nodes' config-free vectors "
                "(node_weights)"
            )
        base, dep = self._jumping_knowledge(masks, bases, deps)
        mask = masks[-1]
        graph = self._pool(base, dep, mask, node_weight)[:, : self.num_graphs]
        if self.config_node_readout:
            pooled = self._config_node_pool(base, dep, mask)
            graph = torch.cat([graph, pooled[:, : self.num_graphs]], -1)
        if self.l2:
            graph = F.normalize(graph, dim=-1)
        if self.late_config is not None:
            late = self._late_join(base, cfg)[:, : self.num_graphs]
            graph = torch.cat([graph, late], -1)
        return graph

    def _jumping_knowledge(self, masks, bases, deps):
        """Combine layer outputs; dependent values of earlier layers are widened to the
        final dependent set with their base values."""
        if self.jk == "last" or len(masks) == 1:
            return bases[-1], deps[-1]
        final_mask = masks[-1]
        outs = list(zip(masks, bases, deps, strict=True))[1:]
        layer_deps = [widen(m, b, dense(d), final_mask) for m, b, d in outs]
        return self._combine_layers(bases), self._join_layers(layer_deps)

    def _combine_layers(self, values: list[Tensor]) -> Tensor:
        """Jumping knowledge over per-layer values (the input first), [N, H] each."""
        if self.jk == "last" or len(values) == 1:
            return values[-1]
        return self._join_layers(values[1:])

    def _join_layers(self, layers: list[Tensor]) -> Tensor:
        """The layers' outputs joined by ``jk`` (``cat`` or ``max``)."""
        if self.jk == "cat":
            return torch.cat(layers, -1)
        return torch.stack(layers).amax(0)

    def node_weights(self, free: list[Tensor]) -> Tensor:
        """The config-free gate's weights [N, heads] from every node's config-free value
        per layer ([N, H] each, no row left out): the same for every config and chunk."""
        return self._gate_weight(self._combine_layers(free))

    def _gate_weight(self, x: Tensor) -> Tensor:
        """exp of the gate's logits, softly bounded to +-_LOGIT_BOUND: [..., heads]."""
        return torch.exp(_LOGIT_BOUND * torch.tanh(self.gate(x) / _LOGIT_BOUND))

    def _pool(self, base, dep, mask, node_weight=None):
        """Pool node vectors per (config, group): [C, groups, D * len(kinds)]."""
        batch, groups = self.batch, self.groups
        num_configs = dep.index.shape[0] if isinstance(dep, dedup.StateLayer) else dep.shape[0]
        free, dep_batch = ~mask, batch[mask]
        pooled = []
        for kind in self.kinds:
            if kind in ("sum", "mean"):
                fixed = scatter(base[free], batch[free], 0, dim_size=groups, reduce="sum")
                if isinstance(dep, dedup.StateLayer):
                    var = dedup.pool(dep, dep_batch, groups, "sum")
                else:
                    var = scatter(dep, dep_batch, 1, dim_size=groups, reduce="sum")
                out = fixed.unsqueeze(0) + var
                if kind == "mean":
                    count = torch.bincount(batch, minlength=groups).clamp(min=1)
                    out = out / count.view(1, -1, 1).to(out.dtype)
            elif kind == "attn":
                out = self._attention_pool(base, free, dep, dep_batch, node_weight)
            else:
                fixed = scatter_max(base[free], batch[free], groups, 0)
                if isinstance(dep, dedup.StateLayer):
                    var = dedup.pool(dep, dep_batch, groups, "max")
                else:
                    var = scatter_max(dep, dep_batch, groups, 1)
                out = torch.maximum(fixed.unsqueeze(0).expand_as(var), var)
            pooled.append(out.expand(num_configs, -1, -1))
        return torch.cat(pooled, -1)

    def _attention_pool(self, base, free, dep, dep_batch, node_weight=None):
        """Softmax-gated mean per (config, group) and head: sum_i a_i x_i / sum_i a_i with
        a_i = exp(l_i), l_i = gate(x_i) softly bounded to +-20 (weights then span up to
        e^40, ample for op times that scale with tensor sizes, and neither sum can over-
        or underflow, so no shift is needed: chunks, batches and segments agree exactly).
        With ``node_weight`` (``gate_free``), a_i is the node's config-free weight, the same
        in every config. Each head has its own logits; their means are concatenated.
        Computed as two sums (weighted values, weights): config-free nodes are pooled once
        and distinct states stay compact."""
        heads = self.gate.out_features

        def weighted(x, w):
            return torch.cat([(w.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2), w], -1)

        x_free, batch_free = base[free], self.batch[free]
        if node_weight is None:
            w_free = self._gate_weight(x_free)
        else:
            w_free, w_dep = node_weight[free], node_weight[~free]
        fixed = scatter(weighted(x_free, w_free), batch_free, 0, dim_size=self.groups)
        if node_weight is None and isinstance(dep, dedup.StateLayer):
            values = dep.values
            state = dedup.StateLayer(weighted(values, self._gate_weight(values)), dep.index)
            var = dedup.pool(state, dep_batch, self.groups, "sum")
        elif node_weight is None:
            var = scatter(weighted(dep, self._gate_weight(dep)), dep_batch, 1, dim_size=self.groups)
        elif isinstance(dep, dedup.StateLayer):
            # Per head, the states weighted by their node's weight (the same in every
            # config), and the weights' sum, which no config changes.
            parts = [
                dedup.pool(dep, dep_batch, self.groups, "sum", w_dep[:, h]) for h in range(heads)
            ]
            total_w = scatter(w_dep, dep_batch, 0, dim_size=self.groups)
            num_configs = dep.index.shape[0]
            var = torch.cat([*parts, total_w.unsqueeze(0).expand(num_configs, -1, -1)], -1)
        else:
            w = w_dep.unsqueeze(0).expand(dep.shape[0], -1, -1)
            var = scatter(weighted(dep, w), dep_batch, 1, dim_size=self.groups)
        total = fixed.unsqueeze(0) + var
        values = total[..., :-heads].unflatten(-1, (heads, -1))
        # An empty group (no nodes) has no weight: its mean is 0.
        weights = total[..., -heads:].clamp(min=torch.finfo(total.dtype).tiny)
        return (values / weights.unsqueeze(-1)).flatten(-2)

    def _config_node_pool(self, base, dep, mask):
        """Mean of the configurable nodes' final vectors per (config, group)."""
        ids = self.config_ids
        graph_of = self.batch[ids]
        pos = torch.cumsum(mask.long(), 0) - 1
        if isinstance(dep, dedup.StateLayer):  # every configurable node is dependent
            config_states = dedup.StateLayer(dep.values, dep.index[:, pos[ids]])
            return dedup.pool(config_states, graph_of, self.groups, "mean")
        vecs = dep[:, pos[ids]] if bool(mask[ids].all()) else base[ids].expand(dep.shape[0], -1, -1)
        return scatter(vecs, graph_of, 1, dim_size=self.groups, reduce="mean")

    def _late_join(self, base, cfg):
        """Late join: one config vector per (config, group), [C, groups, H]."""
        feats = self.config_encoder(cfg)
        if self.task == "tile":
            return self.late_config(feats).transpose(0, 1)
        ids = self.config_ids
        graph_of = self.batch[ids]
        node_vec = base[ids].unsqueeze(0).expand(feats.shape[0], -1, -1)
        per_node = self.late_config(torch.cat([node_vec, feats], -1))
        return scatter(per_node, graph_of, 1, dim_size=self.groups, reduce="mean")


def parse_readout(readout: str | Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(readout.split("+")) if isinstance(readout, str) else tuple(readout)
    if not kinds or any(k not in READOUTS for k in kinds):
        raise ValueError(f"readout must be one or more of {READOUTS}, got {readout!r}")
    return kinds


def dense(dep: Tensor | dedup.StateLayer) -> Tensor:
    """Per-config values [C, |S|, D] of a dependent set in either form."""
    return dep.dense() if isinstance(dep, dedup.StateLayer) else dep


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
