"""The GNN baseline family for tile and layout ranking."""

from .encoders import ConfigEncoder, NodeEncoder
from .gnn import GAT, GCN, GIN, MLP, SAGE, ConfigGNN, ResGCN

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
