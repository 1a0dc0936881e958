"""Node and config encoders.

The node encoder maps (opcode, normalised features) to a hidden vector; the config encoder
maps config features (tile: 24 per graph; layout: 18 per configurable node) to a vector
that is *added* to the node's pre-activation. Because a linear layer of a concatenation is
the sum of linear layers of its parts, this is exactly the official "concatenate opcode
embedding, node features and config features, then project", with the config-free part
computed once per graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.schema import (
    LAYOUT_CONFIG_FEAT_DIM,
    NODE_FEAT_DIM,
    NUM_OPCODES,
    TILE_CONFIG_FEAT_DIM,
)

# Layout config values are minor-to-major dimension indices 0..5, or -1 for "unset".
LAYOUT_CONFIG_VALUES = 7


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
    """

    def __init__(self, task: str, out_channels: int, layout_onehot: bool = True):
        super().__init__()
        if task not in ("tile", "layout"):
            raise ValueError(f"task must be 'tile' or 'layout', got {task!r}")
        self.task = task
        self.layout_onehot = layout_onehot and task == "layout"
        if task == "tile":
            in_channels = TILE_CONFIG_FEAT_DIM
        elif self.layout_onehot:
            in_channels = LAYOUT_CONFIG_FEAT_DIM * LAYOUT_CONFIG_VALUES
        else:
            in_channels = LAYOUT_CONFIG_FEAT_DIM
        self.in_channels = in_channels
        self.lin = nn.Linear(in_channels, out_channels, bias=False)

    def featurize(self, feat: Tensor) -> Tensor:
        """Raw config features [..., 18 or 24] -> model inputs [..., in_channels]."""
        if self.layout_onehot:
            index = (feat.round().long() + 1).clamp(0, LAYOUT_CONFIG_VALUES - 1)
            return F.one_hot(index, LAYOUT_CONFIG_VALUES).flatten(-2).to(self.lin.weight.dtype)
        return feat.to(self.lin.weight.dtype)

    def forward(self, feat: Tensor) -> Tensor:
        return self.lin(self.featurize(feat))
