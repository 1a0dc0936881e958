"""GATv2 attention on the exact config-dependent path of the linear layers.

Attention is not linear in the neighbours, so no sparse product aggregates it. But a GATv2
layer's output at node i depends only on i's own input and the multiset of its
in-neighbours' inputs (plus the self-loop GATv2Conv adds). Every path of
:class:`~tpulearn.models.passes.LayerPasses` hands its layer step exactly that: a CSR matrix
whose row r lists the inputs row r reads (``table`` columns), and the row's own input. With
the planner's ``"sum"`` matrices (:func:`~tpulearn.models.plan.aggregation_matrix`) a
nonzero's value is the edge's multiplicity, so duplicate edges weigh as often as they occur,
as in GATv2Conv. :class:`AttentionPasses` attends over those entries instead of multiplying
by them, which gives GAT the linear layers' paths unchanged: the config-free pass computed
only outside S_l, one edge list for all configs, and each distinct (node, layer) state once
(:mod:`tpulearn.models.dedup`).

:func:`attend` reproduces GATv2Conv's math (Brody et al., arXiv 2105.14491) with the
layer's own weights, so checkpoints load unchanged and the PyG layer on C copies
(``sparse_aggregation=False``) stays the reference it is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GATv2Conv
from torch_geometric.utils import softmax

from .passes import LayerPasses


class AttentionPasses(LayerPasses):
    """:class:`~tpulearn.models.passes.LayerPasses` whose layer step is GATv2 attention
    over the aggregation matrix's entries (the layers must be GATv2Convs).

    The matrices must leave out self-loops (the layer adds its own, :func:`attend`):
    :class:`~tpulearn.models.GAT` drops them from the graph's edges, as GATv2Conv would.
    """

    def _layer(self, i: int, matrix: Tensor, table: Tensor, x_self: Tensor) -> Tensor:
        return attend(self.convs[i], matrix, table, x_self)


def attend(conv: GATv2Conv, matrix: Tensor, table: Tensor, x_self: Tensor) -> Tensor:
    """GATv2Conv's output (heads averaged) at the rows of ``matrix``.

    Row r attends over its entries (source ``table[col]``, counted ``value`` times) and
    one self-loop (source ``x_self[r]``), as GATv2Conv with ``add_self_loops`` does on a
    graph without self-loops: logits ``att . LeakyReLU(W_l x_j + W_r x_i)`` per head,
    softmax per row, the weighted sum of ``W_l x_j``, mean over heads, plus the bias.

    Args:
        conv: the layer; ``concat=False``, no edge features, residual or attention
            dropout while training (those are not reproduced).
        matrix: CSR [R, T] with positive integer values (edge multiplicities).
        table: [T, *, H] the inputs the rows read (``*``: configs, or none).
        x_self: [R, *, H] each row's own input.

    Returns:
        [R, *, H_out].
    """
    _check_supported(conv)
    heads, width = conv.heads, conv.out_channels
    crow, col = matrix.crow_indices(), matrix.col_indices()
    num_rows, num_cols = x_self.shape[0], table.shape[0]
    rows = torch.arange(num_rows, device=col.device)
    # Edge list: the matrix's entries, then one self-loop per row, whose source (the row's
    # own input) is appended to the table so that one gather reads every source.
    src = torch.cat([col, num_cols + rows])
    dst = torch.cat([torch.repeat_interleave(rows, crow[1:] - crow[:-1]), rows])
    x_l = conv.lin_l(torch.cat([table, x_self]))
    x_l = x_l.view(*x_l.shape[:-1], heads, width)  # [T + R, *, heads, width]
    x_r = conv.lin_r(x_self).view(*x_self.shape[:-1], heads, width)
    # index_select and index_add_ rather than indexing and scatter: their backward passes
    # are each other, where indexing's backward is an accumulating index_put_ and scatter
    # broadcasts its index to the [E, *, heads, width] messages.
    source = x_l.index_select(0, src)  # [E + R, *, heads, width]
    # In place on the fresh gather: one [E, *, heads, width] buffer fewer to allocate.
    hidden = F.leaky_relu_(x_r.index_select(0, dst).add_(source), conv.negative_slope)
    logit = (hidden * conv.att).sum(-1)
    # A pair counted m times enters the softmax m times: exp(logit + log m) = m exp(logit).
    # Each m is 1 on a graph without duplicate edges, so the logit is then unchanged.
    count = torch.cat([matrix.values(), matrix.values().new_ones(num_rows)])
    logit = logit + count.to(logit.dtype).log().view(-1, *[1] * (logit.dim() - 1))
    alpha = softmax(logit, dst, num_nodes=num_rows, dim=0)  # [E + R, *, heads]
    # Heads are averaged: summing them per edge first leaves 1/heads of the width to add up.
    message = (source * alpha.unsqueeze(-1)).sum(-2)  # [E + R, *, width]
    out = message.new_zeros(num_rows, *message.shape[1:]).index_add_(0, dst, message) / heads
    return out if conv.bias is None else out + conv.bias


def _check_supported(conv: GATv2Conv) -> None:
    """Refuse GATv2Conv options :func:`attend` does not reproduce (GAT builds none)."""
    unsupported = {
        "concat": conv.concat,
        "edge_dim": conv.lin_edge is not None,
        "residual": conv.res is not None,
        "add_self_loops=False": not conv.add_self_loops,
        "attention dropout": conv.training and conv.dropout > 0,
    }
    named = [name for name, on in unsupported.items() if on]
    if named:
        raise ValueError(f"attention path does not support GATv2Conv with {', '.join(named)}")
