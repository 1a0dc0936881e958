"""The GNN family: one base model that scores every sampled config of a graph.

Pipeline: encoder (opcode embedding + node features, config features joined early or late)
-> message-passing stack -> readout -> head, one score per config (lower = predicted
faster). Layer types differ only in :meth:`ConfigGNN.init_conv`.

Exact config-dependent compute. With config features joined early on the configurable
nodes, a node's layer-l embedding can depend on the config only if a configurable node
lies within l message-passing hops upstream of it. Every other node has one embedding for
all configs. The model therefore runs every layer once for the whole graph with no config
(the "base" pass), and per config only on the dependent set S_l, reading the base values of
neighbours outside S_{l-1}. Subgraphs keep every incoming edge of the nodes they update, so
mean/attention/normalised aggregations see exactly the neighbourhood of the full graph: the
scores equal those of C independent full-graph copies (``prune=False``) to float rounding.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GATv2Conv, GCNConv, GINConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import scatter

from . import dedup
from .encoders import ConfigEncoder, NodeEncoder

READOUTS = ("sum", "mean", "max")
EDGE_DIRECTIONS = ("stored", "reversed", "both")
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "prelu": nn.PReLU}


class ConfigGNN(nn.Module):
    """Base model: scores C configs of each graph in one forward pass.

    Args:
        task: ``"tile"`` (graph-level configs, ``config_feat`` [C, 24]) or ``"layout"``
            (per-node configs, ``node_config_feat`` [C, K, 18] on ``node_config_ids``).
        hidden_channels: width of node vectors.
        num_layers: message-passing layers.
        dropout: dropout after each layer and in the head.
        norm: ``None`` or ``"layer"`` (LayerNorm per node; batch statistics would mix
            configs and break the exact pruning).
        jk: ``"last"``, ``"cat"`` or ``"max"`` over the layer outputs (jumping knowledge).
        join: ``"early"`` (config features enter the node inputs: tile on every node, layout
            on the configurable nodes) or ``"late"`` (joined to the pooled graph vector).
        readout: ``"sum"``, ``"mean"``, ``"max"``, or several (list or ``"sum+max"``),
            concatenated.
        config_node_readout: also mean-pool the configurable nodes (layout; ignored for
            tile, which has none).
        edge_direction: ``"stored"`` (consumer -> producer, as in the files),
            ``"reversed"``, or ``"both"`` (as the official models).
        residual: add each layer's input to its output.
        l2_normalize: L2-normalise node vectors after each layer (official tile SAGE).
        act: ``"relu"``, ``"leaky_relu"``, ``"gelu"`` or ``"prelu"``.
        opcode_dim: opcode embedding width.
        layout_onehot: one-hot encode layout config values.
        config_attention: self-attention across the configs of a graph before the head.
        attention_heads: heads of that attention.
        prune: compute config-dependent nodes only (exact); ``False`` runs C full copies.
        readout_l2: L2-normalise the pooled graph vector before the head (GST paper).
        context_hops: layout only: keep just the configurable nodes and the nodes within
            this many hops of one (edges in both directions), as the Kaggle winners did;
            faster, but no longer the whole-graph model. ``None`` keeps every node.
        distinct_states: layout models with early join and a linear aggregation (SAGE,
            GCN, GIN) compute each distinct (node, layer) state once for all the configs
            that share it (:mod:`tpulearn.models.dedup`; same scores, far less work when
            configs repeat layouts; dropout masks are then shared by those configs).
        sparse_aggregation: for layers with a linear aggregation (SAGE, GCN, GIN),
            aggregate all configs with one sparse matrix product (same result, faster);
            ``False`` uses the PyG layer on C copies of the edge list.

    Input: a :class:`~tpulearn.data.TpuGraphData` or a PyG ``Batch`` of them whose graphs
    share the config count C. Output: scores [C] for one graph, [num_graphs, C] for a batch.
    """

    # Whether the layer passes messages (the MLP baseline does not).
    propagates = True

    def __init__(
        self,
        task: str,
        hidden_channels: int = 64,
        num_layers: int = 3,
        dropout: float = 0.0,
        norm: str | None = None,
        jk: str = "last",
        join: str = "early",
        readout: str | Sequence[str] = "sum",
        config_node_readout: bool = False,
        edge_direction: str = "both",
        residual: bool = False,
        l2_normalize: bool = False,
        act: str = "leaky_relu",
        opcode_dim: int = 64,
        layout_onehot: bool = True,
        config_attention: bool = False,
        attention_heads: int = 4,
        prune: bool = True,
        sparse_aggregation: bool = True,
        readout_l2: bool = False,
        distinct_states: bool = True,
        context_hops: int | None = None,
    ):
        super().__init__()
        self.readout = _parse_readout(readout)
        _check_choice("task", task, ("tile", "layout"))
        _check_choice("join", join, ("early", "late"))
        _check_choice("jk", jk, ("last", "cat", "max"))
        _check_choice("edge_direction", edge_direction, EDGE_DIRECTIONS)
        _check_choice("act", act, tuple(ACTIVATIONS))
        if norm not in (None, "layer"):
            raise ValueError(f"norm must be None or 'layer', got {norm!r}")
        self.task, self.join, self.jk = task, join, jk
        self.hidden_channels, self.num_layers = hidden_channels, num_layers
        self.dropout, self.edge_direction = dropout, edge_direction
        self.residual, self.l2_normalize, self.prune = residual, l2_normalize, prune
        self.sparse_aggregation = sparse_aggregation
        self.readout_l2 = readout_l2
        self.distinct_states = distinct_states
        if context_hops is not None and (task != "layout" or context_hops < 0):
            raise ValueError("context_hops applies to layout models and must be >= 0")
        self.context_hops = context_hops
        # Tile graphs have no configurable nodes: the option is a no-op there, so one model
        # config serves both tasks.
        self.config_node_readout = config_node_readout and task == "layout"

        h = hidden_channels
        self.node_encoder = NodeEncoder(h, opcode_dim=opcode_dim)
        self.config_encoder = ConfigEncoder(task, h, layout_onehot=layout_onehot)
        self.input_act = ACTIVATIONS[act]()
        self.convs = nn.ModuleList(self.init_conv(h, h) for _ in range(num_layers))
        self.norms = nn.ModuleList(
            nn.LayerNorm(h) if norm == "layer" else nn.Identity() for _ in range(num_layers)
        )
        self.acts = nn.ModuleList(ACTIVATIONS[act]() for _ in range(num_layers))

        node_dim = h * num_layers if (jk == "cat" and num_layers) else h
        graph_dim = node_dim * len(self.readout) + (node_dim if self.config_node_readout else 0)
        if join == "late":
            # Late join: config vectors built after message passing, then joined to the
            # pooled graph vector. Layout configs are read together with the final vector of
            # their node and pooled over the configurable nodes.
            cfg_in = h + (node_dim if task == "layout" else 0)
            self.late_config = nn.Sequential(nn.Linear(cfg_in, h), ACTIVATIONS[act]())
            graph_dim += h
        self.attention = (
            nn.TransformerEncoderLayer(
                graph_dim,
                attention_heads,
                dim_feedforward=2 * graph_dim,
                dropout=dropout,
                batch_first=True,
            )
            if config_attention
            else None
        )
        self.head = nn.Sequential(
            nn.Linear(graph_dim, h), ACTIVATIONS[act](), nn.Dropout(dropout), nn.Linear(h, 1)
        )

    # ------------------------------------------------------------------ layer hooks

    def init_conv(self, in_channels: int, out_channels: int) -> nn.Module:
        """Build one message-passing layer; each variant overrides this."""
        raise NotImplementedError

    def edge_weights(self, edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor | None]:
        """Edges (and per-edge weights) the layers run on, computed on the full graph."""
        return edge_index, None

    def run_conv(self, conv: nn.Module, x: Tensor, edge_index: Tensor, weight: Tensor | None):
        return conv(x, edge_index)

    # Layers whose neighbour aggregation is linear ("mean", "sum" or "weighted" by the edge
    # weights) set this and implement `combine`; the per-config layers then aggregate with
    # one sparse matrix product instead of C copies of the edge list.
    aggregation: str | None = None

    def combine(self, conv: nn.Module, agg: Tensor, x_self: Tensor) -> Tensor:
        """The layer's output from its aggregated neighbours and the node's own input,
        exactly as ``conv`` computes it."""
        raise NotImplementedError

    # ------------------------------------------------------------------ forward

    def forward(self, data: Data, config_chunk: int | None = None) -> Tensor:
        """Score every config of the graph(s) in ``data``.

        Args:
            data: one graph (scores [C]) or a ``Batch`` of graphs sharing C
                (scores [num_graphs, C]).
            config_chunk: process at most this many configs at a time through the
                config-dependent layers (bounds memory when scoring thousands of configs;
                the config-free pass runs once). ``None``: all at once.
        """
        is_batch = isinstance(data, Batch)
        num_graphs = data.num_graphs if is_batch else 1
        if self.context_hops is not None:
            data = _config_context(data, self.context_hops)
        num_nodes = data.num_nodes
        batch = data.batch if is_batch else data.node_feat.new_zeros(num_nodes, dtype=torch.long)
        edge_index, weight = self.edge_weights(self._directed_edges(data.edge_index), num_nodes)
        cfg, num_configs = self._config_inputs(data, num_graphs)

        # Config-free pass, once: `bases[l]` [N, H] is every node's layer-l vector when no
        # config applies. Rows of the dependent set S_l are never read (the per-config values
        # replace them), so layers with a linear aggregation compute only the other rows.
        enc = self.node_encoder(data.node_feat, data.node_opcode)
        plans = self._plan(data, edge_index, weight, num_nodes, enc.device)
        bases = [self.input_act(enc)]
        for i in range(self.num_layers):
            bases.append(self._base_layer(i, bases[-1], plans[i + 1][0], edge_index, weight))

        chunk = config_chunk or num_configs
        graphs = []
        for start in range(0, num_configs, chunk):
            part = slice(start, min(start + chunk, num_configs))
            part_cfg = cfg[:, part] if self.task == "tile" else cfg[part]
            graphs.append(
                self._graph_vectors(
                    data, part_cfg, enc, bases, plans, batch, num_graphs, edge_index, weight
                )
            )
        z = torch.cat(graphs, 0).transpose(0, 1)  # [B, C, D]
        if self.attention is not None:
            z = self.attention(z)
        scores = self.head(z).squeeze(-1)
        return scores if is_batch else scores[0]

    def _graph_vectors(self, data, cfg, enc, bases, plans, batch, num_graphs, edge_index, weight):
        """Per-config graph vectors [C, B, D] for one chunk of configs."""
        masks = [plan[0] for plan in plans]
        # `deps[l]` [C, |S_l|, H]: per-config vectors of the dependent nodes S_l = masks[l].
        if self._use_distinct_states(data, plans):
            deps = self._distinct_deps(data, enc, cfg, bases, plans)
        else:
            deps = [self.input_act(self._join_inputs(data, enc, cfg, batch, masks[0]))]
            for i in range(self.num_layers):
                deps.append(self._layer(i, plans[i + 1], masks[i], bases[i], deps[-1], weight))
        base, dep = self._jumping_knowledge(list(zip(masks, bases, deps, strict=True)))
        mask = masks[-1]
        graph = self._readout(base, dep, mask, batch, num_graphs)
        if self.config_node_readout:
            graph = torch.cat([graph, self._config_node_pool(data, base, dep, mask)], -1)
        if self.readout_l2:
            graph = F.normalize(graph, dim=-1)
        if self.join == "late":
            graph = torch.cat([graph, self._late_config(data, base, cfg, num_graphs)], -1)
        return graph

    def _directed_edges(self, edge_index: Tensor) -> Tensor:
        if self.edge_direction == "stored":
            return edge_index
        if self.edge_direction == "reversed":
            return edge_index.flip(0)
        return torch.cat([edge_index, edge_index.flip(0)], dim=1)

    def _config_inputs(self, data: Data, num_graphs: int) -> tuple[Tensor, int]:
        """Raw config features and C: tile [B, C, 24], layout [C, K, 18]."""
        if self.task == "tile":
            feat = data.config_feat
            if feat.shape[0] % num_graphs:
                raise ValueError(
                    f"a batch of {num_graphs} tile graphs holds {feat.shape[0]} configs: "
                    "graphs of one batch must have the same number of configs"
                )
            return feat.view(num_graphs, -1, feat.shape[-1]), feat.shape[0] // num_graphs
        feat = data.node_config_feat
        if feat.dim() != 3 or feat.shape[1] != data.node_config_ids.shape[0]:
            raise ValueError(
                f"node_config_feat of shape {tuple(feat.shape)} does not match "
                f"{data.node_config_ids.shape[0]} node_config_ids (expected [C, K, 18])"
            )
        return feat, feat.shape[0]

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
        value = self._post(i, self.combine(self.convs[i], _spmm(matrix, x), x_self), x_self)
        return out.index_copy(0, rows, value.to(out.dtype))

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
            out = self.combine(self.convs[i], _spmm(matrix, table), x_self)
            states.append(dedup.StateLayer(self._post(i, out, x_self), index))
        if self.jk == "last":  # the readout pools the states without expanding them
            return [None] * (len(states) - 1) + [states[-1]]
        return [None] + [s.dense() for s in states[1:]]

    def _post(self, i: int, h: Tensor, h_in: Tensor) -> Tensor:
        h = self.acts[i](self.norms[i](h))
        h = F.dropout(h, p=self.dropout, training=self.training)
        if self.residual:
            h = h + h_in
        if self.l2_normalize:
            h = F.normalize(h, dim=-1)
        return h

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
            agg = _spmm(adj, x.view(u, -1)).view(-1, num_configs, x.shape[-1])
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

    def _jumping_knowledge(self, layers):
        """Combine layer outputs; dependent values of earlier layers are widened to the
        final dependent set with their base values."""
        final_mask, base, dep = layers[-1]
        if self.jk == "last" or self.num_layers == 0:
            return base, dep
        outs = layers[1:]
        bases = [b for _, b, _ in outs]
        deps = [_widen(m, b, d, final_mask) for m, b, d in outs]
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
                fixed = _scatter_max(base[free], batch[free], num_graphs, 0)
                if isinstance(dep, dedup.StateLayer):
                    var = dedup.pool(dep, dep_batch, num_graphs, "max")
                else:
                    var = _scatter_max(dep, dep_batch, num_graphs, 1)
                out = torch.maximum(fixed.unsqueeze(0).expand_as(var), var)
            pooled.append(out.expand(num_configs, -1, -1))
        return torch.cat(pooled, -1)

    def _config_node_pool(self, data, base, dep, mask):
        """Mean of the configurable nodes' final vectors per (config, graph)."""
        ids = data.node_config_ids
        num_graphs = data.num_graphs if isinstance(data, Batch) else 1
        graph_of = data.batch[ids] if isinstance(data, Batch) else torch.zeros_like(ids)
        pos = torch.cumsum(mask.long(), 0) - 1
        if isinstance(dep, dedup.StateLayer):  # every configurable node is dependent
            config_states = dedup.StateLayer(dep.values, dep.index[:, pos[ids]])
            return dedup.pool(config_states, graph_of, num_graphs, "mean")
        vecs = dep[:, pos[ids]] if bool(mask[ids].all()) else base[ids].expand(dep.shape[0], -1, -1)
        return scatter(vecs, graph_of, 1, dim_size=num_graphs, reduce="mean")

    def _late_config(self, data, base, cfg, num_graphs):
        """Late join: one config vector per (config, graph), [C, B, H]."""
        feats = self.config_encoder(cfg)
        if self.task == "tile":
            return self.late_config(feats).transpose(0, 1)
        ids = data.node_config_ids
        graph_of = data.batch[ids] if isinstance(data, Batch) else torch.zeros_like(ids)
        node_vec = base[ids].unsqueeze(0).expand(feats.shape[0], -1, -1)
        per_node = self.late_config(torch.cat([node_vec, feats], -1))
        return scatter(per_node, graph_of, 1, dim_size=num_graphs, reduce="mean")

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.parameters())
        extras = "".join(
            f", {name}"
            for name, on in (
                ("residual", self.residual),
                ("l2_normalize", self.l2_normalize),
                ("config_attention", self.attention is not None),
                ("config_node_readout", self.config_node_readout),
                ("readout_l2", self.readout_l2),
                ("no prune", not self.prune),
                (f"context_hops={self.context_hops}", self.context_hops is not None),
            )
            if on
        )
        return (
            f"{type(self).__name__}(task={self.task}, join={self.join}, "
            f"hidden_channels={self.hidden_channels}, num_layers={self.num_layers}, "
            f"readout={'+'.join(self.readout)}, jk={self.jk}, "
            f"edges={self.edge_direction}{extras}, {params:,} parameters)"
        )


def _config_context(data: Data, hops: int) -> Data:
    """A shallow copy of ``data`` restricted to the configurable nodes and the nodes within
    ``hops`` hops of one (either edge direction), relabelled in node order."""
    num_nodes = data.num_nodes
    ids = data.node_config_ids
    keep = torch.zeros(num_nodes, dtype=torch.bool, device=ids.device)
    keep[ids] = True
    a, b = data.edge_index
    for _ in range(hops):
        grown = keep.clone()
        grown[b[keep[a]]] = True
        grown[a[keep[b]]] = True
        keep = grown
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
    out.num_nodes = subset.numel()
    return out


def _spmm(adj: Tensor, x: Tensor) -> Tensor:
    """adj [R, U] (CSR, float32) @ x [U, D], outside autocast: sparse kernels have no bf16
    version on CPU, so reduced-precision inputs are aggregated in float32 and cast back."""
    with torch.autocast(x.device.type, enabled=False):
        if x.dtype == torch.float64:
            return adj.to(torch.float64) @ x
        if x.dtype != torch.float32:
            return (adj @ x.float()).to(x.dtype)
        return adj @ x


def _widen(mask: Tensor, base: Tensor, dep: Tensor, final_mask: Tensor) -> Tensor:
    """Per-config values of one layer on the final dependent set [C, |S_final|, D]."""
    out = base[final_mask].unsqueeze(0).repeat(dep.shape[0], 1, 1)
    pos = torch.cumsum(final_mask.long(), 0) - 1
    out[:, pos[mask.nonzero().squeeze(1)]] = dep
    return out


def _scatter_max(x: Tensor, index: Tensor, size: int, dim: int) -> Tensor:
    """Max over groups, -inf-free: empty groups give the lowest finite value."""
    out = scatter(x, index, dim, dim_size=size, reduce="max")
    counts = torch.bincount(index, minlength=size)
    empty = (counts == 0).view([-1 if d == dim else 1 for d in range(x.dim())])
    return out.masked_fill(empty, torch.finfo(x.dtype).min)


def _parse_readout(readout: str | Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(readout.split("+")) if isinstance(readout, str) else tuple(readout)
    if not kinds or any(k not in READOUTS for k in kinds):
        raise ValueError(f"readout must be one or more of {READOUTS}, got {readout!r}")
    return kinds


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


# ---------------------------------------------------------------------- layer types


class SAGE(ConfigGNN):
    """GraphSAGE layers, mean aggregation (Hamilton et al., arXiv 1706.02216)."""

    aggregation = "mean"

    def init_conv(self, in_channels, out_channels):
        return SAGEConv(in_channels, out_channels, aggr="mean")

    def combine(self, conv, agg, x_self):
        return conv.lin_l(agg) + conv.lin_r(x_self)


class GCN(ConfigGNN):
    """Graph convolution layers (Kipf & Welling, arXiv 1609.02907).

    The symmetric normalisation is computed once on the full graph (with self-loops) and
    passed as edge weights, so subgraph updates keep the full graph's degrees.
    """

    aggregation = "weighted"

    def init_conv(self, in_channels, out_channels):
        return GCNConv(in_channels, out_channels, normalize=False, add_self_loops=False)

    def combine(self, conv, agg, x_self):
        # GCNConv transforms then aggregates; both are linear, so the order is free.
        return conv.lin(agg) + conv.bias

    def edge_weights(self, edge_index, num_nodes):
        return gcn_norm(edge_index, None, num_nodes, add_self_loops=True)

    def run_conv(self, conv, x, edge_index, weight):
        return conv(x, edge_index, weight.to(x.dtype))


class ResGCN(GCN):
    """GCN with residual connections, like the official tile baseline's residual model."""

    def __init__(self, task: str, **kwargs):
        kwargs.setdefault("residual", True)
        super().__init__(task, **kwargs)


class GAT(ConfigGNN):
    """GATv2 attention layers (Brody et al., arXiv 2105.14491).

    Args:
        heads: attention heads, averaged (so the width stays ``hidden_channels``).
        **kwargs: as :class:`ConfigGNN`.
    """

    def __init__(self, task: str, heads: int = 4, **kwargs):
        self.heads = heads
        super().__init__(task, **kwargs)

    def init_conv(self, in_channels, out_channels):
        return GATv2Conv(in_channels, out_channels, heads=self.heads, concat=False)


class GIN(ConfigGNN):
    """Graph isomorphism network layers (Xu et al., arXiv 1810.00826), sum aggregation."""

    def init_conv(self, in_channels, out_channels):
        mlp = nn.Sequential(
            nn.Linear(in_channels, out_channels),
            nn.LeakyReLU(),
            nn.Linear(out_channels, out_channels),
        )
        return GINConv(mlp, train_eps=True)

    aggregation = "sum"

    def combine(self, conv, agg, x_self):
        return conv.nn((1 + conv.eps) * x_self + agg)


class MLP(ConfigGNN):
    """No message passing: per-node layers, then the same readout and head."""

    propagates = False

    def init_conv(self, in_channels, out_channels):
        return nn.Linear(in_channels, out_channels)

    def run_conv(self, conv, x, edge_index, weight):
        return conv(x)
