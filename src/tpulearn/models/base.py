"""The GNN family's base model: one class that scores every sampled config of a graph.

Pipeline: encoder (opcode embedding + node features, config features joined early or late)
-> message-passing stack -> readout -> head, one score per config (lower = predicted
faster). Layer types (:mod:`tpulearn.models.gnn`) differ only in :meth:`ConfigGNN.init_conv`.

Exact config-dependent compute: the layers run once for the whole graph with no config,
then per config only on the nodes a config can reach (:mod:`.pruning` plans them,
:mod:`.passes` runs them); the scores equal those of C independent full-graph copies
(``prune=False``) to float rounding. :mod:`.readout` pools the node vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from .encoders import ConfigEncoder, NodeEncoder
from .passes import LayerPasses
from .pruning import DependentSets, config_context
from .readout import Readout, parse_readout

EDGE_DIRECTIONS = ("stored", "reversed", "both")
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "prelu": nn.PReLU}


class ConfigGNN(DependentSets, LayerPasses, Readout, nn.Module):
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
        self.readout = parse_readout(readout)
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
            data = config_context(data, self.context_hops)
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
        # Context nodes (a segment's halo, `owned` False) are pooled into an extra group
        # that is dropped: only owned nodes count in the graph vector.
        owned = data.owned if "owned" in data else None
        pool_batch = batch if owned is None else torch.where(owned, batch, num_graphs)
        groups = num_graphs + (owned is not None)
        graph = self._readout(base, dep, mask, pool_batch, groups)[:, :num_graphs]
        if self.config_node_readout:
            pooled = self._config_node_pool(data, base, dep, mask, pool_batch, groups)
            graph = torch.cat([graph, pooled[:, :num_graphs]], -1)
        if self.readout_l2:
            graph = F.normalize(graph, dim=-1)
        if self.join == "late":
            late = self._late_config(data, base, cfg, pool_batch, groups)[:, :num_graphs]
            graph = torch.cat([graph, late], -1)
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


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
