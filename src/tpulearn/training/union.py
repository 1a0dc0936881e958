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
the graphs at the same place in the ``union_size - 1`` steps before (whose samples of
configs it trained on then), instead of on the graph alone. The draw depends on (seed,
step) only and the partners' configs on (seed, epoch, graph), so a resumed run sees the
batches of an uninterrupted one.
"""

from __future__ import annotations

import random

from torch_geometric.data import Batch

from ..data.items import TpuGraphData


def graph_union(a: TpuGraphData, *others: TpuGraphData) -> TpuGraphData:
    """The disjoint union of layout graphs with the same number of sampled configs: each
    graph's nodes follow the one's before (its edges and configurable nodes renumbered),
    config ``i`` sets every graph's configurable nodes as config ``i`` of each did, and
    its runtime is the sum of theirs. ``config_index`` (the rows of a file) is ``a``'s."""
    if not others:
        raise ValueError("graph_union needs at least two graphs")
    for b in others:
        if a.node_config_feat.shape[0] != b.node_config_feat.shape[0]:
            raise ValueError(
                f"graph_union needs the same number of configs, got {a.stem!r} with "
                f"{a.node_config_feat.shape[0]} and {b.stem!r} with "
                f"{b.node_config_feat.shape[0]}"
            )
    graphs = [a, *others]
    joined = Batch.from_data_list(graphs)
    union = TpuGraphData()
    for key, value in a:  # a Data yields (key, value) pairs
        if key == "config_runtime":
            for b in others:
                value = value + b.config_runtime
            union[key] = value
        elif key == "config_index":
            union[key] = value
        elif key == "stem":
            union[key] = "+".join(g.stem for g in graphs)
        elif key != "num_nodes":
            union[key] = joined[key]
    union.num_nodes = sum(g.num_nodes for g in graphs)
    return union


def union_drawn(seed: int, step: int, prob: float) -> bool:
    """Whether step ``step`` (0-based) trains on unions: never the first step (it has no
    step before it), otherwise with probability ``prob``, fixed by (seed, step)."""
    if prob <= 0 or step == 0:
        return False
    return random.Random(seed * 1_000_003 + step).random() < prob


def with_unions(graphs: list, *befores: list) -> list:
    """The (graph index, data) pairs of a step with each graph joined to the graphs at the
    same place in ``befores``, the pairs of the steps before (the nearest first); a
    partner is left out where it is a graph already in the union or has another number
    of configs (a graph with fewer configs than a step samples), and a graph without
    partners stays alone."""
    befores = [b for b in befores if b]
    if not befores:
        return graphs
    out = []
    for k, (idx, data) in enumerate(graphs):
        members = [data]
        for before in befores:
            partner = before[k % len(before)][1]
            if partner.node_config_feat.shape[0] == data.node_config_feat.shape[0] and all(
                partner.stem != m.stem for m in members
            ):
                members.append(partner)
        out.append((idx, data if len(members) == 1 else graph_union(*members)))
    return out
