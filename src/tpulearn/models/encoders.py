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
# Per configurable node: its output row against its own default layout (6 positions), and
# per operand slot (input, kernel): present, configurable, and the 6 positions' mismatch
# (see :func:`layout_agreement`).
OPERAND_SLOTS = 2
LAYOUT_AGREEMENT_DIM = LAYOUT_POSITIONS + OPERAND_SLOTS * (2 + LAYOUT_POSITIONS)
# A TPU tile: 128 lanes by 8 sublanes of 4 bytes (see :func:`layout_tiling`).
TILE_LANES = 128
TILE_SUBLANE_BYTES = 32
# Per configurable node: 3 tiling columns for its output and for each operand slot.
LAYOUT_TILING_DIM = 3 * (1 + OPERAND_SLOTS)


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


def operands(
    edge_index: Tensor, edge_slot: Tensor, num_nodes: int, slots: int = OPERAND_SLOTS
) -> Tensor:
    """[slots, N] the first ``slots`` operands of every node (-1 where missing).

    ``edge_index`` [2, m] holds (consumer, producer) columns and ``edge_slot`` [m] each
    edge's operand number (:func:`tpulearn.data.items.operand_slots`, fixed when the file
    is read, so an operand cut away by a segment or a context leaves its slot empty).
    """
    out = torch.full((slots, num_nodes), -1, dtype=torch.long, device=edge_index.device)
    slot = edge_slot.long()
    keep = slot < slots
    out[slot[keep], edge_index[0, keep]] = edge_index[1, keep]
    return out


def _mismatch(a: Tensor, b: Tensor, where: Tensor) -> Tensor:
    """Positions where two minor-to-major orders [..., 6] name different dims, where
    ``where`` [..., 1] holds."""
    return where & (a.round() != b.round())


def operand_table(
    config_ids: Tensor, num_nodes: int, edge_index: Tensor, edge_slot: Tensor
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per operand slot of the configurable nodes ``config_ids`` [K]: (producer [K] (-1:
    none), the producer's node id [K] (0 where there is none), its position among
    ``config_ids`` [K] (-1: not configurable)). Config-free: one table serves every
    config of a graph, and :func:`layout_agreement` and :func:`layout_tiling` both."""
    k = config_ids.numel()
    position = torch.full((num_nodes,), -1, dtype=torch.long, device=config_ids.device)
    position[config_ids] = torch.arange(k, device=config_ids.device)
    producer = operands(edge_index, edge_slot, num_nodes)[:, config_ids]  # [2, K]
    table = []
    for slot in range(OPERAND_SLOTS):
        present = producer[slot] >= 0
        p = producer[slot].clamp(min=0)
        at = torch.where(present, position[p], -1)
        table.append((torch.where(present, p, -1), p, at))
    return table


def _operand_layouts(cfg: Tensor, node_layout: Tensor, table: list):
    """Per operand slot of the configurable nodes (``table``: :func:`operand_table`):
    (producer [K] (-1: none), configurable [K], emitted [C, K, 6] the layout the producer
    writes in each config, read [C, K, 6] the block the node's row chooses for it (all -1:
    read as emitted))."""
    layout = node_layout.to(cfg.dtype)
    out = cfg[..., :LAYOUT_POSITIONS]
    slots = []
    for slot, (producer, p, at) in enumerate(table):
        configurable = at >= 0
        chosen = out[:, at.clamp(min=0)]  # [C, K, 6] a configurable producer's row
        emitted = torch.where((configurable & (chosen >= 0).any(-1))[..., None], chosen, layout[p])
        cols = slice(LAYOUT_POSITIONS * (slot + 1), LAYOUT_POSITIONS * (slot + 2))
        slots.append((producer, configurable, emitted, cfg[..., cols]))
    return slots


def layout_agreement(
    cfg: Tensor,
    config_ids: Tensor,
    node_layout: Tensor,
    edge_index: Tensor,
    edge_slot: Tensor,
    table: list | None = None,
) -> Tensor:
    """Where each configurable node's layouts disagree with its own and its operands'.

    A compiler inserts a copy or transpose wherever a tensor is read in another layout
    than it is written in. Per config, a configurable node writes its output in the
    layout its row chooses (columns 0-5; all -1: its own layout, node features 134-139),
    which its config-free consumers read in that own layout; it reads its first and second
    operand (input block 6-11, kernel block 12-17; all -1: as they are emitted) against
    what each producer emits: a configurable producer's chosen output in the same config,
    any other its own layout. Message passing could only learn to compare two nodes' rows
    through sums and activations; these features compare them exactly.

    Args:
        cfg: [C, K, 18] raw layout config rows of the configurable nodes ``config_ids`` [K].
        node_layout: [N, 6] every node's own minor-to-major order (-1 padded).
        edge_index: [2, m] (consumer, producer); ``edge_slot`` [m]: see :func:`operands`.
        table: the graph's :func:`operand_table`, when the caller has it (it depends on
            the graph alone); ``None``: made here.

    Returns:
        [C, K, 22]: the 6 positions where the chosen output differs from the node's own
        layout; then per slot (input, kernel): the operand is present, it is configurable,
        and the 6 positions where a chosen read layout differs from the emitted one. A
        position counts only where both orders are set (unset rows cost no copy).
    """
    k = config_ids.numel()
    out = cfg[..., :LAYOUT_POSITIONS]
    out_set = (out >= 0).any(-1, keepdim=True)
    parts = [_mismatch(out, node_layout.to(cfg.dtype)[config_ids], out_set)]
    if table is None:
        table = operand_table(config_ids, node_layout.shape[0], edge_index, edge_slot)
    for producer, configurable, emitted, read in _operand_layouts(cfg, node_layout, table):
        present = producer >= 0
        read_set = present[:, None] & (read >= 0).any(-1, keepdim=True)
        flags = torch.stack([present, configurable], -1).expand(cfg.shape[0], k, 2)
        parts += [flags, _mismatch(read, emitted, read_set)]
    return torch.cat(parts, -1).to(cfg.dtype)


def _tiling(shape: Tensor, width: Tensor, order: Tensor) -> Tensor:
    """[..., 3] how tensors of ``shape`` [..., 6] and ``width`` [...] bytes per element
    tile when written in minor-to-major ``order`` [..., 6] (unset entries -1): log2 of the
    padding of the minor dim to the 128 lanes, log2 of the padding of the second-minor dim
    to the sublanes of a tile (8 x 4 bytes: 8 for 32-bit types, 16 for 16-bit ones, 32 for
    8-bit ones), and log2 of the bytes of one minor row / 8. A missing dim counts as 1."""

    def size(pos: int) -> Tensor:
        axis = order[..., pos].round().long()
        dims = shape.expand(order.shape).gather(-1, axis.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return torch.where(axis >= 0, dims, 1.0).clamp(min=1.0)

    lane, sub = size(0), size(1)
    sublanes = (TILE_SUBLANE_BYTES // width.clamp(min=1)).clamp(min=8).to(shape.dtype)
    lane_pad = torch.ceil(lane / TILE_LANES) * TILE_LANES / lane
    sub_pad = torch.ceil(sub / sublanes) * sublanes / sub
    row = lane * width.to(shape.dtype)
    return torch.stack([lane_pad.log2(), sub_pad.log2(), row.log2() / 8], -1)


def layout_tiling(
    cfg: Tensor,
    config_ids: Tensor,
    node_layout: Tensor,
    node_shape: Tensor,
    node_width: Tensor,
    edge_index: Tensor,
    edge_slot: Tensor,
    table: list | None = None,
) -> Tensor:
    """How each configurable node's output and operands tile in the layouts of a config.

    A TPU stores an array in tiles of 128 lanes (the minor-most dim) by 8 sublanes of
    32-bit words (the second-minor dim; narrower types pack 16 or 32 rows), so a layout
    that makes a short dim minor pads the array, and the compute and traffic on it, and
    a layout whose minor rows are short reads memory in short strided bursts. Which dim
    a layout makes minor is in the config row; how long it is, the model otherwise reads
    only through normalised features. Per config: the node's output in its chosen layout
    (its own where unset), and each operand slot (input, kernel) in the layout the node
    reads it in (its block; unset: as the producer emits it, see :func:`layout_agreement`),
    with the producer's shape and element width; zeros where there is no operand.

    Args:
        cfg: [C, K, 18] raw layout config rows of the configurable nodes ``config_ids`` [K].
        node_layout: [N, 6] own minor-to-major orders (-1 padded); ``node_shape`` [N, 6]
            raw shapes (0 padded); ``node_width`` [N] bytes per element.
        edge_index: [2, m] (consumer, producer); ``edge_slot`` [m]: see :func:`operands`.
        table: the graph's :func:`operand_table` (see :func:`layout_agreement`).

    Returns:
        [C, K, 9]: per tensor (output, input, kernel) :func:`_tiling`'s 3 columns.
    """
    dtype = cfg.dtype
    shape, width = node_shape.to(dtype), node_width.long()
    out = cfg[..., :LAYOUT_POSITIONS]
    out_set = (out >= 0).any(-1, keepdim=True)
    written = torch.where(out_set, out, node_layout.to(dtype)[config_ids])
    parts = [_tiling(shape[config_ids], width[config_ids], written)]
    if table is None:
        table = operand_table(config_ids, node_layout.shape[0], edge_index, edge_slot)
    for producer, _, emitted, read in _operand_layouts(cfg, node_layout, table):
        present = producer >= 0
        p = producer.clamp(min=0)
        order = torch.where((read >= 0).any(-1, keepdim=True), read, emitted)
        tiles = _tiling(shape[p], width[p], order)
        parts.append(torch.where(present[:, None], tiles, 0.0))
    return torch.cat(parts, -1).to(dtype)


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
        layout_agreement: the rows carry :func:`layout_agreement`'s 22 columns after
            their 18 (layout): read them as they are.
        layout_tiling: the rows carry :func:`layout_tiling`'s 9 columns after those
            (layout): read them as they are.
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
        layout_agreement: bool = False,
        tile_layout: bool = False,
        layout_tiling: bool = False,
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
        self.layout_agreement = layout_agreement and task == "layout"
        self.layout_tiling = layout_tiling and task == "layout"
        # Exact columns computed from the graph, appended to the 18 (see SAGE.forward).
        self.appended = LAYOUT_AGREEMENT_DIM * self.layout_agreement
        self.appended += LAYOUT_TILING_DIM * self.layout_tiling
        in_channels += self.appended
        self.in_channels = in_channels
        self.lin = nn.Linear(in_channels, out_channels, bias=False)

    def featurize(self, feat: Tensor) -> Tensor:
        """Raw config features [..., 18 or 24] -> model inputs (before layout_shape)."""
        dtype = self.lin.weight.dtype
        extra = None
        if self.appended:
            feat, extra = feat[..., :LAYOUT_CONFIG_FEAT_DIM], feat[..., LAYOUT_CONFIG_FEAT_DIM:]
        if self.layout_onehot:
            index = (feat.round().long() + 1).clamp(0, LAYOUT_CONFIG_VALUES - 1)
            x = F.one_hot(index, LAYOUT_CONFIG_VALUES).flatten(-2).to(dtype)
        else:
            x = feat.to(dtype)
        if self.layout_relations:
            x = torch.cat([x, layout_relations(feat).to(dtype)], -1)
        if extra is not None:
            x = torch.cat([x, extra.to(dtype)], -1)
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
    keys = ("config_feat", "node_config_feat")
    key, other = keys if task == "tile" else keys[::-1]
    if key not in data:
        item = f": a {'layout' if task == 'tile' else 'tile'} item" if other in data else ""
        raise ValueError(f"a {task} model scores data with {key}; this data has none{item}")
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
