"""Synthetic TpuGraphs collections: schema-exact npz files with a hidden, learnable cost model.

The files have the keys, dtypes, invariants and folder layout of the real release (see
:mod:`tpulearn.data.schema`), so every reader, dataset and trainer can be exercised at any
size, from a 5-node test kernel to a 20k-node, 100k-config layout graph, without the 6 GB
download. Everything is a function of the seed.

Runtimes come from a fixed hidden cost model (:func:`layout_cost`, :func:`tile_cost`)
that depends on the graph as much as on the configs:

* layout: every configurable node pays for converting tensors whose layout differs from
  what its neighbours use (its output vs. the layout of its first consumer, its inputs vs.
  the layout its producers emit, which is itself a config choice when the producer is
  configurable) and for compute padded to the TPU's 8 x 128 tiles along its two most
  minor dimensions. Which permutation is cheap is thus decided by the neighbourhood:
  a model that sees only the config features cannot rank configs without the graph.
* tile: the kernel's root output is cut into tiles; the number of tiles, lane/sublane
  padding along the root's minor dimensions, per-tile overhead and a VMEM spill penalty
  (driven by the number of kernel inputs and element width) trade off, so the best tile
  depends on the kernel's shapes and structure.

Memory: a layout graph is generated whole; ``node_config_feat`` alone is
``configs x configurable x 18 x 4`` bytes (144 MB at 2k x 1k, 7.2 GB at the real maximum
of 100k x 1k), and ``np.savez_compressed`` needs that array in memory. Runtimes are
computed in chunks of configs, so nothing else of that size is allocated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .features import tensor_rank
from .schema import (
    NODE_FEAT_DIM,
    NUM_OPCODES,
    SPLITS,
    TILE_CONFIG_FEAT_DIM,
    collection_dir,
    parse_collection,
)

CONFIGURABLE_OPCODES = (26, 34, 75)  # convolution, dot, reshape
DEFAULT_NUM_GRAPHS = MappingProxyType({"train": 8, "valid": 2, "test": 2})
BENCHMARK_LAYOUT = MappingProxyType(
    {"num_nodes": 20_000, "num_configurable": 1_000, "num_configs": 2_000}
)
DEFAULT_NOISE = 0.002  # relative std of the multiplicative measurement noise

# Opcode pools by arity, ids as they occur in the real files (63 parameter, 24 constant).
_LEAF = np.array([63, 63, 63, 24])
_UNARY = np.array([25, 45, 45, 81, 94])  # shape-preserving
_BINARY = np.array([2, 2, 20, 32, 57, 59, 59, 95, 95])
_TERNARY = np.array([70, 83])
_RESHAPING = np.array([13, 13, 92, 37])  # unary, with a shape of their own
_KIND_PROBS = np.array([0.12, 0.33, 0.35, 0.05, 0.15])  # leaf, unary, binary, ternary, reshaping
_CONFIGURABLE_PROBS = {"xla": (0.6, 0.2, 0.2), "nlp": (0.0, 0.85, 0.15)}  # conv, dot, reshape

# Element types: feature column 2 + XLA PrimitiveType (PRED, S32, BF16, F32) and bytes.
_DTYPE_COLUMN = np.array([3, 6, 18, 13])
_DTYPE_BYTES = np.array([1, 4, 2, 4])
_DTYPE_PROBS = np.array([0.05, 0.10, 0.25, 0.60])
_DIMS = np.array([1, 2, 3, 4, 8, 16, 24, 32, 64, 96, 128, 192, 256, 384, 512, 1024])
_MAX_ELEMENTS = 1 << 22
# Window / slice "product" columns hold 1 (the empty product) on every real node.
_PRODUCT_ONE_COLUMNS = [44, 52, 60, 68, 76, 84, 112, 116, 120, 124, 128, 132]
_MTM = slice(134, 140)  # layout minor_to_major, zero padded

# Hidden cost-model constants. Fixed across graphs so that what is learnt transfers.
_OPCODE_COST = np.random.default_rng(20231).uniform(0.5, 3.0, NUM_OPCODES)
_NODE_OVERHEAD_NS = 400.0
_NS_PER_BYTE = 0.002  # ~500 GB/s
_NS_PER_FLOP = 1e-5  # ~100 TFLOP/s
_POSITION_WEIGHT = np.array([1.0, 0.5, 0.25, 0.25, 0.25, 0.25])  # minor dims matter most
_MAX_PADDING = 8.0
_TILE_OVERHEAD_NS = 60.0
_NS_PER_VECTOR_OP = 1e-3  # per element and opcode-cost unit, inside a tile kernel
_VMEM_BYTES = float(1 << 20)
_MAX_SPILL = 4.0


# --------------------------------------------------------------------------- graphs


def _layouts(rng: np.random.Generator, ranks: np.ndarray, default_prob: float) -> np.ndarray:
    """Random minor-to-major permutations of ``range(rank)``, padded with -1.

    Args:
        ranks: [m] tensor ranks in 0..6.
        default_prob: probability of the XLA default ``rank-1, ..., 0`` instead.

    Returns:
        [m, 6] float64.
    """
    pad = np.arange(6)[None, :] >= ranks[:, None]
    keys = np.where(pad, 2.0, rng.random((len(ranks), 6)))
    default = rng.random(len(ranks)) < default_prob
    # Descending keys give the default order once padding is pushed to the end.
    keys[default] = np.where(pad[default], 2.0, -np.arange(6.0))
    return np.where(pad, -1.0, np.argsort(keys, axis=1))


def _shapes(rng: np.random.Generator, ranks: np.ndarray) -> np.ndarray:
    """[m, 6] dims (trailing zeros) with at most ``_MAX_ELEMENTS`` elements per tensor."""
    dims = rng.choice(_DIMS, size=(len(ranks), 6)).astype(np.float64)
    dims[np.arange(6)[None, :] >= ranks[:, None]] = 1.0
    for _ in range(40):  # halve the largest dim of oversized tensors
        big = np.flatnonzero(dims.prod(axis=1) > _MAX_ELEMENTS)
        if big.size == 0:
            break
        col = dims[big].argmax(axis=1)
        dims[big, col] = np.maximum(1.0, dims[big, col] // 2)
    dims[np.arange(6)[None, :] >= ranks[:, None]] = 0.0
    return dims


def _operands(rng: np.random.Generator, arity: np.ndarray, chain_to: np.ndarray) -> np.ndarray:
    """Edges ``[u, v]`` (u consumes v, u > v), operands of a node in order, no duplicates.

    Producers are mostly a few nodes back (as in real programs), sometimes far back;
    ``chain_to[u] >= 0`` forces the first operand of u (used to chain configurable nodes).
    """
    u = np.repeat(np.arange(len(arity)), arity)
    back = rng.geometric(0.35, size=u.size)
    far = rng.random(u.size) < 0.1
    back[far] = rng.integers(1, np.maximum(u[far], 1) + 1)
    v = np.maximum(u - back, 0)
    first = np.r_[True, u[1:] != u[:-1]] if u.size else np.zeros(0, bool)
    forced = first & (chain_to[u] >= 0)
    v[forced] = chain_to[u[forced]]
    _, keep = np.unique(u * len(arity) + v, return_index=True)
    keep.sort()  # back to operand order
    return np.stack([u[keep], v[keep]], axis=1).astype(np.int64)


def _resolve_roots(parent: np.ndarray) -> np.ndarray:
    """Follow ``parent`` pointers (parent < child) to the fixed points, by pointer jumping."""
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


def _graph(
    rng: np.random.Generator,
    num_nodes: int,
    num_configurable: int,
    source: str = "xla",
    num_splits: int = 1,
    root_rank: bool = False,
) -> dict[str, np.ndarray]:
    """A random topologically ordered XLA-like graph.

    Configurable nodes (opcodes 26/34/75) are exactly the nodes with those opcodes.
    Elementwise nodes inherit shape, element type and layout from their first operand.
    ``root_rank`` gives the last node operands and a shape of its own of rank 2-4 (the
    output of a tile kernel).

    Returns:
        ``node_feat`` [n, 140] float32, ``node_opcode`` [n] uint8, ``edge_index`` [m, 2]
        int64, ``node_config_ids`` [nc] int64 and ``node_splits`` [1, k] int64.
    """
    n = num_nodes
    if not 0 <= num_configurable <= max(0, n - 2):
        raise ValueError(f"need 0 <= num_configurable <= num_nodes - 2, got {num_configurable}")
    ids = np.sort(rng.choice(np.arange(2, n), size=num_configurable, replace=False))
    kind = rng.choice(5, size=n, p=_KIND_PROBS)
    kind[:2] = 0  # programs start with their parameters
    if root_rank and n >= 2 and n - 1 not in ids:
        kind[-1] = 4
    pools = (_LEAF, _UNARY, _BINARY, _TERNARY, _RESHAPING)
    opcode = np.zeros(n, np.int64)
    for k, pool in enumerate(pools):
        opcode[kind == k] = rng.choice(pool, size=int((kind == k).sum()))
    opcode[ids] = rng.choice(CONFIGURABLE_OPCODES, size=ids.size, p=_CONFIGURABLE_PROBS[source])
    arity = np.array([0, 1, 2, 3, 1])[kind]
    arity[ids] = np.where(opcode[ids] == 75, 1, 2)

    # A third of the configurable nodes read the previous one: layout choices interact.
    chain_to = np.full(n, -1)
    chained = rng.random(ids.size) < 0.35
    chained[:1] = False
    chain_to[ids[chained]] = ids[np.flatnonzero(chained) - 1]
    edge_index = _operands(rng, arity, chain_to)
    first_operand = _first_operands(edge_index, n)[0]

    # Leaves, reshaping and configurable nodes get a shape of their own; the rest inherit.
    fresh = (kind == 0) | (kind == 4) | (first_operand < 0)
    fresh[ids] = True
    rank = rng.choice(6, size=n, p=[0.15, 0.3, 0.2, 0.1, 0.15, 0.1])
    rank[ids] = rng.choice([2, 3, 4], size=ids.size, p=[0.4, 0.2, 0.4])
    if root_rank:
        fresh[-1] = True
        rank[-1] = rng.integers(2, 5)
    dims = _shapes(rng, rank)
    if root_rank:  # a kernel worth tiling: no tiny output dims
        dims[-1] = np.where(dims[-1] > 0, np.maximum(dims[-1], 8), 0)
    layout = _layouts(rng, rank, default_prob=0.6)
    dtype = rng.choice(len(_DTYPE_PROBS), size=n, p=_DTYPE_PROBS)
    src = _resolve_roots(np.where(fresh, np.arange(n), first_operand))
    dims, layout, dtype, rank = dims[src], layout[src], dtype[src], rank[src]

    splits = np.sort(rng.choice(np.arange(1, n), size=min(num_splits, n) - 1, replace=False))
    splits = np.r_[0, splits, n].astype(np.int64)
    feat = _node_features(opcode, dims, rank, layout, dtype, roots=splits[1:] - 1)
    return {
        "node_feat": feat,
        "node_opcode": opcode.astype(np.uint8),
        "edge_index": edge_index,
        "node_config_ids": ids.astype(np.int64),
        "node_splits": splits[None, :],
    }


def _node_features(opcode, dims, rank, layout, dtype, roots) -> np.ndarray:
    """[n, 140] float32 raw node features in the real files' encoding."""
    n = len(opcode)
    feat = np.zeros((n, NODE_FEAT_DIM), np.float32)
    feat[roots, 0] = 1.0  # is_root
    feat[np.arange(n), _DTYPE_COLUMN[dtype]] = 1.0
    feat[:, 21:27] = dims
    feat[:, 27] = dims.sum(axis=1)
    feat[:, 28] = np.where(dims > 0, dims, 1.0).prod(axis=1)
    params = np.flatnonzero(opcode == 63)
    feat[params, 30] = np.arange(params.size)
    feat[:, _PRODUCT_ONE_COLUMNS] = 1.0
    conv = opcode == 26
    feat[conv, 37:39] = 3.0  # 3x3 window, stride 1
    feat[conv, 43:45] = (6.0, 9.0)
    feat[conv, 45:47] = 1.0
    feat[conv, 51] = 2.0
    feat[conv, 107:109] = 1.0  # feature / batch group count
    feat[opcode == 34, 31] = np.maximum(rank[opcode == 34] - 1, 0)  # contracting dim
    feat[:, _MTM] = np.maximum(layout, 0.0)  # the files pad with 0
    return feat


def _first_operands(edge_index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First and second operand of every node ([n] each, -1 where missing).

    Operands are the rows of ``edge_index`` with ``u`` = the node, in file order.
    """
    first = np.full(n, -1, np.int64)
    second = np.full(n, -1, np.int64)
    if edge_index.size:
        order = np.argsort(edge_index[:, 0], kind="stable")
        u, v = edge_index[order, 0], edge_index[order, 1]
        start = np.r_[True, u[1:] != u[:-1]]
        first[u[start]] = v[start]
        at = np.flatnonzero(start) + 1
        has_second = at < u.size
        at = at[has_second]
        ok = u[at] == u[start][has_second]
        second[u[at[ok]]] = v[at[ok]]
    return first, second


def _node_arrays(
    graph: Any, keys: tuple[str, ...] = ("node_feat", "node_opcode", "edge_index")
) -> dict[str, np.ndarray]:
    """Arrays of a dict (npz keys) or of a record read by :mod:`tpulearn.data.io`."""
    get = graph.get if isinstance(graph, Mapping) else lambda k: getattr(graph, k, None)
    missing = [k for k in keys if get(k) is None]
    if missing:
        raise ValueError(f"the graph has no {', '.join(missing)}")
    return {k: np.asarray(get(k)) for k in keys}


def _static(node_feat: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-node rank [n], dims [n, 6], own layout [n, 6] (-1 padded), elements and bytes [n]."""
    feat = node_feat.astype(np.float64)
    dims = feat[:, 21:27]
    rank = tensor_rank(feat)
    layout = np.where(np.arange(6)[None, :] < rank[:, None], feat[:, _MTM], -1.0)
    width = np.where(feat[:, _DTYPE_COLUMN].any(axis=1), feat[:, _DTYPE_COLUMN].argmax(axis=1), 3)
    return rank, dims, layout, feat[:, 28], feat[:, 28] * _DTYPE_BYTES[width]


def _base_cost(node_opcode: np.ndarray, nbytes: np.ndarray) -> float:
    """Config-independent part of a program's runtime (ns): launch + memory traffic."""
    per_node = _NODE_OVERHEAD_NS + _OPCODE_COST[node_opcode.astype(np.int64)] * nbytes
    return float((per_node * _NS_PER_BYTE).sum() + _NODE_OVERHEAD_NS * len(nbytes))


def _noisy(rng: np.random.Generator, cost: np.ndarray, noise: float) -> np.ndarray:
    """Measured runtimes: int64 ns with multiplicative log-normal noise."""
    factor = np.exp(noise * rng.standard_normal(cost.shape)) if noise > 0 else 1.0
    return np.maximum(np.rint(cost * factor), 1).astype(np.int64)


def _duplicate_rows(rng: np.random.Generator, rows: np.ndarray, fraction: float) -> None:
    """Overwrite a fraction of rows (in place) with copies of others, as re-measured configs."""
    count = int(round(fraction * len(rows)))
    if count and len(rows) > 1:
        rows[rng.choice(len(rows), count)] = rows[rng.choice(len(rows), count)]


def _draw(rng: np.random.Generator, bounds: tuple[int, int], what: str) -> int:
    """An integer from the inclusive range ``bounds``."""
    lo, hi = bounds
    if not 1 <= lo <= hi:
        raise ValueError(f"{what} must be a range (lo, hi) with 1 <= lo <= hi, got {bounds}")
    return int(rng.integers(lo, hi + 1))


# --------------------------------------------------------------------------- layout

_CANDIDATES = 8  # distinct layouts per configurable node (row 0 = default), as in real files
_CHUNK_ELEMENTS = 1 << 22  # bound on temporaries: configs per chunk x configurable x 18


def _layout_candidates(rng: np.random.Generator, graph: dict) -> np.ndarray:
    """[nc, K, 18] float32: per configurable node, row 0 all -1, then random layouts.

    Output block: a permutation of the node's rank; input / kernel blocks: of the rank of
    its first / second operand (kernel only for convolution and dot).
    """
    ids, opcode = graph["node_config_ids"], graph["node_opcode"].astype(np.int64)
    rank = tensor_rank(graph["node_feat"])
    first, second = _first_operands(graph["edge_index"], len(opcode))
    k = _CANDIDATES - 1

    def block(nodes: np.ndarray, present: np.ndarray) -> np.ndarray:
        ranks = np.where(present, rank[np.maximum(nodes, 0)], 0)
        return _layouts(rng, np.repeat(ranks, k), default_prob=0.0).reshape(ids.size, k, 6)

    out = block(ids, np.ones(ids.size, bool))
    inp = block(first[ids], first[ids] >= 0)
    ker = block(second[ids], (second[ids] >= 0) & (opcode[ids] != 75))
    cand = np.full((ids.size, _CANDIDATES, 18), -1.0, np.float32)
    cand[:, 1:] = np.concatenate([out, inp, ker], axis=-1)
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

    # The preferred output layout is the one its first consumer uses; without a consumer
    # of the same rank, the largest dimension should be the most minor (fewest padded lanes).
    consumer = np.full(n, n)
    np.minimum.at(consumer, edges[:, 1], edges[:, 0])
    cons = consumer[ids]
    same = cons < n
    same[same] = rank[cons[same]] == rank[ids[same]]
    pad = np.arange(6)[None, :] >= rank[ids, None]
    largest_minor = np.argsort(np.where(pad, np.inf, -dims[ids]), axis=1, kind="stable")
    largest_minor = np.where(pad, -1.0, largest_minor)
    model = {
        "dims": dims[ids],
        "own": layout[ids],
        "pref": np.where(same[:, None], layout[np.where(same, cons, 0)], largest_minor),
        "out_ns": 2 * nbytes[ids] * _NS_PER_BYTE,  # write + read of a converted copy
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
) -> dict[str, np.ndarray]:
    """A layout graph whose structure and configs come from separate generators.

    Separate generators let the two searches of a source share their graphs, as the
    release does.
    """
    if source not in _CONFIGURABLE_PROBS:
        raise ValueError(f"source must be 'xla' or 'nlp', got {source!r}")
    if num_configs < 1:
        raise ValueError(f"num_configs must be >= 1, got {num_configs}")
    num_splits = 1 + int(structure_rng.integers(0, min(6, num_nodes // 200) + 1))
    graph = _graph(structure_rng, num_nodes, num_configurable, source, num_splits)
    feat = _layout_configs(config_rng, graph, num_configs, search, duplicate_fraction)
    if labelled:
        runtime = _noisy(config_rng, layout_cost(graph, feat), noise)
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
    noise: float = DEFAULT_NOISE,
    duplicate_fraction: float = 0.0,
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
        noise: relative std of the measurement noise; 0 stores ``rint(layout_cost)``.
        duplicate_fraction: share of config rows overwritten by copies of other rows
            (measured again, so with different runtimes when ``noise > 0``).

    Returns:
        ``node_feat`` [n, 140] float32, ``node_opcode`` [n] uint8, ``edge_index`` [m, 2]
        int64, ``node_config_feat`` [c, nc, 18] float32, ``node_config_ids`` [nc] int64,
        ``config_runtime`` [c] int64, ``node_splits`` [1, k] int64.
    """
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
    )


def benchmark_layout_graph(seed: int = 0, **kwargs: Any) -> dict[str, np.ndarray]:
    """A real-scale layout graph (20k nodes, 1k configurable, 2k configs, ~150 MB)."""
    sizes = {**BENCHMARK_LAYOUT, **kwargs}
    return make_layout_graph(np.random.default_rng(seed), **sizes)


# --------------------------------------------------------------------------- tile


def _tile_root(node_feat: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The kernel's output (its last node): dims [r], minor-to-major [r], bytes per element."""
    rank, dims, layout, elements, nbytes = _static(node_feat[-1:])
    r = int(rank[0])
    return dims[0, :r], layout[0, :r].astype(np.int64), float(nbytes[0] / elements[0])


def _tile_configs(rng: np.random.Generator, node_feat: np.ndarray, num_configs: int) -> np.ndarray:
    """[c, 24] float32 ``config_feat``: output tile sizes (cols 8-13, sum 14, product 15).

    Row 0 is the compiler's default (one 8 x 128 tile along the minor dims); the others
    take power-of-two sizes per dim, or the whole dim.
    """
    dims, layout, _ = _tile_root(node_feat)
    r = dims.size
    tiles = 2.0 ** np.floor(rng.random((num_configs, r)) * (np.log2(dims) + 1))
    whole = rng.random((num_configs, r)) < 0.15
    tiles = np.minimum(np.where(whole, dims, tiles), dims)
    default = np.ones(r)
    for pos, size in zip(layout[:2], (128.0, 8.0), strict=False):
        default[pos] = min(dims[pos], size)
    tiles[0] = default
    feat = np.zeros((num_configs, TILE_CONFIG_FEAT_DIM), np.float32)
    feat[:, 8 : 8 + r] = tiles
    feat[:, 14] = tiles.sum(axis=1)
    feat[:, 15] = tiles.prod(axis=1)
    return feat


def tile_cost(graph: Any, config_feat: np.ndarray | None = None) -> np.ndarray:
    """Noise-free runtime (ns) of every tile config under the hidden cost model.

    The root output is cut into tiles (config cols 8-13, one per dim); each tile is padded
    to 128 lanes x 8 sublanes along the root's two most minor dims (its layout, node
    features 134-139), streams one tile per kernel input plus the output through VMEM
    (spilling when they do not fit) and runs every node of the kernel on it.

    Args:
        graph: a dict of tile arrays (as returned by :func:`make_tile_graph`) or a
            :class:`~tpulearn.data.io.TileRecord`.
        config_feat: [c, 24] configs to cost; the graph's own by default.

    Returns:
        [c] float64 runtimes in ns.
    """
    arrays = _node_arrays(graph)
    if config_feat is None:
        config_feat = _node_arrays(graph, ("config_feat",))["config_feat"]
    opcode = arrays["node_opcode"].astype(np.int64)
    dims, layout, width = _tile_root(arrays["node_feat"])
    tiles = np.clip(np.asarray(config_feat, np.float64)[:, 8 : 8 + dims.size], 1, dims)
    count = np.ceil(dims / tiles).prod(axis=1)
    padded = tiles.copy()
    for pos, size in zip(layout[:2], (128.0, 8.0), strict=False):
        padded[:, pos] = np.ceil(padded[:, pos] / size) * size
    elements = padded.prod(axis=1)

    producers = np.unique(arrays["edge_index"].reshape(-1, 2)[:, 0])
    inputs = len(opcode) - producers.size  # nodes without operands stream in
    tile_bytes = elements * width * (inputs + 1)
    compute = elements * _OPCODE_COST[opcode[producers]].sum() * _NS_PER_VECTOR_OP
    per_tile = _TILE_OVERHEAD_NS + np.maximum(compute, tile_bytes * _NS_PER_BYTE)
    # Tiles that overflow VMEM spill to HBM: up to _MAX_SPILL times slower.
    per_tile *= 1 + (_MAX_SPILL - 1) * np.maximum(1 - _VMEM_BYTES / tile_bytes, 0)
    # Loads overlap compute except the first tile's (pipeline fill): big tiles pay for it.
    fill = tile_bytes * _NS_PER_BYTE
    return count * per_tile + fill + _NODE_OVERHEAD_NS * len(opcode)


def make_tile_graph(
    rng: np.random.Generator,
    num_nodes: int,
    num_configs: int,
    labelled: bool = True,
    *,
    noise: float = DEFAULT_NOISE,
    duplicate_fraction: float = 0.0,
) -> dict[str, np.ndarray]:
    """One synthetic tile kernel, in memory, with the keys and dtypes of a tile npz.

    Args:
        rng: the only source of randomness.
        num_nodes: n >= 1; the last node is the kernel's root (output).
        num_configs: c >= 1; config 0 is the compiler default.
        labelled: False gives all-zero runtimes and normalizers of 1, as in test files.
        noise: relative std of the measurement noise; 0 stores ``rint(tile_cost)``.
        duplicate_fraction: share of config rows (after row 0) overwritten by copies.

    Returns:
        ``node_feat`` [n, 140] float32, ``node_opcode`` [n] uint8, ``edge_index`` [m, 2]
        int64, ``config_feat`` [c, 24] float32, ``config_runtime`` [c] int64 and
        ``config_runtime_normalizers`` [c] int64 (the default config's runtime).
    """
    if num_configs < 1:
        raise ValueError(f"num_configs must be >= 1, got {num_configs}")
    num_configurable = int(rng.integers(0, min(2, max(num_nodes - 3, 0)) + 1))
    graph = _graph(rng, num_nodes, num_configurable, "xla", root_rank=True)
    config_feat = _tile_configs(rng, graph["node_feat"], num_configs)
    _duplicate_rows(rng, config_feat[1:], duplicate_fraction)
    if labelled:
        runtime = _noisy(rng, tile_cost(graph, config_feat), noise)
        normalizers = np.full(num_configs, runtime[0], np.int64)
    else:
        runtime = np.zeros(num_configs, np.int64)
        normalizers = np.ones(num_configs, np.int64)
    return {
        "node_feat": graph["node_feat"],
        "node_opcode": graph["node_opcode"],
        "edge_index": graph["edge_index"],
        "config_feat": config_feat,
        "config_runtime": runtime,
        "config_runtime_normalizers": normalizers,
    }


# --------------------------------------------------------------------------- files


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """``np.savez_compressed`` to a temporary name in the same folder, then rename.

    A reader never sees a half-written file, even if generation is interrupted.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _split_counts(num_graphs: Mapping[str, int] | None) -> dict[str, int]:
    counts = dict(DEFAULT_NUM_GRAPHS if num_graphs is None else num_graphs)
    unknown = set(counts) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; expected {', '.join(SPLITS)}")
    return counts


def write_tile_collection(
    root: str | Path,
    *,
    num_graphs: Mapping[str, int] | None = None,
    nodes: tuple[int, int] = (5, 40),
    configs: tuple[int, int] = (10, 50),
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
    duplicate_fraction: float = 0.0,
) -> list[Path]:
    """Write a synthetic tile:xla collection under ``<root>/npz/tile/xla/<split>/``.

    Args:
        root: data root, laid out as the release.
        num_graphs: kernels per split; default ``{"train": 8, "valid": 2, "test": 2}``.
        nodes: inclusive range of nodes per kernel.
        configs: inclusive range of configs per kernel.
        seed: everything written is a function of it (and of the other arguments).
        noise, duplicate_fraction: see :func:`make_tile_graph`.

    Returns:
        The written files, split by split. Test files are unlabelled.
    """
    paths = []
    for split, count in _split_counts(num_graphs).items():
        folder = collection_dir(root, "tile:xla", split)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            # One generator per file: a file does not change when others are added.
            rng = np.random.default_rng([seed, 0, SPLITS.index(split), i])
            arrays = make_tile_graph(
                rng,
                _draw(rng, nodes, "nodes"),
                _draw(rng, configs, "configs"),
                labelled=split != "test",
                noise=noise,
                duplicate_fraction=duplicate_fraction,
            )
            paths.append(_write_npz(folder / f"synthetic_{split}_{i:04d}.npz", arrays))
    return paths


def write_layout_collection(
    root: str | Path,
    source: str = "xla",
    search: str = "random",
    *,
    num_graphs: Mapping[str, int] | None = None,
    nodes: tuple[int, int] = (50, 300),
    configurable_fraction: float = 0.1,
    num_configurable: tuple[int, int] | None = None,
    configs: tuple[int, int] = (20, 100),
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
    duplicate_fraction: float = 0.0,
) -> list[Path]:
    """Write a synthetic layout collection under ``<root>/npz/layout/<source>/<search>/``.

    Graphs depend on ``(seed, source, split, index)`` only, so the ``default`` and
    ``random`` collections of one source share their graphs (as the release does) and
    differ in their configs.

    Args:
        root: data root, laid out as the release.
        source: ``"xla"`` or ``"nlp"``.
        search: ``"default"`` or ``"random"``.
        num_graphs: graphs per split; default ``{"train": 8, "valid": 2, "test": 2}``.
        nodes: inclusive range of nodes per graph.
        configurable_fraction: share of nodes that are configurable (at least one).
        num_configurable: inclusive range of configurable nodes; overrides the fraction.
        configs: inclusive range of configs per graph.
        seed: everything written is a function of it (and of the other arguments).
        noise, duplicate_fraction: see :func:`make_layout_graph`.

    Returns:
        The written files, split by split. Test files are unlabelled.
    """
    collection = f"layout:{source}:{search}"
    parse_collection(collection)  # clear error for an unknown source or search
    if nodes[0] < 3:
        raise ValueError(f"layout graphs need at least 3 nodes, got nodes={nodes}")
    paths = []
    for split, count in _split_counts(num_graphs).items():
        folder = collection_dir(root, collection, split)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            key = (seed, 1, ("xla", "nlp").index(source), SPLITS.index(split), i)
            structure = np.random.default_rng(key)
            config = np.random.default_rng((*key, ("default", "random").index(search)))
            n = _draw(structure, nodes, "nodes")
            if num_configurable is None:
                nc = int(round(configurable_fraction * n))
            else:
                nc = _draw(structure, num_configurable, "num_configurable")
            arrays = _layout_arrays(
                structure,
                config,
                n,
                min(max(nc, 1), n - 2),
                _draw(config, configs, "configs"),
                labelled=split != "test",
                source=source,
                search=search,
                noise=noise,
                duplicate_fraction=duplicate_fraction,
            )
            paths.append(_write_npz(folder / f"synthetic_{source}_{split}_{i:03d}.npz", arrays))
    return paths
