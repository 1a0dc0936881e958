"""The GNN family's base model: one class that scores every sampled config of a graph.

Pipeline, as :meth:`ConfigGNN.forward` reads: encode the nodes (opcode embedding + node
features) -> plan the config-dependent node sets (:mod:`.plan`) -> the config-free layer
pass, once -> per chunk of configs: join the config features (early join), the per-config
layer passes (:mod:`.passes`), readout to one vector per (config, graph) (:mod:`.readout`)
-> attention across configs -> head, one score per config (lower = predicted faster).
Layer types (:mod:`tpulearn.models.gnn`) differ only in the hooks of
:class:`~.hooks.LayerHooks` (``init_conv``, ``edge_weights``, ``run_conv``, ``combine``).

Exact config-dependent compute: the layers run once for the whole graph with no config,
then per config only on the nodes a config can reach; the scores equal those of C
independent full-graph copies (``prune=False``) to float rounding. The planner, the passes
and the readout are built per forward from the model's options and layers, so options
toggled on a built model (``prune``, ``sparse_aggregation``, ``distinct_states``) apply.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from .._checks import check_choice, check_int, check_number, warn_if_disabled
from ..graph import EDGE_DIRECTIONS, directed_edges
from .encoders import (
    ConfigEncoder,
    NodeEncoder,
    config_features,
    distinct_inputs,
    join_configs,
    layout_agreement,
    layout_tiling,
    node_dims,
    operand_table,
)
from .hooks import LayerHooks
from .passes import LayerPasses
from .plan import Planner
from .readout import Readout, parse_readout

# The data fields layout_tiling reads (tpulearn.data.items.graph_tensors).
TILING_KEYS = ("node_layout", "node_shape", "node_width", "edge_slot")

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "prelu": nn.PReLU}


class ConfigSharedDropout(nn.Module):
    """Dropout whose mask is shared by the configs of a graph (input [B, C, D]: one mask
    [B, 1, D]).

    A ranking loss reads only the score differences between configs of one graph, and those
    are small next to the graph vector they sit on. With a mask drawn per config, dropout
    on that vector adds noise to every difference that is orders of magnitude above the
    signal (measured on a 1,500-node graph at initialisation: score spread across configs
    0.016, difference between two identical configs under p = 0.2: 12), and the model
    learns far slower. One mask per graph regularises the model without that noise.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty(x.shape[:-2] + (1, x.shape[-1])).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ConfigGNN(LayerHooks, nn.Module):
    """Base model: scores C configs of each graph in one forward pass.

    Args:
        task: ``"tile"`` (graph-level configs, ``config_feat`` [C, 24]) or ``"layout"``
            (per-node configs, ``node_config_feat`` [C, K, 18] on ``node_config_ids``).
        hidden_channels: width of node vectors.
        num_layers: message-passing layers.
        dropout: dropout after each layer and in the head, one mask per node (layers) or per
            graph (head) shared by all configs (config attention has none).
        norm: ``None`` or ``"layer"`` (LayerNorm per node; batch statistics would mix
            configs and break the exact pruning).
        jk: ``"last"``, ``"cat"`` or ``"max"`` over the layer outputs (jumping knowledge).
        join: ``"early"`` (config features enter the node inputs: tile on every node, layout
            on the configurable nodes) or ``"late"`` (joined to the pooled graph vector).
        readout: ``"sum"``, ``"mean"``, ``"max"``, ``"attn"`` (a softmax-gated mean: each
            node weighs exp(linear(vector)), so weights can follow tensor sizes over
            orders of magnitude), or several (list or ``"sum+max"``), concatenated.
        attn_heads: gates of the ``attn`` readout, each its own weighted mean (e.g. one
            following compute, one memory traffic), concatenated.
        attn_gate: what the ``attn`` readout's gate reads: ``"state"`` (each node's final
            vector in each config) or ``"config_free"`` (the node's vector when no config
            applies: one weight per node for every config, as an op's size does not
            change with the layouts; costs one more config-free pass of the layers).
        config_node_readout: also mean-pool the configurable nodes (layout; ignored for
            tile, which has none).
        edge_direction: ``"stored"`` (consumer -> producer, as in the files),
            ``"reversed"``, or ``"both"`` (as the official models).
        residual: add each layer's input to its output.
        l2_normalize: L2-normalise node vectors after each layer (official tile SAGE).
        act: ``"relu"``, ``"leaky_relu"``, ``"gelu"`` or ``"prelu"``.
        opcode_dim: opcode embedding width.
        layout_onehot: one-hot encode layout config values.
        layout_shape: also give the config encoder the node's output dimension sizes in
            the chosen minor-to-major order (layout, early join; see
            :class:`~tpulearn.models.encoders.ConfigEncoder`).
        config_attention: self-attention across the configs of a graph before the head.
        attention_heads: heads of that attention.
        prune: compute config-dependent nodes only (exact); ``False`` runs C full copies.
        readout_l2: L2-normalise the pooled graph vector before the head (GST paper).
        head: ``"mlp"`` (Linear, act, dropout, Linear) or ``"linear"`` (one Linear: with a
            sum readout the score is then a sum of per-node terms, as a program's runtime
            is a sum of its ops' times).
        layout_relations: the config encoder also reads rank-free descriptions of each
            layout (:func:`~.encoders.layout_relations`: which positions follow the
            row-major or the column-major order, which blocks are unset).
        layout_agreement: the config encoder also reads, per configurable node and config,
            where its chosen layouts disagree with its own default and with the layouts
            its operands are emitted in (:func:`~.encoders.layout_agreement`: the copies
            a compiler inserts). Needs the data's ``node_layout`` and ``edge_slot``.
        layout_tiling: the config encoder also reads, per configurable node and config,
            how its output and operands tile in the chosen layouts (padding of the minor
            dims to a TPU tile, bytes of a minor row: :func:`~.encoders.layout_tiling`).
            Needs the data's ``node_layout``, ``node_shape``, ``node_width``, ``edge_slot``.
        tile_layout: tile configs carry the 18
            :func:`~tpulearn.data.features.tile_layout_features` after their 24 features
            (data built with ``data.tile_layout``: each output tile along the root's
            minor-to-major order).
        pre_layers: node-wise Linear + act layers after the join, before message passing
            (a configurable node then reads its own config through an MLP, not through
            one activation of a sum; config-free nodes pass through the same layers).
        post_layers: node-wise Linear + act layers after the last message-passing layer's
            activation, in every config and in the config-free pass: each node's term in
            the pooled vector is then an MLP of what it gathered, not one activation of a
            sum (with ``jk`` cat or max only the last layer's output passes through them).
            Needs ``num_layers`` >= 1 (before message passing, see ``pre_layers``).
        distinct_states: layout models with early join and a linear aggregation (SAGE,
            GCN, GIN) compute each distinct (node, layer) state once for all the configs
            that share it (:mod:`tpulearn.models.dedup`; same scores, far less work when
            configs repeat layouts; dropout masks are then shared by those configs).
        directed: every layer also reads the mean of each node's users and the mean of its
            operands apart (one ``Linear(2H, H)`` per layer, added to the layer's output
            before its norm and activation), which the undirected layers mix into one
            mean over both. Zero-initialised: training starts from the undirected model.
            Needs ``edge_direction="both"``.
        sparse_aggregation: for layers with a linear aggregation (SAGE, GCN, GIN),
            aggregate all configs with one sparse matrix product (same result, faster);
            ``False`` uses the PyG layer on C copies of the edge list.

    Input: a :class:`~tpulearn.data.TpuGraphData` or a PyG ``Batch`` of them whose graphs
    share the config count C. Output: scores [C] for one graph, [num_graphs, C] for a batch.
    To keep only the configurable nodes' neighbourhood, transform the data
    (``data.context_hops``, :class:`~tpulearn.graph.ConfigContext`).

    Raises:
        ValueError: an unknown ``task``, ``join``, ``jk``, ``edge_direction``, ``act``, ``head``
            or ``norm``.

    Warns:
        UserWarning: an option changed from its default that another makes ineffective:
            ``attention_heads`` without ``config_attention``, ``layout_onehot`` on a tile
            model, ``edge_direction`` on a model that passes no messages (MLP).
    """

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
        layout_shape: bool = False,
        config_attention: bool = False,
        attention_heads: int = 4,
        prune: bool = True,
        sparse_aggregation: bool = True,
        readout_l2: bool = False,
        distinct_states: bool = True,
        head: str = "mlp",
        pre_layers: int = 0,
        layout_relations: bool = False,
        attn_heads: int = 1,
        layout_agreement: bool = False,
        tile_layout: bool = False,
        layout_tiling: bool = False,
        directed: bool = False,
        attn_gate: str = "state",
        post_layers: int = 0,
    ):
        super().__init__()
        self.readout = parse_readout(readout)
        self._check_options(
            task=task,
            join=join,
            jk=jk,
            edge_direction=edge_direction,
            act=act,
            norm=norm,
            head=head,
            hidden_channels=hidden_channels,
            num_layers=num_layers,
            dropout=dropout,
            pre_layers=pre_layers,
            post_layers=post_layers,
            attn_heads=attn_heads,
            directed=directed,
            attn_gate=attn_gate,
        )
        warn_if_disabled(
            "attention_heads", attention_heads, 4, config_attention, "config_attention is off"
        )
        for name, value, default in (
            ("layout_onehot", layout_onehot, True),
            ("layout_shape", layout_shape, False),
            ("layout_agreement", layout_agreement, False),
            ("layout_tiling", layout_tiling, False),
        ):
            warn_if_disabled(name, value, default, task == "layout", "task='tile'")
        warn_if_disabled("tile_layout", tile_layout, False, task == "tile", "task='layout'")
        if layout_shape and join == "late":
            raise ValueError("layout_shape needs join='early' (the late join reads no shapes)")
        self.task, self.join, self.jk = task, join, jk
        self.hidden_channels, self.num_layers = hidden_channels, num_layers
        self.dropout, self.edge_direction = dropout, edge_direction
        self.residual, self.l2_normalize, self.prune = residual, l2_normalize, prune
        self.sparse_aggregation, self.distinct_states = sparse_aggregation, distinct_states
        self.readout_l2 = readout_l2
        # Tile graphs have no configurable nodes: the option is a no-op there, so one model
        # config serves both tasks.
        self.config_node_readout = config_node_readout and task == "layout"
        self.act = act  # read by layer types whose layer holds an activation (GIN)
        self.pre_layers, self.post_layers = pre_layers, post_layers
        self.head_kind = head
        self.attn_gate = attn_gate
        # The parameters, in the order they are created (which the initial weights of a
        # seed depend on): encoders, layers, readout gate, late join, attention, head.
        self.node_encoder = NodeEncoder(hidden_channels, opcode_dim=opcode_dim)
        self.config_encoder = ConfigEncoder(
            task,
            hidden_channels,
            layout_onehot,
            layout_shape,
            layout_relations,
            layout_agreement=layout_agreement,
            tile_layout=tile_layout,
            layout_tiling=layout_tiling,
        )
        self._build_layers(norm, directed)
        graph_dim = self._build_pools(attn_heads)
        self._build_head(graph_dim, config_attention, attention_heads)

    def _check_options(
        self,
        *,
        task: str,
        join: str,
        jk: str,
        edge_direction: str,
        act: str,
        norm: str | None,
        head: str,
        hidden_channels: int,
        num_layers: int,
        dropout: float,
        pre_layers: int,
        post_layers: int,
        attn_heads: int,
        directed: bool,
        attn_gate: str,
    ) -> None:
        """Refuse values no model takes; warn where an option has no effect."""
        check_choice("task", task, ("tile", "layout"))
        check_choice("join", join, ("early", "late"))
        check_choice("jk", jk, ("last", "cat", "max"))
        check_choice("edge_direction", edge_direction, EDGE_DIRECTIONS)
        check_choice("act", act, ACTIVATIONS)
        check_choice("norm", norm, (None, "layer"))
        check_choice("head", head, ("mlp", "linear"))
        check_choice("attn_gate", attn_gate, ("state", "config_free"))
        check_int("hidden_channels", hidden_channels, 1)
        check_int("num_layers", num_layers, 0)
        check_number("dropout", dropout, 0.0, 1.0, open_high=True)
        if pre_layers < 0:
            raise ValueError(f"pre_layers must be 0 or more, got {pre_layers}")
        if post_layers < 0:
            raise ValueError(f"post_layers must be 0 or more, got {post_layers}")
        if post_layers and not num_layers:
            raise ValueError(
                "post_layers follow the last message-passing layer: num_layers is 0 "
                "(node-wise layers before message passing are pre_layers)"
            )
        if attn_heads < 1:
            raise ValueError(f"attn_heads must be 1 or more, got {attn_heads}")
        warn_if_disabled("attn_heads", attn_heads, 1, "attn" in self.readout, "no attn readout")
        warn_if_disabled("attn_gate", attn_gate, "state", "attn" in self.readout, "no attn readout")
        no_edges = f"{type(self).__name__} passes no messages"
        warn_if_disabled("edge_direction", edge_direction, "both", self.propagates, no_edges)
        warn_if_disabled("directed", directed, False, self.propagates, no_edges)
        if directed and edge_direction != "both":
            raise ValueError(
                f"directed needs edge_direction='both' (users and operands), got {edge_direction!r}"
            )

    def _build_layers(self, norm: str | None, directed: bool) -> None:
        """The node-wise layers after the join, then each message-passing layer's
        convolution, norm, activation and (``directed``) users / operands Linear, the last
        activation followed by the node-wise post layers."""
        h, act, num_layers = self.hidden_channels, self.act, self.num_layers
        self.input_act = self._node_wise(ACTIVATIONS[act](), self.pre_layers)
        self.convs = nn.ModuleList(self.init_conv(h, h) for _ in range(num_layers))
        self.norms = nn.ModuleList(
            nn.LayerNorm(h) if norm == "layer" else nn.Identity() for _ in range(num_layers)
        )
        self.acts = nn.ModuleList(ACTIVATIONS[act]() for _ in range(num_layers))
        if num_layers:
            # Inside the last layer's activation: every pass (config-free, per config,
            # distinct states) applies them to that layer's output, node by node.
            self.acts[-1] = self._node_wise(self.acts[-1], self.post_layers)
        self.directed = None
        if directed and self.propagates:
            self.directed = nn.ModuleList(
                nn.Linear(2 * h, h, bias=False) for _ in range(num_layers)
            )
            for layer in self.directed:
                nn.init.zeros_(layer.weight)

    def _node_wise(self, first: nn.Module, count: int) -> nn.Module:
        """``first`` followed by ``count`` node-wise Linear + act layers (``first`` itself
        when ``count`` is 0)."""
        if not count:
            return first
        h, act = self.hidden_channels, self.act
        extra = [m for _ in range(count) for m in (nn.Linear(h, h), ACTIVATIONS[act]())]
        return nn.Sequential(first, *extra)

    def _build_pools(self, attn_heads: int) -> int:
        """The attn readout's gate and the late join's config layer; returns the width of
        the vector each (config, graph) is pooled into."""
        h, num_layers = self.hidden_channels, self.num_layers
        node_dim = h * num_layers if (self.jk == "cat" and num_layers) else h
        pools = len(self.readout) + (attn_heads - 1 if "attn" in self.readout else 0)
        graph_dim = node_dim * pools + (node_dim if self.config_node_readout else 0)
        # The attn pool's logits per node and head (a node's weight in its graph's softmax).
        self.gate = nn.Linear(node_dim, attn_heads) if "attn" in self.readout else None
        if self.join == "late":
            # Late join: config vectors built after message passing, then joined to the
            # pooled graph vector. Layout configs are read together with the final vector of
            # their node and pooled over the configurable nodes.
            cfg_in = h + (node_dim if self.task == "layout" else 0)
            self.late_config = nn.Sequential(nn.Linear(cfg_in, h), ACTIVATIONS[self.act]())
            graph_dim += h
        return graph_dim

    def _build_head(self, graph_dim: int, config_attention: bool, attention_heads: int) -> None:
        """Attention across the configs of a graph (``config_attention``), then the head
        that scores each config's pooled vector."""
        self.attention = None
        if config_attention:
            # No dropout inside: its masks would be drawn per config (see
            # ConfigSharedDropout); the head's shared dropout follows it.
            self.attention = nn.TransformerEncoderLayer(
                graph_dim, attention_heads, 2 * graph_dim, 0.0, batch_first=True
            )
        if self.head_kind == "linear":
            self.head = nn.Linear(graph_dim, 1)
        else:
            self.head = nn.Sequential(
                nn.Linear(graph_dim, self.hidden_channels),
                ACTIVATIONS[self.act](),
                ConfigSharedDropout(self.dropout),
                nn.Linear(self.hidden_channels, 1),
            )

    # ------------------------------------------------------------------ forward

    def forward(
        self, data: Data, config_chunk: int | None = None, owned: Tensor | None = None
    ) -> Tensor:
        """Score every config of the graph(s) in ``data``.

        Args:
            data: one graph (scores [C]) or a ``Batch`` of graphs sharing C
                (scores [num_graphs, C]).
            config_chunk: process at most this many configs at a time through the
                config-dependent layers (bounds memory when scoring thousands of configs;
                the config-free pass runs once). ``None``: all at once.
            owned: bool [N], the nodes the graph vectors pool (a segment's own nodes; its
                halo is read-only context). ``None``: every node.
        """
        is_batch = isinstance(data, Batch)
        num_graphs = data.num_graphs if is_batch else 1
        num_nodes = data.num_nodes
        batch = data.batch if is_batch else data.node_feat.new_zeros(num_nodes, dtype=torch.long)
        edges = directed_edges(data.edge_index, self.edge_direction)
        edge_index, weight = self.edge_weights(edges, num_nodes)
        # A tile encoder reads the raw rows: 24 features, or 42 with tile_layout.
        width = self.config_encoder.in_channels
        cfg, num_configs = config_features(data, self.task, num_graphs, width)
        # Directed layers: users (stored edges, consumer -> producer), then operands.
        directions = None
        if self.directed is not None:
            directions = [directed_edges(data.edge_index, d) for d in ("stored", "reversed")]
        passes = self._passes(edge_index, weight, directions)
        readout = self._readout(data, batch, num_graphs, owned)

        enc = self.node_encoder(data.node_feat, data.node_opcode)
        plan = self._planner().plan(data, edge_index, weight, directions)
        # Config-free pass, once: `bases[l]` [N, H] is every node's layer-l vector when no
        # config applies (rows of S_l may be left at 0: the per-config values replace them).
        bases = [self.input_act(enc)]
        for i, layer in enumerate(plan.layers):
            bases.append(passes.base(i, bases[-1], layer.mask))

        node_weight = None
        if readout.gate_free:
            # The gate's input: every node's config-free vector, dependent rows too; its
            # weights serve every chunk.
            none = torch.zeros(num_nodes, dtype=torch.bool, device=enc.device)
            free = [bases[0]]
            for i in range(len(plan.layers)):
                free.append(passes.base(i, free[-1], none))
            node_weight = readout.node_weights(free)
        distinct = self.distinct_states and plan.distinct
        chunk = config_chunk or num_configs
        table = self._operand_table(data) if self.config_encoder.appended else None
        graphs = []
        for start in range(0, num_configs, chunk):
            part = slice(start, min(start + chunk, num_configs))
            part_cfg = cfg[:, part] if self.task == "tile" else cfg[part]
            if self.config_encoder.appended:
                # Computed per config from its own row, so a chunk's need no more memory.
                part_cfg = torch.cat([part_cfg, *self._appended(data, part_cfg, table)], -1)
            # Per-config passes: `deps[l]` holds the per-config values of S_l.
            deps = [self._join(data, enc, part_cfg, batch, plan.inputs, distinct)]
            for i, layer in enumerate(plan.layers):
                deps.append(passes.run(i, layer, bases[i], deps[-1]))
            graphs.append(readout(plan.masks, bases, deps, part_cfg, node_weight))
            # Free this chunk's states before the next chunk's are made (without autograd
            # nothing else holds them), so chunks do not add up.
            del deps, part_cfg
        z = torch.cat(graphs, 0).transpose(0, 1)  # [B, C, D]
        if self.attention is not None:
            z = self.attention(z)
        scores = self.head(z).squeeze(-1)
        return scores if is_batch else scores[0]

    @property
    def configs_independent(self) -> bool:
        """Each config's score depends on the graph and its own features alone (no
        ``config_attention``): any grouping of the configs into forward passes and
        ``config_chunk`` s gives the same scores."""
        return self.attention is None

    # ------------------------------------------------------------------ the parts

    def _planner(self) -> Planner:
        if self.join == "late":
            inputs = "none"
        elif self.task == "tile" or not self.prune:
            inputs = "all"
        else:
            inputs = "configurable"
        linear = self.aggregation if self.sparse_aggregation else None
        return Planner(self.num_layers, self.propagates, linear, inputs)

    def _passes(
        self, edge_index: Tensor, weight: Tensor | None, directions: list[Tensor] | None = None
    ) -> LayerPasses:
        # Unpruned, every node is dependent: the base pass then runs the whole PyG layer,
        # keeping `prune=False` free of the sparse machinery.
        partial = self.sparse_aggregation and self.prune
        return self.passes(
            self.convs,
            self.norms,
            self.acts,
            run_conv=self.run_conv,
            combine=self.combine,
            edge_index=edge_index,
            weight=weight,
            base_aggregation=self.aggregation if partial else None,
            dropout=self.dropout,
            residual=self.residual,
            l2_normalize=self.l2_normalize,
            training=self.training,
            directed=self.directed,
            directions=directions,
        )

    def _readout(self, data: Data, batch: Tensor, num_graphs: int, owned) -> Readout:
        return Readout(
            self.readout,
            self.jk,
            self.config_node_readout,
            self.readout_l2,
            self.task,
            self.config_encoder,
            self.late_config if self.join == "late" else None,
            data.node_config_ids if self.task == "layout" else None,
            batch,
            num_graphs,
            owned,
            self.gate,
            self.gate is not None and self.attn_gate == "config_free",
        )

    def _operand_table(self, data: Data) -> list | None:
        """The graph's :func:`~.encoders.operand_table` where the config encoder appends
        columns that read operands (made once a forward, for every chunk); else ``None``."""
        encoder = self.config_encoder
        for on, name, keys in (
            (encoder.layout_agreement, "layout_agreement", ("node_layout", "edge_slot")),
            (encoder.layout_tiling, "layout_tiling", TILING_KEYS),
        ):
            missing = [key for key in keys if on and key not in data]
            if missing:
                raise ValueError(
                    f"{name} needs the data's {' and '.join(missing)} (the items of "
                    "tpulearn.data carry them; see tpulearn.data.items.graph_tensors)"
                )
        if not (encoder.layout_agreement or encoder.layout_tiling):
            return None
        return operand_table(data.node_config_ids, data.num_nodes, data.edge_index, data.edge_slot)

    def _appended(self, data: Data, cfg: Tensor, table: list | None) -> list[Tensor]:
        """The exact columns the config encoder reads after the 18 of each row
        (``table``: :meth:`_operand_table`)."""
        encoder, parts = self.config_encoder, []
        ids, layout, edges, slot = (
            data.node_config_ids,
            data.get("node_layout"),
            data.edge_index,
            data.get("edge_slot"),
        )
        if encoder.layout_agreement:
            parts.append(layout_agreement(cfg, ids, layout, edges, slot, table))
        if encoder.layout_tiling:
            shape, width = data.node_shape, data.node_width
            parts.append(layout_tiling(cfg, ids, layout, shape, width, edges, slot, table))
        return parts

    def _join(self, data, enc, cfg, batch, inputs, distinct):
        """Layer-0 values of S_0 (``inputs``) per config, activated: [C, |S_0|, H], or with
        ``distinct`` a :class:`~.dedup.StateLayer` of the distinct (node, config row)s."""
        dims = None
        if self.config_encoder.layout_shape:
            dims = node_dims(data, data.node_config_ids)
        if distinct:
            ids = data.node_config_ids
            return distinct_inputs(ids, enc, cfg, self.config_encoder, self.input_act, dims)
        if self.join == "late":
            num_configs = cfg.shape[1] if self.task == "tile" else cfg.shape[0]
            return self.input_act(enc.new_zeros(num_configs, 0, enc.shape[1]))
        ids = data.node_config_ids if self.task == "layout" else None
        cfg_vec = self.config_encoder(cfg, dims)
        return self.input_act(join_configs(self.task, enc, cfg_vec, inputs, batch, ids))

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
                ("linear head", self.head_kind == "linear"),
                ("config-free attn gate", self.gate is not None and self.attn_gate != "state"),
                (f"pre_layers={self.pre_layers}", self.pre_layers),
                (f"post_layers={self.post_layers}", self.post_layers),
                ("layout_shape", self.config_encoder.layout_shape),
                ("layout_relations", self.config_encoder.layout_relations),
                ("layout_agreement", self.config_encoder.layout_agreement),
                ("layout_tiling", self.config_encoder.layout_tiling),
                ("directed", self.directed is not None),
                ("tile_layout", self.config_encoder.tile_layout),
                ("no prune", not self.prune),
            )
            if on
        )
        return (
            f"{type(self).__name__}(task={self.task}, join={self.join}, "
            f"hidden_channels={self.hidden_channels}, num_layers={self.num_layers}, "
            f"readout={'+'.join(self.readout)}, jk={self.jk}, "
            f"edges={self.edge_direction}{extras}, {params:,} parameters)"
        )
