"""The paper's layout model and synthetic layout graphs, as the GST benchmarks use them."""

from __future__ import annotations

import numpy as np
import torch


def paper_layout_model():
    """The paper's layout model at its size: SAGE 3 x 256, PReLU, residual, dropout 0.1,
    opcode embedding 128, mean + max readout (seeded: the same weights every call)."""
    from tpulearn.models import SAGE

    torch.manual_seed(0)
    return SAGE(
        "layout",
        hidden_channels=256,
        num_layers=3,
        dropout=0.1,
        residual=True,
        act="prelu",
        readout="mean+max",
        opcode_dim=128,
    )


def synthetic_layout_graph(num_nodes: int, num_configs: int = 32, seed: int = 0):
    """A synthetic layout graph with real shape statistics (4% configurable nodes), its
    features normalised as training sees them."""
    from tpulearn.data import FeatureNormalizer, TpuGraphData, reencode_minor_to_major
    from tpulearn.data.synthetic import make_layout_graph

    g = make_layout_graph(
        np.random.default_rng(seed), num_nodes, num_nodes // 25, num_configs, search="random"
    )
    feat = reencode_minor_to_major(g["node_feat"])
    feat = FeatureNormalizer(log=True).partial_fit(feat).transform(feat)
    return TpuGraphData(
        node_feat=torch.from_numpy(feat),
        node_opcode=torch.from_numpy(g["node_opcode"].astype(np.int64)),
        edge_index=torch.from_numpy(np.ascontiguousarray(g["edge_index"].T)),
        node_config_ids=torch.from_numpy(g["node_config_ids"]),
        node_config_feat=torch.from_numpy(g["node_config_feat"]),
        config_runtime=torch.from_numpy(g["config_runtime"]),
        node_splits=torch.from_numpy(g["node_splits"].reshape(-1)),
        config_index=torch.arange(num_configs),
        num_nodes=num_nodes,
        stem=f"synthetic{num_nodes}",
    )
