"""Node and config encoders.

The node encoder maps (opcode, normalised features) to a hidden vector; the config encoder
maps config features (tile: 24 per graph; layout: 18 per configurable node) to a vector
that is *added* to the node's pre-activation. Because a linear layer of a concatenation is
the sum of linear layers of its parts, this is exactly the official "concatenate opcode
embedding, node features and config features, then project", with the config-free part
computed once per graph.

Below the encoders: the raw config features of a graph (:func:`config_features`) and their
early join into the layer-0 vectors of the config-dependent nodes (:func:`join_configs`,
or once per distinct node state, :func:`distinct_inputs`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from ..data.features import TILE_LAYOUT_DIM
from ..data.schema import (
    LAYOUT_CONFIG_FEAT_DIM,
    NODE_FEAT_DIM,
    NUM_OPCODES,
    SHAPE_DIMS,
    TILE_CONFIG_FEAT_DIM,
)
from . import dedup

# Layout config values are minor-to-major dimension indices 0..5, or -1 for "unset".
LAYOUT_CONFIG_VALUES = 7
LAYOUT_BLOCKS = 3  # output, input and kernel minor-to-major orders
LAYOUT_POSITIONS = 6  # positions of one order (tensor ranks up to 6)
LAYOUT_SHAPE_DIM = LAYOUT_POSITIONS  # the output block's positions, read as sizes
# Per block: the row-major and the column-major match of each position, and "unset".
LAYOUT_RELATION_DIM = LAYOUT_BLOCKS * (2 * LAYOUT_POSITIONS + 1)


def layout_relations(feat: Tensor) -> Tensor:
    """Rank-free descriptions of layout config rows [..., 18] -> [..., 39].

    Per block (output, input, kernel) of a minor-to-major order over a tensor of rank r
    (its entries >= 0): for each position p < r whether it names dimension r-1-p (the
    descending, row-major default order) and whether it names p (ascending,
    column-major), and whether the block is unset (all -1: the compiler's choice). The
    one-hot says the same per rank; these say it alike for every rank, so what is learnt
    on rank-4 tensors holds for rank-2 ones.
    """
    blocks = feat.round().reshape(*feat.shape[:-1], LAYOUT_BLOCKS, LAYOUT_POSITIONS)
    rank = (blocks >= 0).sum(-1, keepdim=True)
    position = torch.arange(LAYOUT_POSITIONS, device=feat.device, dtype=blocks.dtype)
    inside = position < rank
    descending = inside & (blocks == rank - 1 - position)
    ascending = inside & (blocks == position)
    unset = (rank == 0).to(blocks.dtype)
    parts = torch.cat([descending.to(blocks.dtype), ascending.to(blocks.dtype), unset], -1)
    return parts.flatten(-2)


class NodeEncoder(nn.Module):
    """Opcode embedding + projection of node features, config-independent.

    Args:
        out_channels: width of the node vectors produced.
        opcode_dim: opcode embedding width (0 disables the embedding).
        num_opcodes: rows of the opcode embedding table.
        in_channels: node feature width (140 in TpuGraphs).
    """

    def __init__(
        self,
        out_channels: int,
        opcode_dim: int = 64,
        num_opcodes: int = NUM_OPCODES,
        in_channels: int = NODE_FEAT_DIM,
    ):
        super().__init__()
        self.opcode = nn.Embedding(num_opcodes, opcode_dim) if opcode_dim else None
        self.lin = nn.Linear(in_channels + opcode_dim, out_channels)

    def forward(self, node_feat: Tensor, node_opcode: Tensor) -> Tensor:
        """[num_nodes, 140], [num_nodes] -> [num_nodes, out_channels] (pre-activation)."""
        parts = [node_feat]
        if self.opcode is not None:
            parts.append(self.opcode(node_opcode))
        return self.lin(torch.cat(parts, dim=-1))


class ConfigEncoder(nn.Module):
    """Projects config features to a vector (no bias: a zero config adds nothing).

    Args:
        task: ``"tile"`` (24 features per config) or ``"layout"`` (18 per configurable node).
        out_channels: width of the produced vectors.
        layout_onehot: one-hot encode each layout value (-1..5) instead of using it raw;
            the values are dimension indices, not magnitudes.
        layout_shape: also read the node's output shape in the chosen order: for each
            position of the output minor-to-major order, the (normalised) size of the
            dimension it names (0 where unset). An index alone says which dimension is
            minor, not how long it is, and the minor dimensions' sizes are what tiling and
            padding cost. Needs ``dims`` in :meth:`forward`.
        layout_relations: also read :func:`layout_relations` of each row (layout).
        tile_layout: tile rows carry :func:`~tpulearn.data.features.tile_layout_features`
            after the 24 (42 features: data built with ``tile_layout``).
    """

    def __init__(
        self,
        task: str,
        out_channels: int,
        layout_onehot: bool = True,
        layout_shape: bool = False,
        layout_relations: bool = False,
        tile_layout: bool = False,
    ):
        super().__init__()
        if task not in ("tile", "layout"):
            raise ValueError(f"task must be 'tile' or 'layout', got {task!r}")
        self.task = task
        self.layout_onehot = layout_onehot and task == "layout"
        self.tile_layout = tile_layout and task == "tile"
        if task == "tile":
            in_channels = TILE_CONFIG_FEAT_DIM + (TILE_LAYOUT_DIM if self.tile_layout else 0)
        elif self.layout_onehot:
            in_channels = LAYOUT_CONFIG_FEAT_DIM * LAYOUT_CONFIG_VALUES
        else:
            in_channels = LAYOUT_CONFIG_FEAT_DIM
        self.layout_shape = layout_shape and task == "layout"
        in_channels += LAYOUT_SHAPE_DIM if self.layout_shape else 0
        self.layout_relations = layout_relations and task == "layout"
        in_channels += LAYOUT_RELATION_DIM if self.layout_relations else 0
        self.in_channels = in_channels
        self.lin = nn.Linear(in_channels, out_channels, bias=False)

    def featurize(self, feat: Tensor) -> Tensor:
        """Raw config features [..., 18 or 24] -> model inputs (before layout_shape)."""
        dtype = self.lin.weight.dtype
        if self.layout_onehot:
            index = (feat.round().long() + 1).clamp(0, LAYOUT_CONFIG_VALUES - 1)
            x = F.one_hot(index, LAYOUT_CONFIG_VALUES).flatten(-2).to(dtype)
        else:
            x = feat.to(dtype)
        if self.layout_relations:
            x = torch.cat([x, layout_relations(feat).to(dtype)], -1)
        return x

    def forward(self, feat: Tensor, dims: Tensor | None = None) -> Tensor:
        """Config vectors of ``feat`` [..., 18 or 24]; with ``layout_shape``, ``dims``
        [..., 6] holds each row's node's normalised shape dimensions."""
        x = self.featurize(feat)
        if self.layout_shape:
            if dims is None:
                raise ValueError("a layout_shape config encoder needs the nodes' dims")
            order = feat[..., :LAYOUT_SHAPE_DIM].round().long()
            sizes = dims.expand(*order.shape).gather(-1, order.clamp(min=0))
            x = torch.cat([x, torch.where(order >= 0, sizes, 0.0).to(x.dtype)], -1)
        return self.lin(x)


def node_dims(data: Data, config_ids: Tensor) -> Tensor:
    """[K, 6] the (normalised) shape dimensions of the configurable nodes."""
    return data.node_feat[config_ids][:, SHAPE_DIMS]


def config_features(
    data: Data, task: str, num_graphs: int, tile_width: int = TILE_CONFIG_FEAT_DIM
) -> tuple[Tensor, int]:
    """Raw config features and C: tile [B, C, tile_width (24, or 42 with tile_layout)],
    layout [C, K, 18]."""
    if task == "tile":
        feat = data.config_feat
        if feat.shape[-1] != tile_width:
            raise ValueError(
                f"tile config features of width {feat.shape[-1]}, the model reads "
                f"{tile_width}: data.tile_layout and model.tile_layout must agree"
            )
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


def join_configs(
    task: str, enc: Tensor, cfg_vec: Tensor, inputs: Tensor, batch: Tensor, config_ids
) -> Tensor:
    """Pre-activation layer-0 values of the config-dependent nodes S_0 per config.

    Args:
        task: ``"tile"``: ``cfg_vec`` [B, C, H] is added to every node of its graph (S_0 is
            every node); ``"layout"``: ``cfg_vec`` [C, K, H] is added to the configurable
            nodes ``config_ids`` [K] (all in S_0).
        enc: [N, H] node encodings; ``inputs`` bool [N] S_0; ``batch`` [N] graph of each node.

    Returns:
        [C, |S_0|, H].
    """
    if task == "tile":
        return enc.unsqueeze(0) + cfg_vec.transpose(0, 1)[:, batch]
    dep = enc[inputs].unsqueeze(0).repeat(cfg_vec.shape[0], 1, 1)
    pos = torch.cumsum(inputs.long(), 0) - 1  # node id -> position among S_0
    dep[:, pos[config_ids]] += cfg_vec
    return dep


def distinct_inputs(
    config_ids: Tensor,
    enc: Tensor,
    cfg: Tensor,
    encoder: ConfigEncoder,
    act: nn.Module,
    dims: Tensor | None = None,
) -> dedup.StateLayer:
    """Layer-0 states of the configurable nodes ``config_ids`` [K] (S_0 exactly), one per
    distinct (node, config row) of ``cfg`` [C, K, 18]: ``act(enc + encoder(row))``
    (``dims`` [K, 6]: the nodes' shapes, for a ``layout_shape`` encoder)."""
    num_configs, k = cfg.shape[0], cfg.shape[1]
    slot = torch.arange(k, device=cfg.device).repeat(num_configs)
    rows = torch.cat([slot.unsqueeze(1).to(cfg.dtype), cfg.reshape(num_configs * k, -1)], 1)
    inverse, rep = dedup.unique_rows(rows)
    node, config = rep % k, rep // k
    row_dims = None if dims is None else dims[node]
    values = act(enc[config_ids[node]] + encoder(cfg[config, node], row_dims))
    return dedup.StateLayer(values, inverse.view(num_configs, k))
