"""Distinct node states: compute each (node, layer) value once for all configs that share it.

In a layout graph a node's layer-l vector depends on the config only through the layouts of
the configurable nodes within l hops. Configs that agree there give the node the same
vector, and they agree often: a configurable node has a handful of distinct layouts
(default search changes a few nodes per config), and the real files repeat them across
hundreds of configs. On the bundled validation graph unet_3d.4x4.bf16 (1,965 configs) the
3-layer dependent sets hold 438k / 857k / 1.54M (node, config) rows but only 1.2k / 5.5k /
32k distinct states.

The state of a dependent node is identified exactly: at layer 0 by its config row, at
layer l by the tuple of its own and its dependent in-neighbours' layer-(l-1) state ids. A
64-bit hash of each tuple proposes the groups and a slot-by-slot comparison with each
group's representative confirms them (an exact pairwise merge takes over on a collision),
so no two different states are ever merged. Each distinct state is computed once from one
config that has it; every config reads its row through an index, so values and gradients
equal those of the per-config computation. Dropout (training) is drawn per distinct state,
i.e. shared by the configs that have it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .plan import csr_matrix


def unique_rows(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Exact distinct rows of a 2-D float or integer tensor: (inverse [N], the distinct id
    of each row; representatives [M], one row index holding each id).

    Rows compare by the bit patterns of their entries (so -0.0 and 0.0 count as different,
    which only costs a duplicate state).
    """
    n, width = rows.shape
    rows = rows.contiguous()
    if rows.is_floating_point():
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[rows.element_size()]
        rows = rows.view(bits)
    rows = rows.long()
    # distinct_tuples' hash of each row as a tuple of `width` slots, computed on the [n,
    # width] block itself (every row has the same slots, so no slot index is needed): the
    # same keys, hence the same ids, in a third of the time on large graphs.
    column = torch.arange(width, device=rows.device)
    inverse, count = _compact(_mix(_mix(rows) + (column + 1) * _GOLDEN).sum(1))
    rep = representatives(inverse, count)
    if bool((rows[rep[inverse]] == rows).all()):
        return inverse, rep
    slot_row = torch.arange(n, device=rows.device).repeat_interleave(width)
    inverse, count = distinct_tuples(rows.reshape(1, -1), slot_row, n, by_row=False)
    inverse = inverse.view(-1)
    return inverse, representatives(inverse, count)


# splitmix64 constants, as signed int64
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)


def _mix(x: Tensor) -> Tensor:
    """splitmix64's finaliser on int64 (wrapping arithmetic, logical shifts); ``x`` is left
    as it is. After the first step every operation writes in place: these arrays hold a
    value per (config, slot), and fresh ones for each step cost twice the time."""
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x.mul_(_MIX1)
    shifted = x >> 27
    x ^= shifted.bitwise_and_((1 << 37) - 1)
    x.mul_(_MIX2)
    torch.bitwise_right_shift(x, 31, out=shifted)
    return x.bitwise_xor_(shifted.bitwise_and_((1 << 33) - 1))


def distinct_tuples(
    ids: Tensor, slot_row: Tensor, num_rows: int, by_row: bool = True
) -> tuple[Tensor, int]:
    """Per (config, row): one dense id for the ordered tuple of its slots' values.

    A 64-bit hash of each tuple proposes the grouping (one ``unique`` over C x R keys);
    every member is then compared slot by slot with its group's representative, so the
    result is exact; on any collision the pairwise merge (:func:`merge_slots`) decides.

    Args:
        ids: [C, S] int64 slot values; the slots of one row are contiguous and ``slot_row``
            [S] (non-decreasing) names their row.
        num_rows: R; rows without a slot get the id of the empty tuple.
        by_row: keep equal tuples of different rows apart (rows are nodes); False compares
            tuples only (every row must then have the same number of slots).

    Returns:
        ([C, R] ids, count): equal ids exactly when the slot tuples are equal (and, with
        ``by_row``, the rows are the same row).
    """
    num_configs = ids.shape[0]
    device = ids.device
    counts, first, position = _slot_positions(slot_row, num_rows)
    terms = _mix(_mix(ids) + (position + 1) * _GOLDEN)
    key = torch.zeros(num_configs, num_rows, dtype=torch.long, device=device)
    key.index_add_(1, slot_row, terms)
    if by_row:
        key = key + _mix(torch.arange(num_rows, device=device) + 1).unsqueeze(0)
    inverse, count = _compact(key.reshape(-1))
    inverse = inverse.view(num_configs, num_rows)
    rep = representatives(inverse.reshape(-1), count)
    rep_config, rep_row = rep // num_rows, rep % num_rows
    exact = True
    if by_row:
        rows = torch.arange(num_rows, device=device)
        exact = bool((rep_row[inverse] == rows).all())
    elif num_rows and bool((counts != counts[0]).any()):
        raise ValueError("by_row=False needs the same number of slots in every row")
    if exact and ids.numel():
        group = inverse[:, slot_row]  # [C, S]
        rep_slot = first[rep_row[group]] + position
        exact = bool((ids[rep_config[group], rep_slot] == ids).all())
    if exact:
        return inverse, count
    dense, num_ids = _compact(ids.reshape(-1))
    return merge_slots(dense.view_as(ids), slot_row, num_rows, num_ids, by_row)


def representatives(inverse: Tensor, count: int | None = None) -> Tensor:
    """For ids ``inverse`` [N] in 0..M-1: one position holding each id, [M]."""
    m = int(inverse.max()) + 1 if count is None and inverse.numel() else (count or 0)
    pos = torch.arange(inverse.numel(), device=inverse.device)
    return torch.zeros(m, dtype=torch.long, device=inverse.device).scatter_(0, inverse, pos)


def _slot_positions(slot_row: Tensor, num_rows: int) -> tuple[Tensor, Tensor, Tensor]:
    """Slots per row [R], each row's first slot [R], and each slot's place in its row [S]."""
    counts = torch.bincount(slot_row, minlength=num_rows)
    first = torch.cumsum(counts, 0) - counts
    return counts, first, torch.arange(slot_row.numel(), device=slot_row.device) - first[slot_row]


def _compact(key: Tensor) -> tuple[Tensor, int]:
    """Dense ids 0..M-1 of int64 keys (same key, same id)."""
    uniq, inverse = torch.unique(key, return_inverse=True)
    return inverse, uniq.numel()


def merge_slots(
    ids: Tensor, slot_row: Tensor, num_rows: int, num_ids: int, by_row: bool = True
) -> tuple[Tensor, int]:
    """What :func:`distinct_tuples` returns, without hashing: adjacent slots are merged
    pairwise by an integer ``unique`` in log2(max slots per row) rounds. ``ids`` must be
    dense ids in 0..num_ids-1 (``num_ids`` bounds them); the other arguments as there.
    """
    num_configs = ids.shape[0]
    device = ids.device
    # Merge adjacent slots pairwise until every row holds one slot: log2(max degree) rounds.
    while True:
        counts, _, index = _slot_positions(slot_row, num_rows)
        if ids.shape[1] == 0 or int(counts.max()) <= 1:
            break
        lead = index % 2 == 0
        has_next = lead & (index + 1 < counts[slot_row])
        lead_pos = lead.nonzero().squeeze(1)
        a = ids[:, lead_pos]
        b = torch.where(
            has_next[lead_pos],
            ids[:, (lead_pos + 1).clamp(max=ids.shape[1] - 1)] + 1,
            torch.zeros_like(a),
        )
        # keys < (num_ids + 1)^2: ids are bounded by the number of (config, slot) entries,
        # far below 2^31 on any real graph chunk, so the product stays inside int64.
        inverse, num_ids = _compact(a * (num_ids + 1) + b)
        ids = inverse.view(num_configs, -1)
        slot_row = slot_row[lead_pos]
    out = torch.full((num_configs, num_rows), -1, dtype=torch.long, device=device)
    out[:, slot_row] = ids
    if by_row:  # the same tuple in different rows stays different: key on (row, tuple)
        rows = torch.arange(num_rows, device=device)
        out = rows * (num_ids + 1) + (out + 1)
    inverse, count = _compact(out)
    return inverse.view(num_configs, num_rows), count


def pool(
    state: StateLayer, group: Tensor, num_groups: int, mode: str, weight: Tensor | None = None
) -> Tensor:
    """Sum, mean or max of the states of each group of dependent nodes, per config:
    [C, num_groups, H], without expanding the per-config tensor (``embedding_bag``).

    Args:
        state: values [M, H] and index [C, R].
        group: [R] group (graph) of each dependent node.
        mode: ``"sum"``, ``"mean"`` or ``"max"``; an empty group gives 0 for sum and mean
            and the lowest finite value for max.
        weight: [R] weight of each dependent node, the same in every config (``"sum"``
            only): a weighted sum.
    """
    if weight is not None and mode != "sum":
        raise ValueError(f"a weighted pool sums, got mode {mode!r}")
    num_configs, num_rows = state.index.shape
    order = torch.sort(group, stable=True).indices
    counts = torch.bincount(group, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    configs = torch.arange(num_configs, device=group.device).unsqueeze(1)
    offsets = (configs * num_rows + starts.unsqueeze(0)).reshape(-1)
    index = state.index[:, order].reshape(-1)
    per_row = None
    if weight is not None:
        per_row = weight[order].to(state.values.dtype).repeat(num_configs)
    out = F.embedding_bag(index, state.values, offsets, mode=mode, per_sample_weights=per_row)
    out = out.view(num_configs, num_groups, -1)
    if mode == "max":
        empty = (counts == 0).view(1, -1, 1)
        out = out.masked_fill(empty, torch.finfo(out.dtype).min)
    return out


class StateLayer:
    """Distinct states of one layer: values ``values`` [M, H] and, per config and dependent
    node, the index of its state ``index`` [C, |S_l|]."""

    __slots__ = ("values", "index")

    def __init__(self, values: Tensor, index: Tensor):
        self.values, self.index = values, index

    def dense(self) -> Tensor:
        """Per-config values [C, |S_l|, H] (a gather; cheap next to the layer's matmuls)."""
        return self.values[self.index]


def layer_inputs(prev: StateLayer, base: Tensor, node_ids: Tensor, prev_pos: Tensor):
    """Input table and lookup for one layer's distinct rows.

    Returns (table [|U| + M_prev, H], slot_of [|U|]): column u of the subgraph reads
    ``table[u]`` (its config-free value) when ``slot_of[u] < 0`` and otherwise the state
    ``prev.index[c, slot_of[u]]`` of config c, at ``table[|U| + state]``.
    """
    u = node_ids.numel()
    slot_of = torch.full((u,), -1, dtype=torch.long, device=node_ids.device)
    slot_of[prev_pos] = torch.arange(prev_pos.numel(), device=node_ids.device)
    base_rows = base[node_ids]
    return torch.cat([base_rows, prev.values.to(base_rows.dtype)]), slot_of


def distinct_rows(prev: StateLayer, slot_of: Tensor, upd: Tensor, adj: Tensor):
    """Distinct states of a layer from the states of its inputs.

    Args:
        prev: the previous layer's states.
        slot_of: [|U|] position of each subgraph node among the previous dependent nodes,
            -1 for config-free nodes.
        upd: [R] subgraph positions of this layer's dependent nodes.
        adj: CSR aggregation matrix [R, |U|].

    Returns:
        (index [C, R], rep_config [M], rep_row [M]): the state of each (config, node) and,
        per distinct state, one config and node having it.
    """
    crow, col = adj.crow_indices(), adj.col_indices()
    num_rows = upd.numel()
    degree = crow[1:] - crow[:-1]
    row_of = torch.repeat_interleave(torch.arange(num_rows, device=col.device), degree)
    # Slots: dependent neighbours, then the node itself when it was dependent before.
    dep_edge = slot_of[col] >= 0
    self_dep = slot_of[upd] >= 0
    slot_row = torch.cat([row_of[dep_edge], self_dep.nonzero().squeeze(1)])
    slot_src = torch.cat([slot_of[col[dep_edge]], slot_of[upd[self_dep]]])
    order = torch.sort(slot_row, stable=True).indices
    slot_row, slot_src = slot_row[order], slot_src[order]
    index, count = distinct_tuples(prev.index[:, slot_src], slot_row, num_rows)
    rep = representatives(index.reshape(-1), count)
    return index, rep // num_rows, rep % num_rows


def aggregation_rows(adj: Tensor, prev: StateLayer, slot_of: Tensor, rep_config, rep_row):
    """CSR matrix [M, |U| + M_prev]: row m aggregates the inputs of state m's node as seen
    by its representative config (same weights as ``adj``)."""
    crow, col, val = adj.crow_indices(), adj.col_indices(), adj.values()
    degree = (crow[1:] - crow[:-1])[rep_row]
    num_states = rep_row.numel()
    rows = torch.repeat_interleave(torch.arange(num_states, device=col.device), degree)
    start = torch.repeat_interleave(crow[:-1][rep_row], degree)
    offset = torch.arange(rows.numel(), device=col.device) - torch.repeat_interleave(
        torch.cumsum(degree, 0) - degree, degree
    )
    entry = start + offset
    src = col[entry]
    slot = slot_of[src]
    config = rep_config[rows]
    width = slot_of.numel()
    cols = torch.where(slot >= 0, width + prev.index[config, slot.clamp(min=0)], src)
    return csr_matrix(rows, cols, val[entry], (num_states, width + prev.values.shape[0]))


def self_rows(prev: StateLayer, slot_of: Tensor, upd: Tensor, rep_config, rep_row) -> Tensor:
    """Index into the input table of each state's own previous value, [M]."""
    pos = upd[rep_row]
    slot = slot_of[pos]
    return torch.where(slot >= 0, slot_of.numel() + prev.index[rep_config, slot.clamp(min=0)], pos)
