"""The GNN family: the layer types of :class:`~tpulearn.models.ConfigGNN`.

Each type overrides the hooks of :class:`~tpulearn.models.hooks.LayerHooks`:
``init_conv`` and, where its neighbour aggregation is linear (mean, sum or weighted),
``aggregation`` and ``combine`` so the per-config layers aggregate with one sparse matrix
product. ``combine`` reads the PyG layer's own submodules so every layer path shares its
weights (see :meth:`~tpulearn.models.hooks.LayerHooks.combine`).
The base model lives in :mod:`tpulearn.models.base`.
"""

from __future__ import annotations

from torch import nn
from torch_geometric.nn import GATv2Conv, GCNConv, GINConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import remove_self_loops

from .attention import AttentionPasses
from .base import ACTIVATIONS, EDGE_DIRECTIONS, ConfigGNN  # noqa: F401 (EDGE_DIRECTIONS re-exported)
from .readout import READOUTS  # noqa: F401 (re-exported)


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

    Attention is not linear, yet it takes the linear layers' exact paths (the distinct
    states, the config-free pass outside the dependent sets): the planner's ``"sum"``
    matrices list each node's in-neighbours with their edge multiplicities, and the
    layers attend over those entries instead of multiplying by them
    (:mod:`tpulearn.models.attention`). ``sparse_aggregation=False`` runs the PyG layer
    on C copies of the subgraph instead.

    Args:
        heads: attention heads, averaged (so the width stays ``hidden_channels``).
        **kwargs: as :class:`ConfigGNN`.
    """

    aggregation = "sum"  # read as edge multiplicities, never multiplied by
    passes = AttentionPasses

    def __init__(self, task: str, heads: int = 4, **kwargs):
        self.heads = heads
        super().__init__(task, **kwargs)

    def init_conv(self, in_channels, out_channels):
        return GATv2Conv(in_channels, out_channels, heads=self.heads, concat=False)

    def edge_weights(self, edge_index, num_nodes):
        # GATv2Conv drops a graph's self-loops and adds one per node; dropping them here
        # keeps them out of the matrices too (the attention adds each row's own), and the
        # PyG layer, finding none, computes what it did.
        return remove_self_loops(edge_index)[0], None


class GIN(ConfigGNN):
    """Graph isomorphism network layers (Xu et al., arXiv 1810.00826), sum aggregation;
    the layer's MLP uses the model's activation ``act``."""

    def init_conv(self, in_channels, out_channels):
        mlp = nn.Sequential(
            nn.Linear(in_channels, out_channels),
            ACTIVATIONS[self.act](),
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
