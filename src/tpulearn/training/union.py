"""Training on graph unions: two train graphs side by side as one, their runtimes summed.

A program's runtime is a sum of op times, so two programs run one after the other take
the sum of their times: the disjoint union of two layout graphs, config ``i`` of one
beside config ``i`` of the other, has (up to measurement noise) the runtime
``runtime_a[i] + runtime_b[i]``. Ranking such a union asks a model for what ranking one
graph never does: how much one graph's configs move its runtime against how much
another's move theirs, a relation between the costs of ops on different graphs. With few
train graphs it is more to learn from the same files (``trainer.union_prob``;
benchmarks/layout_fast.md, twentieth round).

With probability ``union_prob`` a step trains on the union of each of its graphs with
the graph at the same place in the step before (whose sample of configs it trained on
then), instead of on the graph alone. The draw depends on (seed, step) only and the
partner's configs on (seed, epoch, graph), so a resumed run sees the batches of an
uninterrupted one.
"""

from __future__ import annotations

import random

from torch_geometric.data import Batch

from ..data.items import TpuGraphData


def graph_union(a: TpuGraphData, b: TpuGraphData) -> TpuGraphData:
    """The disjoint union of two layout graphs with the same number of sampled configs:
    ``b``'s nodes follow ``a``'s (its edges and configurable nodes renumbered), config
    ``i`` sets both graphs' configurable nodes as config ``i`` of each did, and its
    runtime is the sum of theirs. ``config_index`` (the rows of a file) is ``a``'s."""
    if a.node_config_feat.shape[0] != b.node_config_feat.shape[0]:
        raise ValueError(
            f"graph_union needs the same number of configs, got {a.stem!r} with "
            f"{a.node_config_feat.shape[0]} and {b.stem!r} with {b.node_config_feat.shape[0]}"
        )
    joined = Batch.from_data_list([a, b])
    union = TpuGraphData()
    for key, value in a:  # a Data yields (key, value) pairs
        if key == "config_runtime":
            union[key] = value + b.config_runtime
        elif key == "config_index":
            union[key] = value
        elif key == "stem":
            union[key] = f"{a.stem}+{b.stem}"
        elif key != "num_nodes":
            union[key] = joined[key]
    union.num_nodes = a.num_nodes + b.num_nodes
    return union


def union_drawn(seed: int, step: int, prob: float) -> bool:
    """Whether step ``step`` (0-based) trains on unions: never the first step (it has no
    step before it), otherwise with probability ``prob``, fixed by (seed, step)."""
    if prob <= 0 or step == 0:
        return False
    return random.Random(seed * 1_000_003 + step).random() < prob


def with_unions(graphs: list, before: list | None) -> list:
    """The (graph index, data) pairs of a step with each graph joined to the graph at the
    same place in ``before``, the step before's pairs; a graph stays alone where that is
    itself or has another number of configs (a graph with fewer configs than a step
    samples)."""
    if not before:
        return graphs
    out = []
    for k, (idx, data) in enumerate(graphs):
        partner = before[k % len(before)][1]
        alone = partner.stem == data.stem or (
            partner.node_config_feat.shape[0] != data.node_config_feat.shape[0]
        )
        out.append((idx, data if alone else graph_union(data, partner)))
    return out
