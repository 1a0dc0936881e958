"""Layout graphs: per-node layout configs and the hidden layout cost model.

The 1-hop producers and consumers of each configurable node vote by opcode for a row- or
column-major output layout; any other output layout pays conversion copies, a fixed cost
plus passes over the tensor's bytes, scaled by how many (and how minor) positions of the
minor-to-major order differ. Smaller terms: compute padded to the TPU's 8 x 128 tiles, and
operands read in another layout than their producer emits (see :func:`layout_cost`).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import numpy as np

from ..features import tensor_rank
from .cost import (
    _CONVERSION_NS,
    _MAX_PADDING,
    _NS_PER_BYTE,
    _NS_PER_FLOP,
    _POSITION_WEIGHT,
    _PREFERENCE_PASSES,
    _base_cost,
    _duplicate_rows,
    _node_arrays,
    _noisy,
    _plain_order,
    _preferred_layout,
    _static,
)
from .graphs import _CONFIGURABLE_PROBS, _first_operands, _graph, _layouts

BENCHMARK_LAYOUT = MappingProxyType(
    {"num_nodes": 20_000, "num_configurable": 1_000, "num_configs": 2_000}
)

_CANDIDATES = 8  # distinct layouts per configurable node (row 0 = default), as in real files
_CHUNK_ELEMENTS = 1 << 22  # bound on temporaries: configs per chunk x configurable x 18


def _layout_candidates(rng: np.random.Generator, graph: dict) -> np.ndarray:
    """[nc, K, 18] float32: per configurable node, row 0 all -1, then candidate layouts.

    Output block: a permutation of the node's rank; input / kernel blocks: of the rank of
    its first / second operand (kernel only for convolution and dot). Rows 1 and 2 are the
    plain row- and column-major orders (a search tries those first), the rest random.
    """
    ids, opcode = graph["node_config_ids"], graph["node_opcode"].astype(np.int64)
    rank = tensor_rank(graph["node_feat"])
    first, second = _first_operands(graph["edge_index"], len(opcode))
    blocks = (
        (ids, np.ones(ids.size, bool)),
        (first[ids], first[ids] >= 0),
        (second[ids], (second[ids] >= 0) & (opcode[ids] != 75)),
    )
    k = _CANDIDATES - 3
    cand = np.full((ids.size, _CANDIDATES, 18), -1.0, np.float32)
    for b, (nodes, present) in enumerate(blocks):
        ranks = np.where(present, rank[np.maximum(nodes, 0)], 0)
        cols = slice(6 * b, 6 * b + 6)
        cand[:, 1, cols] = _plain_order(ranks, row_major=True)
        cand[:, 2, cols] = _plain_order(ranks, row_major=False)
        drawn = _layouts(rng, np.repeat(ranks, k), default_prob=0.0)
        cand[:, 3:, cols] = drawn.reshape(ids.size, k, 6)
    return cand


def _layout_configs(
    rng: np.random.Generator, graph: dict, num_configs: int, search: str, duplicates: float
) -> np.ndarray:
    """[c, nc, 18] float32 ``node_config_feat``.

    ``random`` search: every node takes a random layout (5% keep the default);
    ``default`` search: each config changes 2-20% of the nodes away from the default.
    """
    if search not in ("default", "random"):
        raise ValueError(f"search must be 'default' or 'random', got {search!r}")
    cand = _layout_candidates(rng, graph)
    nc = cand.shape[0]
    choice = np.zeros((num_configs, nc), np.uint8)
    step = max(1, _CHUNK_ELEMENTS // max(18 * nc, 1))
    for start in range(0, num_configs, step):
        rows = min(step, num_configs - start)
        pick = rng.integers(1, _CANDIDATES, size=(rows, nc))
        keep = 0.05 if search == "random" else 1.0 - rng.uniform(0.02, 0.2, size=(rows, 1))
        choice[start : start + rows] = np.where(rng.random((rows, nc)) < keep, 0, pick)
    _duplicate_rows(rng, choice, duplicates)
    feat = np.empty((num_configs, nc, 18), np.float32)
    for start in range(0, num_configs, step):
        feat[start : start + step] = cand[np.arange(nc), choice[start : start + step]]
    return feat


def _mismatch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Position-weighted disagreement of two minor-to-major layouts [..., 6] -> [...]."""
    return ((a != b) * _POSITION_WEIGHT).sum(axis=-1)


def _padding(layout: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Compute blow-up from padding the two most minor dims to the TPU's 8 x 128 tile.

    Args:
        layout: [b, nc, 6] effective output layouts; dims: [nc, 6] shapes.
    """
    cols = np.arange(dims.shape[0])

    def dim(pos: int, default: float) -> np.ndarray:
        axis = layout[..., pos].astype(np.int64)
        return np.where(axis >= 0, dims[cols, np.maximum(axis, 0)], default)

    lane, sublane = dim(0, 128.0), dim(1, 8.0)
    pad = np.ceil(lane / 128) * 128 / lane * (np.ceil(sublane / 8) * 8 / sublane)
    return np.minimum(pad, _MAX_PADDING)


def _layout_model(graph: dict) -> dict[str, Any]:
    """What the cost model needs of a graph, per configurable node: the hidden part."""
    ids = graph["node_config_ids"].astype(np.int64)
    opcode = graph["node_opcode"].astype(np.int64)
    edges = graph["edge_index"].reshape(-1, 2)
    n = len(opcode)
    rank, dims, layout, elements, nbytes = _static(graph["node_feat"])
    first, second = _first_operands(edges, n)

    model = {
        "dims": dims[ids],
        "own": layout[ids],
        "pref": _preferred_layout(opcode, edges, ids, rank),
        # Per unit of mismatch: conversion ops (a fixed cost, then passes over the bytes).
        "out_ns": _CONVERSION_NS + _PREFERENCE_PASSES * nbytes[ids] * _NS_PER_BYTE,
        "base": _base_cost(opcode, nbytes),
    }
    # Convolutions and dots cost 2 x contraction flops per output element (contraction:
    # the first operand's last dim); a reshape just moves its elements.
    p = np.maximum(first[ids], 0)
    contraction = np.maximum(dims[p, np.maximum(rank[p] - 1, 0)], 1.0)
    heavy = np.isin(opcode[ids], (26, 34))
    model["flop_ns"] = elements[ids] * np.where(heavy, 2 * contraction, 1.0) * _NS_PER_FLOP

    position = np.full(n, -1)
    position[ids] = np.arange(ids.size)
    for name, node in (("input", first[ids]), ("kernel", second[ids])):
        safe = np.maximum(node, 0)
        model[name] = {
            "present": node >= 0,
            "position": np.where(node >= 0, position[safe], -1),  # configurable producer
            "ns": nbytes[safe] * _NS_PER_BYTE,
            "own": layout[safe],
        }
    return model


def _layout_variable_cost(model: dict[str, Any], block: np.ndarray) -> np.ndarray:
    """Config-dependent runtime (ns) of a chunk of configs.

    Args:
        block: [b, nc, 18] ``node_config_feat`` rows.

    Returns:
        [b] float64.
    """
    block = np.asarray(block, np.float64)
    out = block[..., 0:6]
    # An all -1 block is the compiler default: the node's own layout, or for an operand,
    # whatever its producer emits (no conversion).
    out = np.where((out == -1).all(axis=-1, keepdims=True), model["own"], out)
    # The dominant term: an output layout against the neighbourhood's vote.
    cost = model["out_ns"] * _mismatch(out, model["pref"])
    cost += model["flop_ns"] * _padding(out, model["dims"])
    for name, cols in (("input", slice(6, 12)), ("kernel", slice(12, 18))):
        operand = model[name]
        chosen = block[..., cols]
        position = operand["position"]
        # A configurable producer emits the layout chosen for it in the same config.
        emitted = np.where(
            (position >= 0)[:, None], out[:, np.maximum(position, 0)], operand["own"]
        )
        active = operand["present"] & ~(chosen == -1).all(axis=-1)
        cost += np.where(active, operand["ns"] * _mismatch(chosen, emitted), 0.0)
    return cost.sum(axis=1)


def layout_cost(graph: Any, node_config_feat: np.ndarray | None = None) -> np.ndarray:
    """Noise-free runtime (ns) of every layout config under the hidden cost model.

    Args:
        graph: a dict of layout arrays (as returned by :func:`make_layout_graph`) or a
            :class:`~tpulearn.data.io.LayoutRecord`.
        node_config_feat: [c, nc, 18] configs to cost; the graph's own by default.

    Returns:
        [c] float64 runtimes in ns. ``np.rint`` of it is what a noise-free file stores.
    """
    arrays = _node_arrays(graph, ("node_feat", "node_opcode", "edge_index", "node_config_ids"))
    if node_config_feat is None:
        node_config_feat = _node_arrays(graph, ("node_config_feat",))["node_config_feat"]
    model = _layout_model(arrays)
    c, nc = node_config_feat.shape[:2]
    cost = np.empty(c, np.float64)
    step = max(1, _CHUNK_ELEMENTS // max(18 * nc, 1))
    for start in range(0, c, step):
        cost[start : start + step] = _layout_variable_cost(
            model, node_config_feat[start : start + step]
        )
    return cost + model["base"]


def _layout_arrays(
    structure_rng: np.random.Generator,
    config_rng: np.random.Generator,
    num_nodes: int,
    num_configurable: int,
    num_configs: int,
    labelled: bool,
    source: str,
    search: str,
    noise: float,
    duplicate_fraction: float,
    cost: Callable[..., np.ndarray] = layout_cost,
) -> dict[str, np.ndarray]:
    """A layout graph whose structure and configs come from separate generators.

    Separate generators let the two searches of a source share their graphs, as the
    release does. ``cost`` is the hidden cost model (a family's, see :mod:`.families`).
    """
    if source not in _CONFIGURABLE_PROBS:
        raise ValueError(f"source must be 'xla' or 'nlp', got {source!r}")
    if num_configs < 1:
        raise ValueError(f"num_configs must be >= 1, got {num_configs}")
    num_splits = 1 + int(structure_rng.integers(0, min(6, num_nodes // 200) + 1))
    graph = _graph(structure_rng, num_nodes, num_configurable, source, num_splits)
    feat = _layout_configs(config_rng, graph, num_configs, search, duplicate_fraction)
    if labelled:
        runtime = _noisy(config_rng, cost(graph, feat), noise)
    else:
        runtime = np.zeros(num_configs, np.int64)
    return {
        "node_feat": graph["node_feat"],
        "node_opcode": graph["node_opcode"],
        "edge_index": graph["edge_index"],
        "node_config_feat": feat,
        "node_config_ids": graph["node_config_ids"],
        "config_runtime": runtime,
        "node_splits": graph["node_splits"],
    }


def make_layout_graph(
    rng: np.random.Generator,
    num_nodes: int,
    num_configurable: int,
    num_configs: int,
    labelled: bool = True,
    *,
    source: str = "xla",
    search: str = "random",
    noise: float | None = None,
    duplicate_fraction: float = 0.0,
    family: str | None = None,
) -> dict[str, np.ndarray]:
    """One synthetic layout graph, in memory, with the keys and dtypes of a layout npz.

    Args:
        rng: the only source of randomness.
        num_nodes: n, at least ``num_configurable + 2``.
        num_configurable: nc, nodes with opcode 26 / 34 / 75 (xla: mostly convolutions,
            nlp: mostly dots).
        num_configs: c.
        labelled: False gives all-zero runtimes, as in test files.
        source: ``"xla"`` or ``"nlp"``.
        search: ``"random"`` (every node varies) or ``"default"`` (few nodes per config
            leave the compiler default).
        noise: relative std of the measurement noise; 0 stores ``rint(cost)``. Default:
            :data:`~.cost.DEFAULT_NOISE` without a family, else the family's noise.
        duplicate_fraction: share of config rows overwritten by copies of other rows
            (measured again, so with different runtimes when ``noise > 0``).
        family: a key of :data:`~.families.LAYOUT_FAMILIES`, the hidden cost model;
            ``None`` is :func:`layout_cost` (``neighbour_vote``).

    Returns:
        ``node_feat`` [n, 140] float32, ``node_opcode`` [n] uint8, ``edge_index`` [m, 2]
        int64, ``node_config_feat`` [c, nc, 18] float32, ``node_config_ids`` [nc] int64,
        ``config_runtime`` [c] int64, ``node_splits`` [1, k] int64.
    """
    from .families import resolve_family  # families builds on this module

    fam, noise = resolve_family("layout", family, noise)
    return _layout_arrays(
        rng,
        rng,
        num_nodes,
        num_configurable,
        num_configs,
        labelled,
        source,
        search,
        noise,
        duplicate_fraction,
        fam.cost,
    )


def benchmark_layout_graph(seed: int = 0, **kwargs: Any) -> dict[str, np.ndarray]:
    """A real-scale layout graph (20k nodes, 1k configurable, 2k configs, ~150 MB)."""
    sizes = {**BENCHMARK_LAYOUT, **kwargs}
    return make_layout_graph(np.random.default_rng(seed), **sizes)
