"""The GNN baseline family for tile and layout ranking."""

from .base import ConfigGNN
from .encoders import ConfigEncoder, NodeEncoder
from .gnn import GAT, GCN, GIN, MLP, SAGE, ResGCN

__all__ = [
    "GAT",
    "GCN",
    "GIN",
    "MLP",
    "SAGE",
    "ConfigEncoder",
    "ConfigGNN",
    "NodeEncoder",
    "ResGCN",
]
