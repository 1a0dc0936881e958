"""Inputs shared by the segment tests: a hand-built 7-node graph and a small model."""

import torch

from tpulearn.data import TpuGraphData
from tpulearn.data.items import operand_slots
from tpulearn.models import GAT, GCN, GIN, MLP, SAGE, ResGCN

LAYERS = [SAGE, GCN, GAT, GIN, ResGCN, MLP]


def tiny_graph(num_configs: int = 5, seed: int = 0, stem: str = "tiny") -> TpuGraphData:
    """7 nodes in a chain with a branch; nodes 2 and 5 configurable; the fields of a
    dataset item, so that it batches with one."""
    g = torch.Generator().manual_seed(seed)
    edges = torch.tensor([[1, 0], [2, 1], [3, 2], [4, 3], [5, 4], [6, 5], [6, 2]]).T
    return TpuGraphData(
        node_feat=torch.randn(7, 140, generator=g),
        node_opcode=torch.randint(1, 100, (7,), generator=g),
        edge_index=edges,
        edge_slot=torch.from_numpy(operand_slots(edges.T.numpy())),
        node_layout=torch.tensor([[1, 0, -1, -1, -1, -1]] * 7, dtype=torch.int8),
        node_shape=torch.tensor([[130.0, 9.0, 0, 0, 0, 0]] * 7),
        node_width=torch.full((7,), 4, dtype=torch.int8),
        node_config_ids=torch.tensor([2, 5]),
        node_config_feat=torch.randint(-1, 6, (num_configs, 2, 18), generator=g).float(),
        config_runtime=torch.randint(1, 1000, (num_configs,), generator=g),
        config_index=torch.arange(num_configs),
        node_splits=torch.tensor([0, 4, 7]),
        num_nodes=7,
        stem=stem,
    )


def small(layer=SAGE, **kwargs):
    torch.manual_seed(0)
    return layer("layout", hidden_channels=16, num_layers=2, **kwargs)
